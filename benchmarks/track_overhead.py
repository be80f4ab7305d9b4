"""Tracking overhead: specs/small_resnet.yaml trained with and without MLflow tracking, one run.

Starts a real ``mlflow server`` (SQLite backend, its own artifact folder, a free port), then
trains the same spec without and with ``--track`` (``--repeats`` pairs, each run in a fresh
process, the order alternated pair by pair: plain first, then tracked first, ...) and prints per
run:

- ``train_s``: metrics.json ``train_time_s``, the epochs' batches themselves (validation and the
  end-of-epoch callbacks excluded): what the 3 % target is about;
- ``img_s``: metrics.json ``images_per_s`` (steady epochs, the first left out);
- ``cpu_s``: the training process's CPU seconds (user + system, every thread: the sending
  thread's work and the ``mlflow`` import included; the server's own CPU is not: a team's
  server runs elsewhere);
- ``send_cpu_s`` (tracked runs): the sending thread's own CPU seconds while training ran (its
  parameters and per-epoch metrics; ``track.json``), shown as a share of ``train_s``: the most
  tracking can take from the epochs, and a figure a loaded machine barely moves;
- ``wall_s``: the whole command, and ``rest_s`` = wall - train: start (imports, data, model)
  and end (evaluation, model.keras, and for a tracked run the upload of its files), reported
  apart from the per-epoch figure.

Then per measure the median of the pairs' ratios tracked / plain and the ratio of the best of
each. Before the runs it times what tracking puts on the training thread: the parameters
computed before training and the per-epoch callback (a queue put).

    python benchmarks/track_overhead.py --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "small_resnet.yaml"
sys.path.insert(0, str(ROOT / "tests"))


def start_server(folder: Path):
    from _servers import MlflowServer  # the tests' server: fails with its log when it cannot

    return MlflowServer(folder).start()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(out: Path, epochs: int, track: str | None) -> dict:
    cmd = [sys.executable, "-m", "cnnspec.cli", "train", str(SPEC), "--epochs", str(epochs)]
    cmd += ["--out", str(out), "--quiet"] + (["--track", track] if track else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    m = json.loads((out / "metrics.json").read_text())
    if track and not (out / "track.json").is_file():  # written once everything was sent
        sys.exit(f"the tracked run {out} did not finish sending (no track.json)")
    train_s = m["train_time_s"]
    run = {"train_s": train_s, "img_s": m["images_per_s"], "cpu_s": cpu, "wall_s": wall,
           "rest_s": wall - train_s}  # fmt: skip
    if track:  # the sending thread's own CPU seconds while training ran (track.json)
        sent = json.loads((out / "track.json").read_text()).get("sender_cpu_s", {})
        run["send_cpu_s"] = sent.get("training", float("nan"))
    return run


def thread_costs() -> None:
    """What tracking runs on the training thread, timed here (no server needed)."""
    from cnnspec.spec import load_spec
    from cnnspec.track import content, epoch_logger
    from cnnspec.track.mlflow_log import Sender

    spec = load_spec(SPEC, ["train.track.mlflow.uri=http://127.0.0.1:1"])
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        params = content.start_params(spec)
    begin = (time.perf_counter() - t0) / n
    sender = Sender(uri="http://127.0.0.1:1", experiment="x", run_name="x")  # never started
    callback = epoch_logger(sender)
    logs = {"loss": 0.5, "accuracy": 0.9, "top3": 0.99, "val_loss": 0.4, "val_accuracy": 0.91}
    logs.update(val_top3=0.99, lr=0.003)
    n = 2000
    t0 = time.perf_counter()
    for epoch in range(n):
        callback.on_epoch_end(epoch, logs)
    per_epoch = (time.perf_counter() - t0) / n
    print(
        f"training thread: parameters before training {begin * 1e3:.1f} ms once "
        f"({len(params)} parameters); per epoch {per_epoch * 1e6:.1f} us (the epoch logger)",
        flush=True,
    )


def report(plain: list[dict], tracked: list[dict]) -> None:
    for what in ("train_s", "img_s", "cpu_s", "wall_s"):
        pairs = [t[what] / p[what] for p, t in zip(plain, tracked, strict=True)]
        best = max if what == "img_s" else min
        ratio = best(r[what] for r in tracked) / best(r[what] for r in plain)
        cost = (1 / ratio - 1) if what == "img_s" else ratio - 1  # + = tracking costs more
        print(
            f"{what}: tracked/plain median of pairs {statistics.median(pairs):.3f} "
            f"(pairs {', '.join(f'{r:.3f}' for r in pairs)}); best of each {ratio:.3f} "
            f"(overhead {cost:+.1%})"
        )
    shares = [t["send_cpu_s"] / t["train_s"] for t in tracked]
    print(
        f"sending thread CPU while training / the epochs' time: median {statistics.median(shares):.2%}"
        f" (runs {', '.join(f'{s:.2%}' for s in shares)}): the most tracking can take from"
        " training, a CPU figure that load barely moves"
    )
    diffs = [t["rest_s"] - p["rest_s"] for p, t in zip(plain, tracked, strict=True)]
    print(
        f"rest_s (start + end, outside the epochs): tracked - plain median "
        f"{statistics.median(diffs):+.2f} s (pairs {', '.join(f'{d:+.2f}' for d in diffs)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    thread_costs()
    with tempfile.TemporaryDirectory(prefix="track-bench-") as tmp:
        tmp = Path(tmp)
        server = start_server(tmp / "mlflow")
        plain, tracked = [], []
        try:
            for i in range(args.repeats):  # interleaved, order alternated: load hits both alike
                order = [(plain, None), (tracked, server.uri)]
                for runs, uri in order if i % 2 == 0 else order[::-1]:
                    name = "tracked" if uri else "plain"
                    runs.append(train(tmp / f"{name}{i}", args.epochs, uri))
                print(f"pair {i}: plain {_show(plain[-1])} | tracked {_show(tracked[-1])}")
                print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)
        finally:
            server.stop()  # the server and its workers: its own process group
    report(plain, tracked)


def _show(run: dict) -> str:
    return " ".join(f"{k} {v:.2f}" if k != "img_s" else f"{k} {v:.0f}" for k, v in run.items())


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # the finally above stops the server
    main()
