"""Fuzz: mutated copies of every shipped spec are validated or refused cleanly (issue 9).

A seeded mutator (byte flips, control characters, invalid UTF-8, line deletions, duplications
and swaps, indentation shifts, token swaps, number blow-ups, YAML syntax, alias bombs, deep
nesting, truncation, hostile ``--set``) makes each case from one spec in ``specs/``. Every case
must end as ``cnnspec validate`` exit 0 (an ``ok`` line) or exit 2 with every line located
(``file:line:col``, ``--set ...``, or another file such as a backbone), never an internal error,
within :data:`CASE_SECONDS` each, in a process limited to :data:`MEMORY_BYTES`.

CI runs ``CNNSPEC_FUZZ_CASES`` cases (default 100, ~15 s on 2 cores). A longer run on demand::

    CNNSPEC_FUZZ_CASES=20000 CNNSPEC_FUZZ_SEED=7 .venv/bin/pytest -q tests/test_fuzz.py
    .venv/bin/python tests/test_fuzz.py --cases 20000 --seed 7        # the same, directly
    .venv/bin/python tests/test_fuzz.py --seed 7 --case 1234 --write case.yaml   # one case
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
CASES = int(os.environ.get("CNNSPEC_FUZZ_CASES", "100"))
SEED = int(os.environ.get("CNNSPEC_FUZZ_SEED", "0"))
#: Wall-clock limit of one case (a spec that hangs validation fails the test).
CASE_SECONDS = 10
#: Address-space limit of the fuzzing process (a blow-up is a MemoryError, reported).
MEMORY_BYTES = 3 * 2**30

_WORDS = [
    b"conv", b"dense", b"residual", b"block", b"times", b"from", b"name", b"input", b"layers",
    b"define", b"heads", b"train", b"relu", b"rleu", b"gap", b"Conv2D", b"same", b"valid",
    b"true", b"yes", b"null", b"~", b"-1", b"0", b"1e38", b"3x3", b"0x3", b"${n/0}", b"$n",
    b"${n**n**n}", b"2024-01-01", b".nan", b"-.inf", b"identity", b"monitor", b"val_los",
]  # fmt: skip
_NUMBERS = [
    b"0", b"-1", b"-7", b"1e38", b"1" + b"0" * 300, b"9" * 5000, b"2147483648", b"100000",
    b"3.5", b".nan", b".inf", b"true", b"1e-300", b"0x10", b"99999999999",
]  # fmt: skip
_SYNTAX = [
    b"[", b"]", b"{", b"}", b":", b": ", b"- ", b"'", b'"', b"#", b"&a ", b"*a", b"*zz",
    b"<<: *a", b"!!python/object:os.system ", b"!!binary ", b"? ", b"|", b">", b",", b"%YAML 1.1",
    b"---", b"...", b"\t", b"\\",
]  # fmt: skip
_CONTROL = [bytes([c]) for c in (0, 1, 7, 8, 11, 12, 27, 127)] + [
    b"\x80", b"\xc3", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe2\x80\xa8", b"\xed\xa0\x80",
]  # fmt: skip
_BOMB = b"l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"l%d: &l%d [" % (i, i) + b", ".join([b"*l%d" % (i - 1)] * 10) + b"]\n" for i in range(1, 9)
)


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """One seeded mutation case: (new file bytes, --set overrides)."""
    overrides: list[str] = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(14)
        lines = _lines(data)
        i = rng.randrange(len(lines))
        pos = rng.randrange(len(data) + 1)
        if op == 0:  # byte flip
            data = data[:pos] + bytes([rng.randrange(256)]) + data[pos + 1 :]
        elif op == 1:  # control character / bad UTF-8
            data = data[:pos] + rng.choice(_CONTROL) + data[pos:]
        elif op == 2 and len(lines) > 1:  # line deletion
            del lines[i]
            data = b"\n".join(lines)
        elif op == 3:  # line duplication (also repeats keys: duplicate-key errors)
            lines.insert(i, lines[i])
            data = b"\n".join(lines)
        elif op == 4:  # line swap
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        elif op == 5:  # indentation shift
            lines[i] = (
                b" " * rng.choice((1, 2, 4)) + lines[i] if rng.random() < 0.5 else lines[i][2:]
            )
            data = b"\n".join(lines)
        elif op == 6:  # token swap
            tokens = re.split(rb"(\W+)", data)
            words = [k for k, t in enumerate(tokens) if t.strip() and t[:1].isalnum()]
            if len(words) > 1:
                a, b = rng.sample(words, 2)
                tokens[a], tokens[b] = tokens[b], tokens[a]
                data = b"".join(tokens)
        elif op == 7:  # number blow-up
            numbers = list(re.finditer(rb"(?<![\w.])\d+(?:\.\d+)?", data))
            if numbers:
                m = rng.choice(numbers)
                data = data[: m.start()] + rng.choice(_NUMBERS) + data[m.end() :]
        elif op == 8:  # a word replaced by a kind, keyword or hostile value
            words = list(re.finditer(rb"[A-Za-z_]\w*", data))
            if words:
                m = rng.choice(words)
                data = data[: m.start()] + rng.choice(_WORDS) + data[m.end() :]
        elif op == 9:  # YAML syntax
            data = data[:pos] + rng.choice(_SYNTAX) + data[pos:]
        elif op == 10:  # truncation
            data = data[:pos]
        elif op == 11:  # an alias bomb or deep nesting at the top
            data = rng.choice((_BOMB, b"x: " + b"[" * 3000 + b"]" * 3000 + b"\n")) + data
        elif op == 12:  # times: blow-up on some layer line
            layer = [k for k, line in enumerate(lines) if line.lstrip().startswith(b"- ")]
            if layer:
                k = rng.choice(layer)
                indent = len(lines[k]) - len(lines[k].lstrip()) + 2
                count = rng.choice((b"0", b"-1", b"1000000000", b"2.5", b"yes", b"100001"))
                lines.insert(k + 1, b" " * indent + b"times: " + count)
                data = b"\n".join(lines)
        else:  # a hostile --set
            key = rng.choice(
                ["a.b", "layers.0.times", "layers.0", "train.epochs", "input", "layers.-1.dense",
                 "train.early_stopping.monitor", "name", "layers.999", "train.optimizer.lr"]
            )  # fmt: skip
            value = rng.choice(["1", "-1", "1000000000", "x", "[1, 2", "{a: 1}", ".nan", "''"])
            overrides.append(f"{key}={value}")
    return data, overrides


def _case(seed: int, index: int) -> tuple[Path, bytes, list[str]]:
    spec = SPECS[index % len(SPECS)]
    rng = random.Random(f"{seed}:{index}")
    data, overrides = mutate(spec.read_bytes(), rng)
    return spec, data, overrides


class _Timeout(BaseException):
    """A case ran past CASE_SECONDS (a BaseException: the CLI's catch-all must not eat it)."""


def _alarm(signum, frame):
    raise _Timeout


def check(path: Path, overrides: list[str]) -> str:
    """Run ``cnnspec validate`` on one case in-process; '' when it behaved, else why not."""
    from cnnspec.cli import main

    out, err = io.StringIO(), io.StringIO()
    args = ["validate", str(path)] + [a for o in overrides for a in ("--set", o)]
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
    except _Timeout:
        return f"took more than {CASE_SECONDS} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - started
    text = err.getvalue()
    if rc == 0:
        return "" if out.getvalue().startswith(f"ok {path}") else f"exit 0 without ok: {out!r}"
    if rc != 2:
        return f"exit {rc} ({seconds:.1f} s): {text.strip()[:300]}"
    lines = text.strip().splitlines()
    if not lines:
        return "exit 2 without a message"
    for line in lines:
        if "internal error" in line or "Traceback" in line:
            return line[:300]
        m = re.match(r"^(--set [^:]*|[^:]+?)(:\d+:\d+)?: \S", line)
        if m is None:
            return f"not located: {line[:300]}"
        # Only refusals of the whole file may lack a line (not UTF-8 is located too).
        whole_file = re.search(r"(regular file|bytes, more than|is empty|not found)", line)
        if m.group(1) == str(path) and not m.group(2) and not whole_file:
            return f"no line:col: {line[:300]}"
    return ""


def run(cases: int, seed: int, first: int = 0) -> list[dict]:
    """Run ``cases`` cases from index ``first``; the failures, with how to reproduce each."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for other in (ROOT / "specs").iterdir():  # backbones and data beside the specs
            if other.suffix != ".yaml":
                (folder / other.name).symlink_to(other)
        for index in range(first, first + cases):
            spec, data, overrides = _case(seed, index)
            path = folder / spec.name
            path.write_bytes(data)
            why = check(path, overrides)
            if why:
                failures.append(
                    {
                        "spec": spec.name,
                        "case": index,
                        "seed": seed,
                        "overrides": overrides,
                        "why": why,
                        "repro": f"python tests/test_fuzz.py --seed {seed} --case {index} "
                        "--write case.yaml",
                    }
                )
    return failures


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def test_mutated_specs_validate_or_fail_located():
    """Every mutated spec: exit 0 or 2, located, in time and memory (subprocess, limited)."""
    result = subprocess.run(
        [sys.executable, __file__, "--cases", str(CASES), "--seed", str(SEED), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        preexec_fn=_limit_memory,
        timeout=60 + CASES * CASE_SECONDS,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cases"] == CASES
    assert report["failures"] == [], json.dumps(report["failures"][:10], indent=1)


def test_mutator_is_deterministic_and_mutates():
    a = [_case(3, i) for i in range(40)]
    b = [_case(3, i) for i in range(40)]
    assert a == b
    changed = sum(data != spec.read_bytes() or bool(sets) for spec, data, sets in a)
    assert changed >= 36  # a few mutations may cancel out (e.g. a swap of equal lines)


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=CASES)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--case", type=int, help="run this one case (index)")
    parser.add_argument("--write", help="with --case: write its file here and print its --set")
    parser.add_argument("--json", action="store_true", help="print one JSON report line")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.case is not None and args.write:
        spec, data, overrides = _case(args.seed, args.case)
        Path(args.write).write_bytes(data)
        print(f"{spec.name} -> {args.write}; --set: {overrides}")
        return 0
    first, count = (args.case, 1) if args.case is not None else (0, args.cases)
    started = time.perf_counter()
    failures = run(count, args.seed, first)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"cases": count, "seconds": round(seconds, 1), "failures": failures}))
    else:
        for f in failures:
            print(f"{f['spec']} case {f['case']}: {f['why']}\n  {f['repro']}")
        print(f"{count} cases, {len(failures)} failures, {seconds:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_main())
