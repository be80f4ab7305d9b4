"""Resume is exact: a run SIGKILLed and resumed ends bit-identical to the run left alone.

And a resumed run never damages what a finished run wrote: `--resume` of a finished run keeps
metrics.json and model.keras, artefacts are replaced atomically, and `runs/<name>` skips runs
that did not finish.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_train_run import kill_during_training  # a real SIGKILL after N epochs

from cnnspec.cli import main
from cnnspec.train.callbacks import latest_checkpoint
from cnnspec.train.rundir import read_history

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")
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


# Early stopping on val_loss and reduce-on-plateau on the training loss, both with a min_delta
# that LeNet's curve soon falls short of: on this machine the lr is halved after epoch 6 and the
# run stops after epoch 8 of 12, restoring the weights of epoch 6. Killed after epoch 6 (or 7),
# the resumed run must carry over the lowered lr, both callbacks' best and wait, and the best
# weights. 6 steps an epoch keep it to a few seconds.
PLATEAU = [
    "--epochs", "12",
    "--set", "train.steps_per_epoch=6",
    "--set", "train.early_stopping={monitor: val_loss, patience: 2, min_delta: 0.06}",
    "--set", "train.schedule={reduce_on_plateau: {monitor: loss, patience: 1, factor: 0.5, min_delta: 0.05}}",
]  # fmt: skip


@pytest.fixture(scope="module")
def plateau_run(spec, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "plateau"
    assert main(["train", str(spec), "--out", str(run), "--quiet", *PLATEAU]) == 0
    return run


@pytest.mark.slow
def test_a_resumed_run_stops_and_lowers_the_lr_where_the_uninterrupted_one_did(
    spec, plateau_run, tmp_path
):
    rows = read_history(plateau_run / "history.csv")
    lrs = [row["lr"] for row in rows]
    assert metrics(plateau_run)["status"] == "early_stopped" and len(rows) < 12
    assert lrs[-1] < lrs[0]  # the plateau lowered the lr before the stop

    run = tmp_path / "killed"
    cli = [sys.executable, str(ROOT / "cli.py"), "train"]
    kill_during_training(
        [*cli, str(spec), "--out", str(run), "--quiet", *PLATEAU], run / "history.csv", 6
    )
    done = latest_checkpoint(run / "checkpoints")[0]
    # Killed with early stopping and the plateau under way (on a loaded machine the kill can land
    # an epoch or two later, even after the stop: the resumed run must match wherever it fell).
    assert 6 <= done <= len(rows)

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    # the same stop epoch and the same lr in every epoch
    assert read_history(run / "history.csv") == rows
    assert metrics(run)["status"] == "early_stopped"
    assert metrics(run)["epochs_done"] == len(rows)
    # restore_best_weights: both end on the weights of the same best epoch, bit for bit
    a, b = weights(plateau_run), weights(run)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert metrics(run)["test"] == metrics(plateau_run)["test"]


@pytest.mark.slow
def test_a_run_killed_after_its_early_stop_is_resumed_as_stopped(plateau_run, tmp_path):
    # the kill fell after the stop epoch's checkpoint, before model.keras and metrics.json
    run = tmp_path / "stopped"
    shutil.copytree(plateau_run, run)
    (run / "model.keras").unlink()
    (run / "metrics.json").unlink()
    epochs = len(read_history(run / "history.csv"))

    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    m = metrics(run)
    assert m["status"] == "early_stopped" and m["epochs_done"] == epochs  # trained no further
    assert len(read_history(run / "history.csv")) == epochs
    # the best epoch's weights, from the checkpoint's best_NNNN.npz
    a, b = weights(plateau_run), weights(run)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert m["test"] == metrics(plateau_run)["test"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["older checkpoint", "more epochs"])
def test_early_stopping_starts_afresh_without_state_or_with_a_new_epoch_count(
    plateau_run, tmp_path, case
):
    run = tmp_path / "run"
    shutil.copytree(plateau_run, run)
    done, _ = latest_checkpoint(run / "checkpoints")
    args = ["train", "--resume", str(run), "--quiet"]
    if case == "older checkpoint":  # written before the callbacks' state was kept
        (run / "model.keras").unlink()
        (run / "metrics.json").unlink()
        sidecar = run / "checkpoints" / f"epoch_{done:04d}.json"
        record = json.loads(sidecar.read_text())
        del record["callbacks"]
        sidecar.write_text(json.dumps(record))
    else:  # the user asks an early-stopped run for more epochs: fresh patience
        args += ["--epochs", "13"]

    assert main(args) == 0
    m = metrics(run)
    # fresh patience: at least one epoch more than the stop (at most patience + 1)
    assert m["resumed_from_epoch"] == done and done < m["epochs_done"] <= done + 3
    assert m["test"]["accuracy"] > 0.8


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


def _train_limited(args: list[str], fsize: int | None = None) -> subprocess.CompletedProcess:
    """``cnnspec train`` with a file size limit (as ``ulimit -f``; SIGXFSZ ignored, so a write
    past it fails with EFBIG as on a full disk)."""
    import resource
    import signal

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "train", *args, "--quiet"],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=900,  # a bound for a hang: a loaded box imports TensorFlow in 85 s
    )


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_no_partial_file(tmp_path):
    # The lenet5 checkpoint (weights + Adam slots) is ~740 KB: a 600 KB file size limit
    # stops its write half-way (it was "internal error: OSError [Errno 27] ... h5py").
    run = tmp_path / "run"
    proc = _train_limited([LENET, "--epochs", "1", "--out", str(run)], fsize=600_000)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"no space left for the checkpoint in {run / 'checkpoints'}" in lines[0]
    assert "file size limit" in lines[0] and "MB" in lines[0] and "--resume" in lines[0]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == []  # no partial file
    # With the space back, the run continues from where it stood.
    proc = _train_limited(["--resume", str(run)])
    assert proc.returncode == 0, proc.stderr
    assert metrics(run)["epochs_done"] == 1


def test_free_space_is_checked_before_a_checkpoint_is_written(tmp_path):
    import keras

    from cnnspec.errors import RunError
    from cnnspec.train.callbacks import check_free_space, checkpoint_bytes, save_checkpoint

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer="adam", loss="mse")
    folder = tmp_path / "checkpoints"
    needed = checkpoint_bytes(model, folder)
    assert 1 << 20 < needed < 2 << 20  # 15 weights, 2 Adam slots, plus spare room
    save_checkpoint(model, folder, 1, {"loss": 1.0})
    size = (folder / "epoch_0001.weights.h5").stat().st_size
    assert checkpoint_bytes(model, folder) == size + (1 << 20)  # the last one's size
    with pytest.raises(
        RunError,
        match=r"needs about .* MB, .* MB free; the last good checkpoint \(epoch 1\) is kept",
    ):
        check_free_space(folder, 1 << 62)
