"""``backup``: snapshot or dump, pack, verify the new archive, rotate, write metrics."""

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from neuros.backup import SQLITE, postgres, rotation, sqlite, textfile
from neuros.backup.archive import DATA_FILES, Manifest, archive_name, sha256_file, write_archive
from neuros.backup.errors import BackupError
from neuros.backup.source import Source
from neuros.backup.verify import counts_text, verify

LOCK_NAME = ".lock"
DIR_MODE = 0o700  # the archives hold health data


@dataclass(frozen=True)
class Options:
    backup_dir: Path
    keep_daily: int
    keep_weekly: int
    metrics_file: Path | None = None
    dry_run: bool = False


class Busy(BackupError):
    """Another backup holds the folder's lock (and will write the metrics itself)."""


@contextmanager
def exclusive(backup_dir: Path) -> Iterator[None]:
    """One backup at a time per folder (released when the process ends, however)."""
    path = backup_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(
                f"another backup is running (lock {path} is held): refusing to start"
            ) from None
        yield
    finally:
        os.close(fd)


def _remove_leftovers(backup_dir: Path) -> None:
    """Scratch folders and partial files of a run that died (the lock rules out a live one)."""
    for entry in backup_dir.iterdir():
        if entry.name.startswith((".neuros-backup-", ".neuros-verify-")) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(".neuros-") and entry.name.endswith(".partial"):
            entry.unlink(missing_ok=True)


def _capture(source: Source, backend: str, dest: Path) -> tuple[int, dict[str, int]]:
    """The snapshot or dump into ``dest``; its schema version and row counts."""
    if backend == SQLITE:
        if source.compose is not None:
            source.compose.snapshot_sqlite(dest)
        else:
            assert source.db is not None
            sqlite.snapshot(source.db, dest)
        return sqlite.describe(dest, check_integrity=False)
    runner = source.pg()
    postgres.dump(runner, dest)
    return postgres.contents(runner, dest)


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _rotate(backup_dir: Path, backend: str, new: str, options: Options) -> tuple[int, list[str]]:
    archives = rotation.archives_in(backup_dir).get(backend, [])
    if new not in {name for name, _ in archives}:  # a dry run: the archive it would make
        archives.append((new, datetime.now(UTC)))
    keep, drop = rotation.plan(archives, options.keep_daily, options.keep_weekly, protect=new)
    return len(keep), drop


def _dry_run(source: Source, options: Options) -> list[str]:
    if source.db is not None and not source.db.is_file():
        raise BackupError(f"{source.db}: no such database file")
    backend = source.backend()
    new = archive_name(backend, datetime.now(UTC))
    kept, drop = _rotate(options.backup_dir, backend, new, options)
    lines = [
        f"dry run: would back up {source.describe(backend)} ({backend}) "
        f"into {options.backup_dir / new}",
        f"dry run: rotation would keep {kept} {backend} archive(s) and delete "
        f"{len(drop)}{': ' + ', '.join(drop) if drop else ''}",
    ]
    if options.metrics_file is not None:
        lines.append(f"dry run: would write metrics to {options.metrics_file}")
    return [*lines, "dry run: nothing was changed"]


def _run(source: Source, options: Options) -> tuple[Path, list[str]]:
    backend = source.backend()
    backup_dir = options.backup_dir
    with tempfile.TemporaryDirectory(dir=backup_dir, prefix=".neuros-backup-") as scratch:
        data = Path(scratch) / DATA_FILES[backend]
        created = datetime.now(UTC)
        started = time.monotonic()
        version, counts = _capture(source, backend, data)
        manifest = Manifest(
            backend=backend,
            created_at=created.isoformat(timespec="seconds"),
            duration_seconds=round(time.monotonic() - started, 3),
            schema_version=version,
            row_counts=counts,
            data_file=data.name,
            data_size_bytes=data.stat().st_size,
            data_sha256=sha256_file(data),
            source=source.describe(backend),
        )
        archive = write_archive(backup_dir, manifest, data)
    # Read back what was written, as a restore would.
    try:
        with tempfile.TemporaryDirectory(dir=backup_dir, prefix=".neuros-verify-") as scratch:
            verify(archive, Path(scratch), source.pg)
    except BaseException:
        rotation.delete(backup_dir, [archive.name])  # never leave a bad archive behind
        raise
    kept, drop = _rotate(backup_dir, backend, archive.name, options)
    rotation.delete(backup_dir, drop)
    size = archive.stat().st_size
    data_size = _human(manifest.data_size_bytes)
    return archive, [
        f"backup: wrote {archive} ({_human(size)}; {backend} data {data_size}, schema "
        f"{version}, {counts_text(counts)}; snapshot {manifest.duration_seconds:.2f} s)",
        f"backup: verified; rotation kept {kept} {backend} archive(s), deleted {len(drop)}",
    ]


def backup(source: Source, options: Options) -> list[str]:
    """Makes one archive; returns what to print. Metrics are written on success and on
    failure, except when another backup holds the lock (that one writes them)."""
    if options.dry_run:
        return _dry_run(source, options)
    started = time.monotonic()
    try:
        options.backup_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        with exclusive(options.backup_dir):
            _remove_leftovers(options.backup_dir)
            archive, lines = _run(source, options)
    except Busy:
        raise
    except BaseException:
        _write_metrics(options, success=False, started=started)
        raise
    _write_metrics(options, success=True, started=started, size=archive.stat().st_size)
    return lines


def _write_metrics(options: Options, *, success: bool, started: float, size: int = 0) -> None:
    if options.metrics_file is not None:
        run = textfile.Run(time.time(), success, time.monotonic() - started, size)
        textfile.write(options.metrics_file, run)
