"""Seeded fuzzing of the data side (issue 15): mutated CSV manifests and a mutated disk cache.

Every case must end as data that loads and reads, or as one RunError line (exit 1): never
another exception (the CLI's "internal error"), never a hang (rows are stat-ed, never opened
before they are known to be regular files), never unbounded memory (sizes are bounded first).
In-process calls: the whole file runs in well under a minute on 2 loaded cores.
"""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest
from test_data_rows import images

from cnnspec.data import load_data
from cnnspec.data.batches import labelled_batches
from cnnspec.errors import RunError

SHAPE = (8, 8, 1)
MANIFEST_CASES = 24
CACHE_CASES = 5


def _read_all(data) -> int:
    names = [n for n in ("train", "val", "test") if data.sizes.get(n)]
    return sum(len(y) for _, _, y in labelled_batches(data, names, SHAPE, 8, what="reading"))


def outcome(source, **kwargs) -> str:
    """'ok' or 'refused'; anything else fails the test with the case's source."""
    try:
        data = load_data(str(source), SHAPE, validation_split=0.25, test_split=0.25, **kwargs)
        assert _read_all(data) == sum(data.sizes.values())
        return "ok"
    except RunError as exc:
        assert "\n" not in str(exc) and str(exc).strip(), repr(str(exc))
        return "refused"


def _rows_mutations(tmp):
    os.mkfifo(tmp / "pipe.png")
    (tmp / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # a header, then nothing
    weird = [
        "/dev/zero", "/dev/null", "pipe.png", "p", "p/a", "p/a/0\0.png", "big.png", "../" * 40,
        "x" * 5000, "/proc/self/status", "p/a/missing.png", "\ufeffp/a/0.png", "p/a/0.png\r",
        '"p/a/0.png"', "p/a/0.png,extra", "²", "", " ", "p/b/0.png",
    ]  # fmt: skip
    labels = ["a", "b", "²", "", "1", "10", "\ufeff", "a,b", '"', "x" * 300]

    def mutate(rows: list[list[str]], rng: random.Random, harmless: bool) -> list[list[str]]:
        rows = [list(r) for r in rows]
        if harmless:  # still a good manifest: a relabelled class, an extra column
            rows[rng.randrange(len(rows))].append("note")
            return [[r[0], {"a": "1", "b": "10"}[r[1]], *r[2:]] for r in rows]
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(rows))
            op = rng.randrange(6)
            if op == 0:
                rows[i][0] = rng.choice(weird)
            elif op == 1:
                rows[i][1] = rng.choice(labels)
            elif op == 2:
                rows.append(list(rows[i]))  # a repeated row
            elif op == 3:
                rows.append([rows[i][0], "b" if rows[i][1] == "a" else "a"])  # two labels
            elif op == 4:
                del rows[i][rng.randrange(len(rows[i]))]
            else:
                rows[i].append(rng.choice(weird))
        return rows

    return mutate


def _encode(rows: list[list[str]], rng: random.Random, damage: bool = True) -> bytes:
    text = "".join(",".join(r) + "\n" for r in rows).encode("utf-8", "surrogateescape")
    if not damage:
        return text
    if rng.random() < 0.3:  # raw byte damage: a bad UTF-8 byte, a NUL, a cut
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice([b"\xff", b"\0", b'"', b"\r", b""]) + text[pos + 1 :]
    if rng.random() < 0.2:
        text = b"\xef\xbb\xbfpath,label\n" + text
    return text


def test_mutated_manifests_load_or_are_refused_in_one_line(tmp_path):
    images(tmp_path / "p")
    good = [[f"p/{c}/{i}.png", c] for c in "ab" for i in range(4)]
    mutate = _rows_mutations(tmp_path)
    seen = {"ok": 0, "refused": 0}
    for case in range(MANIFEST_CASES):
        rng = random.Random(case)
        path = tmp_path / f"m{case}.csv"
        harmless = case % 8 == 0
        rows = mutate(good, rng, harmless)
        path.write_bytes(_encode(rows, rng, damage=not harmless))
        try:
            seen[outcome(path, cache="none")] += 1
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - the failure this test exists to find
            pytest.fail(f"case {case} ({path.read_bytes()[:300]!r}): {type(exc).__name__}: {exc}")
    assert seen["refused"] > MANIFEST_CASES // 3, seen  # the mutations really bite
    assert seen["ok"] >= 1, seen


def _damage_cache(entry, rng: random.Random) -> str:
    files = sorted(p for p in entry.iterdir())
    target = rng.choice(files)
    op = rng.randrange(5)
    raw = target.read_bytes()
    if op == 0 and raw:
        target.write_bytes(raw[: rng.randrange(len(raw))])
        return f"truncate {target.name}"
    if op == 1 and raw:
        i = rng.randrange(len(raw))
        target.write_bytes(raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1 :])
        return f"flip a bit of {target.name}"
    if op == 2:
        target.unlink()
        return f"delete {target.name}"
    if op == 3:
        info = entry / "info.json"
        if info.exists():
            meta = json.loads(info.read_text())
            meta[rng.choice(sorted(meta))] = rng.choice([None, 0, "x", [], {"a": 1}, 10**30])
            info.write_text(json.dumps(meta))
        return "edit info.json"
    target.write_bytes(os.urandom(rng.randrange(1, 200)))
    return f"garbage {target.name}"


def test_a_mutated_disk_cache_is_rebuilt_or_refused_never_misread(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSPEC_CACHE", str(tmp_path / "cache"))
    root = images(tmp_path / "p")
    one = {"validation_split": 0, "test_split": 0}  # one split, one cache entry: faster
    first = load_data(str(root), SHAPE, cache="disk", **one)
    want = np.concatenate([y for _, _, y in labelled_batches(first, ["train"], SHAPE, 8, what="r")])
    entries = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    pristine = tmp_path / "pristine"
    shutil.copytree(tmp_path / "cache", pristine)
    for case in range(CACHE_CASES):
        rng = random.Random(1000 + case)
        shutil.rmtree(tmp_path / "cache")
        shutil.copytree(pristine, tmp_path / "cache")
        what = _damage_cache(rng.choice(entries), rng)
        try:
            data = load_data(str(root), SHAPE, cache="disk", echo=lambda s: None, **one)
            got = [y for _, _, y in labelled_batches(data, ["train"], SHAPE, 8, what="r")]
        except RunError:
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {case} ({what}): {type(exc).__name__}: {exc}")
        assert np.array_equal(np.concatenate(got), want), f"case {case} ({what}) misread"
