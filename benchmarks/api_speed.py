"""The Python API's spec side (issue 20), as a ratio measured in one run:

`import cnnspec; cnnspec.load("specs/resnet152.yaml").params` (a fresh process) /
`import tensorflow` (a fresh process), interleaved, median of 5 each: target <= 0.10
(the `cnnspec validate` ratio of benchmarks/spec_speed.py).

Run: .venv/bin/python benchmarks/api_speed.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
API = "import cnnspec; print(cnnspec.load('specs/resnet152.yaml').params)"
TF = "import tensorflow"


def once(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT, env=ENV)
    return time.perf_counter() - t


def main(reps: int = 5) -> None:
    once(API), once(TF)  # warm the file cache for both
    api, tf = [], []
    for _ in range(reps):  # interleaved: a load change hits both
        api.append(once(API))
        tf.append(once(TF))
    a, t = statistics.median(api), statistics.median(tf)
    print(
        f"import cnnspec + load resnet152 + .params: {a:.3f} s   import tensorflow: {t:.3f} s   "
        f"ratio {a / t:.3f} (target <= 0.10)"
    )


if __name__ == "__main__":
    main()
