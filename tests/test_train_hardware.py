"""Every choice a GPU resolves to, run through `cnnspec train` on this CPU.

``CNNSPEC_ASSUME_GPU`` makes ``hardware.setup`` resolve as on a machine with that GPU (compute
capability, count) while TensorFlow runs on the CPU, so the settings a GPU user gets (float16
with loss scaling, XLA, determinism off, MirroredStrategy, multi-worker) are trained here: one
short epoch of LeNet-5 each, a finite loss, more than chance accuracy and a loadable model.keras
whose softmax computes in float32. They run in fresh processes (logical devices, collectives
and op determinism are fixed for the life of a TensorFlow process), in an order that keeps each
case what it claims to be; the pure resolution table is checked without TensorFlow.
"""

from __future__ import annotations

import functools
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")
ONE_EPOCH = ["--epochs", "1", "--set", "train.steps_per_epoch=8", "--quiet"]


def _one_worker() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = {"worker": [f"127.0.0.1:{port}"]}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})


# id, environment, --set overrides, what metrics.json must report. Run in this order in one
# fresh process: mirrored first (the CPU is split into logical devices before TensorFlow
# starts), determinism-off runs before the first deterministic one (TensorFlow has no switch
# back, and Keras silently drops XLA while op determinism is on).
CASES = [
    ("two-gpus-mirrored", {"CNNSPEC_ASSUME_GPU": "2x8.0", "CNNSPEC_LOGICAL_CPUS": "2"}, [],
     {"precision": "mixed_float16", "jit_compile": False, "deterministic": False,
      "distribute": "mirrored", "replicas": 2, "loss_scaling": True}),
    ("gpu-auto", {"CNNSPEC_ASSUME_GPU": "8.0"}, [],
     {"precision": "mixed_float16", "jit_compile": True, "deterministic": False,
      "distribute": "none", "replicas": 1, "loss_scaling": True}),
    # the two commands of the bug report (issue 8), on the CPU
    ("cpu-jit-on", {}, ["train.jit_compile=on"],
     {"precision": "float32", "jit_compile": True, "deterministic": False, "loss_scaling": False}),
    ("cpu-deterministic-off", {}, ["train.deterministic=off"],
     {"precision": "float32", "jit_compile": False, "deterministic": False}),
    ("gpu-deterministic", {"CNNSPEC_ASSUME_GPU": "8.0"}, ["train.deterministic=on"],
     {"precision": "mixed_float16", "jit_compile": False, "deterministic": True,
      "distribute": "none", "loss_scaling": True}),
    ("cpu-mixed-on", {}, ["train.mixed_precision=on"],
     {"precision": "mixed_bfloat16", "jit_compile": False, "deterministic": True,
      "distribute": "none", "loss_scaling": False}),
]  # fmt: skip

# One process, one `cnnspec train` (cnnspec.cli.main) per case, each with its own environment.
DRIVER = """
import json, os, sys
from cnnspec.cli import main
for name, env, args in json.loads(sys.argv[1]):
    for key in ("CNNSPEC_ASSUME_GPU", "CNNSPEC_LOGICAL_CPUS"):
        os.environ.pop(key, None)
    os.environ.update(env)
    print(f"case {name}: exit {main(['train', *args])}", flush=True)
"""

COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16", "float32": "float32"}


def _args(run: Path, sets: list[str]) -> list[str]:
    args = [LENET, "--out", str(run), *ONE_EPOCH]
    for s in sets:
        args += ["--set", s]
    return args


def _run(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard: six trainings in one process, ~90 s each on a loaded box
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@functools.cache
def digit_batch() -> np.ndarray:
    """64 test images of digits at LeNet-5's input (read once for every case checked)."""
    from cnnspec.data import load_data

    data = load_data("digits", (32, 32, 1))
    return next(data.split("test").batch(64).as_numpy_iterator())[0].astype("float32")


def check_run(run: Path, expected: dict, assumed: bool) -> None:
    """A finished one-epoch run as the resolution says: hardware, finite loss, float32 softmax."""
    import keras

    metrics = json.loads((run / "metrics.json").read_text())
    hardware = metrics["hardware"]
    assert {k: hardware[k] for k in expected} == expected, hardware
    # an assumed GPU is never passed off as a real one
    assert ("resolved as" in hardware["device"]) == assumed, hardware
    assert metrics["status"] == "completed" and metrics["epochs_done"] == 1
    assert math.isfinite(metrics["train"]["loss"])
    assert metrics["test"]["accuracy"] > 0.25  # 8 steps of LeNet-5: well above chance (0.1)

    model = keras.saving.load_model(run / "model.keras")
    assert model.layers[-1].compute_dtype == "float32"  # the softmax
    compute = COMPUTE[expected["precision"]]
    assert any(layer.compute_dtype == compute for layer in model.layers[1:-1])
    probs = model(digit_batch(), training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    probs = np.asarray(probs)
    assert np.all(np.isfinite(probs)) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.slow
def test_cnnspec_train_under_every_resolution_a_gpu_gives(tmp_path):
    plan = [(name, env, _args(tmp_path / name, sets)) for name, env, sets, _ in CASES]
    out = _run(["-c", DRIVER, json.dumps(plan)], {})
    for name, env, _, expected in CASES:
        assert f"case {name}: exit 0" in out, out[-3000:]
        check_run(tmp_path / name, expected, assumed="CNNSPEC_ASSUME_GPU" in env)


@pytest.mark.slow
def test_multi_worker_under_a_gpu_resolution(tmp_path):
    """The custom distributed step with float16 and loss scaling (one worker on loopback)."""
    run = tmp_path / "run"
    # The watchdog's bound covers the first step (its tracing takes ~50 s on a loaded box): a
    # bound for a hang, not a timing (it was 60 s).
    env = {"CNNSPEC_ASSUME_GPU": "8.0", "TF_CONFIG": _one_worker(), "CNNSPEC_WORKER_TIMEOUT": "300"}
    out = _run([str(ROOT / "cli.py"), "train", *_args(run, [])], env)
    assert "distribute multi_worker" in out
    expected = {"precision": "mixed_float16", "jit_compile": False, "deterministic": False,
                "distribute": "multi_worker", "loss_scaling": True}  # fmt: skip
    check_run(run, expected, assumed=True)


# (gpus, compute capability, recipe settings) -> (precision, jit, deterministic, distribute)
RESOLUTIONS = [
    (1, (8, 0), {}, ("mixed_float16", True, False, "none")),
    (1, (6, 1), {}, ("float32", True, False, "none")),
    (1, (6, 1), {"mixed_precision": "on"}, ("mixed_float16", True, False, "none")),
    (1, (8, 0), {"deterministic": "on"}, ("mixed_float16", False, True, "none")),
    (1, (8, 0), {"mixed_precision": "off"}, ("float32", True, False, "none")),
    (4, (9, 0), {}, ("mixed_float16", False, False, "mirrored")),
    (0, None, {}, ("float32", False, True, "none")),
    (0, None, {"mixed_precision": "on"}, ("mixed_bfloat16", False, True, "none")),
    (0, None, {"jit_compile": "on"}, ("float32", True, False, "none")),
]


@pytest.mark.parametrize(("gpus", "cc", "settings", "expected"), RESOLUTIONS)
def test_resolve_table(gpus, cc, settings, expected):
    """The table in docs/training.md (pure: no TensorFlow)."""
    from cnnspec.spec.train import TrainSpec
    from cnnspec.train.hardware import resolve

    hw = resolve(TrainSpec(**settings), gpus=gpus, compute_capability=cc)
    assert (hw.policy, hw.jit, hw.deterministic, hw.distribute) == expected


@pytest.mark.parametrize("value", ["banana", "8", "0x8.0", "8.0x2"])
def test_a_bad_assumed_gpu_is_one_line(tmp_path, monkeypatch, capsys, value):
    monkeypatch.setenv("CNNSPEC_ASSUME_GPU", value)
    assert main(["train", LENET, "--out", str(tmp_path / "run"), *ONE_EPOCH]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CNNSPEC_ASSUME_GPU is not valid" in err, err
    assert repr(value) in err and "Hint: use CNNSPEC_ASSUME_GPU=8.0" in err
