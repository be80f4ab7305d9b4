"""Make an imported spec compact, second pass: merges as blocks, repeats as defines and times:.

1. **Blocks.** A merge (add, multiply, concat) whose inputs are chains of layers that each
   read one layer and feed only the next, all starting at one layer F (or F itself), is one
   item reading F: a two-input add is ``residual:`` (its first input the shortcut, as Keras'
   ``Add([shortcut, x])``; an activation that only it feeds becomes the residual's ``act:``),
   any other merge ``parallel:`` (so squeeze-and-excitation is a ``parallel:`` multiply).
   Repeated until nothing changes, so inner blocks (an SE inside an MBConv) fold first.
2. **Defines.** Blocks of the same structure, innermost first, become uses of one generated
   ``define:``; every value that differs between the uses is a parameter (one parameter for
   values that are equal in every use; ``${k*n}`` for a value that is always k times another),
   whose default is its most common value.
3. **times:** consecutive identical items become one item with ``times: N``.

Names are dropped where nothing reads them by name: ``init:`` pairs an unnamed layer with the
source's by structure (same kind, same order, same shapes), which the import checks before
writing (:mod:`cnnspec.importer.check`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .compact import kind_of

MERGES = ("add", "multiply", "concat")
BLOCK_KINDS = ("residual", "parallel")
#: Leaves that are never parameters (the structure of a block, not its settings).
_FIXED_KEYS = ("merge", "shortcut")


def explicit_inputs(rows: list[dict]) -> list[list[str]]:
    """Each row's inputs written out (a row without from: reads the row before it)."""
    out, previous = [], "input"
    for row in rows:
        ref = row.get("from", previous)
        out.append([ref] if isinstance(ref, str) else list(ref))
        previous = row.get("name", previous)
    return out


def with_froms(rows: list[dict], inputs: list[list[str]]) -> list[dict]:
    """The rows with from: written only where a row does not read the one before it."""
    out, previous = [], "input"
    for row, ins in zip(rows, inputs, strict=True):
        row = {k: v for k, v in row.items() if k != "from"}
        if ins != [previous]:
            row["from"] = ins[0] if len(ins) == 1 else ins
        out.append(row)
        previous = row["name"]
    return out


def _bare(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("name", "from")}


def _collapse_once(rows: list[dict], ins: list[list[str]]) -> tuple[list, list] | None:
    index = {row["name"]: i for i, row in enumerate(rows)}
    readers = Counter(ref for refs in ins for ref in refs)
    for m, row in enumerate(rows):
        kind = kind_of(row)
        if kind not in MERGES or len(ins[m]) < 2 or row[kind]:
            continue
        branches, forks = [], set()
        for ref in ins[m]:
            chain: list[int] = []
            cur = ref
            while cur in index and readers[cur] == 1 and len(ins[index[cur]]) == 1:
                chain.insert(0, index[cur])
                cur = ins[index[cur]][0]
            branches.append(chain)
            forks.add(cur)
        if len(forks) != 1 or sum(1 for b in branches if not b) > 1:
            continue
        fork = forks.pop()
        last, act = m, None
        nxt = m + 1
        if (
            nxt < len(rows)
            and readers[row["name"]] == 1
            and kind_of(rows[nxt]) == "act"
            and ins[nxt] == [row["name"]]
        ):
            last, act = nxt, rows[nxt]["act"]
        lists = [[_bare(rows[i]) for i in chain] for chain in branches]
        if kind == "add" and len(lists) == 2:
            short, body = lists if lists[1] else lists[::-1]
            block = {"body": body, "shortcut": short or "identity", "act": act}
            item = {"residual": block, "name": rows[last]["name"]}
        else:
            block = {"merge": kind, "branches": lists}
            if act is not None:
                block["act"] = act
            item = {"parallel": block, "name": rows[last]["name"]}
        gone = {i for chain in branches for i in chain} | set(range(m, last + 1))
        new_rows, new_ins = [], []
        for i, (r, refs) in enumerate(zip(rows, ins, strict=True)):
            if i == m:
                new_rows.append(item)
                new_ins.append([fork])
            elif i not in gone:
                new_rows.append(r)
                new_ins.append(refs)
        return new_rows, new_ins
    return None


def collapse(rows: list[dict]) -> list[dict]:
    """Every foldable merge as one residual:/parallel: item (see the module's docstring)."""
    ins = explicit_inputs(rows)
    while (step := _collapse_once(rows, ins)) is not None:
        rows, ins = step
    return with_froms(rows, ins)


def drop_unread_names(rows: list[dict], defines: dict[str, Any]) -> list[dict]:
    """Rows without the names that no from: reads, but for a single layer written once (its
    source's name: init: pairs it by name, and an auto name such as conv_1 could be another
    source layer's name)."""
    read = {r for row in rows for r in explicit_refs(row)}

    def keep(row: dict) -> bool:
        kind = kind_of(row)
        return row["name"] in read or (
            "times" not in row and kind not in defines and kind not in BLOCK_KINDS
        )

    return [{k: v for k, v in row.items() if k != "name" or keep(row)} for row in rows]


def explicit_refs(row: dict) -> list[str]:
    ref = row.get("from")
    return [ref] if isinstance(ref, str) else list(ref or [])


# --- defines ---------------------------------------------------------------------------------


def _is_leaf(v: Any) -> bool:
    return not isinstance(v, (dict, list))


def _signature(v: Any, key: str = "") -> Any:
    if isinstance(v, dict):
        return tuple((k, _signature(x, k)) for k, x in v.items())
    if isinstance(v, list):
        return ("[", *(_signature(x, key) for x in v))
    # None is never a parameter (a define's null parameter means "required").
    return repr(v) if key in _FIXED_KEYS or v is None else "*"


def _leaves(v: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    if isinstance(v, dict):
        return [leaf for k, x in v.items() for leaf in _leaves(x, (*path, k))]
    if isinstance(v, list):
        return [leaf for i, x in enumerate(v) for leaf in _leaves(x, (*path, i))]
    return [(path, v)]


def _put(v: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(v, dict):
        return {**v, head: _put(v[head], rest, value)}
    return [_put(x, rest, value) if i == head else x for i, x in enumerate(v)]


def _param_name(path: tuple, taken: set[str]) -> str:
    key = next((str(k) for k in reversed(path) if isinstance(k, str)), "v")
    key = {"shape": "c", "rate": "rate", "n_K": "n"}.get(key, key)
    if not key.isidentifier() or key in ("i",):
        key = "v"
    name, n = key, 2
    while name in taken:
        name, n = f"{key}{n}", n + 1
    return name


def _multiple(values: list, of: list) -> int | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values + of):
        return None
    if not all(of) or any(v % o for v, o in zip(values, of, strict=True)):
        return None
    ks = {v // o for v, o in zip(values, of, strict=True)}
    return ks.pop() if len(ks) == 1 and next(iter(ks)) > 1 else None


def template(items: list[dict]) -> tuple[dict, dict, list[dict]]:
    """(the define's params, its one item with ``$p`` in place of what varies, each use's
    arguments) of blocks of one signature."""
    leaves = [_leaves(item) for item in items]
    body = items[0]
    params: dict[str, Any] = {}
    args: list[dict] = [{} for _ in items]
    by_values: dict[str, list] = {}
    for j, (path, _) in enumerate(leaves[0]):
        values = [lv[j][1] for lv in leaves]
        if len({repr(v) for v in values}) == 1:
            continue
        same = next((p for p, vs in by_values.items() if repr(vs) == repr(values)), None)
        if same is not None:
            body = _put(body, path, f"${same}")
            continue
        times = next(
            ((p, k) for p, vs in by_values.items() if (k := _multiple(values, vs)) is not None),
            None,
        )
        if times is not None:
            body = _put(body, path, f"${{{times[1]}*{times[0]}}}")
            continue
        name = _param_name(path, set(params))
        common = Counter(repr(v) for v in values).most_common(1)[0][0]
        params[name] = next(v for v in values if repr(v) == common)
        by_values[name] = values
        body = _put(body, path, f"${name}")
        for a, v in zip(args, values, strict=True):
            a[name] = v  # all written: uses compare equal; trim_args leaves defaults out
    return params, body, args


def _block_items(value: Any, height: int, out: list) -> int:
    """The items (dicts with a block kind) of ``height`` nested blocks below, collected into
    ``out`` as (container, index); returns the height of ``value``."""
    if isinstance(value, list):
        top = 0
        for i, x in enumerate(value):
            h = _block_items(x, height, out)
            if isinstance(x, dict) and any(k in BLOCK_KINDS for k in x) and h == height:
                out.append((value, i))
            top = max(top, h)
        return top
    if isinstance(value, dict):
        inner = max((_block_items(x, height, out) for x in value.values()), default=0)
        return inner + (1 if any(k in BLOCK_KINDS for k in value) else 0)
    return 0


def _define_name(item: dict, taken: set[str]) -> str:
    kind = kind_of(item)
    block = item[kind]
    if kind == "residual":
        base = "residual_block" if block["shortcut"] == "identity" else "projection_block"
    else:
        first = next((b[0] for b in block["branches"] if b), {})
        base = "se" if block["merge"] == "multiply" and "gavgpool" in first else "branches"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def define_blocks(rows: list[dict], taken: set[str]) -> dict[str, Any]:
    """Blocks of one structure used twice or more -> uses of one define (rows edited in
    place), innermost blocks first; the new defines."""
    defines: dict[str, Any] = {}
    height = 1
    while True:
        found: list[tuple[list, int]] = []
        top = _block_items(rows, height, found)
        groups: dict[Any, list[tuple[list, int]]] = {}
        for container, i in found:
            groups.setdefault(_signature(_bare(container[i])), []).append((container, i))
        replaced = False
        for members in groups.values():
            if len(members) < 2:
                continue
            replaced = True
            items = [_bare(c[i]) for c, i in members]
            params, body, args = template(items)
            name = _define_name(items[0], taken)
            taken.add(name)
            defines[name] = {"params": params, "layers": [body]}
            for (container, i), given in zip(members, args, strict=True):
                extra = {k: v for k, v in container[i].items() if k in ("name", "from")}
                container[i] = {name: given, **extra}
        # A block whose inner blocks became uses is now lower: look again from the bottom.
        height = 1 if replaced else height + 1
        if height > top:
            return defines


def repeat(rows: list[dict], read: set[str]) -> list[dict]:
    """Consecutive identical items (no from:, no name that a from: reads) -> one item with
    ``times: N`` and no name."""
    out: list[dict] = []
    for row in rows:
        prev = out[-1] if out else None
        free = "from" not in row and row.get("name") not in read
        if (
            prev is not None
            and free
            and "from" not in prev
            and prev.get("name") not in read
            and _bare({k: v for k, v in prev.items() if k != "times"}) == _bare(row)
        ):
            prev["times"] = prev.get("times", 1) + 1
            prev.pop("name", None)
        else:
            out.append(dict(row))
    return out


def _map_uses(value: Any, defines: dict[str, Any], fn) -> Any:
    if isinstance(value, list):
        return [_map_uses(x, defines, fn) for x in value]
    if isinstance(value, dict):
        out = {k: _map_uses(v, defines, fn) for k, v in value.items()}
        for name in defines:
            if isinstance(out.get(name), dict):
                out[name] = fn(out[name], defines[name]["params"])
        return out
    return value


def fill_args(rows: list[dict], defines: dict[str, Any]) -> list[dict]:
    """Every use of a define with all its arguments written (so equal uses compare equal)."""
    return _map_uses(rows, defines, lambda given, params: {**params, **given})


def trim_args(value: Any, defines: dict[str, Any]) -> Any:
    """Every use of a define without the arguments equal to their default."""
    return _map_uses(
        value,
        defines,
        lambda given, params: {
            k: v for k, v in given.items() if k not in params or repr(v) != repr(params[k])
        },
    )


def compact_blocks(rows: list[dict], defines: dict[str, Any]) -> tuple[dict, list[dict]]:
    """(all defines, rows): merges as blocks, repeated blocks as defines, repeats as times:."""
    rows = fill_args(collapse(rows), defines)
    new = define_blocks(rows, set(defines) | {r.get("name", "") for r in rows})
    defines = {**defines, **new}
    rows = trim_args(rows, defines)
    for block in new.values():
        block["layers"] = trim_args(block["layers"], defines)
    read = {r for row in rows for r in explicit_refs(row)}
    return defines, drop_unread_names(repeat(rows, read), defines)
