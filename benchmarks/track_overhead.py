"""Tracking overhead: specs/small_resnet.yaml trained with and without MLflow tracking, one run.

Starts a real ``mlflow server`` (SQLite backend, its own artifact folder, a free port), then
trains the same spec alternately without and with ``--track`` (``--repeats`` pairs, each in a
fresh process) and prints the training time (metrics.json ``train_time_s``: the epochs
themselves) and the wall time of each, and the ratio tracked / plain of the best of each.

    python benchmarks/track_overhead.py --epochs 3 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "small_resnet.yaml"


def start_server(folder: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = open(folder / "server.log", "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(1200):
        if proc.poll() is not None:
            sys.exit(f"mlflow server exited: see {folder / 'server.log'}")
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.25)
    sys.exit("mlflow server did not answer /health")


def train(out: Path, epochs: int, track: str | None) -> dict:
    cmd = [sys.executable, "-m", "cnnspec.cli", "train", str(SPEC), "--epochs", str(epochs)]
    cmd += ["--out", str(out), "--quiet"] + (["--track", track] if track else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    return {"train_s": metrics["train_time_s"], "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="track-bench-") as tmp:
        tmp = Path(tmp)
        proc, uri = start_server(tmp)
        try:
            plain, tracked = [], []
            for i in range(args.repeats):  # interleaved: machine load hits both alike
                plain.append(train(tmp / f"plain{i}", args.epochs, None))
                tracked.append(train(tmp / f"tracked{i}", args.epochs, uri))
                print(f"pair {i}: plain {plain[-1]}  tracked {tracked[-1]}", flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
    for what in ("train_s", "wall_s"):
        p = min(r[what] for r in plain)
        t = min(r[what] for r in tracked)
        print(f"{what}: plain {p:.2f} s, tracked {t:.2f} s, ratio {t / p:.3f} ({(t / p - 1):+.1%})")


if __name__ == "__main__":
    main()
