"""``cnnspec explain``: where a trained network looks (TensorFlow imported inside the command)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import app


def default_out_dir(model: Path) -> Path:
    """``<run>/explain`` for a run, else ``<model stem>_explain`` beside the model file."""
    from ..modelio import find_model

    source = find_model(model)
    if source.run_dir is not None:
        return source.run_dir / "explain"
    return source.path.with_name(source.path.name.split(".")[0] + "_explain")


@app.command()
def explain(
    model: Annotated[
        Path, typer.Argument(help="Run directory, .keras file, or a .tflite/.onnx export.")
    ],
    inputs: Annotated[
        list[Path], typer.Argument(help="Image files, folders, or .npy arrays (1D/3D inputs).")
    ],
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            "-m",
            help="gradcam | occlusion | integrated_gradients | saliency | smoothgrad "
            "(repeat or comma-separate; default: all the model allows).",
        ),
    ] = None,
    layer: Annotated[
        str | None, typer.Option(help="Grad-CAM layer or spec block (default: last spatial).")
    ] = None,
    target_class: Annotated[
        str | None, typer.Option("--class", help="Class name or index to explain.")
    ] = None,
    top: Annotated[int, typer.Option(help="Explain the top-K predicted classes.")] = 1,
    head: Annotated[
        str | None,
        typer.Option("--head", help="Explain this head of the model (default: its main output)."),
    ] = None,
    patch: Annotated[int | None, typer.Option(help="Occlusion patch size.")] = None,
    stride: Annotated[int | None, typer.Option(help="Occlusion stride.")] = None,
    fill: Annotated[
        float | None, typer.Option(help="Occlusion/deletion fill value (default: input mean).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Integrated-gradients steps.")] = 32,
    baseline: Annotated[float, typer.Option(help="Integrated-gradients baseline value.")] = 0.0,
    samples: Annotated[int, typer.Option(help="SmoothGrad noisy copies.")] = 25,
    noise: Annotated[float, typer.Option(help="SmoothGrad noise, fraction of range.")] = 0.15,
    sanity: Annotated[
        bool, typer.Option("--sanity", help="Randomise the top layers; rank-correlate the maps.")
    ] = False,
    sanity_layers: Annotated[
        int, typer.Option(help="Weighted layers --sanity randomises, from the output down.")
    ] = 2,
    deletion: Annotated[
        bool, typer.Option("--deletion", help="Deletion curve and its area per map.")
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder (default: <run>/explain)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Maps of where the model looks: overlay PNGs, raw .npy maps, a contact sheet."""
    from ..explain import Options, Request, explain_files
    from ..explain.explainer import split_methods
    from ..outpaths import check_output

    out_dir = check_output(output if output is not None else default_out_dir(model), kind="dir")
    opts = Options(layer, patch, stride, fill, steps, baseline, samples, noise)
    req = Request(
        split_methods(method), target_class, top, opts, sanity, sanity_layers, deletion, output=head
    )
    report = explain_files(model, list(inputs), req, out_dir, echo=None if as_json else typer.echo)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    if report.task != "classification":
        typer.echo(
            f"output {report.output} ({report.task}): maps explain each class's {report.score}"
        )
    for item in report.inputs:
        d = item.to_dict(report.class_names, report.score)["predicted"]
        typer.echo(f"{item.file}: predicted {d['class']} ({report.score} {d[report.score]:.3f})")
        for m in item.maps:
            typer.echo("  " + describe(m))
    typer.echo(f"wrote {len(report.inputs)} input(s) to {out_dir}; contact sheet {report.sheet}")


def describe(m: dict) -> str:
    """One line per map: method, class, peak and what the checks measured."""
    text = f"{m['method']:<21} class {m['class']} peak {m['peak']}"
    if "layer" in m:
        text += f" layer {m['layer']}"
    if m.get("completeness_error") is not None:
        text += f" completeness error {m['completeness_error']:.3g}"
    if "deletion" in m:
        d = m["deletion"]
        text += f" deletion area {d['area']:.3f} (random {d['random_area']:.3f})"
    if "sanity" in m:
        s = m["sanity"]
        text += f" sanity rho {s['spearman']:.2f}" + (" SURVIVES" if s["survives"] else "")
    return text
