"""cnnspec explain: pointing game, sanity check, exports, 1D/3D inputs, errors.

The pointing-game data is made here: 32x32 noise (values 0-150) with, for class 0, a bright
horizontal 3-pixel line and, for class 1, a vertical one, at a random position; class 2 has no
marker (so each marker class needs positive evidence, not "not the other class"). A tiny spec
trained on it reaches ~100 % test accuracy in a few epochs. A map "points" when its peak lies
within +-2 pixels of the 3x3 marker box (chance: 49/1024, about 5 %).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 32
CHANCE = 49 / SIZE**2
MARKER_SPEC = """
name: marker
input: [32, 32, 1]
layers:
  - conv: 3x3, 16, p=same, relu
  - conv: 3x3, 16, p=same, relu
  - maxpool: 2x2
  - conv: 3x3, 32, p=same, relu
  - gmaxpool
  - dense: 3, softmax
train:
  data: {data}
  epochs: 5
  batch_size: 32
  optimizer: {{adam: {{lr: 3.0e-3}}}}
"""


def make_markers(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uint8 images (n, 32, 32, 1), labels, marker box top-left corners)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 150, (n, SIZE, SIZE, 1))
    y = rng.integers(0, 3, n)
    pos = rng.integers(0, SIZE - 2, (n, 2))
    for i, (r, c) in enumerate(pos):
        if y[i] == 0:
            x[i, r + 1, c : c + 3, 0] = 255
        elif y[i] == 1:
            x[i, r : r + 3, c + 1, 0] = 255
    return x.astype(np.uint8), y, pos


def points(peak, corner) -> bool:
    return all(p0 - 2 <= p <= p0 + 4 for p, p0 in zip(peak, corner, strict=True))


@pytest.fixture(scope="module")
def marker_run(tmp_path_factory):
    """A run directory of the marker spec trained by cnnspec's own train()."""
    from cnnspec.spec import loads_spec
    from cnnspec.train.trainer import train

    root = tmp_path_factory.mktemp("marker")
    x, y, _ = make_markers(900, 0)
    np.savez(root / "marker.npz", x=x, y=y)
    spec = loads_spec(MARKER_SPEC.format(data=root / "marker.npz"))
    result = train(spec, run_dir=root / "run", verbose=0, echo=lambda _: None)
    assert result.metrics["test"]["accuracy"] >= 0.97
    return root / "run"


@pytest.fixture(scope="module")
def marker_test():
    x, y, pos = make_markers(45, 123)
    keep = y < 2  # images with a marker
    return x[keep].astype(np.float32), y[keep], pos[keep]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from cnnspec.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_pointing_game(marker_run, marker_test):
    from cnnspec.explain import Options, get_method, method_names, open_explainable

    target = open_explainable(marker_run)
    assert target.spatial_layers[-1] == "conv_3"  # the spec's name of its last spatial layer
    x, y, pos = marker_test
    rates = {}
    for name in method_names():
        method = get_method(name)
        hits = [
            points(method.explain(target, x[i], int(y[i]), Options()).peak, pos[i])
            for i in range(len(x))
        ]
        rates[name] = float(np.mean(hits))
    print(f"pointing game on {len(x)} images (chance {CHANCE:.3f}): {rates}")
    assert rates["occlusion"] >= 0.9
    assert rates["integrated_gradients"] >= 0.9
    assert rates["gradcam"] >= 10 * CHANCE


@pytest.mark.slow
def test_sanity_randomised_maps_decorrelate(marker_run, marker_test):
    from cnnspec.explain import Options, checks, get_method, open_explainable

    target = open_explainable(marker_run)
    random_target, names = checks.randomised(target, 2)
    assert names == ["conv_3", "dense_1"]
    x, y, _ = marker_test
    for name in ("gradcam", "integrated_gradients"):
        method = get_method(name)
        rhos = [
            checks.spearman(
                method.explain(target, x[i], int(y[i]), Options()).map,
                method.explain(random_target, x[i], int(y[i]), Options()).map,
            )
            for i in range(10)
        ]
        print(f"sanity {name}: mean Spearman {np.mean(rhos):.3f}")
        assert np.mean(rhos) < 0.5
    # the trained model itself is untouched by the randomised copy
    assert np.allclose(target.model.get_layer("dense_1").kernel, target.model.get_weights()[-2])


@pytest.mark.slow
def test_cli_writes_overlays_maps_sheet_and_json(marker_run, marker_test, tmp_path, capsys):
    from PIL import Image

    x, y, pos = marker_test
    files = []
    for i in range(3):
        files.append(tmp_path / f"m{i}.png")
        Image.fromarray(x[i, :, :, 0].astype(np.uint8)).save(files[-1])
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        ["explain", marker_run, *files, "-m", "gradcam,integrated_gradients", "-m", "occlusion"]
        + ["--deletion", "--sanity", "--json", "-o", out],
        capsys,
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert (out / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for i, item in enumerate(report["inputs"]):
        assert item["predicted"]["index"] == y[i]
        for m in item["explanations"]:
            assert m["index"] == y[i] and np.load(m["map"]).shape == (SIZE, SIZE)
            assert os.path.getsize(m["overlay"]) > 1000
            assert points(m["peak"], pos[i]), (m["method"], m["peak"], pos[i])
            assert m["deletion"]["area"] < m["deletion"]["random_area"]
            assert "spearman" in m["sanity"]
        by = {m["method"]: m for m in item["explanations"]}
        assert by["gradcam"]["layer"] == "conv_3"
        assert by["integrated_gradients"]["completeness_relative"] < 0.05


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_occlusion_on_exports_matches_keras(marker_run, marker_test, tmp_path, capsys, fmt):
    from cnnspec.explain import Options, get_method, open_explainable
    from cnnspec.export import export_model

    path = export_model(marker_run, fmt, tmp_path / f"marker.{fmt}").path
    x, y, _ = marker_test
    keras_target, export_target = open_explainable(marker_run), open_explainable(path)
    occlusion = get_method("occlusion")
    for i in range(2):
        a = occlusion.explain(keras_target, x[i], int(y[i]), Options())
        b = occlusion.explain(export_target, x[i], int(y[i]), Options())
        assert a.peak == b.peak and np.abs(a.map - b.map).max() < 1e-3
    png = tmp_path / "one.png"
    from PIL import Image

    Image.fromarray(x[0, :, :, 0].astype(np.uint8)).save(png)
    code, _, err = run_cli(["explain", path, png, "-m", "gradcam", "-o", tmp_path / "o"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"a {fmt} model runs forward only" in err
    code, out, err = run_cli(["explain", path, png, "-o", tmp_path / "o", "--json"], capsys)
    assert code == 0, err
    assert [m["method"] for m in json.loads(out)["inputs"][0]["explanations"]] == ["occlusion"]


# --------------------------------------------------------------------------- fast tests

SMALL_SPEC = """
name: small
input: {shape}
layers:
  - conv: {k}, 4, p=same, relu
  - residual:
      body:
        - conv: {k}, 4, p=same, relu
    name: res
  - {pool}
  - dense: 3, softmax
"""


def small_run(tmp_path, shape, k="3", pool="gmaxpool"):
    """A run-like folder (model.keras + spec.yaml) of an untrained small spec."""
    from cnnspec.build import build_model
    from cnnspec.spec import loads_spec

    text = SMALL_SPEC.format(shape=list(shape), k=k, pool=pool)
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text(text)
    build_model(loads_spec(text)).save(run / "model.keras")
    return run


@pytest.fixture(scope="module")
def small12(tmp_path_factory):
    """The small spec at 12x12x1, built once for the fast tests."""
    return small_run(tmp_path_factory.mktemp("small12"), [12, 12, 1])


@pytest.mark.parametrize(
    ("shape", "k"), [([64, 2], "3"), ([8, 8, 8, 1], "3x3x3"), ([12, 12, 3], "3x3")]
)
def test_every_method_on_1d_2d_3d_inputs(tmp_path, capsys, shape, k):
    run = small_run(tmp_path, shape, k)
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    code, out, err = run_cli(
        ["explain", run, tmp_path / "in.npy", "--json", "-o", tmp_path / "o", "--samples", "4"]
        + ["--steps", "8", "--deletion"],
        capsys,
    )
    assert code == 0, err
    maps = json.loads(out)["inputs"][0]["explanations"]
    assert {m["method"] for m in maps} == {
        "gradcam",
        "integrated_gradients",
        "occlusion",
        "saliency",
        "smoothgrad",
    }
    for m in maps:
        assert np.load(m["map"]).shape == tuple(shape[:-1])
        assert len(m["peak"]) == len(shape) - 1
    assert next(m for m in maps if m["method"] == "gradcam")["layer"] == "res_out"
    assert (tmp_path / "o" / "sheet.png").is_file()


def test_gradcam_layer_by_spec_block_name(small12):
    from cnnspec.explain import Options, get_method, open_explainable

    target = open_explainable(small12)
    x = np.full((12, 12, 1), 100.0, np.float32)
    a = get_method("gradcam").explain(target, x, 0, Options(layer="res"))
    assert a.extras["layer"] == "res_out" and a.map.shape == (12, 12)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--layer", "nope"], "--layer nope: the model has no such layer"),
        (["--layer", "dense_1"], "--layer dense_1 outputs (3,), not a spatial map"),
        (["-m", "gradcm"], "--method gradcm: unknown explanation method. Hint: did you mean"),
        (["--class", "7"], "--class 7: not a class of this model"),
        (["--steps", "0"], "--steps must be in [1, 1024], received 0"),
        (["--patch", "40"], "--patch 40 is larger than the input's [12, 12]"),
    ],
)
def test_bad_options_are_one_line_exit_1(small12, tmp_path, capsys, args, expected):
    run = small12
    png = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(np.zeros((12, 12), np.uint8)).save(png)
    method = [] if "-m" in args else ["-m", "gradcam,occlusion,integrated_gradients"]
    code, _, err = run_cli(["explain", run, png, *method, *args, "-o", tmp_path / "o"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert expected in err


def test_unreadable_inputs_are_one_line(small12, tmp_path, capsys):
    run = small12
    bad_png = tmp_path / "bad.png"
    bad_png.write_text("not a picture")
    wrong_npy = tmp_path / "wrong.npy"
    np.save(wrong_npy, np.zeros((5, 5)))
    for path, expected in (
        (bad_png, f"corrupt or unsupported image file {bad_png}"),
        (wrong_npy, f"{wrong_npy}: array of shape [5, 5] (float64), the model takes [12, 12, 1]"),
        (tmp_path / "missing.png", "no such image file or folder"),
    ):
        code, _, err = run_cli(["explain", run, path, "-o", tmp_path / "o"], capsys)
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert expected in err


def test_occlusion_runs_batched_forward_passes(tmp_path):
    from cnnspec.explain import Options, get_method, open_explainable
    from cnnspec.explain.source import Explainable

    target = open_explainable(small_run(tmp_path, [16, 16, 1]))
    calls = []

    class Counting(Explainable):
        def forward_once(self, x):
            calls.append(len(x))
            return super().forward_once(x)

    counting = Counting(**{f: getattr(target, f) for f in target.__dataclass_fields__})
    x = np.random.default_rng(1).uniform(0, 255, (16, 16, 1)).astype(np.float32)
    a = get_method("occlusion").explain(counting, x, 1, Options(patch=2, stride=1))
    assert a.extras["copies"] == 15 * 15
    assert calls == [1, 225]  # the unoccluded input, then every copy in one batch
    # the map is the mean probability drop over the patches covering each pixel
    ref = target.forward(x[None])[0, 1]
    copy = x.copy()
    copy[0:2, 0:2] = x.mean()
    assert np.isclose(a.map[0, 0], ref - target.forward(copy[None])[0, 1], atol=1e-6)


def test_integrated_gradients_completeness_improves_with_steps(small12):
    from cnnspec.explain import Options, get_method, open_explainable

    target = open_explainable(small12)
    x = np.random.default_rng(2).uniform(0, 255, (12, 12, 1)).astype(np.float32)
    ig = get_method("integrated_gradients")
    coarse = ig.explain(target, x, 0, Options(steps=2)).extras
    fine = ig.explain(target, x, 0, Options(steps=128)).extras
    assert fine["completeness_error"] <= coarse["completeness_error"] + 1e-7
    assert fine["completeness_error"] < 0.02 * abs(fine["f_x_minus_f_baseline"]) + 1e-5


def test_spearman_and_deletion_basics():
    from cnnspec.explain import checks

    a = np.arange(16.0).reshape(4, 4)
    assert checks.spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert checks.spearman(a, -a) == pytest.approx(-1.0)
    assert checks.spearman(a, np.zeros_like(a)) == 0.0
