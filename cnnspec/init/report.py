"""The transfer table as text: every layer that is not simply loaded gets a row; runs of loaded
layers are one line each (a ResNet-50 is 107 weight layers)."""

from __future__ import annotations

from collections.abc import Iterator

from .match import ADAPTED, LOADED, MISMATCH, Row, TransferTable


def _shapes(shapes: tuple) -> str:
    return "[" + ", ".join("x".join(map(str, s)) or "()" for s in shapes) + "]"


def _detail(row: Row) -> str:
    if row.status == MISMATCH:
        return f"{_shapes(row.shapes)} here, {_shapes(row.source_shapes)} in {row.source}"
    if row.status == ADAPTED:
        return f"from {row.source} ({row.how})"
    if row.status == LOADED:
        return f"from {row.source} (by {row.how})"
    return row.how


def table_rows(table: TransferTable) -> Iterator[tuple[str, str, str, str]]:
    """(layers, status, params, detail) lines; consecutive loaded layers folded into one."""
    run: list[Row] = []

    def flush() -> Iterator[tuple[str, str, str, str]]:
        if not run:
            return
        hows = sorted({r.how for r in run})
        names = run[0].layer if len(run) == 1 else f"{run[0].layer} .. {run[-1].layer}"
        detail = _detail(run[0]) if len(run) == 1 else f"{len(run)} layers, by {' and '.join(hows)}"
        yield names, LOADED, f"{sum(r.params for r in run):,}", detail
        run.clear()

    for row in table.rows:
        if row.status == LOADED:
            run.append(row)
            continue
        yield from flush()
        yield row.layer, row.status, f"{row.params:,}", _detail(row)
    yield from flush()


def _percent(share: float) -> str:
    """Two decimals, never rounded up to 100.00% (99.996% is not everything)."""
    return f"{int(share * 10000) / 100:.2f}%"


def total_line(table: TransferTable) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in table.counts().items())
    line = (
        f"init from {table.source}: {table.loaded_params:,} of {table.total_params:,} parameters "
        f"initialised ({_percent(table.share)}; {counts}); {table.source_share:.1%} of the source's "
        f"{table.source_params:,} used"
    )
    if table.uncovered:
        line += f"; left as built: {', '.join(table.uncovered)}"
    if table.min_loaded:
        line += f"; min_loaded {table.min_loaded:.0%}"
    return line


def print_table(table: TransferTable, console=None) -> None:
    """Print the table with rich (to stdout, or ``console``)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(width=max(120, Console().width))
    out = Table(title=f"transfer from {table.source}", header_style="bold")
    for col in ("layer", "status", "params", "detail"):
        out.add_column(col, justify="right" if col == "params" else "left", overflow="fold")
    styles = {LOADED: "green", ADAPTED: "cyan", MISMATCH: "yellow"}
    for layer, status, params, detail in table_rows(table):
        out.add_row(escape(layer), status, params, escape(detail), style=styles.get(status))
    console.print(out)
    console.print(escape(total_line(table)))


def plain_lines(table: TransferTable) -> list[str]:
    """The table as plain lines (a run's log)."""
    lines = [
        f"  {status:<15} {params:>12}  {layer}  {detail}"
        for layer, status, params, detail in table_rows(table)
    ]
    return [*lines, total_line(table)]


def show_for(spec, source: str | None = None, check: bool = True) -> TransferTable | None:
    """Print the spec's transfer table (None without init:); RunError under min_loaded."""
    from . import check_share, plan

    planned = plan(spec, source)
    if planned is None:
        return None
    table = planned[0]
    print_table(table)
    if check:
        check_share(table)
    return table
