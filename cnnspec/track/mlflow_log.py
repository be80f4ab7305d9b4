"""Send a run to MLflow from a background thread, through the ``mlflow`` client library.

Training only puts work on a queue (``submit``): an epoch's metrics cost a ``queue.put``. One
thread sends, draining everything queued into one ``log_batch`` call, so a slow server never
slows training. The first failure (server down, refused, timed out) is said once, the thread
stops sending, and the run goes on; its run directory has everything.

MLflow's HTTP client retries a failed request with exponential backoff (7 tries by default:
minutes against a dead server). Tracking sets shorter defaults (``MLFLOW_HTTP_REQUEST_*``;
environment values set by the user win), so a dead server is given up within seconds, and
keeps MLflow from printing the run's URL into the training's output.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunError

#: Defaults for MLflow's HTTP client while tracking (the user's own settings win).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    # MLflow prints two "View run ... at" lines to stdout when a run ends (one more request):
    # from the sending thread they would land in the middle of the training's own output
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
#: MLflow's limits per log_batch call.
BATCH_PARAMS = 100
BATCH_METRICS = 1000
#: Seconds ``close`` waits for the queue (artifact uploads included) before giving up.
WAIT_ENV = "CNNSPEC_TRACK_WAIT"


def require_mlflow() -> None:
    """RunError (before any training) when the mlflow package is missing."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise RunError(
            "tracking to MLflow needs the mlflow package, which is not installed",
            hint="pip install 'cnnspec[track]' (or pip install mlflow), or drop train.track",
        )


def experiment_id(client: Any, name: str) -> str:
    """The id of the MLflow experiment ``name``, created when missing (races tolerated)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - another process created it at the same moment
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


#: What a run sends once training is over (its files, its status).
_END_KINDS = frozenset({"text", "artifact", "end"})


@dataclass
class Sender:
    """One MLflow run fed from a queue by a daemon thread."""

    uri: str
    experiment: str
    run_name: str
    run_tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None  # set: continue this run (a resumed training)
    warn: Callable[[str], None] = print
    failed: str | None = None
    #: CPU seconds the sending thread spent (time.thread_time): on parameters and metrics
    #: (while training runs) and on the end's files and status. Load barely moves a CPU
    #: figure, so it bounds what tracking can take from training where wall times are noise.
    cpu_s: dict[str, float] = field(default_factory=lambda: {"training": 0.0, "end": 0.0})
    _queue: queue.Queue = field(default_factory=queue.Queue)
    _thread: threading.Thread | None = None

    def start(self) -> Sender:
        for name, default in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, default)
        # Imported here, before training: imported by the sending thread (2-3 s of CPU holding
        # the GIL) it ran into the first epoch (measured: ready 3.5 s after training began on
        # the loaded 2-core box). Imports barely overlap under the GIL, so this costs no more.
        try:
            import mlflow.tracking  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - a broken install: warned once, training goes on
            self._fail(f"cannot import mlflow: {type(exc).__name__}: {_first_line(exc)}")
        self._thread = threading.Thread(target=self._loop, name="cnnspec-track", daemon=True)
        self._thread.start()
        return self

    # --- what training calls (never blocks on the network) ----------------------------------
    def params(self, params: dict[str, str]) -> None:
        self._queue.put(("params", params))

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        self._queue.put(("metrics", (metrics, step, int(time.time() * 1000))))

    def params_from(self, compute: Callable[[], dict[str, str]]) -> None:
        """Parameters computed in the sending thread (e.g. hashing a data folder)."""
        self._queue.put(("params_from", compute))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._queue.put(("tags", tags))

    def text(self, text: str, name: str) -> None:
        self._queue.put(("text", (text, name)))

    def artifact(self, path: str, folder: str | None = None) -> None:
        self._queue.put(("artifact", (path, folder)))

    def close(self, status: str = "FINISHED") -> bool:
        """End the run with ``status`` and wait (bounded) for everything queued to be sent.
        Returns whether all of it was sent."""
        self._queue.put(("end", status))
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=float(os.environ.get(WAIT_ENV, "600")))
            if self._thread.is_alive():
                self._fail(f"still sending after {os.environ.get(WAIT_ENV, '600')} s; gave up")
        return self.failed is None

    # --- the thread -------------------------------------------------------------------------
    def _loop(self) -> None:
        client = None
        while True:
            items = [self._queue.get()]
            while True:  # everything queued meanwhile goes in the same calls
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done = None in items
            items = [i for i in items if i is not None]
            if self.failed is None:
                started = time.thread_time()
                try:
                    client = client or self._open()
                    self._send(client, items)
                except Exception as exc:  # noqa: BLE001 - tracking never stops training
                    self._fail(f"{type(exc).__name__}: {_first_line(exc)}")
                phase = "end" if any(k in _END_KINDS for k, _ in items) else "training"
                self.cpu_s[phase] += time.thread_time() - started
            if done:
                return

    def _open(self) -> Any:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is not None:
            client.update_run(self.run_id, status="RUNNING")
            return client
        exp_id = experiment_id(client, self.experiment)
        run = client.create_run(exp_id, run_name=self.run_name, tags=self.run_tags)
        self.run_id = run.info.run_id
        return client

    def _send(self, client: Any, items: list[tuple[str, Any]]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params, metrics, tags, rest = {}, [], {}, []
        for kind, payload in items:
            if kind == "params":
                params.update(payload)
            elif kind == "params_from":
                params.update(computed(payload))
            elif kind == "metrics":
                values, step, stamp = payload
                metrics += [Metric(k, float(v), stamp, step) for k, v in values.items()]
            elif kind == "tags":
                tags.update(payload)
            else:
                rest.append((kind, payload))
        plist = [Param(k, v) for k, v in params.items()]
        calls = [
            {"metrics": metrics[i : i + BATCH_METRICS]}
            for i in range(0, len(metrics), BATCH_METRICS)
        ]
        calls += [
            {"params": plist[i : i + BATCH_PARAMS]} for i in range(0, len(plist), BATCH_PARAMS)
        ]
        if tags:
            calls.append({"tags": [RunTag(k, v) for k, v in tags.items()]})
        for call in calls:
            client.log_batch(self.run_id, **call)
        for kind, payload in rest:
            if kind == "text":
                client.log_text(self.run_id, payload[0], payload[1])
            elif kind == "artifact":
                client.log_artifact(self.run_id, payload[0], payload[1])
            elif kind == "end":
                client.set_terminated(self.run_id, status=payload)

    def _fail(self, why: str) -> None:
        if self.failed is None:
            self.failed = why
            self.warn(
                f"warning: tracking to {self.uri} stopped ({why}); training goes on and the "
                "run directory keeps everything"
            )


def computed(compute: Callable[[], dict[str, str]]) -> dict[str, str]:
    """``compute()``'s parameters; a failure (an unreadable data file) is logged as a parameter
    instead of stopping the tracking of the run."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001 - a missing fingerprint never costs the run its log
        return {"track.error": f"{type(exc).__name__}: {_first_line(exc)}"[:500]}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
