"""``restore``: verify, check the target, put the archive back, check the counts.

The target must be stopped (no agent on it) and, unless ``force``, hold no data; a
database that only a fresh agent has initialised counts as empty. Any refusal comes
before anything is written.
"""

import tempfile
from pathlib import Path
from typing import BinaryIO

from neuros.backup import SQLITE, TABLES, postgres, sqlite
from neuros.backup.errors import BackupError
from neuros.backup.source import Source
from neuros.backup.verify import Verified, counts_text, verify

# Tables a NEUROS database has besides TABLES; anything else in schema public is not ours.
BOOKKEEPING = ("schema_version", "ready_probe")


def _check_counts(what: str, counts: dict[str, int], verified: Verified) -> None:
    if counts != verified.manifest.row_counts:
        raise BackupError(
            f"{what}: row counts after the restore ({counts_text(counts)}) differ from the "
            f"archive's ({counts_text(verified.manifest.row_counts)})"
        )


def _sqlite_file(verified: Verified, db: Path, *, force: bool, dry_run: bool) -> str:
    sqlite.check_replaceable(db, force=force)
    if dry_run:
        return f"dry run: would restore {verified.archive.name} into {db}; nothing was changed"
    sqlite.install(verified.data, db)
    _, counts = sqlite.describe(db, check_integrity=False)
    _check_counts(str(db), counts, verified)
    return f"restored {verified.archive.name} into {db}: {counts_text(counts)}"


def _sqlite_compose(verified: Verified, source: Source, *, force: bool, dry_run: bool) -> str:
    compose = source.compose
    assert compose is not None
    compose.check_agent_stopped()
    volume = compose.agent_volume()
    if dry_run:
        return (
            f"dry run: would restore {verified.archive.name} into volume {volume} of compose "
            f"project {compose.project}; nothing was changed"
        )
    return compose.install_sqlite(verified.data, force=force)


def _pg_holds_data(runner: postgres.PgRunner, tables: list[str]) -> str:
    """Why the database counts as holding data, or "" (empty, or only initialised)."""
    foreign = sorted(set(tables) - set(TABLES) - set(BOOKKEEPING))
    if foreign:
        return f"{len(foreign)} table(s) in schema public that are not the agent's"
    rows = sum(postgres.table_counts(runner, ["readings", "user_state"]).values())
    return f"{rows} rows in readings and user_state" if rows else ""


def _postgres(verified: Verified, source: Source, *, force: bool, dry_run: bool) -> str:
    runner = source.pg()
    if source.compose is not None:
        source.compose.check_agent_stopped()
    sessions = postgres.other_sessions(runner)
    if sessions:
        raise BackupError(
            f"database {runner.description} has {sessions} other client session(s): "
            "stop the agent first"
        )
    tables = postgres.public_tables(runner)
    held = _pg_holds_data(runner, tables) if tables else ""
    if held and not force:
        raise BackupError(
            f"database {runner.description} holds data ({held}): refusing to overwrite it "
            "without --force"
        )
    if dry_run:
        return (
            f"dry run: would restore {verified.archive.name} into {runner.description}"
            f"{' (dropping its tables first)' if tables else ''}; nothing was changed"
        )
    postgres.restore(runner, verified.data, clean=bool(tables))
    counts = postgres.table_counts(runner, verified.manifest.row_counts)
    _check_counts(runner.description, counts, verified)
    return f"restored {verified.archive.name} into {runner.description}: {counts_text(counts)}"


def restore(archive: Path, source: Source, *, force: bool, dry_run: bool) -> str:
    """Restores ``archive`` into ``source``; returns the line to print."""
    with tempfile.TemporaryDirectory(prefix="neuros-restore-") as scratch:
        try:
            verified = verify(archive, Path(scratch), source.pg)
        except BackupError as exc:
            raise BackupError(f"{exc}: refusing to restore, nothing was changed") from None
        backend = verified.manifest.backend
        if backend == SQLITE:
            if source.db is not None:
                return _sqlite_file(verified, source.db, force=force, dry_run=dry_run)
            if source.compose is not None:
                return _sqlite_compose(verified, source, force=force, dry_run=dry_run)
        elif source.url is not None or source.compose is not None:
            return _postgres(verified, source, force=force, dry_run=dry_run)
        target = "--db or --compose-project" if backend == SQLITE else "--database-url"
        raise BackupError(f"archive {archive.name} is a {backend} backup: restore it with {target}")


def install_stream(stream: BinaryIO, db: Path, *, force: bool) -> str:
    """``install-sqlite``: a snapshot from ``stream`` (a verified archive's data file,
    piped in by a compose-mode restore) in place of ``db``."""
    with tempfile.TemporaryDirectory(prefix="neuros-install-") as scratch:
        data = Path(scratch) / "neuros.db"
        with data.open("xb") as out:
            while chunk := stream.read(1024 * 1024):
                out.write(chunk)
        _, expected = sqlite.describe(data, check_integrity=True)
        sqlite.check_replaceable(db, force=force)
        sqlite.install(data, db)
        _, counts = sqlite.describe(db, check_integrity=False)
    if counts != expected:
        raise BackupError(f"{db}: row counts after the install differ from the snapshot's")
    return f"restored into {db}: {counts_text(counts)}"


def snapshot_stream(db: Path, out: BinaryIO) -> None:
    """``snapshot-sqlite``: a consistent snapshot of ``db``, written to ``out``."""
    try:
        scratch = tempfile.TemporaryDirectory(prefix="neuros-snapshot-")
    except OSError:  # no writable temp dir in the container: next to the database
        scratch = tempfile.TemporaryDirectory(dir=db.parent, prefix=".neuros-snapshot-")
    with scratch as directory:
        data = Path(directory) / "neuros.db"
        sqlite.snapshot(db, data)
        with data.open("rb") as source:
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
        out.flush()
