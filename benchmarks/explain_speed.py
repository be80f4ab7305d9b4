"""What cnnspec explain costs, as ratios measured in one run.

    python benchmarks/explain_speed.py [--repeats 3] [--skip-resnet]

1. Occlusion, batched (cnnspec's way: the occluded copies go through the model in chunks) vs the
   plain way (one forward call per occluded copy), on a small 32x32 CNN, patch 4, stride 1
   (841 copies). Both produce the same map (checked).
2. Grad-CAM on ResNet-50 (specs/resnet50.yaml, random weights: they do not change the cost) at
   224x224, one image: its cost over one forward pass ``model(x)`` of the same image.

Medians of ``--repeats`` timed calls after one warm-up call each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SMALL = """
name: small
input: [32, 32, 1]
layers:
  - conv: 3x3, 16, p=same, relu
  - conv: 3x3, 16, p=same, relu
  - maxpool: 2x2
  - conv: 3x3, 32, p=same, relu
  - gmaxpool
  - dense: 3, softmax
"""


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (tracing, allocation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_dir(text: str, folder: Path) -> Path:
    """A run-like folder (model.keras + spec.yaml) of an untrained spec."""
    from cnnspec.build import build_model
    from cnnspec.spec import loads_spec

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(text)
    build_model(loads_spec(text)).save(folder / "model.keras")
    return folder


def occlusion_case(tmp: Path, repeats: int) -> None:
    from cnnspec.explain import Options, get_method, open_explainable
    from cnnspec.explain.occlusion import windows

    target = open_explainable(run_dir(SMALL, tmp / "small"))
    x = np.random.default_rng(0).uniform(0, 255, (32, 32, 1)).astype(np.float32)
    opts = Options(patch=4, stride=1, fill=0.0)
    wins = windows((32, 32), 4, 1)

    def one_per_copy():
        base = target.forward_once(x[None])[0, 1]
        drops = []
        for w in wins:
            copy = x.copy()
            copy[w] = 0.0
            drops.append(base - target.forward_once(copy[None])[0, 1])
        return drops

    batched_map = get_method("occlusion").explain(target, x, 1, opts)
    plain = np.asarray(one_per_copy(), np.float32)
    total = np.zeros((32, 32), np.float32)
    count = np.zeros((32, 32), np.float32)
    for w, d in zip(wins, plain, strict=True):
        total[w] += d
        count[w] += 1
    same = np.abs(total / count - batched_map.map).max()
    t_batched = timed(lambda: get_method("occlusion").explain(target, x, 1, opts), repeats)
    t_plain = timed(one_per_copy, repeats)
    print(
        f"occlusion, 32x32 CNN, {len(wins)} copies: batched {t_batched * 1e3:.0f} ms, "
        f"one call per copy {t_plain * 1e3:.0f} ms -> {t_plain / t_batched:.1f}x faster "
        f"(max map difference {same:.1e})"
    )


def gradcam_case(tmp: Path, repeats: int) -> None:
    from cnnspec.build import build_model
    from cnnspec.explain import Options, get_method
    from cnnspec.explain.source import Explainable, spec_spatial_layers
    from cnnspec.spec import load_spec

    model = build_model(load_spec(ROOT / "specs" / "resnet50.yaml"))
    spatial, aliases = spec_spatial_layers(None, model)
    names = [str(i) for i in range(1000)]
    target = Explainable(tmp / "resnet50", "keras", (224, 224, 3), names, model, None, spatial)
    target.aliases.update(aliases)
    x = np.random.default_rng(0).uniform(0, 255, (224, 224, 3)).astype(np.float32)
    gradcam = get_method("gradcam")
    t_forward = timed(lambda: np.asarray(model(x[None], training=False)), repeats)
    t_cam = timed(lambda: gradcam.explain(target, x, 0, Options()), repeats)
    layer = gradcam.explain(target, x, 0, Options()).extras["layer"]
    print(
        f"Grad-CAM, ResNet-50 224x224 (layer {layer}): forward {t_forward * 1e3:.0f} ms, "
        f"Grad-CAM {t_cam * 1e3:.0f} ms -> {t_cam / t_forward:.2f}x one forward pass"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-resnet", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        occlusion_case(Path(tmp), args.repeats)
        if not args.skip_resnet:
            gradcam_case(Path(tmp), args.repeats)


if __name__ == "__main__":
    main()
