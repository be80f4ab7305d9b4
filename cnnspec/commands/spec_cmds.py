"""Spec commands: validate, summary, build, schema, graph. Only ``build`` imports Keras."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

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


def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _fmt_macs(n: int) -> str:
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n // scale:,}{unit}" if n >= 10**6 * scale else f"{n / scale:.2f}{unit}"
    return str(n)


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
            f"ok {path}: {len(g.main_nodes()) - 1} layers, {_fmt_int(g.total_params)} params, "
            f"{_fmt_macs(g.total_macs)} MACs, output {'x'.join(map(str, g.nodes[g.output].shape))}"
        )
        if spec.init is not None:  # issue 17: the transfer table, before any training
            from ..init.report import show_for

            show_for(spec)
    if failed:
        raise SpecError([p for exc in failed for p in exc.problems])


def init_override(source: str | None) -> list[str]:
    """``--init SOURCE`` as a ``--set init.from=...`` override (quoted: any path stays a string)."""
    return [] if source is None else ["init.from='" + source.replace("'", "''") + "'"]


def summary_rows(spec, value_bytes: int = 4) -> list[dict]:
    """One row per layer of the main graph and the heads (``value_bytes``: of an activation)."""
    from ..shapes import fmt, prod
    from ..spec.graph import notation
    from ..spec.receptive import receptive_fields

    fields = receptive_fields(spec.graph)
    rows = []
    for node in spec.graph.nodes.values():
        rf = fields[node.name]
        rows.append(
            {
                "name": node.name,
                "kind": node.kind,
                "notation": notation(spec.graph, node),
                "inputs": node.inputs,
                "output_shape": list(node.shape),
                "shape": fmt(node.shape),
                "params": node.params,
                "trainable_params": node.params - node.non_trainable,
                "macs": node.macs,
                "block": node.block,
                "head": node.head,
                "receptive_field": rf.as_dict() if rf is not None else None,
                "activation": {
                    "elements": prod(node.shape),
                    "bytes": prod(node.shape) * value_bytes,
                },
            }
        )
    return rows


def _fmt_field(values) -> str:
    """(196, 196) -> 196; (7, 1) -> 7x1."""
    from ..spec.receptive import plain_number

    values = [plain_number(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


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
    from ..spec import load_spec
    from ..spec.memory import estimate_training_memory, fmt_bytes

    spec = load_spec(spec_path, set_ or (), scale)
    g = spec.graph
    memory = estimate_training_memory(spec, batch or 1)
    rows = summary_rows(spec, 2 if memory.mixed_precision else 4)
    totals = {
        "name": spec.name,
        "input_shape": list(g.input_shape),
        "output": g.output,
        "output_shape": list(g.nodes[g.output].shape),
        "total_params": g.total_params,
        "trainable_params": g.trainable_params,
        "non_trainable_params": g.total_params - g.trainable_params,
        "total_macs": g.total_macs,
        "unused_layers": g.unused,  # on no path to an output: not built, not counted
        "heads": {
            h: {"output": n, "loss_weight": spec.heads[h].loss_weight} for h, n in g.heads.items()
        },
    }
    init_plan = None
    if spec.init is not None:  # issue 17: which parameters start from the source
        from ..init import plan

        init_plan = plan(spec)[0]
        totals["init"] = init_plan.as_dict()
    if json_:
        if spec.scaling:
            totals["scale"] = spec.scaling
        if batch is not None:
            totals["memory"] = memory.as_dict()
        json.dump({**totals, "layers": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{spec.name}  ({spec_path})", header_style="bold", show_lines=False)
    for col, justify in (
        ("name", "left"),
        ("kind", "left"),
        ("notation", "left"),
        ("output", "right"),
        ("params", "right"),
        ("MACs", "right"),
        ("RF", "right"),
        ("jump", "right"),
        ("activation", "right"),
    ):
        # Only the notation folds: names and numbers stay whole (and greppable).
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col != "notation")
    for row in rows:
        style = "dim" if row["head"] else None
        table.add_row(
            row["name"],
            row["kind"],
            escape(row["notation"]),  # noise_shape=[null, 1, 1, 1] is not a rich style tag
            row["shape"],
            _fmt_int(row["params"]) if row["params"] else "",
            _fmt_macs(row["macs"]) if row["macs"] else "",
            _fmt_field(rf["size"]) if (rf := row["receptive_field"]) else "?",
            _fmt_field(rf["jump"]) if rf and rf["spatial"] else "",
            fmt_bytes(row["activation"]["bytes"]),
            style=style,
        )
    console = Console(width=max(120, Console().width))  # RF/jump/activation columns
    console.print(table)
    console.print(
        f"total params: {_fmt_int(totals['total_params'])} "
        f"(trainable {_fmt_int(totals['trainable_params'])}, "
        f"non-trainable {_fmt_int(totals['non_trainable_params'])})   "
        f"MACs: {_fmt_int(totals['total_macs'])} ({_fmt_macs(totals['total_macs'])})"
        + (f"   heads (training only): {', '.join(g.heads)}" if g.heads else "")
    )
    _print_scaling(console, spec.scaling, g.input_shape)
    if batch is not None:
        _print_memory(console, memory, spec.train.optimizer.kind)
    if init_plan is not None:
        from ..init import check_share
        from ..init.report import print_table

        print_table(init_plan, console)
        check_share(init_plan)


def _print_memory(console, m, optimizer: str) -> None:
    """The training-memory estimate, part by part."""
    from ..spec.memory import fmt_bytes

    precision = "mixed precision, 2 bytes" if m.mixed_precision else "4 bytes"
    console.print(
        f"training memory at batch {m.batch_size} (estimate): {fmt_bytes(m.total)} = "
        f"weights {fmt_bytes(m.weights)} + gradients {fmt_bytes(m.gradients)} + "
        f"optimizer {fmt_bytes(m.optimizer)} ({optimizer}: {m.optimizer_slots} slot"
        f"{'' if m.optimizer_slots == 1 else 's'}) + activations {fmt_bytes(m.activations)} "
        f"({precision} a value); the framework's own memory comes on top",
        highlight=False,
        soft_wrap=True,  # one line, whatever the width
    )


def _print_scaling(console, scaling: dict | None, input_shape) -> None:
    """The scale applied, and every written channel count its rounding changed."""
    if not scaling:
        return
    size = "x".join(map(str, input_shape))
    console.print(
        f"scale {scaling['name']}: width x{scaling['width']:g}, depth x{scaling['depth']:g} "
        f"(times: rounded up), input {size}; channels round to a multiple of {scaling['divisor']}"
        f", never more than 10% down"
    )
    if scaling["rounded"]:
        console.print("channel counts that rounding changed (written x width -> built):")
    for r in scaling["rounded"]:
        console.print(
            f"  {r['location']}: {r['layer']}: {r['written']} x {scaling['width']:g} = "
            f"{r['exact']:g} -> {r['channels']}",
            highlight=False,
        )


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
    from ..errors import RunError
    from ..outpaths import atomic_path, check_output
    from ..spec import load_spec

    if output.suffix != ".keras":
        raise RunError(
            f"the model file must end in .keras, received {output}", "e.g. -o model.keras"
        )
    check_output(output)  # before anything is built: a bad -o costs nothing
    spec = load_spec(spec_path, [*(set_ or ()), *init_override(init)], scale)
    if spec.init is not None:  # the table and min_loaded before the model is built
        from ..init.report import show_for

        show_for(spec)
    from ..build import build_model

    model = build_model(spec, heads=heads)
    if spec.init is not None:
        from ..init import apply

        apply(model, spec)
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
