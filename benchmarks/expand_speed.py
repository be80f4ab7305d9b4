"""The expander on hostile input, as ratios against loading a small spec in the same run.

Each hostile spec must be refused in about the time a small spec takes to load (the limits are
checked before the work: no 3.5 GB ``times: 1000000000``, no endless ``${n**n**n}``), and a scaled
family member (EfficientNet-B7, 755 layers) loads in about the time of ResNet-152 (515 layers).

Run: .venv/bin/python benchmarks/expand_speed.py
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from pathlib import Path

from cnnspec.errors import SpecError
from cnnspec.spec import load_spec, loads_spec

ROOT = Path(__file__).resolve().parent.parent
HEAD = "name: t\ninput: [16, 16, 1]\npreprocess: none\n"
NESTED = (
    HEAD
    + "define:\n"
    + "".join(f"  d{k}:\n    layers:\n      - d{k + 1}:\n        times: 10\n" for k in range(7))
    + "  d7:\n    layers:\n      - bn\nlayers:\n  - d0:\n    times: 10\n  - flatten\n"
)
HOSTILE = {
    "times: 1000000000": HEAD + "layers:\n  - conv: 3x3, 4, p=same\n    times: 1000000000\n",
    "nested defines, 10**8 layers": NESTED,
    "${n**n**n}": HEAD
    + "define:\n  b:\n    params: {n: 10}\n    layers:\n      - conv: 3x3, ${n**n**n}\n"
    + "layers:\n  - b\n  - flatten\n",
}


def timed(fn, reps: int = 5) -> tuple[float, float]:
    """Median seconds of ``fn()`` and the peak MiB it allocates (a separate, traced run)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(times), peak


def refuse(text: str):
    def run() -> None:
        try:
            loads_spec(text)
        except SpecError:
            return
        raise AssertionError("accepted")

    return run


def main() -> None:
    base, base_mem = timed(lambda: load_spec(ROOT / "specs" / "lenet5.yaml"))
    print(f"baseline: load lenet5.yaml {base * 1e3:.1f} ms, peak {base_mem:.1f} MiB")
    for name, text in HOSTILE.items():
        t, mem = timed(refuse(text))
        print(f"refuse {name!r}: {t * 1e3:.1f} ms ({t / base:.2f}x lenet5), peak {mem:.1f} MiB")
    r152, r152_mem = timed(lambda: load_spec(ROOT / "specs" / "resnet152.yaml"), 3)
    b7, b7_mem = timed(lambda: load_spec(ROOT / "specs" / "efficientnet.yaml", scale="b7"), 3)
    print(
        f"load resnet152 {r152 * 1e3:.0f} ms ({r152_mem:.0f} MiB), efficientnet --scale b7 "
        f"{b7 * 1e3:.0f} ms ({b7_mem:.0f} MiB), ratio {b7 / r152:.2f}"
    )


if __name__ == "__main__":
    main()
