"""PostgreSQL: pg_dump, pg_restore and psql, on this host or in the compose service.

Row counts and the schema version of a backup come from the dump itself
(``pg_restore --data-only`` lists each table's rows between ``COPY ... FROM stdin;``
and ``\\.``): pg_dump reads one snapshot, so they match the archive exactly even while
the agent writes. A password is passed in ``PGPASSWORD``, never on a command line.
"""

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

from neuros import postgres_url
from neuros.backup import TABLES
from neuros.backup.errors import BackupError

SERVICE = "postgres"
# In the postgres container: the server trusts its local socket, and the image's
# environment names the user and database.
IN_CONTAINER = 'exec "$0" --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" "$@"'
_COPY_HEADER = re.compile(rb"^COPY (\S+) .*FROM stdin;$")
_COPY_END = b"\\.\n"
# Lines of a server error that may quote stored values (user ids, readings).
_QUOTING_LINES = ("DETAIL:", "CONTEXT:", "LINE ", "HINT:", "Command was:")
_KEY_VALUES = re.compile(r"\(([^()]*)\)=\([^()]*\)")
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class PgRunner:
    """Where pg_dump, pg_restore and psql run, and which database they reach."""

    description: str  # in messages and manifests: never a password
    url: str | None = None  # host mode: the database, password removed
    password: str | None = None
    pg_bin: Path | None = None
    compose: tuple[str, ...] = ()  # compose mode: ``docker compose -p P -f F...``

    def argv(self, tool: str, *args: str, connect: bool = False) -> list[str]:
        if self.compose:
            exec_ = [*self.compose, "exec", "-T", SERVICE]
            if connect:
                return [*exec_, "sh", "-c", IN_CONTAINER, tool, *args]
            return [*exec_, tool, *args]
        argv = [self._tool(tool), *args]
        if connect:
            if self.url is None:
                raise BackupError(f"{tool} needs a database: give --database-url")
            argv.append(f"--dbname={self.url}")
        return argv

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def _tool(self, tool: str) -> str:
        if self.pg_bin is not None:
            path = self.pg_bin / tool
            if os.access(path, os.X_OK):
                return str(path)
            raise BackupError(f"{tool} not found in {self.pg_bin} (--pg-bin / NEUROS_PG_BIN)")
        found = shutil.which(tool)
        if found is None:
            raise BackupError(
                f"{tool} not found on PATH: install postgresql-client, or give --pg-bin DIR"
            )
        return found

    def message(self, tool: str, returncode: int, stderr: bytes) -> str:
        """One line on a failed tool: its first error, without stored values or password."""
        lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
        lines = [line for line in lines if line and not line.startswith(_QUOTING_LINES)]
        errors = [line for line in lines if "error" in line.lower()]
        text = (errors or lines or ["no message"])[0]
        text = _KEY_VALUES.sub(r"(\1)=(...)", text)
        if self.password:
            text = text.replace(self.password, "***")
        return f"{tool} failed (exit {returncode}): {text[:MAX_MESSAGE_CHARS]}"


def host_runner(url: str, pg_bin: Path | None) -> PgRunner:
    """Tools on this host, reaching ``url``; its password moves to PGPASSWORD."""
    try:
        postgres_url.check_scheme(url)
    except postgres_url.DatabaseUrlError as exc:
        raise BackupError(f"--database-url: {exc}") from None
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if at else hostport
    return PgRunner(
        description=postgres_url.redacted(url),
        url=urlunsplit(parts._replace(netloc=netloc)),
        password=None if parts.password is None else unquote(parts.password),
        pg_bin=pg_bin,
    )


def tools_runner(pg_bin: Path | None) -> PgRunner:
    """Tools on this host that read dumps only (verify): no database."""
    return PgRunner(description="(no database)", pg_bin=pg_bin)


def compose_runner(compose: tuple[str, ...], project: str) -> PgRunner:
    return PgRunner(description=f"compose project {project}, service {SERVICE}", compose=compose)


def run(
    runner: PgRunner,
    tool: str,
    *args: str,
    connect: bool = False,
    stdin: Path | None = None,
    stdout: Path | None = None,
) -> str:
    """Runs ``tool``; returns its output (unless it goes to ``stdout``)."""
    argv = runner.argv(tool, *args, connect=connect)
    try:
        with ExitStack() as files:
            input_ = files.enter_context(open(stdin or os.devnull, "rb"))
            output: IO[bytes] | int = subprocess.PIPE
            if stdout is not None:
                output = files.enter_context(open(stdout, "xb"))
            done = subprocess.run(  # noqa: S603 - our argv, no shell
                argv, stdin=input_, stdout=output, stderr=subprocess.PIPE, env=runner.env(),
                check=False,
            )  # fmt: skip
    except FileNotFoundError as exc:
        raise BackupError(f"{exc.filename or argv[0]}: not found") from None
    if done.returncode != 0:
        raise BackupError(runner.message(tool, done.returncode, done.stderr))
    return "" if stdout is not None else bytes(done.stdout).decode(errors="replace")


def dump(runner: PgRunner, dest: Path) -> None:
    """``pg_dump --format=custom`` of the database into the new file ``dest``."""
    run(runner, "pg_dump", "--format=custom", connect=True, stdout=dest)


def parse_copy_data(lines: Iterable[bytes]) -> tuple[dict[str, int], list[int]]:
    """Rows per table in ``pg_restore --data-only`` output, and the schema versions."""
    counts: dict[str, int] = {}
    versions: list[int] = []
    table: str | None = None
    for line in lines:
        if table is None:
            header = _COPY_HEADER.match(line.rstrip(b"\n"))
            if header:
                table = header.group(1).split(b".")[-1].strip(b'"').decode()
                counts[table] = 0
        elif line == _COPY_END:
            table = None
        else:
            counts[table] += 1
            if table == "schema_version":
                versions.append(int(line.split(b"\t", 1)[0]))
    if table is not None:
        raise BackupError(f"the dump ends inside the data of table {table}")
    return counts, versions


def contents(runner: PgRunner, dump_file: Path) -> tuple[int, dict[str, int]]:
    """The schema version and row counts of TABLES in a custom-format dump."""
    tables = [f"--table={t}" for t in (*TABLES, "schema_version")]
    argv = runner.argv("pg_restore", "--data-only", "--file=-", *tables)
    try:
        with dump_file.open("rb") as input_, tempfile.TemporaryFile() as errors:
            with subprocess.Popen(  # noqa: S603 - our argv, no shell
                argv, stdin=input_, stdout=subprocess.PIPE, stderr=errors, env=runner.env()
            ) as process:
                assert process.stdout is not None
                counts, versions = parse_copy_data(process.stdout)
            errors.seek(0)
            stderr = errors.read()
    except FileNotFoundError as exc:
        raise BackupError(f"{exc.filename or argv[0]}: not found") from None
    if process.returncode != 0:
        raise BackupError(runner.message("pg_restore", process.returncode, stderr))
    if not versions:
        raise BackupError("the dump has no schema_version rows: not a NEUROS database")
    counts.pop("schema_version", None)
    return max(versions), counts


def check_listable(runner: PgRunner, dump_file: Path) -> None:
    """``pg_restore --list`` reads the dump's table of contents."""
    run(runner, "pg_restore", "--list", stdin=dump_file)


def _query(runner: PgRunner, sql: str) -> list[list[str]]:
    out = run(runner, "psql", "-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1",
              "-c", sql, connect=True)  # fmt: skip
    return [line.split("\t") for line in out.splitlines() if line]


def public_tables(runner: PgRunner) -> list[str]:
    """The tables in schema public (where the agent's schema lives)."""
    rows = _query(
        runner,
        "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    return [row[0] for row in rows]


def other_sessions(runner: PgRunner) -> int:
    """Client sessions on the database besides this one: a running agent has some."""
    rows = _query(
        runner,
        "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'",
    )
    return int(rows[0][0])


def restore(runner: PgRunner, dump_file: Path, *, clean: bool) -> None:
    """The dump into the database, all or nothing; ``clean`` drops its objects first."""
    args = ["--exit-on-error", "--single-transaction", "--no-owner", "--no-privileges"]
    if clean:
        args += ["--clean", "--if-exists"]
    run(runner, "pg_restore", *args, connect=True, stdin=dump_file)


def table_counts(runner: PgRunner, tables: Iterable[str]) -> dict[str, int]:
    """Row counts of ``tables`` (names from TABLES only: they are put into SQL)."""
    names = [t for t in tables if t in TABLES]
    if not names:
        return {}
    sql = " UNION ALL ".join(
        f"SELECT '{t}', count(*) FROM public.{t}"  # noqa: S608 - names from TABLES
        for t in names
    )
    return {name: int(n) for name, n in _query(runner, sql)}
