"""Make an imported spec compact: a conv, its batch norm and its activation as one row.

The language has no conv-with-batch-norm kind, so the import writes ``define:`` blocks, one per
naming pattern of the source: ResNet's ``conv2_block1_1_conv`` / ``_bn`` / ``_relu`` is a use of
``conv_bn_relu`` named ``conv2_block1_1`` (a block's layers are named ``<use>_<inner>``, so every
Keras name is kept and ``init:`` still loads every weight by name). What varies between the uses
of a pattern (K, n_K, s, p, ...) becomes a parameter whose default is its most common value, so
a use lists only what differs. A chain is folded only where the graph allows it: the conv feeds
only the batch norm, which feeds only the activation (or is the end of the chain).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

#: Kinds that take a following batch norm into their row; their fields -> parameter names.
CONVS = ("conv", "dwconv", "sepconv")
PARAM_NAMES = {"n_K": "n"}
#: What a field left out of a conv row means (the importer leaves out spec defaults).
ABSENT = {"s": 1, "bias": True, "act": None, "p": "valid"}


def kind_of(row: dict) -> str:
    return next(k for k in row if k not in ("name", "from"))


def _split_names(names: list[str]) -> tuple[str, list[str]] | None:
    """The longest prefix P with every name ``P_<suffix>`` (suffixes non-empty), or None."""
    first = names[0]
    for cut in range(len(first) - 1, 0, -1):
        if first[cut] != "_":
            continue
        prefix = first[:cut]
        if all(n.startswith(prefix + "_") and len(n) > cut + 1 for n in names):
            return prefix, [n[cut + 1 :] for n in names]
    return None


def _consumers(rows: list[dict]) -> Counter:
    """How many rows read each row (the next row reads the previous one unless it has from:)."""
    counts: Counter = Counter()
    for i, row in enumerate(rows):
        ref = row.get("from")
        refs = [ref] if isinstance(ref, str) else list(ref or [])
        if "from" not in row and i > 0:
            refs = [rows[i - 1]["name"]]
        counts.update(refs)
    return counts


def _structural(names: list[str]) -> tuple[str, list[str]]:
    """A chain named by its last layer (what reads it reads that name), its layers unnamed."""
    return names[-1], [""] * len(names)


def _chains(rows: list[dict], keep_names: bool = True) -> list[tuple[int, int, tuple]]:
    """(start, length, (prefix, suffixes)) of every foldable conv -> bn [-> act] run; without
    ``keep_names`` any such run folds (its layers unnamed, matched by structure)."""
    split_names = _split_names if keep_names else _structural
    readers = _consumers(rows)
    out = []
    prefixes = {r["name"] for r in rows}  # a use's name must be new
    i = 0
    while i < len(rows) - 1:
        row, nxt = rows[i], rows[i + 1]
        ok = (
            kind_of(row) in CONVS
            and row[kind_of(row)].get("act") is None
            and kind_of(nxt) == "bn"
            and "from" not in nxt
            and readers[row["name"]] == 1
        )
        if not ok:
            i += 1
            continue
        length = 2
        if (
            i + 2 < len(rows)
            and kind_of(rows[i + 2]) == "act"
            and "from" not in rows[i + 2]
            and readers[nxt["name"]] == 1
        ):
            length = 3
        split = split_names([r["name"] for r in rows[i : i + length]])
        if split is None and length == 3:  # the act named otherwise: fold conv + bn only
            length, split = 2, split_names([r["name"] for r in rows[i : i + 2]])
        if split is not None and (split[0] not in prefixes or not keep_names):
            prefixes.add(split[0])
            out.append((i, length, split))
            i += length
        else:
            i += 1
    return out


def _inputs(rows: list[dict]) -> dict[str, list[str]]:
    """Every row's inputs, written out (a row without from: reads the row before it)."""
    out, previous = {}, "input"
    for row in rows:
        ref = row.get("from", previous)
        out[row["name"]] = [ref] if isinstance(ref, str) else list(ref)
        previous = row["name"]
    return out


def chain_order(rows: list[dict]) -> list[dict]:
    """The rows in an order where a layer's only reader comes right after it whenever its
    other inputs are ready (Keras creates a shortcut's conv before the body's batch norm):
    chains become contiguous, so they fold, and fewer rows need from:."""
    ins = _inputs(rows)
    readers: dict[str, list[str]] = {}
    for row in rows:
        for ref in ins[row["name"]]:
            readers.setdefault(ref, []).append(row["name"])
    by_name = {r["name"]: r for r in rows}
    done, out = {"input"}, []
    waiting = [r["name"] for r in rows]
    follow: str | None = None
    while waiting:
        if follow is None or follow not in waiting or not all(i in done for i in ins[follow]):
            follow = next(n for n in waiting if all(i in done for i in ins[n]))
        waiting.remove(follow)
        done.add(follow)
        out.append(follow)
        nxt = readers.get(follow, [])
        follow = nxt[0] if len(nxt) == 1 else None
    ordered, previous = [], "input"
    for name in out:
        row = {k: v for k, v in by_name[name].items() if k != "from"}
        refs = ins[name]
        if refs != [previous]:
            row["from"] = refs[0] if len(refs) == 1 else refs
        ordered.append(row)
        previous = name
    return ordered


def _template_key(rows: list[dict], suffixes: list[str]) -> tuple:
    conv = rows[0]
    rest = tuple(
        repr(sorted(r[kind_of(r)].items())) if kind_of(r) == "bn" else repr(r[kind_of(r)])
        for r in rows[1:]
    )
    return (kind_of(conv), tuple(suffixes), rest)


def fold(rows: list[dict], keep_names: bool = True) -> tuple[dict[str, Any], list[dict]]:
    """(defines, rows) with every foldable chain a use of a generated define."""
    rows = chain_order(rows)
    chains = _chains(rows, keep_names)
    groups: dict[tuple, list[tuple[int, int, str]]] = {}
    for start, length, (prefix, suffixes) in chains:
        key = _template_key(rows[start : start + length], suffixes)
        groups.setdefault(key, []).append((start, length, prefix))
    defines: dict[str, Any] = {}
    uses: dict[int, tuple[int, dict]] = {}
    taken: set[str] = {r["name"] for r in rows}
    for key, members in groups.items():
        if len(members) < 2:  # a pattern used once stays as written
            continue
        kind, suffixes, _ = key
        first = rows[members[0][0] : members[0][0] + members[0][1]]
        name = _define_name(kind, first, taken)
        taken.add(name)
        fields = [{**ABSENT, **rows[s][kind]} for s, _, _ in members]
        keys = list(dict.fromkeys(k for f in fields for k in f))
        params = {}
        for k in keys:
            values = Counter(repr(f.get(k)) for f in fields)
            if len(values) > 1:
                common = values.most_common(1)[0][0]
                params[k] = next(f.get(k) for f in fields if repr(f.get(k)) == common)
        conv_fields = {
            k: (f"${PARAM_NAMES.get(k, k)}" if k in params else v)
            for k, v in fields[0].items()
            if k in params or not (k in ABSENT and v == ABSENT[k])
        }
        layers = [{kind: conv_fields, "name": suffixes[0]}]
        layers += [
            {kind_of(r): r[kind_of(r)], "name": sfx}
            for r, sfx in zip(first[1:], suffixes[1:], strict=True)
        ]
        layers = [{k: v for k, v in r.items() if k != "name" or v} for r in layers]
        defines[name] = {
            "params": {PARAM_NAMES.get(k, k): v for k, v in params.items()},
            "layers": layers,
        }
        for (start, length, prefix), f in zip(members, fields, strict=True):
            given = {
                PARAM_NAMES.get(k, k): f.get(k)
                for k, v in params.items()
                if repr(f.get(k)) != repr(v)
            }
            use = {name: given, "name": prefix}
            if "from" in rows[start]:
                use["from"] = rows[start]["from"]
            uses[start] = (length, use)
    # What read a chain's last layer reads the use (a block's name is its output).
    renamed = {rows[s + n - 1]["name"]: use["name"] for s, (n, use) in uses.items()}
    out: list[dict] = []
    i = 0
    while i < len(rows):
        length, row = uses.get(i, (1, rows[i]))
        if "from" in row:
            ref = row["from"]
            row = {
                **row,
                "from": [renamed.get(r, r) for r in ref]
                if isinstance(ref, list)
                else renamed.get(ref, ref),
            }
        out.append(row)
        i += length
    return defines, out


def flow(value: Any) -> str:
    """One YAML flow line."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


#: Item kinds written as blocks over several lines (their layers one line each).
MULTILINE = ("residual", "parallel")


def item_lines(item: dict, pad: str) -> list[str]:
    """The YAML lines of one list item at indent ``pad``: a flow line, or a residual:/parallel:
    block with one line per inner layer."""
    kind = next((k for k in item if k in MULTILINE and isinstance(item[k], dict)), None)
    if kind is None:
        only = next(iter(item))
        if len(item) == 1 and item[only] == {}:  # gavgpool: {} -> gavgpool
            return [f"{pad}- {only}"]
        return [f"{pad}- {flow(item)}"]
    lines = [f"{pad}- {kind}:"]
    inner = pad + "    "
    for key, value in item[kind].items():
        if key in ("body", "shortcut") and isinstance(value, list):
            lines.append(f"{inner}{key}:")
            lines += [ln for x in value for ln in item_lines(x, inner + "  ")]
        elif key == "branches":
            lines.append(f"{inner}branches:")
            for branch in value:
                if not branch:
                    lines.append(f"{inner}  - []")
                    continue
                sub = [ln for x in branch for ln in item_lines(x, inner + "    ")]
                sub[0] = f"{inner}  - - " + sub[0][len(inner) + 6 :]
                lines += sub
        else:
            lines.append(f"{inner}{key}: {flow(value)}")
    lines += [f"{pad}  {k}: {flow(v)}" for k, v in item.items() if k != kind]
    return lines


def to_text(data: dict[str, Any], header: str = "") -> str:
    """The spec as YAML: top-level settings as usual, one line per layer (residual: and
    parallel: blocks over several lines, their layers one line each)."""
    import yaml

    top = {k: v for k, v in data.items() if k not in ("define", "layers")}
    text = header + yaml.safe_dump(top, sort_keys=False, default_flow_style=None, width=100)
    if data.get("define"):
        text += "define:\n"
        for name, block in data["define"].items():
            text += f"  {name}:\n    params: {flow(block['params'])}\n    layers:\n"
            text += "".join(ln + "\n" for r in block["layers"] for ln in item_lines(r, "      "))
    text += "layers:\n" + "".join(ln + "\n" for r in data["layers"] for ln in item_lines(r, "  "))
    return text


def _define_name(kind: str, rows: list[dict], taken: set[str]) -> str:
    parts = [kind, "bn"] + ([rows[2]["act"]] if len(rows) == 3 else [])
    base = "_".join(parts)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name
