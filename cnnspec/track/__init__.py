"""Tracking a run besides its run directory: ``train.track: {mlflow: {uri, experiment}}``.

Off unless the recipe (or ``cnnspec train --track URI``) asks. A tracked run logs, to one MLflow
run: the resolved spec (artifact ``spec.yaml`` and flattened parameters), its hash, the static
analysis (params, MACs, training-memory estimate), the data source and a hash of its file list
or file, per-epoch metrics (a Keras callback that only queues them), then the hardware
resolution, the final metrics, ``model.keras``, ``metrics.json``, ``history.csv`` and the plots.
A failure to reach the server warns once and never stops or slows training (see
``mlflow_log``); the run directory is written as without tracking.

Use::

    with tracking(spec, resume_dir=...) as tracker:   # None when the recipe tracks nothing
        result = train(spec, callbacks=tracker.callbacks() if tracker else None)
        if tracker:
            tracker.finished(result)
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import content
from .mlflow_log import Sender, require_mlflow

#: Written into the run directory: the MLflow run a resumed training continues.
TRACK_FILE = "track.json"


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Tracker:
    """One tracked run: what training hands it, queued for the sending thread."""

    sender: Sender
    spec: Any
    run_dir: Path | None = None
    data: Any = None  # data given in memory (the Python API) instead of the recipe's train.data

    def callbacks(self) -> list[Any]:
        """The Keras callback that queues each epoch's metrics (step = the epoch, 1-based)."""
        return [epoch_logger(self.sender)]

    def begin(self) -> None:
        spec, source = self.spec, self.spec.train.data if self.data is None else self.data
        self.sender.params(content.start_params(spec, self.data))
        # hashing a folder's file list or the arrays' bytes: in the sending thread, not here
        self.sender.params_from(lambda: content.data_fingerprint(source))
        import yaml

        text = yaml.safe_dump(spec.source_data, sort_keys=False, allow_unicode=True)
        self.sender.text(text, "spec.yaml")

    def finished(self, result: Any) -> None:
        """After training: hardware, final metrics and the run directory's files."""
        from ..train import rundir

        run = Path(result.run_dir)
        self.run_dir = run
        meta = rundir.read_json(run / rundir.META) or {}
        metrics = result.metrics or {}
        self.sender.params(
            content.hardware_params(metrics.get("hardware") or meta.get("hardware") or {})
        )
        self.sender.set_tags(
            {
                "cnnspec.run_dir": str(run.resolve()),
                "cnnspec.status": str(metrics.get("status", "")),
            }
        )
        step = int(metrics.get("epochs_done") or 0)
        self.sender.metrics(content.result_metrics(metrics), step)
        for name in (rundir.METRICS, rundir.META, rundir.HISTORY, rundir.SPEC):
            if (run / name).is_file():
                self.sender.artifact(str(run / name), "run")
        for plot in sorted(run.glob("*.png")):
            self.sender.artifact(str(plot), "plots")
        if (run / rundir.MODEL).is_file():
            self.sender.artifact(str(run / rundir.MODEL), "model")


def epoch_logger(sender: Sender) -> Any:
    """A Keras callback putting each epoch's logs on ``sender``'s queue (no network here)."""
    import keras

    class TrackEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            values = {}
            for k, v in (logs or {}).items():
                try:
                    values[content.key(k)] = float(v)
                except (TypeError, ValueError):
                    continue
            sender.metrics(values, epoch + 1)

    return TrackEpochs()


def settings(spec: Any) -> Any | None:
    """The recipe's MLflow settings, or None when the run is not tracked."""
    track = getattr(spec.train, "track", None)
    return getattr(track, "mlflow", None) if track is not None else None


def chief() -> bool:
    """Whether this process reports the run: every process but a multi-worker run's other
    workers (TF_CONFIG's task index above 0), which write no run directory either."""
    from ..train.hardware import tf_config

    cluster = tf_config()
    return cluster is None or cluster["index"] == 0


def _resumed_run(resume_dir: Path | None, uri: str) -> str | None:
    if resume_dir is None:
        return None
    try:
        record = json.loads((Path(resume_dir) / TRACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record.get("run_id") if record.get("uri") == uri else None


@contextlib.contextmanager
def tracking(
    spec: Any,
    *,
    resume_dir: Path | None = None,
    run_name: str | None = None,
    parent_run_id: str | None = None,
    data: Any = None,
    warn: Callable[[str], None] = _warn,
) -> Iterator[Tracker | None]:
    """Track the training done inside the block (None: the recipe tracks nothing, or this
    process is not a multi-worker run's chief).

    ``data``: data given in memory (arrays, a dataset), logged instead of ``train.data``.

    The MLflow run ends FINISHED, FAILED (an error: re-raised) or KILLED (Ctrl-C); a resumed
    run directory with a ``track.json`` continues its MLflow run.
    """
    cfg = settings(spec)
    if cfg is None or not chief():
        yield None
        return
    require_mlflow()
    tags = {"cnnspec.spec": spec.name, "cnnspec.file": str(getattr(spec, "file", ""))}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    sender = Sender(
        uri=cfg.uri,
        experiment=cfg.experiment or spec.name,
        run_name=run_name or spec.name,
        run_tags=tags,
        run_id=_resumed_run(resume_dir, cfg.uri),
        warn=warn,
    ).start()
    tracker = Tracker(sender, spec, data=data)
    resumed = sender.run_id is not None
    if not resumed:
        tracker.begin()
    try:
        yield tracker
    except KeyboardInterrupt:
        sender.close("KILLED")
        raise
    except BaseException as exc:
        sender.set_tags(
            {
                "cnnspec.error": content.value(
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                )
            }
        )
        sender.close("FAILED")
        raise
    if sender.close("FINISHED"):  # all of it sent: a --resume may continue this MLflow run
        _record(tracker, cfg.uri)


def _record(tracker: Tracker, uri: str) -> None:
    """track.json in the run directory: which MLflow run --resume continues."""
    from ..outpaths import write_text_atomic

    run_id = tracker.sender.run_id
    if tracker.run_dir is None or run_id is None:
        return
    record = {"uri": uri, "run_id": run_id, "experiment": tracker.sender.experiment}
    record["sender_cpu_s"] = {k: round(v, 4) for k, v in tracker.sender.cpu_s.items()}
    with contextlib.suppress(OSError):  # the run itself is done and written
        write_text_atomic(tracker.run_dir / TRACK_FILE, json.dumps(record, indent=2) + "\n")
