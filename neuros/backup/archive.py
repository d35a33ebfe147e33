"""The archive format: ``neuros-<backend>-<UTC time>.tar.gz`` and its ``.sha256``.

The tar.gz holds exactly two regular files, in this order: ``manifest.json`` and the
data file (``neuros.db``, a SQLite snapshot, or ``neuros.dump``, a pg_dump custom
archive). The sidecar is in ``sha256sum`` format, so ``sha256sum -c`` checks it too.
An archive is written under a hidden temporary name, fsynced and renamed after its
sidecar: a name matching the pattern is always a complete archive.
"""

import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from neuros import postgres_schema
from neuros.backup import POSTGRESQL, SQLITE, SQLITE_SCHEMA_VERSION, TABLES
from neuros.backup.errors import BackupError

FORMAT_VERSION = 1
TOOL = "neuros.backup"
MANIFEST_NAME = "manifest.json"
DATA_FILES = {SQLITE: "neuros.db", POSTGRESQL: "neuros.dump"}
SIDECAR_SUFFIX = ".sha256"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
ARCHIVE_PATTERN = re.compile(r"^neuros-(sqlite|postgresql)-(\d{8}T\d{6}Z)\.tar\.gz$")
# A manifest is a few hundred bytes; anything much larger is not ours.
MAX_MANIFEST_BYTES = 64 * 1024
CHUNK = 1024 * 1024
# Archives hold health data: readable by their owner only.
ARCHIVE_MODE = 0o600
GZIP_LEVEL = 6  # level 9 costs about twice the time for ~1 % less size


def current_schema_version(backend: str) -> int:
    """The newest schema this code knows for ``backend``: an archive must not be newer."""
    return SQLITE_SCHEMA_VERSION if backend == SQLITE else postgres_schema.SCHEMA_VERSION


def archive_name(backend: str, at: datetime) -> str:
    return f"neuros-{backend}-{at.astimezone(UTC).strftime(TIME_FORMAT)}.tar.gz"


def parse_archive_name(name: str) -> tuple[str, datetime] | None:
    """(backend, time) of an archive file name; None for any other file."""
    match = ARCHIVE_PATTERN.match(name)
    if match is None:
        return None
    at = datetime.strptime(match.group(2), TIME_FORMAT).replace(tzinfo=UTC)
    return match.group(1), at


def sidecar_path(archive: Path) -> Path:
    return archive.with_name(archive.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class Manifest:
    backend: str
    created_at: str  # UTC, ISO 8601, when the snapshot started
    duration_seconds: float  # taking the snapshot or dump
    schema_version: int
    row_counts: dict[str, int]
    data_file: str
    data_size_bytes: int
    data_sha256: str
    source: str  # never a password; a file name, a redacted URL or a compose project
    tool: str = TOOL
    format: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Manifest":
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise BackupError(f"{MANIFEST_NAME} is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BackupError(f"{MANIFEST_NAME} is not a JSON object")
        return cls(**_checked_fields(data))

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)


def _checked_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The manifest's fields, each of the right type and range; BackupError otherwise."""
    expected: dict[str, type | tuple[type, ...]] = {
        "backend": str,
        "created_at": str,
        "duration_seconds": (int, float),
        "schema_version": int,
        "row_counts": dict,
        "data_file": str,
        "data_size_bytes": int,
        "data_sha256": str,
        "source": str,
        "tool": str,
        "format": int,
    }
    missing = sorted(set(expected) - set(data))
    if missing:
        raise BackupError(f"{MANIFEST_NAME} lacks {', '.join(missing)}")
    for key, kind in expected.items():
        # bool is an int to isinstance(); never a valid count or version here.
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise BackupError(f"{MANIFEST_NAME}: {key} has the wrong type")
    problem = _manifest_problem(data)
    if problem:
        raise BackupError(f"{MANIFEST_NAME}: {problem}")
    return {key: data[key] for key in expected}


def _manifest_problem(data: dict[str, Any]) -> str:
    if data["format"] != FORMAT_VERSION:
        return f"format {data['format']} is not supported (this tool reads {FORMAT_VERSION})"
    backend = data["backend"]
    if backend not in DATA_FILES:
        return f"unknown backend {backend!r}"
    if data["data_file"] != DATA_FILES[backend]:
        return f"data file {data['data_file']!r} is not {DATA_FILES[backend]!r}"
    if not re.fullmatch(r"[0-9a-f]{64}", data["data_sha256"]):
        return "data_sha256 is not a SHA-256 hex digest"
    counts = data["row_counts"]
    # The table names end up in SQL (psql counts after a restore): known names only.
    if not set(counts) <= set(TABLES) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts.values()
    ):
        return "row_counts must map known tables to counts"
    supported = current_schema_version(backend)
    if not 1 <= data["schema_version"] <= supported:
        return (
            f"schema version {data['schema_version']} is not supported "
            f"(this code knows {backend} versions 1 to {supported})"
        )
    try:
        created = datetime.fromisoformat(data["created_at"])
    except ValueError:
        return "created_at is not an ISO 8601 time"
    if created.utcoffset() is None or data["data_size_bytes"] < 0:
        return "created_at has no offset, or data_size_bytes is negative"
    return ""


# --- writing --------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Makes a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    # No owner names or ids of this host in the archive.
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, ARCHIVE_MODE
    return info


def _write_private(path: Path) -> IO[bytes]:
    """A new file only its owner can read (``x``: never an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, ARCHIVE_MODE)
    return os.fdopen(fd, "wb")


def write_sidecar(archive: Path, digest: str) -> None:
    final = sidecar_path(archive)
    tmp = final.with_name(f".{final.name}.partial")
    tmp.unlink(missing_ok=True)
    with _write_private(tmp) as file:
        file.write(f"{digest}  {archive.name}\n".encode())
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, final)


def write_archive(backup_dir: Path, manifest: Manifest, data: Path) -> Path:
    """Packs ``manifest`` and ``data`` into ``backup_dir``; returns the archive's path."""
    final = backup_dir / archive_name(manifest.backend, manifest.created)
    if final.exists():
        raise BackupError(f"{final} already exists: refusing to overwrite an archive")
    tmp = backup_dir / f".{final.name}.partial"
    tmp.unlink(missing_ok=True)  # left by a run that died; the lock rules out a live one
    mtime = int(manifest.created.timestamp())
    try:
        with _write_private(tmp) as raw:
            with (
                gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=mtime
                ) as gz,
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                body = manifest.to_json()
                tar.addfile(_member(MANIFEST_NAME, len(body), mtime), io.BytesIO(body))
                with data.open("rb") as source:
                    tar.addfile(_member(manifest.data_file, data.stat().st_size, mtime), source)
            raw.flush()
            os.fsync(raw.fileno())
        # The sidecar first: an archive that has its final name always has one.
        write_sidecar(final, sha256_file(tmp))
        os.replace(tmp, final)
        fsync_dir(backup_dir)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


# --- reading --------------------------------------------------------------------------


def read_sidecar(archive: Path) -> str:
    sidecar = sidecar_path(archive)
    try:
        text = sidecar.read_text(errors="replace")
    except FileNotFoundError:
        raise BackupError(f"archive {archive.name}: no checksum file {sidecar.name}") from None
    fields = text.split()
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise BackupError(f"archive {archive.name}: {sidecar.name} holds no SHA-256 digest")
    return fields[0].lower()


def check_checksum(archive: Path) -> str:
    """The archive's SHA-256, which its sidecar must name; BackupError otherwise."""
    expected = read_sidecar(archive)
    actual = sha256_file(archive)
    if actual != expected:
        raise BackupError(
            f"archive {archive.name}: checksum mismatch "
            f"(sidecar {expected[:12]}..., actual {actual[:12]}...)"
        )
    return actual


def _unreadable(archive: Path, exc: BaseException) -> BackupError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return BackupError(f"archive {archive.name}: not a readable tar.gz ({reason})")


_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError)


@contextmanager
def _members(archive: Path) -> Iterator[Iterator[tuple[tarfile.TarInfo, IO[bytes]]]]:
    """The archive's members in order (streamed: one pass over the file), each checked
    to be one of ours: a regular file with a known name, never a path."""
    allowed = {MANIFEST_NAME, *DATA_FILES.values()}

    def members(tar: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
        for member in tar:
            if member.name not in allowed:
                raise BackupError(f"archive {archive.name}: unexpected member {member.name!r}")
            file = tar.extractfile(member) if member.isreg() else None
            if file is None:
                raise BackupError(f"archive {archive.name}: {member.name} is not a regular file")
            yield member, file

    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            yield members(tar)
    except _READ_ERRORS as exc:
        raise _unreadable(archive, exc) from None


def _manifest_of(archive: Path, member: tarfile.TarInfo, file: IO[bytes]) -> Manifest:
    if member.name != MANIFEST_NAME or member.size > MAX_MANIFEST_BYTES:
        raise BackupError(f"archive {archive.name}: does not start with a {MANIFEST_NAME}")
    try:
        return Manifest.from_json(file.read())
    except BackupError as exc:
        raise BackupError(f"archive {archive.name}: {exc}") from None


def read_manifest(archive: Path) -> Manifest:
    """The manifest alone: the first member, so only the archive's start is read."""
    with _members(archive) as members:
        for member, file in members:
            return _manifest_of(archive, member, file)
    raise BackupError(f"archive {archive.name}: empty")


def extract(archive: Path, workdir: Path) -> tuple[Manifest, Path]:
    """Checks the archive's layout and its data file against the manifest, and writes
    the data file into ``workdir``; returns the manifest and that file."""
    manifest: Manifest | None = None
    data: Path | None = None
    with _members(archive) as members:
        for member, file in members:
            if manifest is None:
                manifest = _manifest_of(archive, member, file)
            elif data is None:
                if member.name != manifest.data_file:
                    raise BackupError(
                        f"archive {archive.name}: member {member.name!r} where "
                        f"{manifest.data_file!r} was expected"
                    )
                data = workdir / manifest.data_file
                _copy_checked(archive, manifest, file, data)
            else:
                raise BackupError(f"archive {archive.name}: unexpected member {member.name!r}")
    if manifest is None or data is None:
        raise BackupError(f"archive {archive.name}: incomplete (manifest or data file missing)")
    return manifest, data


def _copy_checked(archive: Path, manifest: Manifest, source: IO[bytes], dest: Path) -> None:
    digest = hashlib.sha256()
    size = 0
    with _write_private(dest) as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != manifest.data_size_bytes:
        raise BackupError(
            f"archive {archive.name}: {manifest.data_file} is {size} bytes, "
            f"the manifest says {manifest.data_size_bytes}"
        )
    if digest.hexdigest() != manifest.data_sha256:
        raise BackupError(
            f"archive {archive.name}: {manifest.data_file} checksum mismatch "
            f"(manifest {manifest.data_sha256[:12]}..., actual {digest.hexdigest()[:12]}...)"
        )
