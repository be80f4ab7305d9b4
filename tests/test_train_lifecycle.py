"""The run's life around the training loops: restore, the per-class report, metric choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnspec.cli import main
from cnnspec.errors import RunError

ROOT = Path(__file__).resolve().parent.parent


def _model(units: int):
    import keras

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(units, name="hidden"), keras.layers.Dense(2)]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_changed_spec_is_one_line_naming_the_weight(tmp_path):
    from cnnspec.train.callbacks import restore_checkpoint, save_checkpoint

    folder = tmp_path / "checkpoints"
    save_checkpoint(_model(8), folder, 1, {"loss": 1.0})
    with pytest.raises(RunError) as err:
        restore_checkpoint(_model(16), folder, tmp_path / "history.csv")
    text = str(err.value)
    assert "the run's spec changed since the checkpoint" in text and "\n" not in text
    assert "(4, 8) in the checkpoint" in text and "(4, 16) in the spec" in text
    assert "start a new run" in text and len(text) < 400  # not 27 lines of weight arrays


def test_a_checkpoint_without_a_signature_that_does_not_fit_is_one_line(tmp_path):
    from cnnspec.train.callbacks import restore_checkpoint, save_checkpoint

    folder = tmp_path / "checkpoints"
    save_checkpoint(_model(8), folder, 1, {"loss": 1.0})
    sidecar = folder / "epoch_0001.json"
    record = json.loads(sidecar.read_text())
    del record["weights"]  # as written before signatures were kept
    sidecar.write_text(json.dumps(record))
    with pytest.raises(RunError) as err:
        restore_checkpoint(_model(16), folder, tmp_path / "history.csv")
    assert "the run's spec changed since the checkpoint" in str(err.value)
    assert "\n" not in str(err.value) and len(str(err.value)) < 500


def test_a_bad_history_is_blamed_on_history_csv_not_on_the_checkpoint(tmp_path):
    from cnnspec.train.callbacks import restore_checkpoint, save_checkpoint

    folder = tmp_path / "checkpoints"
    model = _model(8)
    save_checkpoint(model, folder, 1, {"loss": 1.0})
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss\n1,0.5\n2,not a number\n")
    with pytest.raises(RunError, match=r"history\.csv:3: not a history row") as err:
        restore_checkpoint(model, folder, history)
    assert "checkpoints" not in str(err.value)


def test_the_class_report_is_worst_first_and_skips_absent_classes():
    from cnnspec.train.report import class_report, describe_report

    confusion = np.array([[9, 1, 0], [4, 6, 0], [0, 0, 0]])  # class c never occurs
    report = class_report(confusion, ["a", "b", "c"], "test")
    rows = {r["class"]: r for r in report["classes"]}
    assert rows["a"]["precision"] == pytest.approx(9 / 13)
    assert rows["a"]["recall"] == pytest.approx(0.9)
    assert rows["b"]["precision"] == pytest.approx(6 / 7) and rows["b"]["recall"] == 0.6
    assert rows["b"]["f1"] == pytest.approx(2 * (6 / 7) * 0.6 / (6 / 7 + 0.6))
    assert [r["class"] for r in report["classes"]] == ["b", "a", "c"]  # worst F1 first
    assert report["macro"]["f1"] == pytest.approx((rows["a"]["f1"] + rows["b"]["f1"]) / 2)
    lines = describe_report(report)
    assert lines[0].startswith("per class on test") and lines[1].split()[0] == "b"
    assert len(lines) == 3  # c (no images) is not printed


TOPK_SPEC = """\
name: topk
input: [32, 32, 1]
layers:
  - conv: 3x3, 8, p=same, relu
  - maxpool: 2x2, name=trunk
  - gmaxpool
  - dense: 10, softmax
heads:
  again:
    from: trunk
    task: classification
    label: digit
    metrics: [accuracy, top5, top10]
    layers:
      - gmaxpool
      - dense: 10, softmax
train:
  data: digits_count
  targets: [digit]
  metrics: [accuracy, top3, top10]
"""


@pytest.mark.parametrize(
    ("monitor", "main_kept", "head_kept"),
    [
        (None, ["accuracy", "top3"], ["accuracy", "top5"]),
        ("val_top10", ["accuracy", "top3", "top10"], ["accuracy", "top5"]),
        ("val_again_top10", ["accuracy", "top3"], ["accuracy", "top5", "top10"]),
    ],
    ids=["unmonitored", "main-monitored", "head-monitored"],
)
def test_top_k_is_left_out_when_k_reaches_the_number_of_classes(monitor, main_kept, head_kept):
    """top10 of 10 classes is 1.0 by construction: left out of every output (the main one and
    a head's), unless early stopping monitors it by the name it is logged under."""
    from cnnspec.spec import loads_spec
    from cnnspec.tasks.plan import outputs
    from cnnspec.train.lifecycle import load_training_data

    text = TOPK_SPEC + (f"  early_stopping: {{monitor: {monitor}}}\n" if monitor else "")
    spec = loads_spec(text, "topk.yaml")
    main, head = outputs(spec, load_training_data(spec))
    assert (main.metrics, head.metrics) == (main_kept, head_kept)
    assert main.skipped == [m for m in ["top10"] if m not in main_kept]
    assert head.skipped == [m for m in ["top10"] if m not in head_kept]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("lifecycle") / "run"
    args = ["train", str(ROOT / "specs" / "lenet5.yaml"), "--epochs", "1", "--out", str(run)]
    assert main([*args, "--quiet"]) == 0
    return run


@pytest.mark.slow
def test_the_end_of_training_reports_classes_and_files(one_epoch_run):
    from cnnspec.train.lifecycle import RunResult, summary

    m = json.loads((one_epoch_run / "metrics.json").read_text())
    report = m["per_class"]
    assert report["split"] == "test" and len(report["classes"]) == 10
    f1 = [r["f1"] for r in report["classes"]]
    assert f1 == sorted(f1)  # worst first
    assert sum(r["support"] for r in report["classes"]) == 269  # the digits test split
    assert set(m["train"]) == set(m["val"]) == set(m["test"]) == {"loss", "accuracy", "top3"}
    lines = summary(RunResult(one_epoch_run, m)).splitlines()
    assert lines[0].startswith("done: 1 epochs")
    assert lines[1].startswith("per class on test (worst F1 first")
    worst = report["classes"][0]
    assert lines[2].split()[0] == worst["class"] and f"F1 {worst['f1']:.3f}" in lines[2]
    assert len(lines) == 8  # done, header, 5 classes, files
    assert str(one_epoch_run / "model.keras") in lines[-1]
    assert str(one_epoch_run / "metrics.json") in lines[-1]


@pytest.mark.slow
def test_resume_after_editing_the_spec_is_one_line(one_epoch_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(one_epoch_run, run)
    spec = run / "spec.yaml"
    spec.write_text(spec.read_text().replace("dense: 120, tanh", "dense: 64, tanh"))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "the run's spec changed since the checkpoint" in err and "dense_1" in err
    assert f"restore {run / 'spec.yaml'}" in err


def _online() -> bool:
    import socket

    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_online(), reason="checks the offline failure; this machine is online")
def test_missing_imagenet_weights_are_reported_before_the_data_is_read(
    tmp_path, monkeypatch, capsys
):
    # The model is built before the data is loaded: a missing weight file costs no caching
    # (it was reported after the whole data set was read; here the data is not even there).
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    spec = str(ROOT / "specs" / "transfer_mobilenetv2_features.yaml")
    missing = tmp_path / "no_such_photos"
    assert main(["train", spec, "--data", str(missing), "--out", str(tmp_path / "run")]) == 1
    captured = capsys.readouterr()
    assert "cannot get the ImageNet weights of MobileNetV2" in captured.err
    assert "caching" not in captured.out and str(missing) not in captured.err
