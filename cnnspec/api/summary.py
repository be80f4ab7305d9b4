"""The summary of a spec (``cnnspec summary`` and ``Spec.summary()``): every layer's output
shape, parameters, MACs, receptive field and activation size, as rows, JSON, a rich table and
HTML. Pure Python: no TensorFlow."""

from __future__ import annotations

import html
from typing import Any


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_macs(n: int) -> str:
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            return f"{n // scale:,}{unit}" if n >= 10**6 * scale else f"{n / scale:.2f}{unit}"
    return str(n)


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


def summary_totals(spec) -> dict[str, Any]:
    g = spec.graph
    return {
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


def init_plan(spec):
    """The transfer table of ``init:`` (issue 17), or None."""
    if spec.init is None:
        return None
    from ..init import plan

    return plan(spec)[0]


def summary_dict(spec, batch: int | None = None) -> dict[str, Any]:
    """What ``cnnspec summary --json`` prints."""
    from ..spec.memory import estimate_training_memory

    memory = estimate_training_memory(spec, batch or 1)
    totals = summary_totals(spec)
    if (table := init_plan(spec)) is not None:
        totals["init"] = table.as_dict()
    if spec.scaling:
        totals["scale"] = spec.scaling
    if batch is not None:
        totals["memory"] = memory.as_dict()
    return {**totals, "layers": summary_rows(spec, 2 if memory.mixed_precision else 4)}


def fmt_field(values) -> str:
    """(196, 196) -> 196; (7, 1) -> 7x1."""
    from ..spec.receptive import plain_number

    values = [plain_number(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


COLUMNS = (
    ("name", "left"),
    ("kind", "left"),
    ("notation", "left"),
    ("output", "right"),
    ("params", "right"),
    ("MACs", "right"),
    ("RF", "right"),
    ("jump", "right"),
    ("activation", "right"),
)


def table_cells(row: dict) -> list[str]:
    """The table's cells of one row (plain text)."""
    from ..spec.memory import fmt_bytes

    rf = row["receptive_field"]
    return [
        row["name"],
        row["kind"],
        row["notation"],
        row["shape"],
        fmt_int(row["params"]) if row["params"] else "",
        fmt_macs(row["macs"]) if row["macs"] else "",
        fmt_field(rf["size"]) if rf else "?",
        fmt_field(rf["jump"]) if rf and rf["spatial"] else "",
        fmt_bytes(row["activation"]["bytes"]),
    ]


def totals_line(spec) -> str:
    t, g = summary_totals(spec), spec.graph
    return (
        f"total params: {fmt_int(t['total_params'])} "
        f"(trainable {fmt_int(t['trainable_params'])}, "
        f"non-trainable {fmt_int(t['non_trainable_params'])})   "
        f"MACs: {fmt_int(t['total_macs'])} ({fmt_macs(t['total_macs'])})"
        + (f"   heads (training only): {', '.join(g.heads)}" if g.heads else "")
    )


def print_summary(spec, console, title: str, batch: int | None = None) -> None:
    """The table, the totals, the scale, the memory estimate (``batch``) and the init table."""
    from rich.markup import escape
    from rich.table import Table

    from ..spec.memory import estimate_training_memory

    memory = estimate_training_memory(spec, batch or 1)
    table = Table(title=title, header_style="bold", show_lines=False)
    for col, justify in COLUMNS:
        # Only the notation folds: names and numbers stay whole (and greppable).
        table.add_column(col, justify=justify, overflow="fold", no_wrap=col != "notation")
    for row in summary_rows(spec, 2 if memory.mixed_precision else 4):
        cells = table_cells(row)
        cells[2] = escape(cells[2])  # noise_shape=[null, 1, 1, 1] is not a rich style tag
        table.add_row(*cells, style="dim" if row["head"] else None)
    console.print(table)
    console.print(totals_line(spec))
    print_scaling(console, spec.scaling, spec.graph.input_shape)
    if batch is not None:
        print_memory(console, memory, spec.train.optimizer.kind)
    if (plan := init_plan(spec)) is not None:
        from ..init import check_share
        from ..init.report import print_table

        print_table(plan, console)
        check_share(plan)


def print_memory(console, m, optimizer: str) -> None:
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


def print_scaling(console, scaling: dict | None, input_shape) -> None:
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


def summary_text(spec, title: str, batch: int | None = None, width: int = 120) -> str:
    """``print_summary`` as plain text (no colours), ``width`` columns wide."""
    import io

    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False)
    print_summary(spec, console, title, batch)
    return out.getvalue()


def summary_html(spec, title: str) -> str:
    """The summary as an HTML table (Jupyter's display of a Spec)."""
    head = "".join(f'<th style="text-align:{j}">{html.escape(c)}</th>' for c, j in COLUMNS)
    body = []
    for row in summary_rows(spec):
        cells = "".join(
            f'<td style="text-align:{j}">{html.escape(v)}</td>'
            for v, (_, j) in zip(table_cells(row), COLUMNS, strict=True)
        )
        style = ' style="opacity:0.6"' if row["head"] else ""
        body.append(f"<tr{style}>{cells}</tr>")
    return (
        f"<div><b>{html.escape(title)}</b><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table><p>{html.escape(totals_line(spec))}</p></div>"
    )
