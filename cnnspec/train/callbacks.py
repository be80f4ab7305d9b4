"""Keras callbacks of a run: plain log names, NaN guard, timing, history.csv, checkpoints.

Order matters (Keras calls them in list order and hands every one the same ``logs`` dict):
``LogNames`` first so the others see ``accuracy`` / ``val_accuracy`` also for models with
auxiliary heads (and ``lr`` is the rate the epoch trained with); ``Timer`` before
``Checkpoint`` (the checkpoint keeps the timing of every epoch so far); the recipe's early
stopping and plateau before ``Checkpoint`` (it keeps their state after they judged the epoch,
and the lr the plateau just lowered); ``Checkpoint`` before ``History`` (a kill between the two
is repaired from the checkpoint's logs on resume).
"""

from __future__ import annotations

import math
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


class Resumable:
    """Mixin for a Keras callback whose counters must survive a resume.

    Keras resets them in ``on_train_begin``; ``restored`` (what ``state()`` returned when the
    checkpoint was saved, from ``callback_states``) is applied after that reset.
    """

    key: str = ""  # its entry in the checkpoint sidecar's "callbacks"
    counters: tuple[str, ...] = ()  # int attributes; ``best`` (float or None) is kept too
    restored: dict[str, Any] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)  # type: ignore[misc]
        if self.restored and self.applies(self.restored):
            self.apply(self.restored)

    def applies(self, restored: dict[str, Any]) -> bool:
        return True

    def state(self) -> dict[str, Any]:
        """The counters and ``best`` as JSON values."""
        best = getattr(self, "best", None)
        out: dict[str, Any] = {name: int(getattr(self, name)) for name in self.counters}
        out["best"] = None if best is None else float(best)
        return out

    def apply(self, state: dict[str, Any]) -> None:
        """Set the counters and ``best`` from ``state`` (a missing entry keeps its value)."""
        for name in self.counters:
            if name in state:
                setattr(self, name, int(state[name]))
        if "best" in state:  # write_json stores inf as "inf": float() reads both
            self.best = None if state["best"] is None else float(state["best"])


class ResumableEarlyStopping(Resumable, keras.callbacks.EarlyStopping):
    """EarlyStopping that a resume continues: counters, best value and best weights.

    ``epochs``: the run's epoch budget. A run that stopped early is resumed as stopped under
    the same budget (a kill fell before model.keras); under another (``--resume RUN --epochs
    N``) it trains on with fresh patience, as the user asked for more epochs.
    """

    key = "early_stopping"
    counters = ("wait", "stopped_epoch", "best_epoch")

    def __init__(self, *, epochs: int, restored: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.epochs, self.restored = epochs, restored

    def applies(self, restored: dict[str, Any]) -> bool:
        return not (restored.get("stopped_epoch", 0) and restored.get("epochs") != self.epochs)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "epochs": self.epochs}

    def apply(self, state: dict[str, Any]) -> None:
        super().apply(state)
        if self.restore_best_weights and state.get("best_weights") is not None:
            self.best_weights = list(state["best_weights"])

    def stopped(self) -> bool:
        """Whether the restored state is a finished early stop that this budget keeps."""
        r = self.restored
        return bool(r and r.get("stopped_epoch", 0) and self.applies(r))


class ResumableReduceLROnPlateau(Resumable, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that a resume continues (the lowered lr itself is an optimizer
    variable, saved with the weights)."""

    key = "reduce_on_plateau"
    counters = ("wait", "cooldown_counter")

    def __init__(self, *, restored: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restored = restored

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Keras adds "learning_rate" to the shared logs; ours already carry "lr" (LogNames).
        super().on_epoch_end(epoch, dict(logs or {}))


class Checkpoint(keras.callbacks.Callback):
    """Save the full training state (weights + optimizer) after every good epoch, crash-safe.

    Keras' BackupAndRestore writes its files in place, so a kill at the wrong moment leaves a
    truncated file that breaks the resume (measured: an empty training_metadata.json). Here an
    epoch is committed by one atomic rename of ``epoch_NNNN.weights.h5``; its logs are written
    (atomically) just before as ``epoch_NNNN.json`` so that history.csv can be completed if the
    kill falls between the commit and the history row. A NaN epoch is never saved.
    ``resumables``: the recipe's callbacks whose state the sidecar keeps (they run before).
    """

    def __init__(
        self, folder: Path, state: RunState, resumables: list[Resumable] | None = None
    ) -> None:
        super().__init__()
        self.folder, self.state, self.resumables = folder, state, resumables or []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.state.nan is None:
            save_checkpoint(
                self.model,
                self.folder,
                epoch + 1,
                logs or {},
                timing=self.state.timing(),
                callbacks=self.resumables,
            )


# The checkpoint functions live in checkpoints.py; re-exported for importers of this module.
from .checkpoints import (  # noqa: E402
    callback_states,
    check_free_space,
    checkpoint_bytes,
    checkpoint_record,
    latest_checkpoint,
    restore_checkpoint,
    rng_variables,
    save_checkpoint,
    signature_change,
    weight_signature,
)

__all__ = [
    "callback_states",
    "check_free_space",
    "checkpoint_bytes",
    "checkpoint_record",
    "latest_checkpoint",
    "restore_checkpoint",
    "rng_variables",
    "save_checkpoint",
    "signature_change",
    "weight_signature",
]
