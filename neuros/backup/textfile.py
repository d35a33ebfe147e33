"""The backup's node-exporter textfile-collector file, written atomically.

The alert on stale backups (prometheus/rules) reads LAST_SUCCESS: it is kept from the
previous file when a run fails, and 0 when no backup ever succeeded, so the alert
fires for a host that never had one.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

LAST_SUCCESS = "neuros_backup_last_success_timestamp_seconds"
LAST_RUN = "neuros_backup_last_run_timestamp_seconds"
SUCCESS = "neuros_backup_success"
LAST_SIZE = "neuros_backup_last_size_bytes"
LAST_DURATION = "neuros_backup_last_duration_seconds"

HELP = {
    LAST_SUCCESS: "Unix time of the last successful backup (0: never).",
    LAST_RUN: "Unix time of the last backup run, successful or not.",
    SUCCESS: "1 if the last backup run succeeded, else 0.",
    LAST_SIZE: "Size in bytes of the archive of the last successful backup.",
    LAST_DURATION: "Duration in seconds of the last backup run, successful or not.",
}
FILE_MODE = 0o644  # node-exporter runs as nobody


@dataclass(frozen=True)
class Run:
    finished_at: float  # Unix time
    success: bool
    duration_seconds: float
    size_bytes: int = 0  # of the archive; only meaningful on success


def read_previous(path: Path) -> dict[str, float]:
    """The samples of an earlier file (none if it is missing or unreadable)."""
    samples: dict[str, float] = {}
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return samples
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and not line.startswith("#"):
            try:
                samples[fields[0]] = float(fields[1])
            except ValueError:
                continue
    return samples


def render(run: Run, previous: dict[str, float]) -> str:
    if run.success:
        last_success, size = run.finished_at, float(run.size_bytes)
    else:
        last_success = previous.get(LAST_SUCCESS, 0.0)
        size = previous.get(LAST_SIZE, 0.0)
    values = {
        LAST_SUCCESS: f"{last_success:.0f}",
        LAST_RUN: f"{run.finished_at:.0f}",
        SUCCESS: "1" if run.success else "0",
        LAST_SIZE: f"{size:.0f}",
        LAST_DURATION: f"{run.duration_seconds:.3f}",
    }
    lines = []
    for name, value in values.items():
        lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def write(path: Path, run: Run) -> None:
    """Replaces ``path`` in one rename: the collector never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = render(run, read_previous(path))
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(name, FILE_MODE)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
