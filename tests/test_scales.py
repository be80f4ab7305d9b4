"""Model families: ``scales:`` / ``--scale`` (width, depth, resolution, divisor).

specs/efficientnet.yaml at every scale equals keras.applications.EfficientNetB0..B7 parameter for
parameter. The reference counts below were computed with Keras 3 (TF 2.21) by
``keras.applications.EfficientNetB{k}(weights=None).count_params()``; B0 and B2 are rebuilt with
Keras in the slow tests below, the others are checked through the pure shape inference.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import ROOT

from cnnspec.errors import SpecError
from cnnspec.spec import load_spec, loads_spec
from cnnspec.spec.scales import round_channels, round_repeats

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
EFFICIENTNET = ROOT / "specs" / "efficientnet.yaml"
KERAS = {  # scale: (params, input size)
    "b0": (5_330_571, 224),
    "b1": (7_856_239, 240),
    "b2": (9_177_569, 260),
    "b3": (12_320_535, 300),
    "b4": (19_466_823, 380),
    "b5": (30_562_527, 456),
    "b6": (43_265_143, 528),
    "b7": (66_658_687, 600),
}


@pytest.mark.parametrize("scale", sorted(KERAS))
def test_efficientnet_scale_equals_keras_parameter_count(scale):
    params, size = KERAS[scale]
    spec = load_spec(EFFICIENTNET, scale=scale)
    assert spec.graph.total_params == params
    assert spec.input == (size, size, 3)
    assert spec.scaling["name"] == scale


def test_the_spec_without_a_scale_is_b0():
    assert load_spec(EFFICIENTNET).graph.total_params == KERAS["b0"][0]


@pytest.mark.parametrize(
    "channels, width, divisor, expected",
    [
        (32, 1.1, 8, 32),  # 35.2 -> 32 (within 10 %)
        (40, 1.1, 8, 48),  # 44 -> 48 (half rounds up)
        (112, 1.1, 8, 120),  # 123.2 -> 120
        (10, 1.0, 8, 16),  # 8 would be 20 % down: one divisor more
        (3, 0.5, 8, 8),  # never below the divisor
        (1280, 2.0, 8, 2560),
        (30, 0.35, 4, 12),  # MobileNet alpha 0.35, divisor 4: 10.5 -> 12
    ],
)
def test_round_channels_as_keras_round_filters(channels, width, divisor, expected):
    assert round_channels(channels, width, divisor) == expected


def test_round_repeats_rounds_up():
    assert [round_repeats(r, 1.1) for r in (1, 2, 3, 4)] == [2, 3, 4, 5]
    assert [round_repeats(r, 3.1) for r in (1, 2, 3, 4)] == [4, 7, 10, 13]


NET = """name: net
input: [32, 32, 3]
preprocess: none
scales:
  s: {width: 1.5, depth: 2.0, resolution: 48, divisor: 8}
  half: {width: 0.5, resolution: 16x24}
define:
  blk:
    params: {c: null, t: 2}
    channels: [c]
    layers:
      - conv: 1x1, ${c * t}
      - conv: 3x3, $c, p=same
layers:
  - conv: 3x3, 40, p=same       # written: scales
  - conv: 3x3, 40, p=same       # fixed: stays
    fixed: true
  - blk: {c: 16}                # a channels: parameter scales; ${c * t} follows it
    times: 2
  - blk: {c: 16}
    fixed: true
  - gavgpool
  - dense: 10                   # class count: never scales
"""


def _convs(spec):
    return [n.spec.n_K for n in spec.graph.nodes.values() if n.kind == "conv"]


def test_width_depth_and_resolution_as_documented():
    plain = loads_spec(NET)
    assert _convs(plain) == [40, 40, 32, 16, 32, 16, 32, 16]
    spec = loads_spec(NET, scale="s")
    # 40 -> 60 -> 64; c: 16 -> 24, expansion 2 x 24 = 48 (not rounded again); times 2 -> 4
    assert _convs(spec) == [64, 40] + [48, 24] * 4 + [32, 16]
    assert spec.input == (48, 48, 3)
    assert spec.graph.nodes[spec.graph.output].shape == (10,)
    rounded = {(r["written"], r["channels"]) for r in spec.scaling["rounded"]}
    assert rounded == {(40, 64)}  # 16 x 1.5 = 24 exactly: not a change made by rounding
    half = loads_spec(NET, scale="half")
    assert half.input == (16, 24, 3) and _convs(half)[:2] == [24, 40]


def test_width_scales_the_inception_columns_but_keeps_a_missing_branch():
    text = (
        "name: g\ninput: [28, 28, 192]\npreprocess: none\nscales:\n  w2: {width: 2}\n"
        "layers:\n  - inception: 64, 96, 128, 16, 32, 0\n"
    )
    block = loads_spec(text, scale="w2").layers[0]
    assert (block.n1x1, block.n3x3red, block.n3x3, block.n5x5red, block.n5x5) == (
        128,
        192,
        256,
        32,
        64,
    )
    assert block.pool_proj == 0


def test_the_chosen_scale_is_kept_in_the_saved_spec():
    spec = loads_spec(NET, scale="s")
    assert spec.source_data["scale"] == "s"
    again = loads_spec(yaml.safe_dump(spec.source_data))
    assert again.graph.total_params == spec.graph.total_params
    assert again.input == (48, 48, 3)


def test_an_unknown_scale_is_located_at_the_option_or_the_key():
    with pytest.raises(SpecError) as info:
        loads_spec(NET, file="net.yaml", scale="S")
    assert str(info.value) == "--scale S: unknown scale 'S'. Hint: did you mean 's'?"
    with pytest.raises(SpecError) as info:
        loads_spec("scale: big\n" + NET, file="net.yaml")
    assert str(info.value).startswith(
        "net.yaml:1:1: unknown scale 'big'. Hint: the scales: s, half"
    )


def test_set_overrides_meet_scales():
    # an explicit --set input wins over the scale's resolution; --set scale=... selects one
    assert loads_spec(NET, scale="s", overrides=["input=[20, 20, 3]"]).input == (20, 20, 3)
    assert loads_spec(NET, overrides=["scale=s"]).input == (48, 48, 3)
    with pytest.raises(SpecError) as info:
        loads_spec(NET, file="net.yaml", overrides=["scale=x"])
    assert str(info.value).startswith("--set scale=x: unknown scale 'x'.")


@pytest.mark.parametrize("value", ["[1]", "{a: 1}", "true"])
def test_a_scale_that_is_not_a_name_is_located(value):
    with pytest.raises(SpecError) as info:  # lists were a TypeError (found by fuzzing)
        loads_spec(f"scale: {value}\n" + NET, file="net.yaml")
    assert str(info.value).startswith("net.yaml:1:1: scale: names one of the scales:, received")


def test_bad_scale_settings_and_channels_are_located():
    text = NET.replace("width: 0.5", "width: -1").replace("channels: [c]", "channels: [cc]")
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="net.yaml", scale="half")
    message = str(info.value)
    assert "net.yaml:6:" in message and "width" in message
    assert (
        "net.yaml:10:" in message and "channels names cc, which is not in params (c, t)" in message
    )
    with pytest.raises(SpecError) as info:  # was a TypeError (found by fuzzing)
        loads_spec(NET.replace("channels: [c]", "channels: [[0, 1]]"), file="net.yaml", scale="s")
    assert str(info.value).startswith("net.yaml:10:")


def test_summary_json_gives_b1_and_the_table_lists_rounding():
    def cli(*args):
        result = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), *args],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    data = json.loads(cli("summary", "specs/efficientnet.yaml", "--scale", "b1", "--json"))
    assert data["total_params"] == KERAS["b1"][0] and data["input_shape"] == [240, 240, 3]
    assert data["scale"]["depth"] == 1.1 and data["scale"]["rounded"] == []
    table = cli("summary", "specs/efficientnet.yaml", "--scale", "b2")
    assert "scale b2: width x1.1, depth x1.2" in table
    assert "efficientnet.yaml:67:22: layers[6] stage cout: 40 x 1.1 = 44 -> 48" in table


@pytest.mark.slow
def test_efficientnet_b0_equals_keras_output_for_output():
    import keras

    from cnnspec.build import build_model

    ours = build_model(load_spec(EFFICIENTNET, scale="b0"))
    ref = keras.applications.EfficientNetB0(weights=None)
    assert ours.count_params() == ref.count_params() == KERAS["b0"][0]
    ours_w = [layer for layer in ours.layers if layer.weights]
    ref_w = [layer for layer in ref.layers if layer.weights]
    assert len(ours_w) == len(ref_w)
    rng = np.random.default_rng(0)
    for a, b in zip(ours_w, ref_w, strict=True):
        # cnnspec's Normalization subclasses Keras' (its statistics enter the graph in call)
        assert isinstance(a, type(b)), (a.name, b.name)
        assert [w.shape for w in a.weights] == [w.shape for w in b.weights], (a.name, b.name)
        if isinstance(b, keras.layers.Normalization):
            b.set_weights(a.get_weights())  # the spec's ImageNet statistics, into Keras
            b.finalize_state()
            continue
        weights = b.get_weights()
        if isinstance(b, keras.layers.BatchNormalization):  # exercise every statistic
            weights = [w + rng.uniform(0.1, 0.5, w.shape).astype("float32") for w in weights]
            b.set_weights(weights)
        a.set_weights(weights)
    x = rng.uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5, atol=1e-7
    )


@pytest.mark.slow
def test_efficientnet_b2_builds_as_keras_layer_for_layer():
    import keras

    from cnnspec.build import build_model

    ours = build_model(load_spec(EFFICIENTNET, scale="b2"))
    ref = keras.applications.EfficientNetB2(weights=None)
    assert ours.count_params() == ref.count_params() == KERAS["b2"][0]
    shapes = [[tuple(w.shape) for w in layer.weights] for layer in ours.layers if layer.weights]
    ref_shapes = [[tuple(w.shape) for w in layer.weights] for layer in ref.layers if layer.weights]
    assert shapes == ref_shapes


def _cli_commands() -> dict[str, list[str]]:
    """Every CLI command (sub-commands included) -> its option names."""
    import importlib
    import pkgutil

    import typer.main

    import cnnspec.commands
    from cnnspec.commands import app

    for module in pkgutil.iter_modules(cnnspec.commands.__path__):  # every command module
        importlib.import_module(f"cnnspec.commands.{module.name}")

    def walk(command, prefix):
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                yield from walk(sub, prefix + [name])
        else:
            yield " ".join(prefix), [o for p in command.params for o in p.opts]

    return dict(walk(typer.main.get_command(app), []))


def test_every_spec_command_takes_scale():
    commands = _cli_commands()
    spec_commands = {name for name, opts in commands.items() if "--set" in opts}
    assert {"validate", "summary", "build", "graph", "train", "features"} <= spec_commands
    for name in spec_commands | {"visualize graph"}:
        assert "--scale" in commands[name], name


def test_resume_refuses_a_new_scale(tmp_path):
    from typer.testing import CliRunner

    from cnnspec.commands import app, train_cmds  # noqa: F401
    from cnnspec.errors import RunError

    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--scale", "b1"])
    assert isinstance(result.exception, RunError)
    assert "continues a run from its own spec.yaml (its scale included)" in str(result.exception)


# --- issue 15: a scale's params are checked, a numeric scale name is explained -------------

PARAMS_NET = """name: net
input: [8, 8, 3]
params: {w: 4, drop: 0.1}
scales:
  small: {params: {w: 2}}
  big: {params: {ww: 8}}
layers:
  - conv: 3x3, $w
  - flatten
  - dense: 2
"""


@pytest.mark.parametrize("scale", [None, "small", "big"])
def test_a_typo_in_any_scales_params_is_an_error_with_did_you_mean(scale):
    with pytest.raises(SpecError) as info:
        loads_spec(PARAMS_NET, file="net.yaml", scale=scale)
    assert str(info.value) == (
        "net.yaml:6:18: scales.big.params: unknown parameter 'ww' (a scale sets values of the "
        "spec's params:). Hint: did you mean 'w'?"
    )


def test_a_scale_named_by_a_number_says_to_quote_it():
    text = NET.replace("  half:", "  1:")
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="net.yaml", scale="1")
    message = str(info.value)
    assert (
        message == "net.yaml:6:3: scales[1]: a name must be text, received 1. Hint: quote it: '1':."
    )
    assert "did you mean '1'" not in message
