"""Processes the tests start: free ports, polling with a deadline, and the real agent
under uvicorn (``python -m neuros``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from neuros.auth.admin_token import bearer
from tests.support.agent import add_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 15.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    details: Callable[[], str] = lambda: "",
) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. On timeout the
    AssertionError carries ``details()`` (last answers, logs)."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{details()}".rstrip())


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serves(process: subprocess.Popen[bytes], url: str, log: Callable[[], str]) -> bool:
    """True once ``url`` answers 200; fails at once, with the log, if the process died."""
    if process.poll() is not None:
        raise AssertionError(f"{process.args!r} exited early:\n{log()}")
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class LiveAgent:
    """``python -m neuros`` in a subprocess, as deployed. ``token`` (every scope, every
    user) is in ``tokens_file``; ``headers`` carry it."""

    db_path: Path
    env: dict[str, str]
    log_path: Path
    tokens_file: Path
    token: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    module: str = "neuros"  # or a launcher with the same environment (the bench's)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client on this agent that sends the token."""
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)  # type: ignore[arg-type]

    def start(self) -> LiveAgent:
        if not self.token:
            self.token = add_token(self.tokens_file)
        env = {
            **os.environ,
            "NEUROS_HOST": "127.0.0.1",
            "NEUROS_PORT": str(self.port),
            "NEUROS_DB_PATH": str(self.db_path),
            "NEUROS_API_TOKENS_FILE": str(self.tokens_file),
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        wait_until(self._healthy, what=f"agent on {self.url}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        return serves(self.process, f"{self.url}/health", self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
