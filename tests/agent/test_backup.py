"""Backups (``python3 -m neuros.backup``, behind scripts/backup.sh).

The restore drill, on both backends: a real agent takes readings from concurrent
writers; a backup runs while they write; the agent is stopped, its database destroyed
and restored from the archive, and a new agent started on it. Then each user's stored
readings are exactly the batches it had acknowledged up to some point (a consistent
snapshot: nothing partial, nothing invented), that point is at or after every batch
acknowledged before the backup started and before any batch sent after it ended, and
the KPIs the new agent serves equal those the old one returned for that last batch.

Around it: corrupted and tampered archives are refused and change nothing, restore
refuses a database holding data without --force and one in use always, rotation,
listing, metrics, dry runs, the lock, the compose commands (a fake ``docker``), and no
user id in any output. Every run of the tool uses ``python -S`` (no site-packages):
it needs the standard library only.
"""

import fcntl
import gzip
import hashlib
import io
import json
import os
import random
import shlex
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from neuros.backup import SQLITE_SCHEMA_VERSION, rotation, textfile
from neuros.backup.archive import parse_archive_name, sidecar_path
from neuros.backup.compose import Compose
from neuros.backup.errors import BackupError
from neuros.backup.postgres import (
    IN_CONTAINER,
    PgRunner,
    compose_runner,
    host_runner,
    parse_copy_data,
)
from neuros.postgres_schema import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION
from neuros.store import SCHEMA_VERSION as STORE_SCHEMA_VERSION
from neuros.store import Store
from stacktools.paths import REPO_ROOT
from tests.support.postgres_server import PostgresServer
from tests.support.processes import LiveAgent, wait_until

StartAgent = Callable[..., LiveAgent]
TOOL = [sys.executable, "-S", "-m", "neuros.backup"]  # -S: the standard library only
USER_PREFIX = "bk-private-user"  # must never appear in the tool's output
OUTPUTS: list[str] = []  # every stdout and stderr of the tool in this module


@pytest.fixture(autouse=True)
def _no_inherited_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agents and the tool get exactly the NEUROS_*/OTEL_* variables a test sets."""
    for name in list(os.environ):
        if name.startswith(("NEUROS_", "OTEL_")):
            monkeypatch.delenv(name)


def tool(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*TOOL, *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    OUTPUTS.extend([done.stdout, done.stderr])
    assert "Traceback" not in done.stderr, done.stderr
    return done


def refused(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 1 and one line on stderr holding each fragment."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def archives(backup_dir: Path) -> list[Path]:
    return sorted(p for p in backup_dir.iterdir() if parse_archive_name(p.name))


def snapshot_of(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` and its bytes: proof that nothing changed."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# --- a small database and its archive ----------------------------------------------


def make_db(path: Path, users: int = 5, readings: int = 200) -> Path:
    """A NEUROS database (the store's own schema) with rows in every counted table."""
    store = Store(path)
    store.open()
    conn = store.connect()
    conn.executemany(
        "INSERT INTO readings (user_id, recorded_at_us, recorded_at, hrv_rmssd_ms) "
        "VALUES (?, ?, '2026-01-01T00:00:00Z', 42.5)",
        [(f"{USER_PREFIX}-{i % users}", i) for i in range(readings)],
    )
    conn.executemany(
        "INSERT INTO daily_totals (user_id, day, hrv_q, hrv_n) VALUES (?, 1, 425, 1)",
        [(f"{USER_PREFIX}-{u}",) for u in range(users)],
    )
    conn.executemany(
        "INSERT INTO user_state (user_id, readiness) VALUES (?, 'high')",
        [(f"{USER_PREFIX}-{u}",) for u in range(users)],
    )
    conn.execute("INSERT INTO readiness_counts VALUES ('high', ?)", (users,))
    store.close()
    return path


def row_counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in ("readings", "daily_totals", "user_state", "readiness_counts")
        }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(database, its archive), made once: tests copy what they change."""
    root = tmp_path_factory.mktemp("made")
    db = make_db(root / "neuros.db")
    done = tool("backup", "--db", db, "--backup-dir", root / "backups")
    assert done.returncode == 0, done.stderr
    (archive,) = archives(root / "backups")
    return db, archive


@pytest.fixture
def archive(made: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the good archive (with its sidecar) in this test's folder."""
    _, original = made
    copy = tmp_path / "in" / original.name
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    sidecar_path(copy).write_bytes(sidecar_path(original).read_bytes())
    return copy


def members(archive: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(archive, "r:gz") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def repack(archive: Path, content: list[tuple[str, bytes]]) -> None:
    """Rewrites ``archive`` with ``content`` and a matching sidecar (a careful forger)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, body in content:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    archive.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    sidecar_path(archive).write_text(f"{digest}  {archive.name}\n")


def with_manifest(archive: Path, **changes: object) -> None:
    (m_name, m_body), data = members(archive)
    manifest = {**json.loads(m_body), **changes}
    repack(archive, [(m_name, json.dumps(manifest).encode()), data])


# --- the archive --------------------------------------------------------------------


def test_sqlite_schema_version_is_the_stores() -> None:
    assert SQLITE_SCHEMA_VERSION == STORE_SCHEMA_VERSION
    assert POSTGRES_SCHEMA_VERSION >= 1


def test_the_tool_imports_only_the_standard_library() -> None:
    code = (
        "import sys, neuros.backup.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules}"
        " - set(sys.stdlib_module_names) - {'__main__'}))"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "['neuros']"


def test_backup_writes_a_checksummed_archive_with_a_manifest(made: tuple[Path, Path]) -> None:
    db, archive = made
    content = members(archive)
    assert [name for name, _ in content] == ["manifest.json", "neuros.db"]
    manifest = json.loads(content[0][1])
    data = content[1][1]
    assert manifest["backend"] == "sqlite"
    assert manifest["schema_version"] == STORE_SCHEMA_VERSION
    assert manifest["row_counts"] == row_counts(db)
    assert manifest["data_sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["data_size_bytes"] == len(data)
    assert manifest["source"] == "neuros.db"  # the file name, not the path
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset() == timedelta(0)
    # The sidecar is in sha256sum format; archives hold health data: owner only.
    check = subprocess.run(
        ["sha256sum", "-c", sidecar_path(archive).name],
        cwd=archive.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert archive.stat().st_mode & 0o777 == 0o600
    assert archive.parent.stat().st_mode & 0o777 == 0o700
    done = tool("verify", archive)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"archive {archive.name}: ok (sqlite, schema 3")
    as_json = json.loads(tool("verify", archive, "--json").stdout)
    assert as_json["ok"] is True
    assert as_json["manifest"]["row_counts"] == manifest["row_counts"]


def _flip_byte(archive: Path) -> None:
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))


def _wrong_data_checksum(archive: Path) -> None:
    with_manifest(archive, data_sha256="0" * 64)


def _wrong_row_count(archive: Path) -> None:
    (_, m_body), _ = members(archive)
    counts = json.loads(m_body)["row_counts"]
    with_manifest(archive, row_counts={**counts, "readings": counts["readings"] + 1})


def _newer_schema(archive: Path) -> None:
    with_manifest(archive, schema_version=SQLITE_SCHEMA_VERSION + 1)


def _path_traversal(archive: Path) -> None:
    manifest, (_, data) = members(archive)
    repack(archive, [manifest, ("../neuros.db", data)])


def _extra_member(archive: Path) -> None:
    repack(archive, [*members(archive), ("neuros.dump", b"x")])


def _no_sidecar(archive: Path) -> None:
    sidecar_path(archive).unlink()


def _truncated(archive: Path) -> None:
    raw = archive.read_bytes()[:-200]
    archive.write_bytes(raw)
    sidecar_path(archive).write_text(f"{hashlib.sha256(raw).hexdigest()}  {archive.name}\n")


CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped byte": (_flip_byte, "checksum mismatch (sidecar"),
    "data checksum": (_wrong_data_checksum, "neuros.db checksum mismatch (manifest"),
    "row count": (_wrong_row_count, "row counts differ: readings 200 (manifest 201)"),
    "newer schema": (_newer_schema, "schema version 4 is not supported"),
    "path traversal": (_path_traversal, "unexpected member '../neuros.db'"),
    "extra member": (_extra_member, "unexpected member 'neuros.dump'"),
    "no sidecar": (_no_sidecar, "no checksum file"),
    "truncated": (_truncated, "not a readable tar.gz"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_bad_archive_is_refused_and_changes_nothing(
    corruption: str, archive: Path, tmp_path: Path
) -> None:
    damage, message = CORRUPTIONS[corruption]
    damage(archive)
    refused(tool("verify", archive), f"archive {archive.name}", message)
    target_dir = tmp_path / "target"
    target = make_db(target_dir / "neuros.db", users=2, readings=3)
    before = snapshot_of(target_dir)
    # Even --force restores nothing from a bad archive.
    done = tool("restore", archive, "--db", target, "--force")
    refused(done, message, "refusing to restore, nothing was changed")
    assert snapshot_of(target_dir) == before


def test_restore_refuses_a_database_with_data_unless_forced(
    archive: Path, made: tuple[Path, Path], tmp_path: Path
) -> None:
    target = make_db(tmp_path / "db" / "neuros.db", users=1, readings=1)
    before = target.read_bytes()
    refused(tool("restore", archive, "--db", target), "holds data (2 rows", "without --force")
    assert target.read_bytes() == before
    done = tool("restore", archive, "--db", target, "--force")
    assert done.returncode == 0, done.stderr
    assert row_counts(target) == row_counts(made[0])
    assert done.stdout.strip().endswith(
        "readings 200, daily_totals 5, user_state 5, readiness_counts 1"
    )


def test_restore_into_a_fresh_or_missing_database_needs_no_force(
    archive: Path, made: tuple[Path, Path], tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh" / "neuros.db"
    store = Store(fresh)  # what a new agent leaves: the schema, no data
    store.open()
    refused(tool("restore", archive, "--db", fresh), "is open in another process")
    store.close()
    missing = tmp_path / "new" / "dir" / "neuros.db"
    for target in (fresh, missing):
        done = tool("restore", archive, "--db", target)
        assert done.returncode == 0, done.stderr
        assert row_counts(target) == row_counts(made[0])
        assert tool("restore", archive, "--db", target).returncode == 1  # now it has data


def test_a_sqlite_archive_does_not_restore_into_postgresql(archive: Path) -> None:
    done = tool("restore", archive, "--database-url", "postgresql://u@127.0.0.1:1/db")
    refused(done, "is a sqlite backup: restore it with --db")


def test_dry_runs_change_nothing(archive: Path, made: tuple[Path, Path], tmp_path: Path) -> None:
    db, _ = made
    backup_dir = tmp_path / "backups"
    done = tool(
        "backup",
        "--db",
        db,
        "--backup-dir",
        backup_dir,
        "--metrics-file",
        tmp_path / "m.prom",
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    assert "would back up neuros.db (sqlite)" in done.stdout
    assert not backup_dir.exists()
    assert not (tmp_path / "m.prom").exists()
    target = make_db(tmp_path / "db" / "neuros.db", users=1, readings=1)
    before = snapshot_of(target.parent)
    done = tool("restore", archive, "--db", target, "--force", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run: would restore" in done.stdout
    assert snapshot_of(target.parent) == before


def test_a_second_backup_at_once_is_refused(made: tuple[Path, Path], tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    with (backup_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = tool("backup", "--db", made[0], "--backup-dir", backup_dir)
    refused(done, "another backup is running")
    assert archives(backup_dir) == []


def test_usage_errors_exit_2() -> None:
    assert tool("backup", "--db", "x.db").returncode == 2  # no --backup-dir
    assert tool("backup", "--db", "x", "--database-url", "y", "--backup-dir", "d").returncode == 2
    assert tool("frobnicate").returncode == 2
    assert tool("backup", "--help").returncode == 0


# --- rotation -----------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _name(at: datetime, backend: str = "sqlite") -> str:
    return f"neuros-{backend}-{at:%Y%m%dT%H%M%SZ}.tar.gz"


def test_rotation_keeps_the_newest_of_n_days_and_m_iso_weeks() -> None:
    daily = [_at("2026-01-01T03:30") + timedelta(days=d) for d in range(46)]  # to Sun 02-15
    extra = _at("2026-02-15T01:00")  # an earlier one on the newest day
    listed = [(_name(at), at) for at in [*daily, extra]]
    keep, delete = rotation.plan(listed, keep_daily=7, keep_weekly=4)
    days = {_name(_at(f"2026-02-{d:02d}T03:30")) for d in range(9, 16)}
    # ISO weeks 7, 6, 5, 4 of 2026 end on Feb 15, Feb 8, Feb 1 and Jan 25.
    weeks = {_name(_at(t)) for t in ("2026-02-08T03:30", "2026-02-01T03:30", "2026-01-25T03:30")}
    assert keep == days | weeks
    assert set(delete) == {name for name, _ in listed} - keep
    assert delete == sorted(delete)  # oldest first


def test_rotation_counts_only_days_with_an_archive_and_keeps_the_new_one() -> None:
    listed = [(_name(_at(t)), _at(t)) for t in ("2026-01-01", "2026-01-10", "2026-01-20")]
    keep, _ = rotation.plan(listed, keep_daily=2, keep_weekly=0)
    assert keep == {listed[1][0], listed[2][0]}
    keep, delete = rotation.plan(listed, keep_daily=0, keep_weekly=0, protect=listed[0][0])
    assert keep == {listed[0][0]}
    assert delete == [listed[1][0], listed[2][0]]


def test_backup_rotates_its_own_archives_only(made: tuple[Path, Path], tmp_path: Path) -> None:
    backup_dir = tmp_path / "backups"
    backup_dir.mkdir()
    old = [_name(_at("2025-03-01") + timedelta(days=d)) for d in range(3)]
    others = [_name(_at("2025-03-01"), "postgresql"), "notes.txt", "neuros-sqlite-x.tar.gz"]
    for name in [*old, *others]:
        (backup_dir / name).write_text("x")
        sidecar_path(backup_dir / name).write_text("x")
    # What a run that died left: removed under the lock.
    (backup_dir / ".neuros-backup-dead").mkdir()
    (backup_dir / f".{old[0]}.partial").write_text("x")
    done = tool(
        "backup",
        "--db",
        made[0],
        "--backup-dir",
        backup_dir,
        "--keep-daily",
        "2",
        "--keep-weekly",
        "0",
    )
    assert done.returncode == 0, done.stderr
    (new,) = (p for p in archives(backup_dir) if "sqlite" in p.name and p.name not in old)
    left = {p.name for p in backup_dir.iterdir()}
    kept = {new.name, old[2], *others}
    assert left == {".lock"} | kept | {sidecar_path(Path(n)).name for n in kept}
    assert "rotation kept 2 sqlite archive(s), deleted 2" in done.stdout


# --- list and metrics ---------------------------------------------------------------


def test_list_newest_first_with_checksums(archive: Path, tmp_path: Path) -> None:
    done = tool("list", "--backup-dir", tmp_path / "none")
    assert done.returncode == 0
    assert done.stdout.startswith(f"no archives in {tmp_path / 'none'}")
    older = archive.with_name(_name(_at("2025-01-01")))
    older.write_bytes(archive.read_bytes())
    sidecar_path(older).write_text(f"{'0' * 64}  {older.name}\n")  # a bad checksum
    done = tool("list", "--backup-dir", archive.parent)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first.endswith(f"checksum ok   {archive.name}")
    assert "  sqlite  " in first
    assert "schema  3  readings       200" in first
    assert second.startswith("2025-01-01T00:00:00Z")
    assert "checksum BAD" in second
    listed = json.loads(tool("list", "--backup-dir", archive.parent, "--json").stdout)
    assert [e["name"] for e in listed] == [archive.name, older.name]
    assert [e["checksum_ok"] for e in listed] == [True, False]
    assert listed[0]["row_counts"]["readings"] == 200


def read_metrics(path: Path) -> dict[str, float]:
    return textfile.read_previous(path)


def test_metrics_on_success_then_failure(made: tuple[Path, Path], tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "neuros_backup.prom"
    backup_dir = tmp_path / "backups"
    before = time.time()
    done = tool("backup", "--db", made[0], "--backup-dir", backup_dir, "--metrics-file", prom)
    assert done.returncode == 0, done.stderr
    first = read_metrics(prom)
    (new,) = archives(backup_dir)
    assert first[textfile.SUCCESS] == 1
    assert before - 1 <= first[textfile.LAST_SUCCESS] <= time.time() + 1
    assert first[textfile.LAST_RUN] == first[textfile.LAST_SUCCESS]
    assert first[textfile.LAST_SIZE] == new.stat().st_size
    assert 0 < first[textfile.LAST_DURATION] < 60
    assert prom.stat().st_mode & 0o777 == 0o644
    inode = prom.stat().st_ino

    done = tool(
        "backup", "--db", tmp_path / "gone.db", "--backup-dir", backup_dir, "--metrics-file", prom
    )
    refused(done, "gone.db: no such database file")
    second = read_metrics(prom)
    assert second[textfile.SUCCESS] == 0
    assert second[textfile.LAST_SUCCESS] == first[textfile.LAST_SUCCESS]  # kept
    assert second[textfile.LAST_SIZE] == first[textfile.LAST_SIZE]
    assert second[textfile.LAST_RUN] >= first[textfile.LAST_RUN]
    # Replaced by a rename (a new inode), never rewritten in place; no temp file left.
    assert prom.stat().st_ino != inode
    assert [p.name for p in prom.parent.iterdir()] == [prom.name]
    assert "# TYPE neuros_backup_last_success_timestamp_seconds gauge" in prom.read_text()


def test_metrics_of_a_host_that_never_succeeded(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    done = tool(
        "backup",
        "--db",
        tmp_path / "gone.db",
        "--backup-dir",
        tmp_path / "b",
        "--metrics-file",
        prom,
    )
    assert done.returncode == 1
    values = read_metrics(prom)
    assert values[textfile.LAST_SUCCESS] == 0
    assert values[textfile.SUCCESS] == 0


# --- compose mode, against a fake docker --------------------------------------------

FAKE_DOCKER = """#!{python} -S
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
tool = [{python!r}, "-S", "-m", "neuros.backup"]
if "ps" in args and "--services" in args:
    print(os.environ["FAKE_RUNNING"].replace(" ", "\\n"))
elif "ps" in args:
    print("c0ffee" if args[-1] in os.environ["FAKE_RUNNING"].split() else "")
elif args[:2] == ["volume", "ls"]:
    print(os.environ["FAKE_VOLUMES"])
elif "config" in args:
    print("neuros:test")
elif "snapshot-sqlite" in args:  # exec in the agent's container: its /data is FAKE_DATA
    os.execv(tool[0], [*tool, "snapshot-sqlite", "--db", os.environ["FAKE_DATA"] + "/neuros.db"])
elif args[0] == "run":  # a one-off container with the volume at /data
    force = ["--force"] if "--force" in args else []
    os.execv(tool[0], [*tool, "install-sqlite", "--db", os.environ["FAKE_DATA"] + "/neuros.db",
                       *force])
else:
    sys.exit("fake docker: unexpected call")
"""


@dataclass
class FakeDocker:
    root: Path
    running: str = "neuros"
    volumes: str = "neuros_neuros-data"

    @property
    def data(self) -> Path:
        return self.root / "volume"

    def env(self) -> dict[str, str]:
        bin_dir = self.root / "bin"
        if not bin_dir.exists():
            bin_dir.mkdir(parents=True)
            docker = bin_dir / "docker"
            docker.write_text(FAKE_DOCKER.format(python=sys.executable))
            docker.chmod(0o755)
            self.data.mkdir()
        return {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "FAKE_LOG": str(self.root / "calls.log"),
            "FAKE_RUNNING": self.running,
            "FAKE_VOLUMES": self.volumes,
            "FAKE_DATA": str(self.data),
        }

    def calls(self) -> list[list[str]]:
        log = self.root / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [json.loads(line) for line in lines]


COMPOSE = ["docker", "compose", "--project-name", "p1", "--file", "docker-compose.yml"]


def test_compose_backup_snapshots_inside_the_agent_container(
    made: tuple[Path, Path], tmp_path: Path
) -> None:
    fake = FakeDocker(tmp_path)
    env = fake.env()
    (fake.data / "neuros.db").write_bytes(made[0].read_bytes())
    done = tool("backup", "--compose-project", "p1", "--backup-dir", tmp_path / "b", env=env)
    assert done.returncode == 0, done.stderr
    (new,) = archives(tmp_path / "b")
    manifest = json.loads(members(new)[0][1])
    assert manifest["source"] == "compose project p1, service neuros"
    assert manifest["row_counts"] == row_counts(made[0])
    assert [[ "docker", *c] for c in fake.calls()] == [
        [*COMPOSE, "ps", "--status", "running", "--services"],
        [*COMPOSE, "exec", "-T", "neuros", "python3", "-m", "neuros.backup",
         "snapshot-sqlite", "--db", "/data/neuros.db"],
    ]  # fmt: skip


def test_compose_restore_writes_only_into_the_projects_own_stopped_volume(
    archive: Path, tmp_path: Path
) -> None:
    fake = FakeDocker(tmp_path)
    refused(
        tool("restore", archive, "--compose-project", "p1", env=fake.env()),
        "the agent (neuros) is running: stop it first",
    )
    fake.running, fake.volumes = "", ""
    refused(
        tool("restore", archive, "--compose-project", "p1", env=fake.env()),
        "0 volumes labelled as its neuros-data",
        "never touches a volume it did not create",
    )
    assert list(fake.data.iterdir()) == []
    fake.volumes = "p1_neuros-data"
    done = tool("restore", archive, "--compose-project", "p1", env=fake.env())
    assert done.returncode == 0, done.stderr
    assert row_counts(fake.data / "neuros.db")["readings"] == 200
    assert ["docker", *fake.calls()[-1]] == [
        "docker", "run", "--rm", "-i", "--network", "none", "--user", "10001:10001",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "--volume", "p1_neuros-data:/data", "--entrypoint", "python3", "neuros:test",
        "-m", "neuros.backup", "install-sqlite", "--db", "/data/neuros.db",
    ]  # fmt: skip
    volume_ls = next(c for c in fake.calls() if c[:2] == ["volume", "ls"])
    assert "label=com.docker.compose.project=p1" in volume_ls
    assert "label=com.docker.compose.volume=neuros-data" in volume_ls
    # Now the volume holds data: refused without --force, in the container.
    refused(
        tool("restore", archive, "--compose-project", "p1", env=fake.env()),
        "holds data",
        "without --force",
    )


def test_postgresql_commands_in_compose_and_on_the_host() -> None:
    compose = Compose("p1", ("docker-compose.yml", "docker-compose.scale.yml"))
    runner = compose_runner(compose.base, "p1")
    assert runner.argv("pg_dump", "--format=custom", connect=True) == [
        *compose.base, "exec", "-T", "postgres", "sh", "-c", IN_CONTAINER,
        "pg_dump", "--format=custom",
    ]  # fmt: skip
    assert runner.argv("pg_restore", "--list") == [
        *compose.base,
        "exec",
        "-T",
        "postgres",
        "pg_restore",
        "--list",
    ]
    # The container's shell names user and database from its environment.
    assert shlex.split(IN_CONTAINER) == [
        "exec", "$0", "--username=$POSTGRES_USER", "--dbname=$POSTGRES_DB", "$@"
    ]  # fmt: skip
    secret = "s@cret"  # noqa: S105 - not a real one
    host = host_runner("postgresql://neuros:s%40cret@db:5432/neuros?sslmode=require", None)
    assert host.url == "postgresql://neuros@db:5432/neuros?sslmode=require"
    assert host.password == secret
    assert host.env()["PGPASSWORD"] == secret
    assert host.description == "postgresql://neuros@db:5432/neuros"


def test_copy_data_is_counted_per_table() -> None:
    out = [
        b"SET statement_timeout = 0;\n",
        b"COPY public.readings (user_id, recorded_at_us) FROM stdin;\n",
        b"a\t1\n", b"b\t2\n", b"\\.\n",
        b'COPY public."user_state" (user_id, readiness) FROM stdin;\n', b"\\.\n",
        b"COPY public.schema_version (version, applied_at) FROM stdin;\n",
        b"1\t2026-01-01\n", b"\\.\n",
    ]  # fmt: skip
    assert parse_copy_data(out) == ({"readings": 2, "user_state": 0, "schema_version": 1}, [1])


# --- the restore drill ------------------------------------------------------------

WRITERS = 4
USERS_PER_WRITER = 3
ACKED_BEFORE_BACKUP = 150  # batches
ACKED_AFTER_BACKUP = 30
FIRST_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=20)  # between a user's readings: batches span days
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


@dataclass
class Batch:
    user: str
    instants: list[int]
    sent_at: float
    acked_at: float = 0.0
    kpis: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: dict[str, list[Batch]] = field(default_factory=dict)  # per user, in order
    problems: list[str] = field(default_factory=list)

    def acked(self, after: float = 0.0) -> int:
        with self.lock:
            return sum(b.acked_at > after for bs in self.batches.values() for b in bs)


def _write(n: int, agent: LiveAgent, ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(n)  # noqa: S311 - test data
    users = [f"{USER_PREFIX}-{n * USERS_PER_WRITER + k}" for k in range(USERS_PER_WRITER)]
    next_index = dict.fromkeys(users, 0)
    with agent.client(timeout=10) as client:
        while not stop.is_set():
            user = rng.choice(users)
            body, instants = [], []
            for _ in range(rng.randint(1, 5)):
                at = FIRST_INSTANT + next_index[user] * STEP
                next_index[user] += 1
                instants.append(_us(at))
                body.append(
                    {
                        "recorded_at": at.isoformat(),
                        "rr_intervals_ms": [rng.randrange(600, 1100) for _ in range(6)],
                        "resting_hr_bpm": round(rng.uniform(45, 80), 1),
                        "sleep_hours": round(rng.uniform(4, 9), 2),
                    }
                )
            batch = Batch(user, instants, time.monotonic())
            response = client.post(f"/v1/users/{user}/readings", json={"readings": body})
            if response.status_code != 201:
                with ledger.lock:
                    ledger.problems.append(f"writer {n}: {response.status_code}")
                return
            with ledger.lock:
                batch.acked_at, batch.kpis = time.monotonic(), response.json()["kpis"]
                ledger.batches.setdefault(user, []).append(batch)


def _run_writer(n: int, agent: LiveAgent, ledger: Ledger, stop: threading.Event) -> None:
    try:
        _write(n, agent, ledger, stop)
    except Exception as exc:  # reported by the test, not lost in a thread
        with ledger.lock:
            ledger.problems.append(f"writer {n}: {exc!r}")


@dataclass
class Drill:
    """What a backend gives the drill: the tool's database option, a way to destroy and
    to read the stored readings, and the agent's environment."""

    source: list[str]
    agent_env: dict[str, str]
    db_path: Path
    destroy: Callable[[], None]
    stored: Callable[[], dict[str, set[int]]]  # user -> recorded_at_us
    in_use: str  # the refusal while the agent runs
    settle: Callable[[], None] = lambda: None  # after the agent stopped


@dataclass(frozen=True)
class Window:
    """When the backup ran (monotonic seconds)."""

    started: float
    ended: float


def _check_user(batches: list[Batch], have: set[int], window: Window) -> tuple[int, list[str]]:
    """How many of the user's acknowledged batches the restored database holds (a whole
    prefix of them, at least those acknowledged before the backup started, none sent
    after it ended), and what is wrong."""
    prefix = 0
    while prefix < len(batches) and set(batches[prefix].instants) <= have:
        prefix += 1
    problems = []
    expected = {i for b in batches[:prefix] for i in b.instants}
    if have != expected:
        problems.append(f"{len(have ^ expected)} readings beyond a whole prefix of batches")
    floor = sum(b.acked_at < window.started for b in batches)
    ceiling = next((k for k, b in enumerate(batches) if b.sent_at > window.ended), len(batches))
    if not floor <= prefix <= ceiling:
        problems.append(f"{prefix} of {len(batches)} batches restored, not in [{floor}, {ceiling}]")
    return prefix, problems


def drill(
    live_agent: StartAgent, tmp_path: Path, backend: Drill, extra: list[str]
) -> tuple[Path, LiveAgent]:
    """The drill; returns the archive and the agent running on the restored database."""
    first = live_agent(env=backend.agent_env, db_path=backend.db_path)
    ledger, stop = Ledger(), threading.Event()
    writers = [
        threading.Thread(target=_run_writer, args=(n, first, ledger, stop), daemon=True)
        for n in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    backup_dir = tmp_path / "backups"
    try:
        wait_until(
            lambda: ledger.acked() >= ACKED_BEFORE_BACKUP or bool(ledger.problems),
            timeout=60,
            what="batches before the backup",
        )
        started = time.monotonic()
        backed_up = tool("backup", *backend.source, "--backup-dir", backup_dir, *extra)
        window = Window(started, time.monotonic())
        wait_until(
            lambda: ledger.acked(after=window.ended) >= ACKED_AFTER_BACKUP or bool(ledger.problems),
            timeout=60,
            what="batches after the backup",
        )
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=30)
    assert not ledger.problems, ledger.problems
    assert backed_up.returncode == 0, backed_up.stderr
    (archive,) = archives(backup_dir)
    during = ledger.acked(after=window.started) - ledger.acked(after=window.ended)
    assert during > 0, "no batch was acknowledged while the backup ran"

    # Stop the agent, destroy its database, restore, start it again.
    refused(tool("restore", archive, *backend.source, "--force", *extra), backend.in_use)
    first.stop()
    backend.settle()
    backend.destroy()
    restored = tool("restore", archive, *backend.source, *extra)
    assert restored.returncode == 0, restored.stderr
    second = live_agent(env=backend.agent_env, db_path=backend.db_path)

    stored = backend.stored()
    manifest = json.loads(members(archive)[0][1])
    assert sum(map(len, stored.values())) == manifest["row_counts"]["readings"]
    problems: list[str] = []
    with second.client(timeout=10) as client:
        for user, batches in sorted(ledger.batches.items()):
            prefix, wrong = _check_user(batches, stored.get(user, set()), window)
            problems += wrong
            # The KPIs served now are those acknowledged with the last restored batch.
            kpis = client.get(f"/v1/users/{user}/kpis")
            got = kpis.json() if kpis.status_code == 200 else None
            want = batches[prefix - 1].kpis if prefix else None
            if got != want:
                problems.append(f"KPIs {got} served, {want} acknowledged")
    assert not problems, problems
    verified = tool("verify", archive, *extra)
    assert verified.returncode == 0, verified.stderr
    before = sum(
        len(b.instants) for bs in ledger.batches.values() for b in bs if b.acked_at < started
    )
    print(
        f"\n{backed_up.stdout.strip()}\nreadings acknowledged before the backup: {before}, "
        f"batches acknowledged while it ran ({window.ended - window.started:.2f} s): {during}, "
        f"readings in the archive: {manifest['row_counts']['readings']}"
    )
    return archive, second


@pytest.mark.slow
def test_restore_drill_sqlite(live_agent: StartAgent, tmp_path: Path) -> None:
    db = tmp_path / "agent" / "neuros.db"

    def destroy() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)

    def stored() -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            for user, at in conn.execute("SELECT user_id, recorded_at_us FROM readings"):
                found.setdefault(user, set()).add(at)
        return found

    backend = Drill(["--db", str(db)], {}, db, destroy, stored, "is open in another process")
    archive, _ = drill(live_agent, tmp_path, backend, [])
    print(f"database {db.stat().st_size} bytes, archive {archive.stat().st_size} bytes")


@pytest.fixture
def pg_tools(postgres_server: PostgresServer) -> list[str]:
    """The tool's option naming the PostgreSQL client programs of the test server."""
    return ["--pg-bin", str(postgres_server.bindir)]


def _sessions(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _pg_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]  # noqa: S608
            for t in ("readings", "daily_totals", "user_state", "readiness_counts")
        }


@pytest.mark.slow
def test_restore_drill_postgresql(
    live_agent: StartAgent, tmp_path: Path, pg_url: str, pg_tools: list[str]
) -> None:
    def destroy() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")

    def stored() -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        with psycopg.connect(pg_url) as conn:
            for user, at in conn.execute("SELECT user_id, recorded_at_us FROM readings"):
                found.setdefault(user, set()).add(at)
        return found

    def settle() -> None:  # the stopped agent's sessions end just after it exits
        wait_until(lambda: _sessions(pg_url) == 0, what="the agent's sessions to end")

    backend = Drill(
        ["--database-url", pg_url],
        {"NEUROS_DATABASE_URL": pg_url},
        tmp_path / "unused.db",
        destroy,
        stored,
        "other client session(s)",
        settle,
    )
    archive, agent = drill(live_agent, tmp_path, backend, pg_tools)
    agent.stop()
    settle()
    counts = _pg_counts(pg_url)
    refused(
        tool("restore", archive, "--database-url", pg_url, *pg_tools),
        "holds data",
        "without --force",
    )
    done = tool("restore", archive, "--database-url", pg_url, "--force", *pg_tools)
    assert done.returncode == 0, done.stderr
    assert _pg_counts(pg_url) == counts
    bad = tmp_path / "bad" / archive.name
    bad.parent.mkdir()
    bad.write_bytes(archive.read_bytes())
    sidecar_path(bad).write_bytes(sidecar_path(archive).read_bytes())
    _flip_byte(bad)
    refused(
        tool("restore", bad, "--database-url", pg_url, "--force", *pg_tools),
        "checksum mismatch",
        "nothing was changed",
    )
    assert _pg_counts(pg_url) == counts


def test_tool_errors_never_quote_stored_values_or_the_password() -> None:
    runner = host_runner("postgresql://neuros:Pw-123@db/neuros", None)
    stderr = (
        b"pg_restore: error: could not execute query: ERROR:  duplicate key value violates "
        b'unique constraint "readings_pkey" Key (user_id, recorded_at_us)=(bk-private-user-1, 5)'
        b" for Pw-123\nDETAIL:  Key (user_id)=(bk-private-user-1) already exists.\n"
        b'CONTEXT:  COPY readings, line 1: "bk-private-user-1\t5"\n'
    )
    message = runner.message("pg_restore", 1, stderr)
    assert USER_PREFIX not in message
    assert "Pw-123" not in message
    assert message.startswith("pg_restore failed (exit 1): pg_restore: error: could not execute")
    assert "Key (user_id, recorded_at_us)=(...)" in message
    with pytest.raises(BackupError, match="pg_dump not found in /nonexistent"):
        PgRunner("x", pg_bin=Path("/nonexistent")).argv("pg_dump")


def test_no_user_id_in_any_output(made: tuple[Path, Path], tmp_path: Path) -> None:
    db, archive = made
    target = make_db(tmp_path / "neuros.db", users=3, readings=3)
    for args in (
        ("backup", "--db", db, "--backup-dir", tmp_path / "b"),
        ("list", "--backup-dir", archive.parent, "--json"),
        ("verify", archive, "--json"),
        ("restore", archive, "--db", target),
        ("restore", archive, "--db", target, "--force"),
    ):
        tool(*args)
    assert OUTPUTS  # with the other tests of this module, all their output too
    leaked = [out for out in OUTPUTS if USER_PREFIX in out]
    assert not leaked, leaked[0][:500]
