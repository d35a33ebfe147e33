"""``list``: the archives in a backup folder, newest first, each checked cheaply."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from neuros.backup.archive import check_checksum, read_manifest
from neuros.backup.errors import BackupError
from neuros.backup.rotation import archives_in


@dataclass(frozen=True)
class Entry:
    name: str
    created_at: str
    backend: str
    size_bytes: int
    checksum_ok: bool
    schema_version: int | None  # None: the manifest cannot be read
    row_counts: dict[str, int]


def entries(backup_dir: Path) -> list[Entry]:
    found = [(at, name, backend) for backend, items in archives_in(backup_dir).items()
             for name, at in items]  # fmt: skip
    listed = []
    for at, name, backend in sorted(found, reverse=True):
        path = backup_dir / name
        try:
            check_checksum(path)  # the sidecar against the file: no extraction
            ok = True
        except BackupError:
            ok = False
        try:
            manifest = read_manifest(path)  # the first member only
            version, counts = manifest.schema_version, manifest.row_counts
        except BackupError:
            version, counts = None, {}
        created = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        listed.append(Entry(name, created, backend, path.stat().st_size, ok, version, counts))
    return listed


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def render(backup_dir: Path, listed: list[Entry]) -> list[str]:
    if not listed:
        missing = "" if backup_dir.is_dir() else " (the folder does not exist)"
        return [f"no archives in {backup_dir}{missing}"]
    lines = []
    for e in listed:
        schema = "?" if e.schema_version is None else str(e.schema_version)
        readings = e.row_counts.get("readings", "?")
        checksum = "ok" if e.checksum_ok else "BAD"
        lines.append(
            f"{e.created_at}  {e.backend:<10}  {_size(e.size_bytes):>9}  schema {schema:>2}  "
            f"readings {readings!s:>9}  checksum {checksum:<3}  {e.name}"
        )
    return lines


def render_json(listed: list[Entry]) -> str:
    return json.dumps([asdict(e) for e in listed], indent=2)
