"""Verify an archive: checksum, layout, manifest, and the data against the manifest."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neuros.backup import SQLITE, postgres, sqlite
from neuros.backup.archive import Manifest, check_checksum, extract, parse_archive_name
from neuros.backup.errors import BackupError
from neuros.backup.postgres import PgRunner


@dataclass(frozen=True)
class Verified:
    archive: Path
    manifest: Manifest
    data: Path  # the data file, extracted and checked


def verify(archive: Path, workdir: Path, pg: Callable[[], PgRunner]) -> Verified:
    """Every check, cheapest first; BackupError naming the first that fails. ``pg``
    gives the PostgreSQL tools (only called for a PostgreSQL archive)."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such archive")
    check_checksum(archive)
    manifest, data = extract(archive, workdir)
    named = parse_archive_name(archive.name)
    if named is not None and named[0] != manifest.backend:
        raise BackupError(
            f"archive {archive.name}: its name says {named[0]}, its manifest {manifest.backend}"
        )
    try:
        if manifest.backend == SQLITE:
            version, counts = sqlite.describe(data, check_integrity=True)
        else:
            runner = pg()
            postgres.check_listable(runner, data)
            version, counts = postgres.contents(runner, data)
    except BackupError as exc:
        raise BackupError(f"archive {archive.name}: {exc}") from None
    if version != manifest.schema_version:
        raise BackupError(
            f"archive {archive.name}: schema version {version}, "
            f"the manifest says {manifest.schema_version}"
        )
    if counts != manifest.row_counts:
        differ = sorted(
            f"{t} {counts.get(t)} (manifest {manifest.row_counts.get(t)})"
            for t in set(counts) | set(manifest.row_counts)
            if counts.get(t) != manifest.row_counts.get(t)
        )
        raise BackupError(f"archive {archive.name}: row counts differ: {', '.join(differ)}")
    return Verified(archive, manifest, data)


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{table} {n}" for table, n in counts.items())


def summary(verified: Verified) -> str:
    m = verified.manifest
    return (
        f"archive {verified.archive.name}: ok ({m.backend}, schema {m.schema_version}, "
        f"taken {m.created_at}, {counts_text(m.row_counts)})"
    )
