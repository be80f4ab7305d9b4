"""How long the CLI takes to refuse what it can refuse without TensorFlow, against the import of
TensorFlow itself, measured in the same run (issue 14.10).

    python benchmarks/refusal_speed.py [--repeats 3]

Each refusal is a fresh ``python cli.py ...`` process (what a user waits for); the baseline is a
fresh ``python -c "import tensorflow"``. Printed: the median seconds of each and its ratio to the
baseline (below 1: the refusal came before the import).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _seconds(cmd: list[str], repeats: int, expect: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT)
        times.append(time.perf_counter() - started)
        if proc.returncode != expect:
            sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}, expected {expect}\n{proc.stderr}")
    return statistics.median(times)


def _fixtures(tmp: Path) -> dict[str, tuple[list[str], int]]:
    """A tiny run directory, an export already there, a zip bomb, an image."""
    import keras
    import numpy as np
    from PIL import Image

    run = tmp / "run"
    run.mkdir()
    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
    keras.Model(inp, out).save(run / "model.keras")
    meta = {"name": "tiny", "input_shape": [8, 8, 1], "class_names": ["a", "b", "c"]}
    (run / "meta.json").write_text(json.dumps(meta))
    (run / "export").mkdir()
    (run / "export" / "tiny.onnx").write_bytes(b"an earlier export")
    bomb = tmp / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", bytes(64 * 1024**2))
    image = tmp / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    spec = str(ROOT / "specs" / "lenet5.yaml")
    return {
        "train --set train.epoch=5 (did you mean)": (["train", spec, "--set", "train.epoch=5"], 2),
        "export to an existing default path": (["export", str(run), "-f", "onnx"], 1),
        "predict a zip-bomb model": (["predict", str(bomb), str(image)], 1),
        "evaluate a zip-bomb model": (["evaluate", str(bomb), "-o", str(tmp / "c.png")], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = _fixtures(Path(tmp))
        base = _seconds([sys.executable, "-c", "import tensorflow"], args.repeats, 0)
        print(f"baseline: python -c 'import tensorflow'  {base:6.2f} s  (median of {args.repeats})")
        for name, (argv, code) in cases.items():
            cmd = [sys.executable, str(ROOT / "cli.py"), *argv]
            t = _seconds(cmd, args.repeats, code)
            print(f"{name:45s} {t:6.2f} s  {t / base:5.2f}x the TensorFlow import")


if __name__ == "__main__":
    main()
