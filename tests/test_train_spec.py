"""The train: recipe: validation (pure Pydantic, located errors), auto choices, Keras recipe."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from cnnspec.errors import RunError, SpecError
from cnnspec.spec import loads_spec
from cnnspec.spec.train import TrainSpec
from cnnspec.train.hardware import resolve

LENET = textwrap.dedent(
    """\
    name: tiny
    input: [16, 16, 1]
    layers:
      - conv: 3x3, 4, relu
      - flatten
      - dense: 10, softmax
    """
)


def spec_with(train_yaml: str):
    return loads_spec(
        LENET + "train:\n" + textwrap.indent(textwrap.dedent(train_yaml), "  "), "net.yaml"
    )


def test_issue_sketch_validates():
    spec = spec_with(
        """\
        data: digits
        batch_size: 64
        epochs: 30
        optimizer: {sgd: {lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 5.0e-4}}
        schedule: {cosine: {warmup_epochs: 2}}
        loss: {categorical_crossentropy: {label_smoothing: 0.1}}
        metrics: [accuracy, top3]
        augment: [flip_horizontal, {rotate: 0.1}, {translate: 0.1}, {zoom: 0.1}, {contrast: 0.2}]
        early_stopping: {monitor: val_loss, patience: 5}
        seed: 42
        mixed_precision: auto
        jit_compile: auto
        distribute: auto
        """
    )
    t = spec.train
    assert (t.optimizer.kind, t.optimizer.params.momentum, t.optimizer.params.nesterov) == (
        "sgd",
        0.9,
        True,
    )
    assert (t.schedule.kind, t.schedule.params.warmup_epochs) == ("cosine", 2)
    assert t.loss.params.label_smoothing == 0.1
    assert [a.kind for a in t.augment] == [
        "flip_horizontal",
        "rotate",
        "translate",
        "zoom",
        "contrast",
    ]
    assert t.top_k == [3]
    assert t.early_stopping.patience == 5


def test_shorthand_and_defaults():
    t = TrainSpec.model_validate({"optimizer": "adamw", "schedule": "constant"})
    assert t.optimizer.kind == "adamw" and t.optimizer.params.weight_decay == 0.004
    d = TrainSpec()
    assert (d.data, d.optimizer.kind, d.schedule.kind, d.loss.kind) == (
        "digits",
        "adam",
        "constant",
        "categorical_crossentropy",
    )


@pytest.mark.parametrize(
    ("train_yaml", "where", "words"),
    [
        ("optimizer: {sgdd: {lr: 0.1}}\n", "net.yaml:8:", "sgdd"),
        ("optimizer: {sgd: {lr: -1}}\n", "net.yaml:8:", "lr"),
        ("metrics: [accuracy, acc]\n", "net.yaml:8:", "acc"),
        ("augment: [{rotate: 2}]\n", "net.yaml:8:", "rotate"),
        ("mixed_precision: yes\n", "net.yaml:8:", "mixed_precision"),
        ("optimizer: {sgd: {}, adam: {}}\n", "net.yaml:8:", "exactly one"),
        ("schedule: {piecewise: {boundaries: [5], factors: [1]}}\n", "net.yaml:8:", "factors"),
        ("validation_split: 0.5\ntest_split: 0.45\n", "net.yaml:", "validation_split"),
        ("epochs: 0\n", "net.yaml:8:", "epochs"),
        ("batchsize: 3\n", "net.yaml:8:", "batchsize"),
    ],
)
def test_bad_recipe_is_a_located_spec_error(train_yaml, where, words):
    with pytest.raises(SpecError) as info:
        spec_with(train_yaml)
    text = str(info.value)
    assert text.startswith(where), text
    assert words in text, text
    assert "\n" not in text.strip()  # one problem, one line


def test_spec_validation_never_imports_tensorflow():
    code = (
        "import sys; from cnnspec.spec import load_spec; "
        "load_spec('specs/lenet5.yaml', overrides=['train.optimizer=sgd', 'train.epochs=3']); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_root())


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("recipe", "machine", "expected"),
    [
        # CPU: everything off, determinism on (measured: XLA slower, float16 unusable on CPU)
        ({}, {"gpus": 0}, ("float32", False, True, "none")),
        ({"mixed_precision": "on"}, {"gpus": 0}, ("mixed_bfloat16", False, True, "none")),
        # one modern GPU: float16 + XLA, no determinism
        ({}, {"gpus": 1, "compute_capability": (8, 0)}, ("mixed_float16", True, False, "none")),
        # old GPU: no mixed precision
        ({}, {"gpus": 1, "compute_capability": (6, 1)}, ("float32", True, False, "none")),
        # several GPUs: mirrored, and XLA off under a strategy
        ({}, {"gpus": 4, "compute_capability": (9, 0)}, ("mixed_float16", False, False, "mirrored")),
        # TF_CONFIG: multi-worker
        ({}, {"gpus": 0, "cluster": {"workers": ["a:1", "b:2"], "index": 1}}, ("float32", False, True, "multi_worker")),
        ({"deterministic": "on"}, {"gpus": 1, "compute_capability": (8, 0)}, ("mixed_float16", False, True, "none")),
    ],
)  # fmt: skip
def test_auto_choices(recipe, machine, expected):
    hw = resolve(TrainSpec.model_validate(recipe), **machine)
    assert (hw.policy, hw.jit, hw.deterministic, hw.distribute) == expected


@pytest.mark.parametrize(
    ("recipe", "machine", "words"),
    [
        ({"jit_compile": "on", "distribute": "mirrored"}, {"gpus": 0}, "jit_compile: on"),
        ({"jit_compile": "on", "deterministic": "on"}, {"gpus": 0}, "exclude each other"),
        ({"distribute": "multi_worker"}, {"gpus": 0}, "TF_CONFIG"),
    ],
)
def test_impossible_choices_are_clear_errors(recipe, machine, words):
    with pytest.raises(RunError, match=words):
        resolve(TrainSpec.model_validate(recipe), **machine)


def _lr_at(schedule, step):
    import keras

    return float(keras.ops.convert_to_numpy(schedule(step))) if callable(schedule) else schedule


def test_schedules_follow_the_recipe():
    from cnnspec.train.recipe import learning_rate

    steps, epochs = 10, 10

    def lr(schedule, **opt):
        t = TrainSpec.model_validate(
            {"epochs": epochs, "optimizer": {"sgd": {"lr": 0.1, **opt}}, "schedule": schedule}
        )
        return learning_rate(t, steps)

    cos = lr({"cosine": {"warmup_epochs": 2, "min_factor": 0.01}})
    assert _lr_at(cos, 0) == pytest.approx(0.0, abs=1e-6)
    assert _lr_at(cos, 20) == pytest.approx(0.1, rel=1e-4)  # end of warm-up
    assert _lr_at(cos, 100) == pytest.approx(0.001, rel=1e-3)  # min_factor x lr at the end
    step = lr({"step": {"every": 3, "factor": 0.5}})
    assert [_lr_at(step, s) for s in (0, 29, 30, 60)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    pw = lr({"piecewise": {"boundaries": [2, 5], "factors": [1, 0.1, 0.01]}})
    assert [_lr_at(pw, s) for s in (0, 21, 51)] == pytest.approx([0.1, 0.01, 0.001])
    exp = lr({"exponential": {"decay_rate": 0.5, "decay_epochs": 2}})
    assert _lr_at(exp, 20) == pytest.approx(0.05, rel=1e-5)
    assert lr("constant") == lr({"reduce_on_plateau": {}}) == 0.1


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_builds(kind):
    from cnnspec.train.recipe import optimizer

    opt = optimizer(TrainSpec.model_validate({"optimizer": {kind: {"lr": 0.02}}}), 10)
    assert type(opt).__name__.lower().replace("_", "") == kind
    assert float(opt.learning_rate) == pytest.approx(0.02)


def test_losses_and_metrics():
    import numpy as np

    from cnnspec.train.recipe import loss, metrics

    t = TrainSpec.model_validate(
        {
            "loss": {"categorical_crossentropy": {"label_smoothing": 0.2}},
            "metrics": ["accuracy", "top2"],
        }
    )
    y, p = np.eye(3, dtype="float32")[[0]], np.array([[0.98, 0.01, 0.01]], "float32")
    smooth = float(loss(t)(y, p))
    plain = float(loss(TrainSpec())(y, p))
    assert smooth > plain  # label smoothing penalises over-confidence
    names = [m.name for m in metrics(t)]
    assert names == ["accuracy", "top2"]
    sparse = TrainSpec.model_validate({"loss": "sparse_categorical_crossentropy"})
    assert not sparse.loss.one_hot and float(loss(sparse)(np.array([0]), p)) == pytest.approx(plain)


def test_json_schema_knows_the_shorthands():
    jsonschema = pytest.importorskip("jsonschema")
    schema = TrainSpec.model_json_schema()
    good = {
        "optimizer": "adam",
        "augment": ["flip_horizontal", {"rotate": 0.1}],
        "metrics": ["top5"],
    }
    jsonschema.validate(good, schema)
    for bad in ({"optimizer": {"sgdd": {}}}, {"augment": ["rotate"]}, {"distribute": "yes"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


@pytest.mark.parametrize("path", sorted((_root() / "specs").glob("*.yaml")), ids=lambda p: p.stem)
def test_resolved_spec_reloads_for_resume(path):
    """The run's spec.yaml (source data after overrides) loads back as the same spec."""
    import yaml

    from cnnspec.spec import load_spec

    spec = load_spec(path, overrides=["train.epochs=3", "train.seed=5"])
    text = yaml.safe_dump(spec.source_data, sort_keys=False, allow_unicode=True)
    again = loads_spec(text, "spec.yaml")
    assert again.train == spec.train and again.train.epochs == 3
    assert again.graph.total_params == spec.graph.total_params
    assert again.output_name == spec.output_name


def test_data_paths_resolve_beside_the_spec_and_command_line_ones_from_cwd(tmp_path, monkeypatch):
    from cnnspec.spec import load_spec

    folder = tmp_path / "specs"
    (folder / "photos" / "a").mkdir(parents=True)
    spec = folder / "s.yaml"
    spec.write_text(
        "name: t\ninput: [8, 8, 1]\nlayers:\n  - flatten\n  - dense: 2, softmax\n"
        "train:\n  data: photos\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # any other folder (a search's best.yaml is run from anywhere)
    loaded = load_spec(spec)
    assert loaded.train.data == str(folder / "photos")  # was 'photos', read from the cwd
    assert loaded.source_data["train"]["data"] == str(folder / "photos")  # spec.yaml/best.yaml
    # --data / --set train.data=...: from the current directory, made absolute
    given = load_spec(spec, overrides=["train.data=mine/x.npz"])
    assert given.train.data == str(elsewhere / "mine" / "x.npz")
    assert load_spec(spec, overrides=["train.data=digits"]).train.data == "digits"
    # a missing path is named absolutely, beside the spec (what "not found" prints)
    spec.write_text(spec.read_text().replace("data: photos", "data: ../data/flowers"))
    assert load_spec(spec).train.data == str(tmp_path / "data" / "flowers")
