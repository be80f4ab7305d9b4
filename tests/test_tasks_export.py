"""Export of label-table models: a multilabel output, a class head and a regression head on one
trunk go to every format as one model with three named outputs, each verified on its own in
the format's runtime (onnxruntime, the TFLite interpreter, tf.saved_model.load, Keras), and the
export's metadata carries what predict needs (task, labels, threshold, mean/std per output)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _task_runs import digits_table, train, write_spec

from cnnspec.cli import main
from cnnspec.export import NAMES, sample_inputs
from cnnspec.export.exporter import ExportResult
from cnnspec.export.verify import OutputCheck

OUTPUTS = {"dense_1": "multilabel", "digit": "classification", "ink": "regression"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("three_tasks")
    data = digits_table(folder / "digits_table.npz")
    return train(write_spec(folder, "three_tasks"), folder / "run", data, "--epochs", "1")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", NAMES)
def test_every_output_is_exported_verified_and_described(run, fmt, tmp_path, capsys):
    from cnnspec.export.runtime import open_model

    dest = tmp_path / f"three{'' if fmt == 'savedmodel' else '.' + fmt}"
    capsys.readouterr()
    assert main(["export", str(run), "--format", fmt, "-o", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "verified 3 outputs" in out, out
    for name, task in OUTPUTS.items():  # a line per output: its task, shape, difference
        assert f"  {name} ({task}, " in out, out
    meta = json.loads(dest.with_name(dest.name + ".meta.json").read_text())
    checks = {c["name"]: c for c in meta["verification"]["outputs"]}
    assert {n: c["task"] for n, c in checks.items()} == OUTPUTS
    assert all(c["max_abs_diff"] <= 1e-4 for c in checks.values()), checks
    assert checks["dense_1"]["agreement"] == checks["digit"]["agreement"] == 1.0
    assert checks["ink"]["agreement"] is None and checks["ink"]["shape"] == [16, 1]
    described = {o["name"]: o for o in meta["outputs"]}  # what predict reads
    assert described["dense_1"]["classes"] == ["even", "big", "round"]
    assert described["dense_1"]["threshold"] == 0.5
    assert len(described["digit"]["classes"]) == 10
    assert described["ink"]["classes"] == ["ink"] and described["ink"]["std"][0] > 0
    # loaded back by its own runtime: every output by name, as the run's Keras model gives it
    runtime, _ = open_model(dest)
    keras_runtime, _ = open_model(run)
    x = sample_inputs([16, 16, 1], 5, seed=3)
    got, want = runtime.predict(x), keras_runtime.predict(x)
    assert set(got) == set(want) == set(OUTPUTS)
    for name in OUTPUTS:
        assert got[name].shape == want[name].shape
        assert np.max(np.abs(got[name] - want[name])) <= 1e-4


@pytest.mark.slow
def test_an_output_the_model_lacks_is_a_one_line_error(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["outputs"][2]["name"] = "count"
    (copy / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["export", str(copy), "--format", "onnx"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the model has no output 'count' that its metadata names" in err[0]
    assert not (copy / "export").exists() or not any((copy / "export").iterdir())


@pytest.mark.slow
def test_commands_that_load_the_run_model_accept_a_task_run(run, tmp_path, capsys):
    """Every command loading the run's main output (visualize, explain, features) compared
    meta.json's class_names - a label table's five columns - with the multilabel output's
    three units, and refused the run: '5 class_names for a model with 3 outputs'."""
    out = tmp_path / "filters.png"
    assert main(["visualize", "filters", str(run), "-o", str(out)]) == 0, capsys.readouterr()
    assert out.is_file()


def test_a_regression_export_reports_no_top1_class():
    check = OutputCheck("count", "regression", (16, 1), 2.5e-6, None)
    result = ExportResult(
        path=None, meta_path=None, format="onnx", quantize=None, max_abs_diff=2.5e-6,
        top1_agreement=None, tolerance=1e-4, seconds=1.0, size_bytes=1, outputs=(check,),
    )  # fmt: skip
    (line,) = result.verified_lines()
    assert line == "verified: max abs diff 2.5e-06 vs Keras (tolerance 0.0001); 1.0 s"
