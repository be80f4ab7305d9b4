"""init: and import speed (issue 17), each against the plain way, in one run.

1. Loading init: weights into specs/resnet50.yaml from a keras.applications.ResNet50 .keras file
   (plan: index + matching, then h5py reads and assigns) vs Keras' own ``load_weights`` of the
   same file into the same architecture. Target: <= 1.2x.
2. ``cnnspec import`` of a ResNet-152 .keras file + building the imported spec vs building
   specs/resnet152.yaml. Target: < 2x.

    .venv/bin/python benchmarks/init_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import keras

    from cnnspec.build import build_model
    from cnnspec.commands.import_cmds import read_source
    from cnnspec.importer import import_text
    from cnnspec.init import apply
    from cnnspec.spec import load_spec, loads_spec

    tmp = Path(tempfile.mkdtemp(prefix="cnnspec-init-bench-"))
    r50 = tmp / "resnet50.keras"
    keras.applications.ResNet50(weights=None).save(r50)
    spec = load_spec(ROOT / "specs" / "resnet50.yaml", [f"init.from='{r50}'"])
    ours_model = build_model(spec)
    keras_model = keras.applications.ResNet50(weights=None)
    t_keras = best(lambda: keras_model.load_weights(r50), args.repeats)
    t_ours = best(lambda: apply(ours_model, spec), args.repeats)
    print(
        f"init: ResNet-50 weights  keras load_weights {t_keras:.2f} s   init: {t_ours:.2f} s   "
        f"ratio {t_ours / t_keras:.2f}x (target <= 1.2x)"
    )

    r152 = tmp / "resnet152.keras"
    keras.applications.ResNet152(weights=None).save(r152)

    def from_spec():
        keras.backend.clear_session()
        build_model(load_spec(ROOT / "specs" / "resnet152.yaml"))

    def imported():  # what `cnnspec import` does (read, convert, compact, check), then build
        keras.backend.clear_session()
        config, weights = read_source(str(r152), None)
        build_model(loads_spec(import_text(config, weights, str(r152))[0]))

    t_spec = best(from_spec, args.repeats)
    t_import = best(imported, args.repeats)
    print(
        f"import: ResNet-152  build from spec {t_spec:.2f} s   import + build {t_import:.2f} s   "
        f"ratio {t_import / t_spec:.2f}x (target < 2x)"
    )


if __name__ == "__main__":
    main()
