"""How a run uses the machine: precision, XLA, determinism and the tf.distribute strategy.

``auto`` resolves from what is measured on TensorFlow 2.21 / Keras 3.15 (docs/training.md):

- mixed precision: ``mixed_float16`` on a GPU of compute capability >= 7; off without a GPU
  (float16 without XLA is unusably slow on CPU, bfloat16 only matches float32 speed there).
  ``on`` without a GPU means ``mixed_bfloat16``.
- jit_compile (XLA): on with a GPU, a single replica and no op determinism; off on CPU (XLA is
  1.5-2x slower there) and under a strategy (explicit jit under a strategy fails).
- deterministic: op determinism on without a GPU (seeded reruns give bit-identical weights).
- distribute: multi_worker when TF_CONFIG is set, mirrored with several GPUs, else none.

Everything here must run before TensorFlow executes its first op (logical devices, collective
ops and determinism are fixed at context start), so ``setup()`` is the first thing a run does.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunError
from ..spec.train import TrainSpec

LOGICAL_CPUS_ENV = "CNNSPEC_LOGICAL_CPUS"  # split the CPU into N devices (mirrored on a CPU)
WORKER_TIMEOUT_ENV = "CNNSPEC_WORKER_TIMEOUT"  # seconds a worker waits for its peers
# Resolve as on a GPU machine while running on the CPU ("8.0": one GPU of compute capability
# 8.0, "2x8.0": two), so that CI runs every choice a GPU resolves to (docs/training.md).
ASSUME_GPU_ENV = "CNNSPEC_ASSUME_GPU"


@dataclass
class Hardware:
    """The resolved choices of a run."""

    gpus: int = 0
    compute_capability: tuple[int, int] | None = None
    policy: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16
    jit: bool = False
    deterministic: bool = True
    distribute: str = "none"  # none | mirrored | multi_worker
    strategy: Any = None
    replicas: int = 1
    worker_index: int = 0
    workers: int = 1
    devices: list[str] = field(default_factory=list)
    watchdog: Any = None  # multi-worker: ends a worker whose peers never come
    assumed: bool = False  # resolved for CNNSPEC_ASSUME_GPU's GPUs, running on the CPU
    loss_scaling: bool = False  # set by the trainer from the optimizer it compiled

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    def describe(self) -> dict[str, Any]:
        device = f"{self.gpus} GPU" if self.gpus else "CPU"
        if self.assumed:
            device = f"CPU resolved as {device} (cc {self.compute_capability}, {ASSUME_GPU_ENV})"
        return {
            "device": device,
            "compute_capability": self.compute_capability,
            "precision": self.policy,
            "jit_compile": self.jit,
            "deterministic": self.deterministic,
            "distribute": self.distribute,
            "replicas": self.replicas,
            "workers": self.workers,
            "loss_scaling": self.loss_scaling,
        }


def split_cpu(n: int) -> None:
    """Make the CPU appear as ``n`` logical devices (before any TensorFlow op runs)."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as exc:  # already initialised: fine if it already has n devices
        if len(tf.config.list_logical_devices("CPU")) != n:
            raise RunError(
                f"cannot split the CPU into {n} devices after TensorFlow started: {exc}"
            ) from None


def tf_config() -> dict[str, Any] | None:
    """The parsed TF_CONFIG environment variable, or None."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        index = int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(
            f"TF_CONFIG is not valid: {exc}",
            hint='use {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}',
        ) from None
    return {"workers": list(workers), "index": index, "type": config["task"].get("type", "worker")}


def detect_gpus() -> tuple[int, tuple[int, int] | None]:
    """(number of GPUs, compute capability of the first) without starting TensorFlow."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return 0, None
    details = tf.config.experimental.get_device_details(gpus[0])
    return len(gpus), details.get("compute_capability")


def assumed_gpus(text: str) -> tuple[int, tuple[int, int]]:
    """Parse CNNSPEC_ASSUME_GPU: ``8.0`` (one GPU, compute capability 8.0) or ``2x8.0``."""
    match = re.fullmatch(r"\s*(?:([1-9][0-9]{0,2})\s*x\s*)?([0-9]{1,2})\.([0-9])\s*", text)
    if match is None:
        raise RunError(
            f"{ASSUME_GPU_ENV} is not valid, received {text!r}",
            hint=f"use {ASSUME_GPU_ENV}=8.0 (one GPU of compute capability 8.0) or 2x8.0 (two)",
        )
    count, major, minor = match.groups()
    return int(count or 1), (int(major), int(minor))


def resolve(recipe: TrainSpec, *, gpus: int, compute_capability=None, cluster=None) -> Hardware:
    """Resolve the recipe's auto/on/off choices for a machine (pure: no TensorFlow calls)."""
    hw = Hardware(gpus=gpus, compute_capability=compute_capability)

    dist = recipe.distribute
    if dist == "auto":
        dist = "multi_worker" if cluster else ("mirrored" if gpus > 1 else "none")
    if dist == "multi_worker" and not cluster:
        raise RunError(
            "distribute: multi_worker needs the TF_CONFIG environment variable",
            hint="set TF_CONFIG for every worker process (docs/training.md), or use distribute: auto",
        )
    hw.distribute = dist
    if cluster:
        hw.workers, hw.worker_index = len(cluster["workers"]), cluster["index"]

    if recipe.jit_compile == "on" and dist != "none":
        raise RunError(
            f"jit_compile: on does not work under distribute: {dist} (TensorFlow 2.21)",
            hint="use jit_compile: auto (off under a strategy) or distribute: none",
        )
    if recipe.jit_compile == "on" and recipe.deterministic == "on":
        raise RunError(
            "jit_compile: on and deterministic: on exclude each other (op determinism disables XLA)",
            hint="choose one, or leave one of them on auto",
        )
    if recipe.deterministic == "auto":
        hw.deterministic = gpus == 0 and recipe.jit_compile != "on"
    else:
        hw.deterministic = recipe.deterministic == "on"
    if recipe.jit_compile == "auto":
        hw.jit = gpus > 0 and dist == "none" and not hw.deterministic
    else:
        hw.jit = recipe.jit_compile == "on"

    capable = gpus > 0 and (compute_capability or (0, 0)) >= (7, 0)
    if recipe.mixed_precision == "auto":
        hw.policy = "mixed_float16" if capable else "float32"
    elif recipe.mixed_precision == "on":
        hw.policy = "mixed_float16" if gpus else "mixed_bfloat16"
    return hw


def setup(recipe: TrainSpec) -> Hardware:
    """Resolve the choices for this machine and apply them (policy, determinism, strategy)."""
    import keras
    import tensorflow as tf

    n_cpus = int(os.environ.get(LOGICAL_CPUS_ENV, "0") or 0)
    if n_cpus > 1:
        split_cpu(n_cpus)
    assume = os.environ.get(ASSUME_GPU_ENV, "").strip()
    gpus, cc = assumed_gpus(assume) if assume else detect_gpus()
    hw = resolve(recipe, gpus=gpus, compute_capability=cc, cluster=tf_config())
    hw.assumed = bool(assume)

    if hw.distribute == "multi_worker":
        from .multiworker import Watchdog

        timeout = float(os.environ.get(WORKER_TIMEOUT_ENV, "300"))
        # A missing peer blocks inside TensorFlow (where even SIGTERM is not handled): a
        # watchdog thread ends the worker; the trainer cancels it after the first step.
        hw.watchdog = Watchdog(
            timeout,
            f"cnnspec: worker {hw.worker_index} gave up: its peers did not join within "
            f"{timeout:g} s. Hint: start every worker listed in TF_CONFIG (or raise "
            f"{WORKER_TIMEOUT_ENV}).",
        ).start()
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        hw.strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    elif hw.distribute == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        hw.strategy = tf.distribute.MirroredStrategy(devices)
    else:
        hw.strategy = tf.distribute.get_strategy()
    # After the strategy: MultiWorkerMirroredStrategy must configure the runtime first.
    keras.utils.set_random_seed(recipe.seed)
    if hw.deterministic:
        tf.config.experimental.enable_op_determinism()
    # Off is TensorFlow's default. TF 2.21 has no public switch back (disable_op_determinism
    # is gone from tf.config.experimental), so a process that already ran a deterministic
    # run stays deterministic: slower on a GPU, never wrong.
    keras.mixed_precision.set_global_policy(hw.policy)
    hw.replicas = hw.strategy.num_replicas_in_sync
    if hw.distribute != "none":
        hw.devices = list(hw.strategy.extended.worker_devices)
    return hw
