"""CLI: ``cnnspec train``. TensorFlow is imported inside the command only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import app
from .spec_cmds import ScaleOption


@app.command()
def train(
    spec: Annotated[
        Path | None,
        typer.Argument(help="Spec file (YAML). Omit with --resume.", show_default=False),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Override train.epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override train.batch_size.")] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Override train.data: a built-in name (digits, mnist, ...), an image folder, "
            "a CSV manifest or an .npz."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run directory (default runs/<name>/<timestamp>).", show_default=False),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override any spec value: --set train.optimizer.lr=0.01."),
    ] = None,
    scale: ScaleOption = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Continue the run in this directory from its last completed epoch."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="One line per epoch.")] = False,
    track: Annotated[
        str | None,
        typer.Option(
            help="Log the run to this MLflow tracking URI (sets train.track.mlflow.uri).",
            show_default=False,
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from these weights: a .keras file, a run folder or keras:Name (init.from).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a spec by the recipe in its train: section and write a run directory."""
    from ..api import train as train_run  # the Python API's cnnspec.train: one path

    train_run(
        spec, data, out=out, epochs=epochs, batch_size=batch_size, set=sets, scale=scale,
        resume=resume, init=init, track=track, verbose=2 if quiet else None,
    )  # fmt: skip
