#!/usr/bin/env bash
# One short GPU check: ResNet-50 training images/s at batch 256, float32 vs mixed precision vs
# mixed precision + XLA, each in its own process (the policy and XLA are process-wide).
#
#   benchmarks/gpu_check.sh                     # ResNet-50, batch 256, 50 timed steps
#   SPEC=specs/lenet5.yaml BATCH=32 STEPS=20 benchmarks/gpu_check.sh   # a CPU smoke test
#
# Needs: pip install -e '.[gpu]' on a CUDA machine. Prints one JSON line per setting, then the
# speed-ups. "mixed" is mixed_float16 on GPUs of compute capability >= 7 (bfloat16 elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
SPEC=${SPEC:-specs/resnet50.yaml}
BATCH=${BATCH:-256}
STEPS=${STEPS:-50}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: running on what TensorFlow finds"
"$PY" -c "import tensorflow as tf; print('TensorFlow', tf.__version__, 'GPUs:', tf.config.list_physical_devices('GPU'))" 2>/dev/null

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for setting in "float32 off" "mixed off" "mixed on"; do
  set -- $setting
  "$PY" benchmarks/train_gpu.py --spec "$SPEC" --batch "$BATCH" --steps "$STEPS" \
    --precision "$1" --jit "$2" 2>/dev/null | tail -n 1 | tee -a "$out"
done
"$PY" - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
base = rows[0]["images_per_s"]
for r in rows:
    print(f"{r['spec']} batch {r['batch']} {r['policy']:>15} jit {r['jit']:>3}: "
          f"{r['images_per_s']:>9,.0f} images/s  x{r['images_per_s'] / base:.2f}")
PY
