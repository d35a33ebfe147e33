"""A real PostgreSQL server for the tests, from Debian's ``postgresql`` package.

Initialised in a temp dir, on a free port, with ``fsync=on`` (what is measured and
proven is what runs in production). initdb refuses root: as root, the server runs as
the ``postgres`` user through ``runuser``.
"""

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.tooling import in_ci

PASSWORD = "pg-test-Secret-9f3"  # noqa: S105 - a throwaway server's password
USER = "neuros"


def find_bindir() -> Path | None:
    """The newest installed server's bin dir, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    return Path(found[-1]).parent if found else None


def require_bindir() -> Path:
    """:func:`find_bindir`; when none is installed the test skips, and fails in CI."""
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh does)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return bindir


def _major(path: str) -> int:
    try:
        return int(Path(path).parent.parent.name)
    except ValueError:
        return 0


@dataclass
class PostgresServer:
    bindir: Path
    port: int
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="neuros-pg-")))
    _databases: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def init(self) -> "PostgresServer":
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD)
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        return self

    def start(self) -> "PostgresServer":
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._databases += 1
        name = f"t{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
