"""Inference latency of each export format, as ratios against Keras in the same run.

    python benchmarks/export_latency.py [SPEC_OR_RUN] [--repeats 50]

SPEC_OR_RUN is a run directory (its trained model) or a spec YAML (built untrained: weights do
not change latency); default specs/lenet5.yaml. Every format is exported with ``cnnspec export``
(so it is verified), then timed with its own runtime on batches of 1 and 32 raw images; the median
of ``--repeats`` calls is reported, with the ratio to Keras' ``model(x)`` (lower is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CASES = [
    ("keras", None, "m.keras"),
    ("savedmodel", None, "m_savedmodel"),
    ("tflite", None, "m.tflite"),
    ("tflite", "float16", "m_f16.tflite"),
    ("tflite", "dynamic", "m_dyn.tflite"),
    ("onnx", None, "m.onnx"),
]


def _run_dir_from_spec(spec_path: Path, out: Path) -> Path:
    from cnnspec.build import build_model
    from cnnspec.spec import load_spec
    from cnnspec.versions import Versions

    spec = load_spec(spec_path)
    model = build_model(spec)
    run = out / "run"
    run.mkdir()
    model.save(run / "model.keras")
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    meta = {
        "name": spec.name,
        "input_shape": shape,
        "class_names": [str(i) for i in range(int(model.outputs[0].shape[-1]))],
        "preprocess": None,
        "versions": Versions.current().to_dict(),
    }
    (run / "meta.json").write_text(json.dumps(meta))
    return run


def _median_ms(fn, x, repeats: int) -> float:
    fn(x)  # warm-up (graph tracing, allocation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="specs/lenet5.yaml")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    import numpy as np

    from cnnspec.export import export_model, sample_inputs
    from cnnspec.export.runtime import open_model

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(args.source)
        run = src if src.is_dir() else _run_dir_from_spec(src, Path(tmp))
        rows = []
        for fmt, quantize, name in CASES:
            try:
                r = export_model(
                    run,
                    fmt,
                    Path(tmp) / name,
                    quantize=quantize,
                    tolerance=1.0 if quantize else None,
                )
            except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
                print(f"{fmt} {quantize or ''}: export failed: {exc}")
                continue
            runtime, meta = open_model(r.path)
            timings = []
            for batch in (1, 32):
                x = sample_inputs(meta["input_shape"], batch)
                timings.append(_median_ms(runtime.predict, x, args.repeats))
            rows.append((fmt + (f"/{quantize}" if quantize else ""), r, timings))
        base = rows[0][2]
        print(
            f"{'format':18} {'size':>10} {'max|diff|':>10} {'b=1 ms':>8} {'ratio':>6} "
            f"{'b=32 ms':>8} {'ratio':>6}"
        )
        for label, r, (t1, t32) in rows:
            print(
                f"{label:18} {r.size_bytes / 1024:>8.0f}Ki {r.max_abs_diff:>10.2g} "
                f"{t1:>8.3f} {t1 / base[0]:>6.3f} {t32:>8.3f} {t32 / base[1]:>6.3f}"
            )
        print(f"(median of {args.repeats}; source {args.source}; numpy {np.__version__})")


if __name__ == "__main__":
    main()
