"""Tasks beyond one class per image, trained on the shipped data: they learn, not just run.

Tiny nets and few epochs on digits_multilabel / digits_count (made in memory from scikit-
learn's digits); the thresholds are the issue's, on the test split: multilabel f1 >= 0.9,
regression MAE below half of predicting the mean, and a class head + a count head trained
together and scored per head. Mismatched labels are a one-line run error (exit 1).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnspec.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _train(spec: str, out: Path, *sets: str) -> dict:
    args = ["train", str(ROOT / "specs" / spec), "--out", str(out), "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_multilabel_learns_the_digits_present(tmp_path):
    # 8 cosine epochs of the shipped recipe (10): test f1 0.955, map 0.986 measured (10 epochs:
    # 0.972 / 0.994). Issue 16's target is f1 >= 0.9; chance f1 is ~0.35.
    m = _train("multilabel.yaml", tmp_path / "run", "train.epochs=8")
    assert m["test"]["f1"] >= 0.9, m["test"]
    assert m["test"]["map"] >= 0.95, m["test"]
    labels = m["per_class"]["outputs"]["dense_1"]["per_label"]
    assert [row["label"] for row in labels] == [str(i) for i in range(10)]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["task"] == "multilabel" and meta["outputs"][0]["threshold"] == 0.5


@pytest.mark.slow
def test_regression_beats_predicting_the_mean_by_half(tmp_path):
    m = _train("regression.yaml", tmp_path / "run", "train.epochs=4")
    row = m["per_class"]["outputs"]["dense_2"]["per_target"][0]
    assert row["target"] == "count"
    assert m["test"]["mae"] < 0.5 * row["baseline_mae"], (m["test"], row)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    out = meta["outputs"][0]
    assert out["task"] == "regression" and 2.0 < out["mean"][0] < 3.0 and out["std"][0] > 0.5


@pytest.mark.slow
def test_a_class_head_and_a_count_head_train_together_and_are_scored_per_head(tmp_path):
    m = _train("two_heads.yaml", tmp_path / "run", "train.epochs=5")
    test = m["test"]
    assert test["accuracy"] > 0.5  # the class head (10 classes: chance is 0.1)
    report = m["per_class"]["outputs"]["count"]["per_target"][0]
    assert test["count_mae"] < 0.5 * report["baseline_mae"]
    import keras

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert sorted(model.output) == ["count", "dense_1"]  # both heads kept at inference


def test_labels_that_do_not_fit_the_head_are_one_run_error(tmp_path, capsys):
    spec = tmp_path / "ml.yaml"
    spec.write_text(
        (ROOT / "specs" / "multilabel.yaml")
        .read_text()
        .replace("dense: 10, sigmoid", "dense: 7, sigmoid")
    )
    assert main(["train", str(spec), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert any("has 10 multilabel columns" in line and "7 units" in line for line in err), err


def test_a_multilabel_spec_on_integer_labels_is_one_run_error(tmp_path, capsys):
    args = ["train", str(ROOT / "specs" / "multilabel.yaml"), "--set", "train.data=digits"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "one class index per example" in err and "Traceback" not in err


def test_a_missing_label_column_is_named(tmp_path, capsys):
    args = ["train", str(ROOT / "specs" / "regression.yaml"), "--set", "train.targets=[age]"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "no label column 'age'" in err and "digit, count" in err
