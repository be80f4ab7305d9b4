"""Architecture diagrams drawn from a spec: DOT text always, SVG/PNG through Graphviz's ``dot``.

Pure Python (no TensorFlow): the diagram comes from the expanded spec graph, so it shows
every layer with its notation and output shape, blocks as clusters and auxiliary heads dashed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import RunError
from .outpaths import check_output, write_bytes_atomic
from .shapes import fmt
from .spec import ModelSpec
from .spec.graph import notation as node_notation

_COLOURS = {
    "conv": "#cfe2ff",
    "dwconv": "#cfe2ff",
    "sepconv": "#cfe2ff",
    "dense": "#ffe5b4",
    "maxpool": "#d1f2d9",
    "avgpool": "#d1f2d9",
    "l2pool": "#d1f2d9",
    "gmaxpool": "#d1f2d9",
    "gavgpool": "#d1f2d9",
    "gl2pool": "#d1f2d9",
    "add": "#f8d7da",
    "concat": "#f8d7da",
    "multiply": "#f8d7da",
    "input": "#e2e3e5",
}


def _quote(text: str) -> str:
    return '"' + text.replace('"', '\\"') + '"'


def to_dot(spec: ModelSpec) -> str:
    """The DOT source of the spec's layer graph."""
    g = spec.graph
    lines = [
        f"digraph {_quote(spec.name)} {{",
        '  rankdir=TB; graph [fontname=Helvetica, fontsize=12];\n  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
        "  edge [arrowsize=0.6];",
    ]
    clusters: dict[str, list[str]] = {}
    for node in g.nodes.values():
        notation = node_notation(g, node)
        label = (
            f"{node.name}\\n{node.kind}"
            + (f": {notation}" if notation else "")
            + f"\\n{fmt(node.shape)}"
        )
        style = ', style="rounded,filled,dashed"' if node.head else ""
        decl = (
            f"  {_quote(node.name)} [label={_quote(label)}, "
            f"fillcolor={_quote(_COLOURS.get(node.kind, '#ffffff'))}{style}];"
        )
        if node.block:
            clusters.setdefault(node.block, []).append(decl)
        else:
            lines.append(decl)
    for i, (block, decls) in enumerate(clusters.items()):
        lines.append(
            f"  subgraph cluster_{i} {{ label={_quote(block)}; style=dashed; color=gray50;"
        )
        lines.extend("  " + d for d in decls)
        lines.append("  }")
    for node in g.nodes.values():
        for src in node.inputs:
            lines.append(f"  {_quote(src)} -> {_quote(node.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(spec: ModelSpec, out: str | Path) -> Path:
    """Write the diagram to ``out``: ``.dot`` as text, ``.svg``/``.png``/``.pdf`` through ``dot``."""
    out = Path(out)
    fmt_ = out.suffix.lstrip(".").lower()
    dot_src = to_dot(spec)
    if fmt_ not in ("dot", "gv", "svg", "png", "pdf"):
        raise RunError(
            f"cannot draw to '{out}': unknown format '.{fmt_}'", "use .svg, .png, .pdf or .dot"
        )
    check_output(out)
    if fmt_ in ("dot", "gv"):
        write_bytes_atomic(out, dot_src.encode())
        return out
    exe = shutil.which("dot")
    if exe is None:
        raise RunError(
            f"Graphviz's 'dot' program is needed to write {out.name}, received no 'dot' on PATH",
            f"install Graphviz (apt-get install graphviz) or write {out.with_suffix('.dot')}",
        )
    try:
        result = subprocess.run(
            [exe, f"-T{fmt_}"], input=dot_src.encode(), capture_output=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        raise RunError(
            "Graphviz took over 120 s to lay out the graph", "write a .dot file instead"
        ) from None
    if result.returncode != 0:
        raise RunError(f"Graphviz failed: {result.stderr.decode(errors='replace').strip()}")
    write_bytes_atomic(out, result.stdout)
    return out
