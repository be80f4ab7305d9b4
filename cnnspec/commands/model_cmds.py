"""CLI commands that use trained models: export, predict, evaluate, visualize.

TensorFlow, Keras, matplotlib and scikit-learn are imported only inside the command functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..export.formats import NAMES as EXPORT_FORMATS
from ..export.formats import REGISTRY as EXPORT_REGISTRY
from . import app
from .spec_cmds import ScaleOption

visualize_app = typer.Typer(
    help="Draw PNG pictures: conv filters, feature maps, training curves, architecture.",
    no_args_is_help=True,
)
app.add_typer(visualize_app, name="visualize")

ModelArg = Annotated[
    Path,
    typer.Argument(help="Run directory (runs/<name>/<timestamp>), .keras file or an export."),
]
KerasModelArg = Annotated[
    Path, typer.Argument(help="Run directory (runs/<name>/<timestamp>) or .keras file.")
]


_QUANTIZE_HELP = "; ".join(
    f"{f.name} only: {' | '.join(f.quantize_modes)}"
    for f in EXPORT_REGISTRY.values()
    if f.quantize_modes
)


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"


@app.command()
def export(
    source: KerasModelArg,
    format: Annotated[
        str, typer.Option("--format", "-f", help=" | ".join(EXPORT_FORMATS))
    ] = EXPORT_FORMATS[0],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Destination (default: <run>/export/<name>.<ext>)."),
    ] = None,
    quantize: Annotated[str | None, typer.Option(help=_QUANTIZE_HELP)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing destination.")] = False,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Max abs difference allowed (default 1e-4; --quantize float16 1e-2, dynamic 5e-2)."
        ),
    ] = None,
) -> None:
    """Export the inference model, verified against Keras in its own runtime, written atomically."""
    from ..api import export as export_run  # cnnspec.export: one path with the Python API

    # it checks the request, the destination and the model before importing TensorFlow
    r = export_run(
        source, format, output, quantize=quantize, overwrite=overwrite, tolerance=tolerance
    )
    q = f", quantised {r.quantize}" if r.quantize else ""
    typer.echo(f"wrote {r.path} ({r.format}{q}, {_kb(r.size_bytes)}) and {r.meta_path.name}")
    for line in r.verified_lines():  # a line per output of a several-output model
        typer.echo(line)


@app.command()
def predict(
    model: ModelArg,
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Classes to show per image.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for written predictions: masks and overlays (segmentation), "
            "predictions.csv/.json (multi-label, regression, heads). Default: <run>/predictions.",
        ),
    ] = None,
    tile: Annotated[
        bool,
        typer.Option("--tile", help="Segmentation: larger images in overlapping, blended tiles."),
    ] = False,
) -> None:
    """Predict the classes of images (segmentation: their masks; multi-label: the labels above
    the threshold; regression: values in the data's units; every head) with a .keras,
    SavedModel, TFLite or ONNX model."""
    from ..api import predict as predict_images  # cnnspec.predict: one path with the API

    preds = predict_images(model, list(inputs), top_k=top_k, out=out, tile=tile)
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in preds], indent=2))
        return
    if preds and hasattr(preds[0], "outputs"):  # label-table tasks (tasks/outputs_io.py)
        for p in preds:
            typer.echo(f"{_short(p.file)}  {p.text}")
        typer.echo(f"wrote {_short(preds[0].saved)} and predictions.json beside it")
        return
    if preds and hasattr(preds[0], "mask"):  # segmentation (tasks/segmentation_io.py)
        for p in preds:
            top = sorted(p.pixels.items(), key=lambda kv: -kv[1])[:4]
            shares = ", ".join(f"{name} {share:.1%}" for name, share in top)
            typer.echo(f"{_short(p.file)} -> {_short(p.mask)} ({shares}; {p.tiles} tiles)")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None)
    table.add_column("file", overflow="fold")  # wrap long paths rather than cut them
    for i in range(len(preds[0].top)):
        table.add_column(f"#{i + 1}", no_wrap=True)
    for p in preds:
        table.add_row(escape(_short(p.file)), *[f"{escape(n)} {prob:.3f}" for n, prob in p.top])
    Console().print(table)


def _short(path: str) -> str:
    """A path relative to the working directory when it is inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _default_eval_png(model: Path, split: str) -> Path:
    from ..modelio import check_model_source
    from ..tasks.saved import picture_stem

    source, meta = check_model_source(model)
    kind = picture_stem(meta)  # confusion, pred_vs_true: the main output's task says
    if source.run_dir is not None:
        return source.run_dir / "eval" / f"{kind}_{split}.png"
    stem = source.path.name.split(".")[0]
    return source.path.with_name(f"{stem}.{kind}_{split}.png")


@app.command()
def evaluate(
    model: ModelArg,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="A built-in name (digits, mnist, ...), an image folder, a CSV manifest or an .npz "
            "(default: the data the run was trained on).",
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="test | val | train | all")] = "test",
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="k of top-k accuracy.")] = 3,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Confusion-matrix (regression: predicted-vs-true) PNG (default: <run>/eval/...).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Accuracy, top-k, per-class precision/recall/F1 and a confusion-matrix PNG (multi-label:
    per-label P/R/F1/AP; regression: MAE/RMSE/R2 and a predicted-vs-true PNG; every head)."""
    from ..api import evaluate as evaluate_model  # cnnspec.evaluate: one path with the API
    from ..outpaths import check_output

    png = check_output(output if output is not None else _default_eval_png(model, split))
    # the model's checks (archive limits, code, metadata digest) come before TensorFlow
    ev = evaluate_model(model, data, split=split, top_k=top_k, confusion_png=png)
    if as_json:
        typer.echo(json.dumps(ev.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if hasattr(ev, "lines"):  # multilabel, regression, several heads (tasks/outputs_io.py)
        for line in ev.lines():
            console.print(line, markup=False, highlight=False)
        return
    if ev.extra.get("task") == "segmentation":  # pixels: IoU beside P/R/F1
        console.print(
            f"{ev.model} on {ev.data} [{ev.split}]: {ev.n} images, mean IoU "
            f"{ev.extra['mean_iou']:.4f}, Dice {ev.extra['dice']:.4f}, pixel accuracy "
            f"{ev.accuracy:.4f}",
            markup=False,
            highlight=False,
        )
        from ..tasks.segmentation import describe_report

        report = {"per_class": ev.per_class, "pixel_accuracy": ev.accuracy, **ev.extra}
        for line in describe_report(report):
            console.print(line, markup=False, highlight=False)
        console.print(f"confusion matrix: {ev.confusion_png}", markup=False, highlight=False)
        return
    console.print(
        f"{ev.model} on {ev.data} [{ev.split}]: {ev.n} images, accuracy {ev.accuracy:.4f}, "
        + (f"top-{ev.top_k} {ev.top_k_accuracy:.4f}, " if ev.top_k else "")
        + f"macro F1 {ev.macro['f1']:.4f}",
        markup=False,  # "[test]" and paths are text, not rich markup
        highlight=False,
    )
    table = Table("class", "precision", "recall", "F1", "support", box=None)
    for row in ev.per_class:
        table.add_row(
            escape(row["class"]),
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    console.print(table)
    console.print(f"confusion matrix: {ev.confusion_png}", markup=False, highlight=False)


def _viz_out(output: Path | None, source_path: Path, default_name: str) -> Path:
    """The picture's path (given, or under the run's viz/), checked writable."""
    from ..outpaths import check_output

    if output is not None:
        return check_output(output)
    from ..modelio import find_model

    source = find_model(source_path)
    base = source.run_dir if source.run_dir is not None else source.path.parent
    return check_output(base / "viz" / default_name)


@visualize_app.command("filters")
def visualize_filters(
    model: KerasModelArg,
    layer: Annotated[
        str | None, typer.Option(help="Conv layer to draw (default: the first).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG path.")] = None,
) -> None:
    """A conv layer's kernels as an image grid (per input channel for deeper layers)."""
    from ..modelio import load_run_model
    from ..viz.filters import conv_layer_names, plot_filters

    if output is not None:
        _viz_out(output, model, "")  # checked before the model is loaded
    keras_model, meta, _ = load_run_model(model)
    name = layer or (conv_layer_names(keras_model) or [None])[0]
    out = _viz_out(output, model, f"filters_{name}.png")
    pic = plot_filters(keras_model, out, name)
    typer.echo(f"wrote {pic.path} ({pic.width}x{pic.height})")


@visualize_app.command("features")
def visualize_features(
    model: KerasModelArg,
    image: Annotated[Path, typer.Argument(help="One image file.")],
    layers: Annotated[
        str | None,
        typer.Option(help="Comma-separated layer names (default: the first conv layers)."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG path.")] = None,
) -> None:
    """Feature maps of chosen layers for one image."""
    from ..data import load_images
    from ..modelio import load_run_model
    from ..viz.features import plot_features

    out = _viz_out(output, model, f"features_{image.stem}.png")
    keras_model, meta, _ = load_run_model(model)
    images, _ = load_images([image], meta["input_shape"])
    chosen = [s.strip() for s in layers.split(",") if s.strip()] if layers else None
    pic = plot_features(keras_model, images[0], out, chosen, image_name=image.name)
    typer.echo(f"wrote {pic.path} ({pic.width}x{pic.height})")


@visualize_app.command("curves")
def visualize_curves(
    run_dir: Annotated[
        Path, typer.Argument(help="Run directory, runs/<name> (its latest run) or a history.csv.")
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="PNG path.")] = None,
) -> None:
    """Training curves (loss and accuracy, train vs validation; a transfer run's phase 2 too)."""
    from ..outpaths import check_output
    from ..viz.curves import find_run, plot_curves

    run_dir = find_run(run_dir)
    base = run_dir if run_dir.is_dir() else run_dir.parent
    out = check_output(output if output is not None else base / "viz" / "curves.png")
    pic = plot_curves(run_dir, out, title=_run_title(base))
    typer.echo(f"wrote {pic.path} ({pic.width}x{pic.height})")


def _run_title(run_dir: Path) -> str:
    """The spec name from a run's meta.json, else the folder name."""
    from ..errors import RunError
    from ..modelio import RUN_META_FILE, read_meta

    try:
        return str(read_meta(run_dir / RUN_META_FILE)["name"])
    except RunError:
        return run_dir.name


@visualize_app.command("graph")
def visualize_graph(
    spec: Annotated[Path, typer.Argument(help="A spec YAML file or a run directory.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="arch.svg | arch.png | arch.dot")
    ] = Path("arch.png"),
    scale: ScaleOption = None,
) -> None:
    """The architecture diagram (same as `cnnspec graph`)."""
    from ..errors import RunError
    from ..outpaths import check_output

    check_output(output)
    if spec.is_dir():
        from ..modelio import find_model

        run_dir = find_model(spec).run_dir
        if run_dir is None or not (run_dir / "spec.yaml").is_file():
            raise RunError(f"{spec}: no spec.yaml in this run directory")
        spec = run_dir / "spec.yaml"
    try:
        from ..graph import render
        from ..spec import load_spec
    except ImportError:
        raise RunError(
            "architecture diagrams are not available in this version", hint="see cnnspec graph"
        ) from None
    render(load_spec(spec, scale=scale), output)
    typer.echo(f"wrote {output}")
