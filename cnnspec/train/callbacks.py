"""Keras callbacks of a run: plain log names, NaN guard, timing, history.csv, checkpoints.

Order matters (Keras hands every callback the same ``logs`` dict): ``LogNames`` first so the
others see ``accuracy`` / ``val_accuracy`` also for models with auxiliary heads; ``Timer``
before ``Checkpoint`` (the checkpoint keeps the timing of every epoch so far); ``Checkpoint``
before ``History`` (a kill between the two is repaired from the checkpoint's logs on resume).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras


@dataclass
class RunState:
    """What the callbacks observed, read by the trainer after ``fit``."""

    nan: dict[str, Any] | None = None  # {"epoch": 1-based, "batch": 0-based, "loss": value}
    epochs_done: int = 0  # absolute count of completed, good epochs
    first_epoch: int = 0  # epochs already done when this session started (resume)
    # Training time and images of every epoch so far, earlier sessions included (restored
    # from the checkpoint); session_starts: indices of each session's first epoch.
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_images: list[int] = field(default_factory=list)
    session_starts: list[int] = field(default_factory=list)
    last_logs: dict[str, float] = field(default_factory=dict)

    @classmethod
    def resumed(cls, done: int, timing: dict[str, Any] | None, epochs: int) -> RunState:
        """The state of a session that starts after ``done`` epochs (``timing`` from the
        checkpoint; ``epochs`` the recipe's count)."""
        state = cls(first_epoch=done, epochs_done=min(done, epochs))
        timing = timing or {}
        seconds, images = timing.get("seconds", []), timing.get("images", [])
        if len(seconds) == len(images) == done:  # else: a checkpoint from before timing was kept
            state.epoch_seconds = [float(x) for x in seconds]
            state.epoch_images = [int(x) for x in images]
            state.session_starts = [int(i) for i in timing.get("session_starts", [])]
        state.session_starts.append(len(state.epoch_seconds))
        return state

    def timing(self) -> dict[str, Any]:
        """What the checkpoint keeps of the timing (see ``resumed``)."""
        return {
            "seconds": list(self.epoch_seconds),
            "images": list(self.epoch_images),
            "session_starts": [i for i in self.session_starts if i < len(self.epoch_seconds)],
        }

    def images_per_second(self) -> float:
        """Training throughput over every session; each session's first epoch (tracing, cache
        fill, replay of the input after a resume) is left out where others remain."""
        pairs = list(zip(self.epoch_seconds, self.epoch_images, strict=True))
        steady = [p for i, p in enumerate(pairs) if i not in self.session_starts]
        total = sum(s for s, _ in steady or pairs)
        return sum(n for _, n in steady or pairs) / total if total > 0 else 0.0


class LogNames(keras.callbacks.Callback):
    """Alias ``<output>_accuracy`` to ``accuracy`` (etc.) and record the learning rate."""

    def __init__(self, output_name: str | None) -> None:
        super().__init__()
        self.prefix = f"{output_name}_" if output_name else None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        if self.prefix:
            for key in list(logs):
                for lead in ("", "val_"):
                    if key.startswith(lead + self.prefix):
                        plain = lead + key[len(lead + self.prefix) :]
                        if plain != lead + "loss":  # the total loss keeps its name
                            logs.setdefault(plain, logs[key])
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class NanGuard(keras.callbacks.Callback):
    """Stop at the first non-finite training loss; remember where."""

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.state.nan = {"epoch": self.epoch + 1, "batch": batch, "loss": float(loss)}
            self.model.stop_training = True


class Timer(keras.callbacks.Callback):
    """Training seconds and images of each epoch (validation excluded)."""

    def __init__(self, state: RunState, batch_size: int) -> None:
        super().__init__()
        self.state, self.batch_size = state, batch_size
        self.start = self.last = 0.0
        self.batches = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = self.last = time.perf_counter()
        self.batches = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.last = time.perf_counter()
        self.batches += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.state.epoch_seconds.append(self.last - self.start)
        self.state.epoch_images.append(self.batches * self.batch_size)
        if self.state.nan is None:
            self.state.epochs_done = epoch + 1
            self.state.last_logs = {k: float(v) for k, v in (logs or {}).items()}


class History(keras.callbacks.Callback):
    """Append one row per epoch to history.csv; rows of later epochs (a resume) are replaced."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from .rundir import read_history, write_history

        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        rows = [r for r in read_history(self.path) if r["epoch"] < epoch + 1]
        write_history(self.path, [*rows, row])


class Checkpoint(keras.callbacks.Callback):
    """Save the full training state (weights + optimizer) after every good epoch, crash-safe.

    Keras' BackupAndRestore writes its files in place, so a kill at the wrong moment leaves a
    truncated file that breaks the resume (measured: an empty training_metadata.json). Here an
    epoch is committed by one atomic rename of ``epoch_NNNN.weights.h5``; its logs are written
    (atomically) just before as ``epoch_NNNN.json`` so that history.csv can be completed if the
    kill falls between the commit and the history row. A NaN epoch is never saved.
    """

    def __init__(self, folder: Path, state: RunState) -> None:
        super().__init__()
        self.folder, self.state = folder, state

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.state.nan is None:
            save_checkpoint(
                self.model, self.folder, epoch + 1, logs or {}, timing=self.state.timing()
            )


def rng_variables(model: Any) -> list[Any]:
    """The model's random-generator states (Dropout's and other random layers' SeedGenerator).

    Keras counts them among ``model.variables`` but not ``model.weights``, so ``save_weights``
    leaves them out; without them a resumed run draws other dropout masks than the
    uninterrupted one.
    """
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_checkpoint(
    model: Any, folder: Path, epochs_done: int, logs: dict, *, timing: dict | None = None
) -> None:
    """Commit the training state after ``epochs_done`` epochs (see ``Checkpoint``).

    The sidecar ``epoch_NNNN.json`` holds the epoch's logs, the random-generator states
    (``rng_variables``) and the timing of every epoch so far.
    """
    from .rundir import write_json

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"epoch_{epochs_done:04d}"
    rng = [keras.ops.convert_to_numpy(v).tolist() for v in rng_variables(model)]
    record = {"epoch": epochs_done, "logs": dict(logs), "rng": rng, "timing": timing or {}}
    write_json(folder / f"{stem}.json", record)
    tmp = folder / "saving.weights.h5"
    model.save_weights(tmp, overwrite=True)
    os.replace(tmp, folder / f"{stem}.weights.h5")  # the commit
    for old in folder.glob("epoch_*"):
        if not old.name.startswith(stem):
            old.unlink(missing_ok=True)


def latest_checkpoint(folder: Path) -> tuple[int, Path] | None:
    """(epoch, weights file) of the last committed epoch in ``folder``, or None."""
    found = sorted(folder.glob("epoch_*.weights.h5")) if folder.is_dir() else []
    if not found:
        return None
    path = found[-1]
    return int(path.name[len("epoch_") : len("epoch_") + 4]), path


def checkpoint_record(folder: Path) -> dict[str, Any]:
    """The sidecar of the last committed epoch (logs, rng, timing); {} when there is none."""
    from .rundir import read_json

    latest = latest_checkpoint(folder)
    if latest is None:
        return {}
    return read_json(folder / f"epoch_{latest[0]:04d}.json") or {}


def restore(model: Any, folder: Path, history_path: Path) -> int:
    """Load the last committed epoch's state into ``model``; fix history.csv to match.

    The state is the weights, the optimizer (slots, step count, loss scale) and the random
    generators' states. Returns the number of epochs already done (0 when there is no
    checkpoint).
    """
    from .rundir import read_history, write_history

    latest = latest_checkpoint(folder)
    if latest is None:
        return 0
    epoch, path = latest
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to load
    model.load_weights(path)
    record = checkpoint_record(folder)
    rng, variables = record.get("rng"), rng_variables(model)
    if isinstance(rng, list) and len(rng) == len(variables):  # absent in older checkpoints
        for variable, value in zip(variables, rng, strict=True):
            variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))
    rows = [r for r in read_history(history_path) if r["epoch"] <= epoch]
    if (not rows or rows[-1]["epoch"] < epoch) and record.get("epoch") == epoch:
        rows.append({"epoch": epoch, **record["logs"]})
    write_history(history_path, rows)
    return epoch
