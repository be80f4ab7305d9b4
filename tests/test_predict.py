"""cnnspec predict: the same answers from .keras, SavedModel, TFLite and ONNX."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _model_fixtures import CLASS_NAMES, digits_run, raw_digits, run_cli, write_digit_pngs

from cnnspec.errors import RunError
from cnnspec.export import REGISTRY, export_model
from cnnspec.predict import predict_files, top_k

# held-out digits (the last ones of scikit-learn's set), written as the 8x8 PNGs a user would have
INDICES = list(range(1700, 1740))


@functools.cache
def _models() -> dict[str, Path]:
    out = Path(tempfile.mkdtemp(prefix="cnnspec-test-exports-"))
    run = digits_run()
    exports = {name: export_model(run, name, out / fmt.default_name("d")).path
               for name, fmt in REGISTRY.items()}  # fmt: skip
    return {"run": run, **exports}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    return write_digit_pngs(tmp_path_factory.mktemp("digits"), INDICES)


def test_every_format_gives_the_same_answers(images):
    results = {fmt: predict_files(path, images, k=3) for fmt, path in _models().items()}
    reference = results["run"]
    assert [p.file for p in reference] == [str(p) for p in images]
    _, labels = raw_digits()
    correct = sum(
        p.top[0][0] == CLASS_NAMES[labels[i]] for p, i in zip(reference, INDICES, strict=True)
    )
    assert correct / len(INDICES) >= 0.85  # the model really recognises the digits
    for fmt, preds in results.items():
        for ref, got in zip(reference, preds, strict=True):
            assert [c for c, _ in got.top] == [c for c, _ in ref.top], (fmt, got.file)
            np.testing.assert_allclose(
                [p for _, p in got.top], [p for _, p in ref.top], atol=1e-4, err_msg=fmt
            )
            assert got.top[0][1] >= got.top[1][1] >= got.top[2][1]


def test_a_folder_is_expanded_recursively_and_sorted(images):
    folder = images[0].parent
    preds = predict_files(_models()["onnx"], [folder], k=1)
    assert [p.file for p in preds] == sorted(str(p) for p in images)
    assert all(len(p.top) == 1 for p in preds)


def test_cli_json(images, capsys):
    assert (
        run_cli(["predict", _models()["tflite"], images[0], images[1], "--top-k", "2", "--json"])
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert [d["file"] for d in data] == [str(images[0]), str(images[1])]
    assert all(len(d["top"]) == 2 for d in data)
    probs = [t["probability"] for t in data[0]["top"]]
    assert 0.0 <= probs[1] <= probs[0] <= 1.0
    assert data[0]["top"][0]["class"] in CLASS_NAMES


def test_cli_table(images, capsys, monkeypatch):
    monkeypatch.chdir(images[0].parent)  # files inside the working directory print relative
    assert run_cli(["predict", _models()["savedmodel"], images[0]]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["file", "#1", "#2", "#3"]
    cells = row.split()
    assert cells[0] == images[0].name and len(cells) == 7
    assert cells[1] in CLASS_NAMES and 0.0 <= float(cells[2]) <= 1.0


def test_top_k_orders_by_probability_and_keeps_ties_stable():
    probs = np.array([[0.1, 0.5, 0.1, 0.3], [0.25, 0.25, 0.25, 0.25]])
    names = ["a", "b", "c", "d"]
    assert top_k(probs, names, 3) == [
        [("b", 0.5), ("d", 0.3), ("a", 0.1)],
        [("a", 0.25), ("b", 0.25), ("c", 0.25)],
    ]
    assert len(top_k(probs, names, 10)[0]) == 4  # k is capped at the class count
    with pytest.raises(RunError, match="outputs 4 classes but its metadata names 3"):
        top_k(probs, names[:3], 1)


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(RunError, match="broken.png"):
        predict_files(_models()["run"], [corrupt])
    with pytest.raises(RunError, match="no such image file or folder"):
        predict_files(_models()["run"], [tmp_path / "nope.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError, match="folder holds no images"):
        predict_files(_models()["run"], [empty])
    assert run_cli(["predict", _models()["onnx"], corrupt]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err


def test_an_export_without_its_metadata_is_refused(tmp_path, images):
    import shutil

    lone = tmp_path / "lone.onnx"
    shutil.copy(_models()["onnx"], lone)
    with pytest.raises(RunError, match="no metadata file beside the model.*lone.onnx.meta.json"):
        predict_files(lone, images[:1])


def test_tflite_predict_prints_no_xnnpack_line(images):
    """14.11: LiteRT printed 'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.' from C++
    on every TFLite predict (once per process: hence a fresh one)."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "predict", str(_models()["tflite"]), str(images[0])],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "digit" in result.stdout  # it did predict
    assert "XNNPACK" not in result.stderr and result.stderr.strip() == "", result.stderr
