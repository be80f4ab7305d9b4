"""CLI: ``cnnspec train``. TensorFlow is imported inside the command only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import RunError
from . import app
from .spec_cmds import ScaleOption


def overrides_from(
    epochs: int | None, batch_size: int | None, data: str | None, sets: list[str] | None
) -> list[str]:
    """The --epochs/--batch-size/--data shortcuts as ``--set`` overrides (then the --set ones)."""
    out = []
    if epochs is not None:
        out.append(f"train.epochs={epochs}")
    if batch_size is not None:
        out.append(f"train.batch_size={batch_size}")
    if data is not None:
        # quoted: a path like 'data/cats: v2' or 'on' must stay a string
        out.append("train.data=" + "'" + data.replace("'", "''") + "'")
    return out + list(sets or [])


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
        typer.Option(help="Override train.data: digits, mnist, cifar10, a folder or an .npz."),
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
    from ..spec import load_spec

    overrides = overrides_from(epochs, batch_size, data, sets)
    if init is not None:
        overrides.append("init.from='" + init.replace("'", "''") + "'")
    if track is not None:
        overrides.append("train.track.mlflow.uri='" + track.replace("'", "''") + "'")
    if resume is not None:
        if spec is not None or out is not None or scale is not None:
            raise RunError(
                "--resume continues a run from its own spec.yaml (its scale included)",
                hint="drop the SPEC argument and --out (use --set/--epochs to change the recipe)",
            )
        if not (resume / "spec.yaml").is_file():
            raise RunError(f"{resume} is not a run directory (it has no spec.yaml)")
        spec_path, run_dir = resume / "spec.yaml", resume
    elif spec is None:
        raise RunError("give a spec file to train, or --resume RUN_DIR")
    else:
        spec_path, run_dir = spec, out
    if run_dir is not None:  # before the spec, the data or any training: a bad --out costs nothing
        from ..outpaths import check_output

        check_output(run_dir, "--resume" if resume is not None else "--out", "dir")
    model_spec = load_spec(spec_path, overrides=overrides, scale=scale)
    from ..track import tracking

    with tracking(model_spec, resume_dir=resume) as tracker:  # None: the recipe tracks nothing
        from ..tfquiet import import_tensorflow

        import_tensorflow()  # only now: a bad spec or --set is refused in milliseconds
        from ..train import train as train_spec

        result = train_spec(
            model_spec,
            run_dir=run_dir,
            resume=resume is not None,
            verbose=2 if quiet else None,
            callbacks=tracker.callbacks() if tracker else None,
        )
        if tracker:
            tracker.finished(result)
