#!/usr/bin/env bash
# GPU truth: `cnnspec train specs/resnet50.yaml` end to end on a synthetic JPEG folder (auto
# settings, 2 short epochs) and, in the same run, keras.applications.ResNet50 with the same
# recipe written by hand; prints images/s of both, their ratio (target >= 0.97) and peak GPU
# memory. See benchmarks/train_gpu.py and docs/gpu.md.
#
#   benchmarks/gpu_check.sh                         # a GPU machine: 10,000 JPEGs, batch 256
#   benchmarks/gpu_check.sh --smoke                 # any machine (CPU): 64 JPEGs, 64x64, batch 8
#   benchmarks/gpu_check.sh --json gpu_check.json   # also keep the figures
#
# Needs: pip install -e '.[gpu]' on a CUDA machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# Memory as used, not TensorFlow's up-front reservation of the whole GPU (both runs alike).
export TF_FORCE_GPU_ALLOW_GROWTH=${TF_FORCE_GPU_ALLOW_GROWTH:-true}

date -u +"%Y-%m-%d %H:%M UTC"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi: running on what TensorFlow finds"
"$PY" -c "import tensorflow as tf; print('TensorFlow', tf.__version__, 'GPUs:', tf.config.list_physical_devices('GPU'))" 2>/dev/null
exec "$PY" benchmarks/train_gpu.py "$@"
