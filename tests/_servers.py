"""Real servers the tests start themselves (PostgreSQL from the pgserver wheel, ``mlflow server``).

A server that cannot start is a test FAILURE naming the reason (CI included: ``.ci/run`` does not
set CI), unless CNNSPEC_ALLOW_SKIP=1 allows a skip on a machine that cannot run it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ALLOW_SKIP = "CNNSPEC_ALLOW_SKIP"


def unavailable(what: str, reason: str) -> None:
    """Fail (default) or skip (CNNSPEC_ALLOW_SKIP=1 and not in CI) because ``what`` won't start."""
    text = f"{what} could not be started: {reason}"
    if os.environ.get(ALLOW_SKIP) == "1" and not os.environ.get("CI"):
        pytest.skip(text)
    pytest.fail(f"{text} (set {ALLOW_SKIP}=1 to skip this locally)", pytrace=False)


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A real PostgreSQL server (pgserver: PostgreSQL binaries from pip) for the block; yields
    its URL for SQLAlchemy with psycopg 3 (``postgresql+psycopg://``, over a Unix socket).

    Its data folder is a fresh folder in the system temp dir, not pytest's tmp_path: run as
    root, pgserver runs PostgreSQL as its own user, which cannot enter pytest's 0700 folders
    (and a Unix socket path must stay under ~100 characters).
    """
    try:
        import pgserver
    except ImportError as exc:
        unavailable("PostgreSQL", f"{exc} (pip install pgserver, in the dev extra)")
    folder = Path(tempfile.mkdtemp(prefix="cnnspec-pg-"))
    try:
        try:
            server = pgserver.get_server(folder, cleanup_mode="stop")
        except Exception as exc:  # noqa: BLE001 - any start failure is reported as the reason
            unavailable("PostgreSQL", f"{type(exc).__name__}: {exc}")
        try:
            # get_uri(): postgresql://postgres:@/postgres?host=<socket folder>
            yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` as a subprocess with its own SQLite backend and artifact folder."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = folder / "mlflow-server.log"

    def start(self, timeout: float = 300) -> MlflowServer:
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination", str(folder / "artifacts"),
            "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
        ]  # fmt: skip
        try:
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
        except OSError as exc:
            unavailable("mlflow server", str(exc))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                unavailable("mlflow server", f"exited {self.proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        unavailable("mlflow server", f"no /health answer in {timeout:.0f} s: {self.tail()}")
        return self

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill the server and its workers (its own process group)."""
        import signal

        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
