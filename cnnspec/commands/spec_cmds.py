"""Spec commands: validate, summary, build, schema, graph. Only ``build`` imports Keras."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..api.summary import fmt_int, fmt_macs
from ..api.summary import summary_rows as summary_rows  # re-exported (tests, other commands)
from ..errors import SpecError
from . import app

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec value: --set train.epochs=5 (repeatable)."),
]
ScaleOption = Annotated[
    str | None,
    typer.Option("--scale", help="A member of the spec's scales: family, e.g. --scale b3."),
]


@app.command()
def validate(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.")],
    set_: SetOption = None,
    scale: ScaleOption = None,
) -> None:
    """Check specs (schema, notation, shapes) without TensorFlow; exit 2 on any problem."""
    from ..spec import load_spec

    failed: list[SpecError] = []
    for path in specs:
        try:
            spec = load_spec(path, set_ or (), scale)
        except SpecError as exc:
            failed.append(exc)
            continue
        from ..search.check import search_problems  # the same check as `cnnspec search`

        if problems := search_problems(path, spec, list(set_ or ()), scale):
            failed.append(SpecError(problems))
            continue
        g = spec.graph
        print(
            f"ok {path}: {len(g.main_nodes()) - 1} layers, {fmt_int(g.total_params)} params, "
            f"{fmt_macs(g.total_macs)} MACs, output {'x'.join(map(str, g.nodes[g.output].shape))}"
        )
        if spec.init is not None:  # issue 17: the transfer table, before any training
            from ..init.report import show_for

            show_for(spec)
    if failed:
        raise SpecError([p for exc in failed for p in exc.problems])


def init_override(source: str | None) -> list[str]:
    """``--init SOURCE`` as a ``--set init.from=...`` override (quoted: any path stays a string)."""
    return [] if source is None else ["init.from='" + source.replace("'", "''") + "'"]


@app.command()
def summary(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec file.")],
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    set_: SetOption = None,
    scale: ScaleOption = None,
    batch: Annotated[
        int | None,
        typer.Option(
            "--batch", min=1, help="Estimate the training memory for batches of N samples."
        ),
    ] = None,
) -> None:
    """Every layer's output shape, parameters, MACs, receptive field and activation size,
    inferred without TensorFlow (--batch N: training memory too)."""
    from ..api import load  # Spec.summary() / Spec.to_dict(): one path with the Python API
    from ..api.summary import print_summary

    spec = load(spec_path, set=set_ or (), scale=scale)
    if json_:
        json.dump(spec.to_dict(batch), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.console import Console

    console = Console(width=max(120, Console().width))  # RF/jump/activation columns
    print_summary(spec.model_spec, console, f"{spec.name}  ({spec_path})", batch)


@app.command()
def build(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec file.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the .keras model.")
    ],
    heads: Annotated[bool, typer.Option(help="Keep auxiliary heads (the training model).")] = False,
    set_: SetOption = None,
    scale: ScaleOption = None,
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from these weights (.keras, run folder, keras:Name).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build the Keras model (untrained, or from its init: weights) and save it as .keras."""
    from ..api import build as build_spec
    from ..api import load
    from ..errors import RunError
    from ..outpaths import atomic_path, check_output

    if output.suffix != ".keras":
        raise RunError(
            f"the model file must end in .keras, received {output}", "e.g. -o model.keras"
        )
    check_output(output)  # before anything is built: a bad -o costs nothing
    spec = load(spec_path, set=[*(set_ or ()), *init_override(init)], scale=scale)
    if spec.model_spec.init is not None:  # the table and min_loaded before the model is built
        from ..init.report import show_for

        show_for(spec.model_spec)
    model = build_spec(spec, heads=heads)  # cnnspec.build: one path with the Python API
    with atomic_path(output) as tmp:  # an interrupted build leaves no partial model behind
        model.save(tmp)
    print(f"wrote {output}: {model.count_params():,} params")


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write to a file.")] = None,
) -> None:
    """Print (or write) the JSON Schema of the spec language."""
    from ..schema import dumps

    text = dumps()
    if output is None:
        sys.stdout.write(text)
    else:
        from ..outpaths import check_output, write_text_atomic

        write_text_atomic(check_output(output), text)
        print(f"wrote {output}")


@app.command()
def graph(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="arch.svg, arch.png or arch.dot")],
    set_: SetOption = None,
    scale: ScaleOption = None,
) -> None:
    """Draw the architecture diagram (Graphviz for SVG/PNG; DOT text always works)."""
    from ..graph import render
    from ..outpaths import check_output
    from ..spec import load_spec

    check_output(output)
    spec = load_spec(spec_path, set_ or (), scale)
    print(f"wrote {render(spec, output)}")
