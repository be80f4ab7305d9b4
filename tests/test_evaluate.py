"""cnnspec evaluate: accuracy, top-k, per-class P/R/F1, confusion matrix (numbers and picture)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _model_fixtures import (
    CLASS_NAMES,
    assert_not_blank,
    digits_run,
    read_png,
    run_cli,
    write_class_folders,
)

from cnnspec.errors import RunError
from cnnspec.evaluate import align_labels, evaluate_model, score


def test_score_on_hand_made_probabilities():
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # true 0, predicted 0
            [0.6, 0.3, 0.1],  # true 1, predicted 0 (1 is 2nd)
            [0.1, 0.2, 0.7],  # true 2, predicted 2
            [0.5, 0.1, 0.4],  # true 2, predicted 0 (2 is 2nd)
        ]
    )
    s = score(probs, np.array([0, 1, 2, 2]), ["a", "b", "c"], k=2)
    assert s["accuracy"] == 0.5
    assert s["top_k"] == 2 and s["top_k_accuracy"] == 1.0
    assert s["confusion"] == [[1, 0, 0], [1, 0, 0], [1, 0, 1]]
    a, b, c = s["per_class"]
    assert (a["precision"], a["recall"], a["support"]) == (pytest.approx(1 / 3), 1.0, 1)
    assert (b["precision"], b["recall"], b["f1"]) == (0.0, 0.0, 0.0)
    assert (c["precision"], c["recall"], c["f1"]) == (1.0, 0.5, pytest.approx(2 / 3))
    assert s["macro"]["recall"] == pytest.approx(0.5)


def test_labels_are_aligned_by_class_name():
    labels = np.array([0, 1, 2])
    assert align_labels(labels, ["b", "c", "a"], ["a", "b", "c"]).tolist() == [1, 2, 0]
    with pytest.raises(RunError, match="classes the model does not know: z"):
        align_labels(labels, ["a", "b", "z"], ["a", "b", "c"])


def test_evaluate_a_run_on_the_digits_test_split(tmp_path):
    png = tmp_path / "cm.png"
    ev = evaluate_model(digits_run(), "digits", split="test", k=3, confusion_png=png)
    cm = np.array(ev.confusion)
    assert cm.shape == (10, 10) and cm.sum() == ev.n > 200
    assert ev.accuracy == pytest.approx(np.trace(cm) / cm.sum())
    assert ev.accuracy >= 0.9  # the model learned the digits
    assert 1.0 >= ev.top_k_accuracy >= ev.accuracy
    assert [r["class"] for r in ev.per_class] == CLASS_NAMES
    assert [r["support"] for r in ev.per_class] == cm.sum(axis=1).tolist()
    for i, row in enumerate(ev.per_class):
        predicted = cm[:, i].sum()
        assert row["recall"] == pytest.approx(cm[i, i] / cm[i].sum())
        assert row["precision"] == pytest.approx(cm[i, i] / predicted if predicted else 0.0)
    pixels = read_png(png)
    assert_not_blank(pixels)
    assert pixels.shape[1] > 400 and pixels.shape[0] > 400


def test_evaluate_an_export_on_an_image_folder_with_split_all(tmp_path):
    from cnnspec.export import export_model

    onnx = export_model(digits_run(), "onnx", tmp_path / "d.onnx").path
    # classes 3, 5 and 8 only, as folders of PNG files: labels must follow the class names
    from _model_fixtures import raw_digits

    _, y = raw_digits()
    picked = [i for i in range(1600, 1797) if y[i] in (3, 5, 8)][:30]
    folder = write_class_folders(tmp_path / "imgs", picked)
    ev = evaluate_model(onnx, str(folder), split="all", k=1)
    assert ev.n == len(picked)
    supports = {r["class"]: r["support"] for r in ev.per_class}
    assert supports["3"] + supports["5"] + supports["8"] == len(picked)
    assert supports["0"] == 0
    assert ev.accuracy >= 0.8
    assert ev.top_k_accuracy == ev.accuracy  # k=1


def test_cli_json_and_table(tmp_path, capsys):
    png = tmp_path / "c.png"
    assert run_cli(["evaluate", digits_run(), "--data", "digits", "--json", "-o", png]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["split"] == "test" and data["n"] == sum(map(sum, data["confusion_matrix"]))
    assert 0.9 <= data["accuracy"] <= data["top_3_accuracy"] <= 1.0
    assert len(data["per_class"]) == 10 and data["confusion_png"] == str(png)
    read_png(png)
    assert run_cli(["evaluate", digits_run(), "--data", "digits", "-o", png, "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out and "[val]" in out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert run_cli(["evaluate", digits_run(), "--data", str(tmp_path / "missing")]) == 1
    assert run_cli(["evaluate", digits_run(), "--data", "digits", "--split", "dev"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown split 'dev'" in err[1]
    assert all("Traceback" not in line for line in err)


def test_data_defaults_to_what_the_run_was_trained_on(tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run(), run)
    assert run_cli(["evaluate", run, "-o", tmp_path / "c.png"]) == 1
    assert "no --data given" in capsys.readouterr().err
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "data": "digits"}))
    ev = evaluate_model(run)
    assert ev.data == "digits" and ev.n > 200 and ev.accuracy >= 0.9


# --- a split larger than memory: evaluate and features stream it -------------------------------

_PEAK_CHILD = """
import sys
from cnnspec.cli import main
code = main(sys.argv[1:])
print("peak_kb", *[line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")])
sys.exit(code)
"""


def _photo_run(tmp_path):
    """A run directory whose model takes 224x224x3 images (each 602 KB as float32)."""
    import keras
    from _model_fixtures import write_run_dir

    inp = keras.Input((224, 224, 3))
    x = keras.layers.Conv2D(4, 8, strides=8, activation="relu")(
        keras.layers.Rescaling(1 / 255)(inp)
    )
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    run = write_run_dir(tmp_path / "run", keras.Model(inp, out))
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "input_shape": [224, 224, 3]}))
    return run


def _peak_mib(args, tmp_path) -> float:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CNNSPEC_CACHE_BUDGET": "1M",  # too small for the data: a disk cache, read as a stream
        "CNNSPEC_CACHE": str(tmp_path / "cache"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_CHILD, *map(str, args)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("peak_kb ")][-1]
    return int(line.split()[1]) / 1024


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "features", "predict"])
def test_a_split_larger_than_memory_is_streamed(tmp_path, command):
    """Peak memory does not grow with the number of images (before: all of them as float32).

    predict reads files, not a split: it decodes one batch of them at a time.

    300 vs 1,200 images at 224x224x3 (both many batches): holding them all as float32 costs
    540 MB more (the code before this test, 50 vs 800 images: evaluate +991 MiB, features
    +588 MiB); streamed, the difference is allocator noise (measured: evaluate +27, features
    +59, predict +2 MiB).
    """
    run = _photo_run(tmp_path)
    peaks = {}
    for n in (300, 1200):
        folder = write_class_folders(tmp_path / f"imgs{n}", list(range(n)))
        out = tmp_path / f"out{n}"
        args = {
            "evaluate": ["evaluate", run, "--data", folder, "--split", "all", "--json"],
            "features": ["features", run, "--data", folder, "-o", out.with_suffix(".npz")],
            "predict": ["predict", run, folder, "--json"],
        }[command]
        peaks[n] = _peak_mib(args, tmp_path)
    print(f"{command}: peak {peaks[300]:.0f} MiB (300 images), {peaks[1200]:.0f} MiB (1,200)")
    assert peaks[1200] - peaks[300] < 150, peaks
    if command == "features":
        with np.load(tmp_path / "out1200.npz") as npz:
            assert npz["features"].shape == (1200, 4) and len(npz["labels"]) == 1200


def test_top_k_is_left_out_when_k_reaches_the_number_of_classes(tmp_path, capsys):
    # top-3 of a 3-class problem is 1.0 by construction (evaluate printed "top-3 1.0000")
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]])
    s = score(probs, np.array([1, 2]), ["a", "b", "c"], k=3)
    assert s["top_k"] is None and s["top_k_accuracy"] is None and s["accuracy"] == 0.5
    assert score(probs, np.array([1, 2]), ["a", "b", "c"], k=2)["top_k"] == 2
    from cnnspec.evaluate import Evaluation

    ev = Evaluation("m", "d", "test", ["a", "b", "c"], 2, 0.5, None, None, [], {}, [])
    assert not any(key.startswith("top_3") for key in ev.to_dict())
