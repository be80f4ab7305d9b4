"""CLI: ``cnnspec search``. TensorFlow is imported only by the processes that train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RunError
from ..spec.search import MAX_TRIALS
from . import app
from .spec_cmds import ScaleOption, SetOption


@app.command()
def search(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec with a search: section.")],
    trials: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_TRIALS, help="Trials in all (default: search.trials)."),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes on this machine.")
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Optuna storage URL shared by workers (default: sqlite in --out), "
            "e.g. postgresql://user:pw@host/db for workers on several machines (driver: "
            "pip install 'psycopg[binary]'). In-memory SQLite and another program's "
            "database are refused."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Search folder (default: searches/<name>).")
    ] = None,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start again: delete this search's study and its results in --out "
            "(after the spec or its space changed).",
        ),
    ] = False,
    set_: SetOption = None,
    scale: ScaleOption = None,
    worker_index: Annotated[
        int | None, typer.Option("--worker", hidden=True, help="Run as worker N (no report).")
    ] = None,
) -> None:
    """Search the spec's search: space within its budget; rerun the same command to resume.

    Writes DIR/search.csv, DIR/best.yaml, DIR/plots/*.png and one run per trained trial in
    DIR/trials/<number>/. DIR must be new, empty or an earlier search's (its .cnnspec-search
    marker); a rerun after the spec or its space changed is refused. Exit 1 when no trial
    completed.
    """
    from rich.console import Console

    from ..search import finish, prepare, run, worker

    plan = prepare(spec_path, list(set_ or ()), scale, trials=trials, storage=storage, out=out)
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise RunError(
            "cnnspec search needs Optuna, which is not installed", "pip install optuna"
        ) from None
    from ..tfquiet import import_tensorflow

    import_tensorflow()  # quietly, before a trial trains

    def echo(text: str) -> None:
        print(text, flush=True)

    if worker_index is not None:
        worker(plan, worker_index, echo)
        return
    from ..search.runner import WorkerFailed

    try:
        run(plan, workers, echo, fresh=fresh)
    except WorkerFailed:
        finish(plan, Console(width=max(160, Console().width)))  # what the others finished
        raise
    finish(plan, Console(width=max(160, Console().width)))
