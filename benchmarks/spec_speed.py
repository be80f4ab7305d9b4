"""Spec-side speed, as ratios measured in one run (issue: spec language and builder).

1. `cnnspec validate specs/resnet152.yaml` (a fresh process) / `python -c "import tensorflow"`
   (a fresh process): target <= 0.10.
2. Building ResNet-50 from its spec / keras.applications.ResNet50(weights=None), same process,
   alternating, median of several builds: target <= 1.2.

Run: .venv/bin/python benchmarks/spec_speed.py
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


def wall(cmd: list[str], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=ENV)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    validate = wall([sys.executable, "cli.py", "validate", "specs/resnet152.yaml"], 5)
    import_tf = wall([sys.executable, "-c", "import tensorflow"], 5)
    print(
        f"validate resnet152: {validate:.3f} s   import tensorflow: {import_tf:.3f} s   "
        f"ratio {validate / import_tf:.3f} (target <= 0.10)"
    )

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras

    from cnnspec.build import build_model
    from cnnspec.spec import load_spec

    spec = load_spec(ROOT / "specs" / "resnet50.yaml")
    ours, ref = [], []
    build_model(spec)  # warm-up both paths (first Keras use pays one-off costs)
    keras.applications.ResNet50(weights=None)
    for _ in range(5):
        keras.backend.clear_session()
        t = time.perf_counter()
        build_model(spec)
        ours.append(time.perf_counter() - t)
        keras.backend.clear_session()
        t = time.perf_counter()
        keras.applications.ResNet50(weights=None)
        ref.append(time.perf_counter() - t)
    o, r = statistics.median(ours), statistics.median(ref)
    print(
        f"build ResNet-50 from spec: {o:.3f} s   keras.applications.ResNet50: {r:.3f} s   "
        f"ratio {o / r:.3f} (target <= 1.2)"
    )


if __name__ == "__main__":
    main()
