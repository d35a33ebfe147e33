"""scripts/backup.sh, the wrapper: its interface, its cron entry, and what it hands to
``python -m neuros.backup`` (tests/agent/test_backup.py tests the tool and the restore drill)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from neuros.store import Store
from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.stub_docker import install_stub_docker, run_storage_script

BACKUP_SCRIPT = REPO_ROOT / paths.BACKUP_SCRIPT
STORAGE_SCRIPT = REPO_ROOT / paths.STORAGE_SCRIPT


def run(script: Path, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cron_entry(path: Path) -> tuple[int, int, str]:
    """(hour, minute, command) of the one schedule line of a cron.d file."""
    (line,) = (
        line
        for line in path.read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    )
    minute, hour, *_, user = line.split(maxsplit=6)[:6]
    assert user == "root", line
    return int(hour), int(minute), line.split(maxsplit=6)[6]


def test_help_lists_every_command_and_option() -> None:
    result = run(BACKUP_SCRIPT, "--help")

    assert result.returncode == 0
    assert result.stdout.startswith("Usage:")
    parser = BACKUP_SCRIPT.read_text().split("parse_args() {")[1].split("\n}\n")[0]
    options = set(re.findall(r"^\s+(--[a-z-]+)\)", parser, re.MULTILINE))
    assert "--dry-run" in options
    documented = set(re.findall(r"--[a-z-]+", result.stdout))
    assert options <= documented, f"options missing from --help: {options - documented}"
    for command in ("backup", "restore", "verify", "list", "install-cron", "uninstall-cron"):
        assert re.search(rf"^  {command}\b", result.stdout, re.MULTILINE), command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "missing command"),
        (("backup", "--no-such-option"), "unknown option"),
        (("restore",), "restore needs an ARCHIVE"),
        (("verify",), "verify needs an ARCHIVE"),
        (("list", "extra"), "list takes no argument"),
        (("backup", "--db", "a.db", "--database-url", "postgresql://x/y"), "not both"),
        (("backup", "--keep-daily", "seven"), "--keep-daily must be a number"),
        (("backup", "--backup-dir"), "--backup-dir needs a value"),
    ],
)
def test_usage_errors_exit_2_with_a_message(args: tuple[str, ...], message: str) -> None:
    result = run(BACKUP_SCRIPT, *args)

    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cron_runs_daily_after_the_storage_cleanup(tmp_path: Path) -> None:
    backup_cron, storage_cron = tmp_path / "neuros-backup", tmp_path / "neuros-storage"
    logs = tmp_path / "logs"
    metrics = tmp_path / "textfile" / "neuros_backup.prom"
    backup = run(
        BACKUP_SCRIPT,
        "install-cron",
        "--cron-file",
        str(backup_cron),
        "--log-dir",
        str(logs),
        "--backup-dir",
        str(tmp_path / "backups"),
        "--metrics-file",
        str(metrics),
        "--keep-daily",
        "5",
    )
    storage = run(
        STORAGE_SCRIPT, "install-cron", "--cron-file", str(storage_cron), "--log-dir", str(logs)
    )
    assert backup.returncode == 0, backup.stderr
    assert storage.returncode == 0, storage.stderr

    hour, minute, command = cron_entry(backup_cron)
    assert (hour, minute) > cron_entry(storage_cron)[:2]
    assert command.startswith(f"{BACKUP_SCRIPT} backup --compose-project neuros ")
    assert f"--metrics-file {metrics}" in command
    assert "--keep-daily 5" in command
    assert command.endswith(f">> {logs}/backup.log 2>&1")
    assert oct(backup_cron.stat().st_mode & 0o777) == "0o644"

    again = run(
        BACKUP_SCRIPT, "install-cron", "--cron-file", str(backup_cron), "--log-dir", str(logs)
    )
    assert again.returncode == 0, again.stderr
    assert len([line for line in backup_cron.read_text().splitlines() if " root " in line]) == 1

    removed = run(BACKUP_SCRIPT, "uninstall-cron", "--cron-file", str(backup_cron))
    assert removed.returncode == 0, removed.stderr
    assert not backup_cron.exists()


def test_cron_refuses_a_password_in_the_database_url(tmp_path: Path) -> None:
    cron = tmp_path / "neuros-backup"
    url = "postgresql://neuros:s3cret@db:5432/neuros"

    result = run(BACKUP_SCRIPT, "install-cron", "--cron-file", str(cron), "--database-url", url)

    assert result.returncode == 1
    assert ".pgpass" in result.stderr
    assert "s3cret" not in result.stdout + result.stderr
    assert not cron.exists()
    without = run(
        BACKUP_SCRIPT,
        "install-cron",
        "--cron-file",
        str(cron),
        "--log-dir",
        str(tmp_path / "logs"),
        "--database-url",
        "postgresql://neuros@db:5432/neuros",
    )
    assert without.returncode == 0, without.stderr
    assert "--database-url postgresql://neuros@db:5432/neuros" in cron_entry(cron)[2]


def test_cron_never_overwrites_or_removes_a_foreign_file(tmp_path: Path) -> None:
    cron = tmp_path / "neuros-backup"
    cron.write_text("0 1 * * * root something-else\n")

    installed = run(BACKUP_SCRIPT, "install-cron", "--cron-file", str(cron))
    removed = run(BACKUP_SCRIPT, "uninstall-cron", "--cron-file", str(cron))

    assert installed.returncode == 1
    assert "not overwriting" in installed.stderr
    assert removed.returncode == 1
    assert "not removing" in removed.stderr
    assert cron.read_text() == "0 1 * * * root something-else\n"


def test_cron_dry_run_writes_nothing(tmp_path: Path) -> None:
    cron = tmp_path / "cron.d" / "neuros-backup"

    result = run(BACKUP_SCRIPT, "install-cron", "--cron-file", str(cron), "--dry-run")

    assert result.returncode == 0, result.stderr
    assert f"would write {cron}:" in result.stdout
    assert "30 3 * * * root" in result.stdout
    assert not cron.parent.exists()


def test_the_wrapper_runs_the_tool_from_any_directory(tmp_path: Path) -> None:
    result = run(BACKUP_SCRIPT, "list", "--backup-dir", str(tmp_path), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert f"no archives in {tmp_path}" in result.stdout


def test_backup_through_the_wrapper_then_the_storage_report_lists_it(tmp_path: Path) -> None:
    db = tmp_path / "neuros.db"
    store = Store(db)
    store.open()
    store.close()
    backups = tmp_path / "backups"

    made = run(BACKUP_SCRIPT, "backup", "--db", str(db), "--backup-dir", str(backups))

    assert made.returncode == 0, made.stderr
    (archive,) = backups.glob("neuros-sqlite-*.tar.gz")
    stub = install_stub_docker(tmp_path / "stub")
    text = run_storage_script(stub, "report", "--backup-dir", str(backups))
    as_json = run_storage_script(stub, "report", "--json", "--backup-dir", str(backups))
    assert text.returncode == 0, text.stderr
    assert as_json.returncode == 0, as_json.stderr
    assert f"== Backups in {backups} (scripts/backup.sh) ==" in text.stdout
    assert archive.name in text.stdout.split("== Backups in")[1]
    listed = json.loads(as_json.stdout)["backups"]
    assert listed["dir"] == str(backups)
    assert [entry["name"] for entry in listed["archives"]] == [archive.name]
