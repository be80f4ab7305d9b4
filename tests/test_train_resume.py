"""Resume is exact: a run SIGKILLed and resumed ends bit-identical to the run left alone.

And a resumed run never damages what a finished run wrote: `--resume` of a finished run keeps
metrics.json and model.keras, artefacts are replaced atomically, and `runs/<name>` skips runs
that did not finish.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train_run import kill_during_training  # a real SIGKILL after N epochs

from cnnspec.cli import main
from cnnspec.train.callbacks import latest_checkpoint
from cnnspec.train.rundir import read_history

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 4
# LeNet-5 with dropout and seeded augmentation: every source of randomness a run has (shuffle,
# augmentation in the input pipeline, dropout masks in the model).
SPEC = """\
name: lenet_dropout
input: [32, 32, 1]
layers:
  - conv: 5x5, 6, tanh
  - avgpool: 2x2, s=2
  - conv: 5x5, 16, tanh
  - avgpool: 2x2, s=2
  - flatten
  - dense: 120, tanh
  - dropout: 0.3
  - dense: 84, tanh
  - dense: 10, softmax
train:
  data: digits
  epochs: 4
  optimizer: {adam: {lr: 3.0e-3}}
  schedule: {cosine: {warmup_epochs: 1}}
  augment: [{rotate: 0.05}, {zoom: 0.1}]
"""


def weights(run: Path) -> list[np.ndarray]:
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(run / "model.keras").get_weights()]


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "lenet_dropout.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def uninterrupted(spec, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "uninterrupted"
    assert main(["train", str(spec), "--out", str(run), "--quiet"]) == 0
    return run


@pytest.mark.slow
def test_killed_and_resumed_run_is_bit_identical_to_the_uninterrupted_one(
    spec, uninterrupted, tmp_path, capsys
):
    run = tmp_path / "killed"
    cli = [sys.executable, str(ROOT / "cli.py"), "train"]
    kill_during_training([*cli, str(spec), "--out", str(run), "--quiet"], run / "history.csv", 2)
    done = latest_checkpoint(run / "checkpoints")[0]
    assert 2 <= done < EPOCHS and not (run / "model.keras").exists()

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    n_train = int(re.search(r"\((\d+) train /", out).group(1))
    steps = math.ceil(n_train / 64)  # batch_size 64
    assert f"skipping the {done * steps} batches already trained on" in out
    a, b = weights(uninterrupted), weights(run)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    # every epoch's logged loss and accuracy, not only the end point
    assert read_history(run / "history.csv") == read_history(uninterrupted / "history.csv")
    assert metrics(run)["test"] == metrics(uninterrupted)["test"]
    assert metrics(run)["resumed_from_epoch"] == done


@pytest.mark.slow
def test_resuming_a_finished_run_keeps_its_files(uninterrupted, tmp_path, capsys):
    run = tmp_path / "finished"
    shutil.copytree(uninterrupted, run)
    before = {name: (run / name).read_bytes() for name in ("metrics.json", "model.keras")}
    assert metrics(run)["images_per_s"] > 0

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "already finished (completed, 4 epochs): nothing to train" in out
    assert {name: (run / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_a_run_killed_before_its_model_was_written_finishes_with_its_own_timing(
    uninterrupted, tmp_path
):
    # the kill fell after the last epoch's checkpoint, before model.keras and metrics.json
    run = tmp_path / "unsaved"
    shutil.copytree(uninterrupted, run)
    (run / "model.keras").unlink()
    (run / "metrics.json").unlink()

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    m, original = metrics(run), metrics(uninterrupted)
    assert m["epochs_done"] == EPOCHS and m["test"] == original["test"]
    # throughput and training time come from the checkpoint's timing: the same as the first time
    assert m["images_per_s"] == original["images_per_s"] > 0
    assert m["train_time_s"] == original["train_time_s"]
    a, b = weights(uninterrupted), weights(run)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_failed_save_leaves_the_previous_model_keras(tmp_path):
    import keras

    from cnnspec.train.rundir import save_model

    good = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "model.keras"
    save_model(good, path)
    before = path.read_bytes()

    class Unsavable(keras.layers.Layer):  # not registered: Keras fails while writing
        def get_config(self):
            raise RuntimeError("cannot serialise")

    bad = keras.Sequential([keras.Input((4,)), Unsavable()])
    with pytest.raises(Exception, match="cannot serialise"):
        save_model(bad, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]  # no partial file left


def test_runs_folder_lookup_skips_runs_that_did_not_finish(uninterrupted, tmp_path):
    from cnnspec.modelio import find_model

    runs = tmp_path / "runs" / "lenet_dropout"
    shutil.copytree(uninterrupted, runs / "20261126-100000")
    # newer runs: killed while model.keras was written in place (0 bytes, old versions), and
    # killed during training (checkpoints only)
    broken = runs / "20261126-110000"
    broken.mkdir()
    shutil.copy(uninterrupted / "meta.json", broken / "meta.json")
    (broken / "model.keras").write_bytes(b"")
    killed = runs / "20261126-120000"
    shutil.copytree(uninterrupted / "checkpoints", killed / "checkpoints")
    assert find_model(runs).run_dir == runs / "20261126-100000"
