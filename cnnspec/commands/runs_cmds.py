"""CLI: ``cnnspec runs`` (a table of runs) and ``cnnspec diff`` (two runs compared). No TF."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import app


@app.command()
def runs(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to look for runs in (default runs/).")
    ] = Path("runs"),
    sort: Annotated[
        str,
        typer.Option(
            help="Column to sort by: run, date, spec, data, status, epochs, train_accuracy, "
            "val_accuracy, val_loss, test_accuracy, images_per_s."
        ),
    ] = "date",
    reverse: Annotated[
        bool, typer.Option("--reverse", "-r", help="Largest (newest, best) first.")
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """A table of the runs under DIR: spec, date, status, epochs, final metrics, images/s."""
    from ..runs import COLUMNS, list_runs

    found = list_runs(folder, sort=sort, reverse=reverse)
    if json_:
        json.dump([r.as_dict() for r in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    if not found:
        print(f"no runs under {folder}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(found)} run{'s' if len(found) != 1 else ''} in {folder}")
    for col in COLUMNS:
        table.add_column(col.header, justify="right" if col.numeric else "left", no_wrap=True)
    for r in found:
        table.add_row(*(col.show(v) if (v := col.value(r)) is not None else "" for col in COLUMNS))
    Console(width=max(160, Console().width)).print(table)


@app.command()
def diff(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="A run directory.")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="The run to compare it with.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """What differs between two runs: layers (kind, notation, shape, params), recipe, data,
    hardware and results. A folder like runs/lenet5 stands for its newest run."""
    from ..runs import diff_runs, render_diff

    d = diff_runs(run_a, run_b)
    if json_:
        json.dump(d.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print("\n".join(render_diff(d)))
