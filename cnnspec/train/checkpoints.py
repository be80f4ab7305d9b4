"""Checkpoints of a run: save (atomically, after a free-space check), find, restore.

An epoch is committed by one atomic rename of ``epoch_NNNN.weights.h5``; ``epoch_NNNN.json``
beside it keeps the epoch's logs, the timing so far, the random-generator states and the state
of the recipe's resumable callbacks (see ``callbacks.Checkpoint``, which calls ``save_checkpoint``).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from ..errors import RunError

if TYPE_CHECKING:
    from .callbacks import Resumable


def rng_variables(model: Any) -> list[Any]:
    """The model's random-generator states (Dropout's and other random layers' SeedGenerator).

    Keras counts them among ``model.variables`` but not ``model.weights``, so ``save_weights``
    leaves them out; without them a resumed run draws other dropout masks than the
    uninterrupted one.
    """
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def save_checkpoint(
    model: Any,
    folder: Path,
    epochs_done: int,
    logs: dict,
    *,
    timing: dict | None = None,
    callbacks: list[Resumable] | None = None,
) -> None:
    """Commit the training state after ``epochs_done`` epochs (see ``Checkpoint``).

    The sidecar ``epoch_NNNN.json`` holds the epoch's logs, the random-generator states
    (``rng_variables``), the timing of every epoch so far and the state of ``callbacks``.
    Early stopping's best weights go to ``best_NNNN.npz`` (NNNN: the best epoch), written
    before the sidecar names it and kept while a committed sidecar does; it is rewritten only
    when the best epoch is this one, so an unchanged best costs nothing per epoch.
    """
    from .rundir import write_json

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"epoch_{epochs_done:04d}"
    check_free_space(folder, checkpoint_bytes(model, folder))
    rng = [keras.ops.convert_to_numpy(v).tolist() for v in rng_variables(model)]
    states: dict[str, Any] = {}
    tmp = folder / "saving.weights.h5"
    try:
        for cb in callbacks or []:
            states[cb.key] = cb.state()
            best_weights = getattr(cb, "best_weights", None)
            if best_weights is not None:
                name = f"best_{cb.best_epoch + 1:04d}.npz"
                if cb.best_epoch + 1 == epochs_done or not (folder / name).is_file():
                    _write_arrays(folder / name, best_weights)
                states[cb.key]["best_weights"] = name
        record = {
            "epoch": epochs_done,
            "logs": dict(logs),
            "rng": rng,
            "timing": timing or {},
            "callbacks": states,
            "weights": weight_signature(model),
        }
        write_json(folder / f"{stem}.json", record)
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, folder / f"{stem}.weights.h5")  # the commit
    except (OSError, RunError) as exc:
        tmp.unlink(missing_ok=True)
        if not (folder / f"{stem}.weights.h5").is_file():
            (folder / f"{stem}.json").unlink(missing_ok=True)  # no sidecar without its weights
        raise _write_failure(folder, exc, checkpoint_bytes(model, folder)) from None
    kept = {s.get("best_weights") for s in states.values()}
    for old in [*folder.glob("epoch_*"), *folder.glob("best_*.npz")]:
        if not old.name.startswith(stem) and old.name not in kept:
            old.unlink(missing_ok=True)


#: Room left beyond a checkpoint's own size (the sidecar, history.csv, metrics.json).
SPARE_BYTES = 1 << 20


def checkpoint_bytes(model: Any, folder: Path) -> int:
    """What the next checkpoint will take: the last one's size, else the training state's
    bytes (weights, optimizer slots, random states) plus h5 overhead."""
    last = latest_checkpoint(folder)
    if last is not None:
        try:
            return last[1].stat().st_size + SPARE_BYTES
        except OSError:
            pass
    variables = list(model.variables)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    size = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(size * 1.05) + 64 * len(variables) * 20 + SPARE_BYTES


def check_free_space(folder: Path, needed: int) -> None:
    """RunError when the disk under ``folder`` has less than ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: the write itself will tell
    if free < needed:
        raise _space_error(folder, needed, free)


def _space_error(folder: Path, needed: int, free: int | None, reason: str = "") -> RunError:
    last = latest_checkpoint(folder)
    kept = (
        f"the last good checkpoint (epoch {last[0]}) is kept"
        if last
        else "no checkpoint was written yet"
    )
    have = f", {_mb(free)} free" if free is not None else ""
    why = f" ({reason})" if reason else ""
    return RunError(
        f"no space left for the checkpoint in {folder}{why}: it needs about {_mb(needed)}"
        f"{have}; {kept}",
        hint=f"free some space (or raise the file size limit) and continue with --resume "
        f"{folder.parent}",
    )


def _write_failure(folder: Path, exc: Exception, needed: int) -> RunError:
    """A failed checkpoint write as one line; a full disk (or a file size limit) named so."""
    text = str(exc)
    codes = {errno.ENOSPC: "disk full", errno.EFBIG: "file size limit", errno.EDQUOT: "quota"}
    code = getattr(exc, "errno", None)
    found = [c for c in codes if c == code or f"errno = {c}," in text or os.strerror(c) in text]
    if found:
        try:
            free: int | None = shutil.disk_usage(folder).free
        except OSError:
            free = None
        return _space_error(folder, needed, free, codes[found[0]])
    if isinstance(exc, RunError):
        return exc
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return RunError(f"cannot write the checkpoint in {folder}: {first}")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def weight_signature(model: Any) -> list[list[Any]]:
    """[path, shape] of every weight: what a checkpoint's weights must match."""
    return [[w.path, [int(d) for d in w.shape]] for w in model.weights]


def signature_change(saved: Any, model: Any) -> str | None:
    """How the model differs from a checkpoint's ``weight_signature``; None if it does not."""
    if not isinstance(saved, list):
        return None  # a checkpoint from before signatures were kept
    now = weight_signature(model)
    for (path, shape), (new_path, new_shape) in zip(saved, now, strict=False):
        if shape != new_shape or path != new_path:
            return (
                f"{path} {tuple(shape)} in the checkpoint, {new_path} {tuple(new_shape)} in "
                "the spec"
            )
    if len(saved) != len(now):
        return f"{len(saved)} weights in the checkpoint, {len(now)} in the spec"
    return None


def _write_arrays(path: Path, arrays: list[Any]) -> None:
    """``arrays`` as an .npz, atomically (a temporary file in the same folder, then rename)."""
    tmp = path.with_name("saving.best.npz")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, *[np.asarray(a) for a in arrays])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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


def callback_states(folder: Path) -> dict[str, dict[str, Any]]:
    """The last committed epoch's callback states by key (``Resumable``), best weights loaded
    as arrays; {} for a checkpoint from before they were kept (those callbacks start afresh)."""
    states = checkpoint_record(folder).get("callbacks")
    if not isinstance(states, dict):
        return {}
    out = {}
    for key, state in states.items():
        state = dict(state)
        if state.get("best_weights"):
            with np.load(folder / state["best_weights"], allow_pickle=False) as data:
                state["best_weights"] = [data[f"arr_{i}"] for i in range(len(data.files))]
        out[key] = state
    return out


def restore_checkpoint(model: Any, folder: Path, history_path: Path) -> int:
    """Load the last committed epoch's state into ``model``; fix history.csv to match.

    The state is the weights, the optimizer (slots, step count, loss scale, learning rate as
    a plateau lowered it) and the random generators' states (the recipe callbacks' own state:
    ``callback_states``). Returns the number of epochs already done (0 when there is no
    checkpoint). A model that no longer matches the checkpoint (spec.yaml edited) and an
    unreadable checkpoint or history.csv are one-line RunErrors naming the file.
    """
    from .rundir import read_history, write_history

    latest = latest_checkpoint(folder)
    if latest is None:
        return 0
    epoch, path = latest
    record = checkpoint_record(folder)
    changed = signature_change(record.get("weights"), model)
    if changed:
        raise _spec_changed(folder, changed)
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to load
    try:
        model.load_weights(path)
    except ValueError as exc:  # Keras lists every array: keep its first line's gist
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "ValueError"
        raise _spec_changed(folder, first) from None
    except OSError as exc:
        raise RunError(f"cannot restore the checkpoint {path}: {exc}") from None
    rng, variables = record.get("rng"), rng_variables(model)
    if isinstance(rng, list) and len(rng) == len(variables):  # absent in older checkpoints
        for variable, value in zip(variables, rng, strict=True):
            variable.assign(keras.ops.convert_to_tensor(value, dtype=variable.dtype))
    rows = [r for r in read_history(history_path) if r["epoch"] <= epoch]
    if (not rows or rows[-1]["epoch"] < epoch) and record.get("epoch") == epoch:
        rows.append({"epoch": epoch, **record["logs"]})
    write_history(history_path, rows)
    return epoch


def _spec_changed(folder: Path, detail: str) -> RunError:
    return RunError(
        f"the run's spec changed since the checkpoint in {folder} ({detail})",
        hint=f"start a new run, or restore {folder.parent / 'spec.yaml'} as it was",
    )


#: What a resumed run's outputs must keep from the session that started it.
OUTPUT_KEYS = ("task", "classes", "mean", "std", "threshold")


def check_outputs_unchanged(meta_path: Path, outputs: list[dict[str, Any]]) -> None:
    """RunError when a resumed run's outputs differ from those its ``meta.json`` recorded.

    A regression output learns targets standardised with the first session's mean and std,
    and the checkpoint's weights only mean something with them: data that changed since
    (rows added to a CSV manifest) would give other statistics, other targets and a
    ``meta.json`` that no longer describes the weights. Checked before meta.json is rewritten.
    """
    from .rundir import read_json

    saved = (read_json(meta_path) or {}).get("outputs")
    if not isinstance(saved, list):
        return  # a classification run (no outputs recorded), or a run from before tasks
    then = {e.get("name"): e for e in saved if isinstance(e, dict)}
    for entry in outputs:
        old = then.get(entry["name"])
        if old is None:
            raise RunError(
                f"{meta_path}: the run has no output '{entry['name']}' to resume",
                hint="start a new run, or restore the spec the run started with",
            )
        for key in OUTPUT_KEYS:
            if old.get(key) != entry.get(key):
                raise RunError(
                    f"{meta_path}: the data changed since the run started: output "
                    f"'{entry['name']}' ({entry.get('task')}) had {key} {_short(old.get(key))}, "
                    f"the data now gives {_short(entry.get(key))}; the checkpoint's weights "
                    "learned the first",
                    hint="resume with the data the run started with, or start a new run",
                )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
