"""A tracked search: one parent MLflow run for the search, each trial a child run under it.

The parent is created once, by the process that starts the search (before any worker), and its
id is kept in the study's user attributes, so every worker — on this machine or another sharing
the storage — and a resumed search log their trials under the same parent. Failures warn once and
never stop the search (as for a single run).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import content, settings
from .mlflow_log import experiment_id, require_mlflow

#: The study's user attribute holding {"uri": ..., "run_id": ...} of the parent run.
PARENT_ATTR = "mlflow_parent"


def _warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def open_parent(spec: Any, plan: Any, study: Any, warn: Callable[[str], None] = _warn) -> None:
    """Create the search's parent run (unless the study has one already)."""
    cfg = settings(spec)
    if cfg is None or study.user_attrs.get(PARENT_ATTR):
        return
    require_mlflow()
    try:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=cfg.uri)
        exp = experiment_id(client, cfg.experiment or spec.name)
        tags = {"cnnspec.search": plan.name, "cnnspec.spec": spec.name}
        run = client.create_run(exp, run_name=f"search {plan.name}", tags=tags)
        s = plan.search
        params = {
            "search.objective": s.objective,
            "search.trials": str(s.trials),
            **{f"search.space.{p}": content.value(str(d)) for p, d in s.space.items()},
        }
        client.log_batch(
            run.info.run_id, params=[Param(content.key(k), v) for k, v in params.items()]
        )
        study.set_user_attr(PARENT_ATTR, {"uri": cfg.uri, "run_id": run.info.run_id})
    except Exception as exc:  # noqa: BLE001 - tracking never stops the search
        warn(
            f"warning: tracking the search to {cfg.uri} failed ({type(exc).__name__}: {exc}); "
            "the search goes on untracked"
        )


def parent_run_id(study: Any) -> str | None:
    """The parent run's id a trial logs under (None: the search is not tracked)."""
    record = study.user_attrs.get(PARENT_ATTR) or {}
    return record.get("run_id")


def close_parent(
    study: Any,
    best: Any,
    objective: str,
    written: list[Path],
    warn: Callable[[str], None] = _warn,
) -> None:
    """The search's results on its parent run: the best value and trial, the result files."""
    record = study.user_attrs.get(PARENT_ATTR)
    if not record:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=record["uri"])
        run_id = record["run_id"]
        if best is not None:
            client.log_metric(run_id, content.key(f"best_{objective}"), float(best.value))
            client.set_tag(run_id, "cnnspec.best_trial", str(best.number))
        for path in written:
            if Path(path).is_file():
                client.log_artifact(run_id, str(path), "search")
        client.set_terminated(run_id, "FINISHED" if best is not None else "FAILED")
    except Exception as exc:  # noqa: BLE001 - the results are written locally already
        warn(
            f"warning: logging the search's results to {record['uri']} failed "
            f"({type(exc).__name__}: {exc}); they are in the search folder"
        )
