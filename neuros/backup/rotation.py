"""Which archives to keep: the newest of each of the last N days and M ISO weeks.

Days and weeks are UTC and count only those that have an archive, so a week without
backups does not use up the retention. Each backend's archives rotate on their own.
"""

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from neuros.backup.archive import parse_archive_name, sidecar_path


def _newest_per_period(archives: list[tuple[str, datetime]], period: str, keep: int) -> set[str]:
    newest: dict[object, tuple[datetime, str]] = {}
    for name, at in archives:
        key: object = at.date() if period == "day" else at.isocalendar()[:2]
        if key not in newest or (at, name) > newest[key]:
            newest[key] = (at, name)
    periods = sorted(newest, key=lambda k: newest[k], reverse=True)[:keep]
    return {newest[k][1] for k in periods}


def plan(
    archives: Iterable[tuple[str, datetime]], keep_daily: int, keep_weekly: int, protect: str = ""
) -> tuple[set[str], list[str]]:
    """(names to keep, names to delete, oldest first) among ``archives`` of one backend;
    ``protect`` (the archive just made) is always kept."""
    listed = sorted(archives, key=lambda a: (a[1], a[0]))
    keep = _newest_per_period(listed, "day", keep_daily)
    keep |= _newest_per_period(listed, "week", keep_weekly)
    if protect:
        keep.add(protect)
    return keep, [name for name, _ in listed if name not in keep]


def archives_in(backup_dir: Path) -> dict[str, list[tuple[str, datetime]]]:
    """The archives in ``backup_dir`` by backend (files matching the archive name only)."""
    found: dict[str, list[tuple[str, datetime]]] = {}
    if not backup_dir.is_dir():
        return found
    for entry in os.scandir(backup_dir):
        parsed = parse_archive_name(entry.name)
        if parsed is not None and entry.is_file(follow_symlinks=False):
            backend, at = parsed
            found.setdefault(backend, []).append((entry.name, at))
    return found


def delete(backup_dir: Path, names: Iterable[str]) -> None:
    """Removes each archive, then its sidecar (a sidecar alone is never listed)."""
    for name in names:
        archive = backup_dir / name
        archive.unlink(missing_ok=True)
        sidecar_path(archive).unlink(missing_ok=True)
