"""``cnnspec.train`` and ``Run``: the ``cnnspec train`` command as a function (the command
calls it), with data that may also be arrays or datasets already in memory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .specs import Overrides, Spec, load, override_texts


@dataclass
class Run:
    """A finished training run: its folder and what it measured."""

    path: Path  # the run folder: model.keras, metrics.json, history.csv, spec.yaml, ...
    metrics: dict[str, Any]  # metrics.json: train/val/test scores, per-class report, timing
    history: dict[str, list[Any]]  # per epoch, by column: pandas.DataFrame(run.history)
    _model: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def model(self) -> Any:
        """The trained inference model (``model.keras``, loaded once, checked like the CLI)."""
        if self._model is None:
            from ..modelio import load_run_model

            self._model = load_run_model(self.path)[0]
        return self._model


def run_of(result: Any) -> Run:
    """The Run of a trainer's RunResult: history rows turned into columns."""
    columns: dict[str, list[Any]] = {}
    rows = list(result.history or [])
    for row in rows:
        for key in row:
            columns.setdefault(key, [])
    for row in rows:
        for key, values in columns.items():
            values.append(row.get(key))
    return Run(Path(result.run_dir), dict(result.metrics), columns)


def shortcut_overrides(epochs: int | None, batch_size: int | None, data: str | None) -> list[str]:
    """``epochs``/``batch_size``/a named ``data`` source as ``--set`` overrides."""
    out = []
    if epochs is not None:
        out.append(f"train.epochs={epochs}")
    if batch_size is not None:
        out.append(f"train.batch_size={batch_size}")
    if data is not None:  # quoted: a path like 'data/cats: v2' or 'on' must stay a string
        out.append("train.data='" + data.replace("'", "''") + "'")
    return out


def quoted(key: str, value: str) -> str:
    return f"{key}='" + value.replace("'", "''") + "'"


def check_data_on_disk(run: Path) -> None:
    """Refuse to resume a run trained on data given in memory without that data: its
    spec.yaml names the recipe's data, which is not what it was trained on."""
    import json

    from ..errors import RunError

    try:
        trained_on = str(json.loads((run / "meta.json").read_text()).get("data", ""))
    except (OSError, ValueError, AttributeError):
        return  # the trainer reports an unreadable run its own way
    if trained_on.endswith(" in memory"):  # the memory source's label
        raise RunError(
            f"{run} was trained on {trained_on}, which is not saved with the run",
            hint="resume it from Python with the same data: cnnspec.train(resume=..., data=...)",
        )


def train(
    spec: Spec | str | os.PathLike | None = None,
    data: Any = None,
    *,
    out: str | os.PathLike | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    set: Overrides = None,  # noqa: A002 - the command's option name
    scale: str | None = None,
    resume: str | os.PathLike | None = None,
    init: str | None = None,
    track: str | None = None,
    verbose: int | None = None,
    callbacks: Iterable[Any] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Run:
    """Train a spec (a Spec, a spec file or YAML text) by its ``train:`` recipe; write the run
    folder (``out``, default ``runs/<name>/<timestamp>``) and return the ``Run``.

    ``data``: a source as on the command line (digits, mnist, an image folder, an .npz, a CSV
    manifest), or data already in memory: arrays ``(x, y)`` (x: (N, H, W[, C]) uint8 in
    [0, 255] or float in [0, 1]; y: class indices or one-hot; masks (N, H, W) for
    segmentation; a label table for multilabel, regression and heads: a mapping
    ``{column: values}`` or a DataFrame, whose names ``train.targets``/``label:`` use, or an
    (N, K) array with columns 0..K-1), a ``tf.data.Dataset`` of
    (image, label) or a Keras ``PyDataset``; it is split by the recipe's ``validation_split``
    and ``test_split`` exactly as an ``.npz`` holding the same arrays. ``resume``: continue
    that run folder (no ``spec``). ``verbose``: Keras progress (0 silent, 1 bar, 2 a line per
    epoch). ``callbacks``: extra Keras callbacks. Raises ``SpecError``/``RunError``.
    """
    from ..errors import RunError

    named = data if isinstance(data, str | os.PathLike) else None
    overrides = shortcut_overrides(epochs, batch_size, None if named is None else str(named))
    overrides += override_texts(set)
    if init is not None:
        overrides.append(quoted("init.from", str(init)))
    if track is not None:
        overrides.append(quoted("train.track.mlflow.uri", str(track)))
    if resume is not None:
        if spec is not None or out is not None or scale is not None:
            raise RunError(
                "--resume continues a run from its own spec.yaml (its scale included)",
                hint="drop the SPEC argument and --out (use --set/--epochs to change the recipe)",
            )
        resume = Path(resume)
        if not (resume / "spec.yaml").is_file():
            raise RunError(f"{resume} is not a run directory (it has no spec.yaml)")
        spec, out = resume / "spec.yaml", resume
        if data is None:
            check_data_on_disk(resume)
    elif spec is None:
        raise RunError("give a spec file to train, or --resume RUN_DIR")
    if out is not None:  # before the spec, the data or any training: a bad --out costs nothing
        from ..outpaths import check_output

        check_output(Path(out), "--resume" if resume is not None else "--out", "dir")
    model_spec = load(spec, set=overrides, scale=scale).model_spec
    return run_training(
        model_spec, None if named is not None else data, out, resume is not None,
        verbose=verbose, callbacks=callbacks, echo=echo,
    )  # fmt: skip


def run_training(
    model_spec: Any,
    data: Any,
    out: Any,
    resume: bool,
    *,
    verbose: int | None,
    callbacks: Iterable[Any] | None,
    echo: Callable[[str], None] | None,
) -> Run:
    """Track (if the recipe says so), import TensorFlow, load data given in memory, train."""
    from ..track import tracking

    resume_dir = Path(out) if resume else None
    with tracking(model_spec, resume_dir=resume_dir, data=data) as tracker:  # None: untracked
        from ..tfquiet import import_tensorflow

        import_tensorflow()  # only now: a bad spec or --set is refused in milliseconds
        from ..train.trainer import load_training_data
        from ..train.trainer import train as train_spec

        say = echo or (lambda text: print(text, flush=True))
        loaded = None if data is None else load_training_data(model_spec, say, source=data)
        extra = [*(tracker.callbacks() if tracker else []), *(callbacks or [])]
        result = train_spec(
            model_spec, run_dir=out, resume=resume, verbose=verbose, echo=echo,
            callbacks=extra or None, data=loaded,
        )  # fmt: skip
        if tracker:
            tracker.finished(result)
    return run_of(result)
