"""The Python API's spec side (issue 20), as a ratio measured in one run:

`import cnnspec; cnnspec.load("specs/resnet152.yaml").params` (a fresh process) /
`import tensorflow` (a fresh process), interleaved, median of 5 each: target <= 0.10
(the `cnnspec validate` ratio of benchmarks/spec_speed.py, measured beside it here).

Run: .venv/bin/python benchmarks/api_speed.py [REPS]
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
VALIDATE = "from cnnspec.cli import main; main(['validate', 'specs/resnet152.yaml'])"


def once(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT, env=ENV)
    return time.perf_counter() - t


def main(reps: int = 5) -> None:
    once(API), once(TF)  # warm the file cache for both
    api, tf, validate = [], [], []
    for _ in range(reps):  # interleaved: a load change hits all three
        api.append(once(API))
        tf.append(once(TF))
        validate.append(once(VALIDATE))
    a, t, v = statistics.median(api), statistics.median(tf), statistics.median(validate)
    print(
        f"import cnnspec + load resnet152 + .params: {a:.3f} s   import tensorflow: {t:.3f} s   "
        f"ratio {a / t:.3f} (target <= 0.10)\n"
        f"cnnspec validate resnet152 (the CLI's baseline): {v:.3f} s   ratio {v / t:.3f}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)  # reps
