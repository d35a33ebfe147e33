"""SQLite: an online snapshot, what a snapshot holds, and putting one in place.

The snapshot is SQLite's backup API in one step: one read transaction, so it is the
database as of one commit, while the agent keeps writing (WAL lets a reader run beside
the writer). A file copy of a live WAL database would not be consistent.
"""

import errno
import fcntl
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from neuros.backup import SQLITE_SCHEMA_VERSION, TABLES
from neuros.backup.archive import fsync_dir
from neuros.backup.errors import BackupError

# How long a connection waits for a lock the agent holds (a checkpoint, a migration).
BUSY_TIMEOUT_SECONDS = 30.0
# SQLite's unix VFS holds a shared lock on this byte of the -shm file for as long as a
# connection has the WAL database open ("deadman switch", os_unix.c UNIX_SHM_DMS).
SHM_DMS_BYTE = 128
# Rows in either table mean the database holds someone's data.
DATA_TABLES = ("readings", "user_state")


def _uri(path: Path, mode: str) -> str:
    return f"{path.resolve().as_uri()}?mode={mode}"


def _error(path: Path, exc: sqlite3.Error) -> BackupError:
    return BackupError(f"{path.name}: {' '.join(str(exc).split()) or type(exc).__name__}")


def snapshot(db: Path, dest: Path) -> None:
    """A consistent copy of ``db`` (a live database is fine) into the new file ``dest``."""
    if not db.is_file():
        raise BackupError(f"{db}: no such database file")
    try:
        # mode=rw: never create a database where none is.
        source = sqlite3.connect(_uri(db, "rw"), uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        with closing(source), closing(sqlite3.connect(dest)) as copy:
            source.backup(copy)  # pages=-1: every page in one step, one read transaction
            # A self-contained file: no -wal or -shm needed to read it.
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise _error(db, exc) from None


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    try:
        with closing(sqlite3.connect(_uri(path, "ro"), uri=True, timeout=5)) as conn:
            yield conn
    except sqlite3.Error as exc:
        raise _error(path, exc) from None


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def describe(path: Path, *, check_integrity: bool) -> tuple[int, dict[str, int]]:
    """The schema version and the row count of each of TABLES the file has."""
    with _read_only(path) as conn:
        if check_integrity:
            result = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
            if result != ["ok"]:
                raise BackupError(f"{path.name}: integrity check failed: {result[0][:200]}")
        tables = _tables(conn)
        if "schema_version" not in tables:
            raise BackupError(f"{path.name}: not a NEUROS database (no schema_version table)")
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        counts = {
            # The names come from TABLES, never from input.
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in TABLES
            if table in tables
        }
    if not isinstance(version, int) or not 1 <= version <= SQLITE_SCHEMA_VERSION:
        raise BackupError(
            f"{path.name}: schema version {version} is not supported "
            f"(this code knows 1 to {SQLITE_SCHEMA_VERSION})"
        )
    return version, counts


def in_use(db: Path) -> bool:
    """Whether another process has ``db`` open (the agent keeps it open in WAL mode)."""
    shm = db.with_name(db.name + "-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def data_rows(db: Path) -> int:
    """Rows in readings and user_state; 0 for a missing, empty or fresh database."""
    if not db.exists() or db.stat().st_size == 0:
        return 0
    with _read_only(db) as conn:
        tables = _tables(conn)
        return sum(
            int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # noqa: S608
            for t in DATA_TABLES
            if t in tables
        )


def check_replaceable(db: Path, *, force: bool) -> None:
    """Refuses a database in use (always) or holding data (unless ``force``)."""
    if in_use(db):
        raise BackupError(f"database {db} is open in another process: stop the agent first")
    if force:
        return
    try:
        rows = data_rows(db)
    except BackupError as exc:
        raise BackupError(
            f"database {db} cannot be read as SQLite ({exc}): refusing to overwrite it "
            "without --force"
        ) from None
    if rows:
        raise BackupError(
            f"database {db} holds data ({rows} rows in {' and '.join(DATA_TABLES)}): "
            "refusing to overwrite it without --force"
        )


def _match_owner(path: Path, reference: Path) -> None:
    """Root restoring for an agent that runs as another user: the file stays theirs."""
    if os.geteuid() == 0:
        st = reference.stat()
        os.chown(path, st.st_uid, st.st_gid)


def install(source: Path, db: Path) -> None:
    """Puts the verified snapshot ``source`` in place of ``db`` (which is not in use):
    a copy next to it, fsynced, stale -wal/-shm removed, then one rename."""
    db.parent.mkdir(parents=True, exist_ok=True)
    reference = db if db.exists() else db.parent
    fd, name = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.restore-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600 if reference.is_dir() else reference.stat().st_mode & 0o777)
        _match_owner(tmp, reference)
        # A WAL left by the old database would be replayed into the new one.
        for suffix in ("-wal", "-shm", "-journal"):
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        os.replace(tmp, db)
        fsync_dir(db.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
