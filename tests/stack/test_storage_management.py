"""scripts/storage-management.sh, driven with a stub ``docker`` first on PATH."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.stub_docker import (
    STORAGE_SCRIPT,
    STUB_RECLAIMED_BYTES,
    StubDocker,
    install_stub_docker,
    run_storage_script,
)
from tests.support.tooling import tool

DAY = 86400
METRICS = {
    "neuros_storage_cleanup_last_run_timestamp_seconds",
    "neuros_storage_cleanup_last_success_timestamp_seconds",
    "neuros_storage_cleanup_reclaimed_bytes",
    "neuros_storage_cleanup_success",
}


def age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    os.utime(path, (when, when))


def write_log(path: Path, size: int, days: float) -> Path:
    path.write_bytes(b"x" * size)
    age(path, days)
    return path


def read_metrics(path: Path) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


class Env:
    def __init__(self, tmp_path: Path, stub: StubDocker) -> None:
        self.stub = stub
        self.log_dir = tmp_path / "logs"
        self.log_dir.mkdir()
        self.lock = tmp_path / "storage.lock"
        self.metrics = tmp_path / "textfile" / "neuros_storage.prom"
        self.cron = tmp_path / "cron.d" / "neuros-storage"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_storage_script(self.stub, *args, *self.options())

    def options(self) -> list[str]:
        return ["--log-dir", str(self.log_dir), "--lock-file", str(self.lock)]

    def clean(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("clean", "--metrics-file", str(self.metrics), *extra)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, install_stub_docker(tmp_path / "stub"))


def forbidden(call: list[str]) -> bool:
    joined = " ".join(call)
    return (
        "volume prune" in joined
        or "volume rm" in joined
        or (call[:1] == ["volume"] and "rm" in call)
        or "system prune" in joined
        or "--volumes" in call
    )


def prune_calls(stub: StubDocker) -> list[list[str]]:
    return [call for call in stub.calls() if "prune" in call]


def test_help_and_bad_arguments(env: Env) -> None:
    help_result = run_storage_script(env.stub, "--help")
    assert help_result.returncode == 0
    assert help_result.stdout.startswith("Usage:")
    assert "install-cron" in help_result.stdout

    bad = run_storage_script(env.stub, "report", "--no-such-option")
    assert bad.returncode != 0
    assert "unknown argument" in bad.stderr
    missing = run_storage_script(env.stub)
    assert missing.returncode != 0
    assert "missing command" in missing.stderr


def test_dry_run_changes_nothing(env: Env) -> None:
    old = write_log(env.log_dir / "old.log", 100, 30)
    rotated = write_log(env.log_dir / "app.log.1", 100, 3)
    before = {p.name: (p.stat().st_mtime, p.stat().st_size) for p in env.log_dir.iterdir()}

    result = env.clean("--dry-run")

    assert result.returncode == 0, result.stderr
    assert prune_calls(env.stub) == [], "the dry run called docker prune"
    assert "would run: docker container prune -f" in result.stdout
    assert f"would delete: {old}" in result.stdout
    assert f"would compress: {rotated}" in result.stdout
    after = {p.name: (p.stat().st_mtime, p.stat().st_size) for p in env.log_dir.iterdir()}
    assert after == before
    assert not env.metrics.exists()
    assert not env.metrics.parent.exists()


def test_clean_prunes_only_allowed_things(env: Env) -> None:
    result = env.clean()

    assert result.returncode == 0, result.stderr
    calls = env.stub.calls()
    assert calls, "the stub recorded no call"
    assert [c for c in calls if forbidden(c)] == []
    assert not any(c[:2] == ["system", "prune"] for c in calls)
    prunes = prune_calls(env.stub)
    assert ["container", "prune", "-f"] in prunes
    assert ["image", "prune", "-f"] in prunes
    assert ["image", "prune", "-a", "-f", "--filter", "until=240h"] in prunes
    assert ["builder", "prune", "-f", "--filter", "until=168h"] in prunes
    assert "reclaimed 1.5MB (1500000 bytes)" in result.stdout
    assert "reclaimed 2.5MB (2500000 bytes)" in result.stdout


def test_thresholds_are_configurable(env: Env) -> None:
    result = env.clean("--image-age", "48h", "--build-cache-age", "24h")

    assert result.returncode == 0, result.stderr
    prunes = prune_calls(env.stub)
    assert ["image", "prune", "-a", "-f", "--filter", "until=48h"] in prunes
    assert ["builder", "prune", "-f", "--filter", "until=24h"] in prunes


def test_old_logs_go_recent_stay_rotated_get_compressed(env: Env) -> None:
    old = write_log(env.log_dir / "old.log", 1000, 20)
    old_nested = env.log_dir / "sub"
    old_nested.mkdir()
    old_deep = write_log(old_nested / "deep.log", 500, 15)
    recent = write_log(env.log_dir / "recent.log", 1000, 13)
    current = write_log(env.log_dir / "current.log", 1000, 0)
    rotated = write_log(env.log_dir / "app.log.1", 10_000, 3)
    fresh_rotated = write_log(env.log_dir / "app.log.2", 10_000, 0.1)
    already = write_log(env.log_dir / "app.log.3.gz", 10, 3)

    result = env.clean()

    assert result.returncode == 0, result.stderr
    assert not old.exists()
    assert not old_deep.exists()
    assert recent.exists()
    assert current.exists()
    assert not rotated.exists()
    assert Path(f"{rotated}.gz").exists()
    assert fresh_rotated.exists(), "a rotated log younger than a day was compressed"
    assert already.exists()
    assert not Path(f"{already}.gz").exists()
    assert "deleted 2 log file(s)" in result.stdout
    assert "(1500 bytes)" in result.stdout
    assert "compressed 1 rotated log file(s)" in result.stdout
    assert read_metrics(env.metrics)["neuros_storage_cleanup_reclaimed_bytes"] > (
        STUB_RECLAIMED_BYTES + 1500
    )


def test_log_retention_days_option(env: Env) -> None:
    five = write_log(env.log_dir / "five.log", 10, 5)
    two = write_log(env.log_dir / "two.log", 10, 2)

    result = env.clean("--log-retention-days", "3")

    assert result.returncode == 0, result.stderr
    assert not five.exists()
    assert two.exists()


def test_metrics_file_on_success(env: Env) -> None:
    started = time.time()
    result = env.clean()

    assert result.returncode == 0, result.stderr
    metrics = read_metrics(env.metrics)
    assert set(metrics) == METRICS
    assert metrics["neuros_storage_cleanup_success"] == 1
    assert metrics["neuros_storage_cleanup_reclaimed_bytes"] == STUB_RECLAIMED_BYTES
    assert metrics["neuros_storage_cleanup_last_run_timestamp_seconds"] >= int(started)
    assert (
        metrics["neuros_storage_cleanup_last_success_timestamp_seconds"]
        == metrics["neuros_storage_cleanup_last_run_timestamp_seconds"]
    )
    text = env.metrics.read_text()
    for name in METRICS:
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} gauge" in text
    assert [p.name for p in env.metrics.parent.iterdir()] == [env.metrics.name], (
        "temporary file left behind"
    )


def test_failing_docker_keeps_previous_success(tmp_path: Path, env: Env) -> None:
    assert env.clean().returncode == 0
    previous = read_metrics(env.metrics)["neuros_storage_cleanup_last_success_timestamp_seconds"]
    # Make the previous success visibly older than the next run.
    env.metrics.write_text(
        env.metrics.read_text().replace(
            f"neuros_storage_cleanup_last_success_timestamp_seconds {int(previous)}",
            "neuros_storage_cleanup_last_success_timestamp_seconds 1000",
        )
    )
    env.stub = install_stub_docker(tmp_path / "failing", fail_prune=True)
    old = write_log(env.log_dir / "old.log", 10, 30)

    result = env.clean()

    assert result.returncode != 0
    assert "failed" in result.stderr
    metrics = read_metrics(env.metrics)
    assert metrics["neuros_storage_cleanup_success"] == 0
    assert metrics["neuros_storage_cleanup_last_success_timestamp_seconds"] == 1000
    assert metrics["neuros_storage_cleanup_last_run_timestamp_seconds"] >= previous
    assert not old.exists(), "log retention must still run when docker fails"


def test_failure_without_previous_file_reports_never(tmp_path: Path) -> None:
    env = Env(tmp_path, install_stub_docker(tmp_path / "stub", fail_prune=True))
    result = env.clean()

    assert result.returncode != 0
    metrics = read_metrics(env.metrics)
    assert metrics["neuros_storage_cleanup_success"] == 0
    assert metrics["neuros_storage_cleanup_last_success_timestamp_seconds"] == 0


def test_second_concurrent_clean_is_refused(env: Env) -> None:
    env.lock.touch()
    with env.lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = env.clean()
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    assert result.returncode != 0
    assert "another storage cleanup is running" in result.stderr
    assert prune_calls(env.stub) == []
    assert not env.metrics.exists()

    assert env.clean().returncode == 0, "the lock was not released"


def cron_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("0 3 * * *")]


def test_cron_install_is_idempotent_and_uninstall_removes_it(env: Env) -> None:
    args = ["--cron-file", str(env.cron)]
    first = env.run("install-cron", *args)
    assert first.returncode == 0, first.stderr
    second = env.run("install-cron", *args)
    assert second.returncode == 0, second.stderr

    lines = cron_lines(env.cron)
    assert len(lines) == 1, env.cron.read_text()
    content = env.cron.read_text().splitlines()
    schedule_lines = [line for line in content if line and not line.startswith("#")]
    assert [line for line in schedule_lines if "=" not in line.split(" ")[0]] == lines
    assert any(line.startswith("SHELL=") for line in content)
    assert any(line.startswith("PATH=") for line in content)

    line = lines[0]
    script = str(STORAGE_SCRIPT.resolve())
    assert line.startswith(f"0 3 * * * root {script} clean ")
    assert Path(line.split()[6]).is_absolute()
    assert f"--log-dir {env.log_dir}" in line
    assert line.endswith(f">> {env.log_dir}/storage-cleanup.log 2>&1")
    assert oct(env.cron.stat().st_mode & 0o777) == "0o644"

    removed = env.run("uninstall-cron", *args)
    assert removed.returncode == 0, removed.stderr
    assert not env.cron.exists()
    again = env.run("uninstall-cron", *args)
    assert again.returncode == 0


def test_cron_uses_absolute_path_when_called_relatively(env: Env) -> None:
    result = subprocess.run(
        ["bash", "scripts/storage-management.sh", "install-cron", "--cron-file", str(env.cron)],
        capture_output=True,
        text=True,
        cwd=STORAGE_SCRIPT.parent.parent,
        env=env.stub.env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = cron_lines(env.cron)
    assert line.split()[6] == str(STORAGE_SCRIPT.resolve())


def test_cron_dry_run_writes_nothing(env: Env) -> None:
    result = env.run("install-cron", "--cron-file", str(env.cron), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "0 3 * * * root" in result.stdout
    assert not env.cron.exists()


def test_cron_does_not_overwrite_a_foreign_file(env: Env) -> None:
    env.cron.parent.mkdir()
    env.cron.write_text("0 1 * * * root /usr/bin/true\n")
    assert env.run("install-cron", "--cron-file", str(env.cron)).returncode != 0
    assert env.run("uninstall-cron", "--cron-file", str(env.cron)).returncode != 0
    assert env.cron.read_text() == "0 1 * * * root /usr/bin/true\n"


def test_report_with_docker(env: Env) -> None:
    write_log(env.log_dir / "a.log", 2048, 0)
    result = env.run("report")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Filesystem" in out
    assert "docker system df" in out
    assert "neuros_neuros-data" in out
    assert "12.5MB" in out
    assert "1.2GB" in out
    assert str(env.log_dir) in out
    assert "Prometheus retention time" in out
    assert "Tempo block_retention" in out
    calls = env.stub.calls()
    assert ["volume", "ls", "-q", "--filter", "label=com.docker.compose.project=neuros"] in calls
    assert prune_calls(env.stub) == []


def test_report_json(env: Env) -> None:
    write_log(env.log_dir / "a.log", 2048, 0)
    result = env.run("report", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["docker"]["available"] is True
    assert report["docker"]["system_df"][0]["Type"] == "Local Volumes"
    volumes = {v["name"]: v for v in report["volumes"]}
    assert volumes["neuros_neuros-data"]["size_bytes"] == 12_500_000
    assert volumes["neuros_prometheus-data"]["size_bytes"] == 1_200_000_000
    assert report["log_dir"]["exists"] is True
    assert report["log_dir"]["size_bytes"] >= 2048
    assert isinstance(report["filesystem"]["avail_bytes"], int)
    assert set(report["retention"]) == {
        "prometheus_retention_time",
        "prometheus_retention_size",
        "tempo_block_retention",
        "log_max_size",
        "log_max_file",
    }


def test_report_project_name_from_environment(env: Env) -> None:
    result = subprocess.run(
        ["bash", str(STORAGE_SCRIPT), "report", *env.options()],
        capture_output=True,
        text=True,
        env={**env.stub.env(), "COMPOSE_PROJECT_NAME": "other"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert ["volume", "ls", "-q", "--filter", "label=com.docker.compose.project=other"] in (
        env.stub.calls()
    )


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
def test_report_without_docker(tmp_path: Path, json_output: bool) -> None:
    env = Env(tmp_path, install_stub_docker(tmp_path / "stub", unreachable=True))
    result = env.run("report", *(["--json"] if json_output else []))

    assert result.returncode == 0, result.stderr
    assert "Cannot connect to the Docker daemon" in result.stderr
    assert "Docker part skipped" in result.stderr
    if json_output:
        report = json.loads(result.stdout)
        assert report["docker"]["available"] is False
        assert "Cannot connect" in report["docker"]["error"]
        assert report["filesystem"]["size_bytes"] > 0
    else:
        assert "Filesystem" in result.stdout
        assert "Use%" in result.stdout
        assert str(env.log_dir) in result.stdout


def test_clean_without_docker_still_cleans_logs_and_fails(tmp_path: Path) -> None:
    env = Env(tmp_path, install_stub_docker(tmp_path / "stub", unreachable=True))
    old = write_log(env.log_dir / "old.log", 10, 30)

    result = env.clean()

    assert result.returncode != 0
    assert "Docker cleanup skipped" in result.stderr
    assert not old.exists()
    assert read_metrics(env.metrics)["neuros_storage_cleanup_success"] == 0


def test_script_passes_shellcheck() -> None:
    result = subprocess.run(
        [tool("shellcheck"), "-x", str(STORAGE_SCRIPT)],
        cwd=STORAGE_SCRIPT.parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# docker-compose.yml's settings, written as the real file writes them.
COMPOSE_BOUNDS = (
    """\
services:
  prometheus:
    command:
      - --config.file=/etc/prometheus/prometheus.yml
      - --storage.tsdb.retention.time="""
    "${PROMETHEUS_RETENTION_TIME:?set PROMETHEUS_RETENTION_TIME in .env}"
    """
      - "--storage.tsdb.retention.size="""
    '${PROMETHEUS_RETENTION_SIZE:?set PROMETHEUS_RETENTION_SIZE in .env}"'
    """
    logging:
      driver: json-file
      options:
        max-size: __MAX_SIZE__
        max-file: "${LOG_MAX_FILE:-3}"  # rotated files kept
"""
)
REAL_COMPOSE = REPO_ROOT / paths.COMPOSE_FILE
RETENTION_LABELS = {
    "prometheus_retention_time": "Prometheus retention time",
    "prometheus_retention_size": "Prometheus retention size",
    "tempo_block_retention": "Tempo block_retention",
    "log_max_size": "Container logs json-file max-size",
    "log_max_file": "Container logs json-file max-file",
}


class BoundsRepo:
    """A repository of its own for the script, which reads the bounds relative to it:
    docker-compose.yml, .env.example, optionally .env, tempo/tempo.yml."""

    def __init__(self, tmp_path: Path, env: Env, max_size: str = "${LOG_MAX_SIZE:-10m}") -> None:
        self.root = tmp_path / "repo"
        self.env = env
        (self.root / "scripts" / "lib").mkdir(parents=True)
        (self.root / "tempo").mkdir()
        self.script = self.root / "scripts" / "storage-management.sh"
        self.script.write_text(STORAGE_SCRIPT.read_text())
        cron_lib = STORAGE_SCRIPT.parent / "lib" / "cron.sh"
        (self.root / "scripts" / "lib" / "cron.sh").write_text(cron_lib.read_text())
        (self.root / "tempo" / "tempo.yml").write_text(
            "compactor:\n  compaction:\n    block_retention: 72h\n"
        )
        self.compose(max_size)
        self.env_file(
            ".env.example", "PROMETHEUS_RETENTION_TIME=21d\nPROMETHEUS_RETENTION_SIZE=7GB\n"
        )

    def compose(self, max_size: str) -> None:
        text = COMPOSE_BOUNDS.replace("__MAX_SIZE__", max_size)
        (self.root / "docker-compose.yml").write_text(text)

    def env_file(self, name: str, text: str) -> None:
        (self.root / name).write_text(text)

    def run(self, *extra: str) -> str:
        result = subprocess.run(
            ["bash", str(self.script), "report", *extra, *self.env.options()],
            capture_output=True,
            text=True,
            env=self.env.stub.env(),
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def bounds(self) -> tuple[dict[str, str], dict[str, str | None]]:
        """The retention bounds as the text report prints them, and as the JSON has them."""
        text = self.run()
        printed = {}
        for key, label in RETENTION_LABELS.items():
            match = re.search(rf"^  {re.escape(label)} +(.*)$", text, flags=re.MULTILINE)
            assert match, text
            printed[key] = match.group(1)
        retention: dict[str, str | None] = json.loads(self.run("--json"))["retention"]
        return printed, retention


def test_report_shows_configured_retention_bounds(tmp_path: Path, env: Env) -> None:
    repo = BoundsRepo(tmp_path, env)
    expected = {
        "prometheus_retention_time": "21d",
        "prometheus_retention_size": "7GB",
        "tempo_block_retention": "72h",
        "log_max_size": "10m",
        "log_max_file": "3",
    }
    assert repo.bounds() == (expected, expected)
    assert "(docker-compose.yml with .env.example)" in repo.run()
    # Compose reads .env alone once it exists: .env.example's values no longer count.
    repo.env_file(
        ".env", "PROMETHEUS_RETENTION_TIME=30d\nPROMETHEUS_RETENTION_SIZE=9GB\nLOG_MAX_FILE=5\n"
    )
    printed, retention = repo.bounds()
    assert retention == {
        **expected,
        "prometheus_retention_time": "30d",
        "prometheus_retention_size": "9GB",
        "log_max_file": "5",
    }
    assert printed == retention
    assert "(docker-compose.yml with .env)" in repo.run()
    # A required bound .env lacks: compose would refuse to start, and the report says so.
    repo.env_file(".env", "PROMETHEUS_RETENTION_TIME=30d\n")
    printed, retention = repo.bounds()
    assert retention["prometheus_retention_size"] is None
    assert printed["prometheus_retention_size"] == (
        "unset (compose refuses to start: set PROMETHEUS_RETENTION_SIZE in .env)"
    )
    assert retention["log_max_file"] == printed["log_max_file"] == "3"


# (max-size as written in compose, .env.example, .env or None, the value in force or
# None when compose has none, what the text report prints).
INTERPOLATION_CASES = [
    ("${LOG_MAX_SIZE:-10m}", "LOG_MAX_SIZE=20m\n", None, "20m", "20m"),
    ("${LOG_MAX_SIZE:-10m}", "LOG_MAX_SIZE=20m\n", "LOG_MAX_SIZE=50m\n", "50m", "50m"),
    ("${LOG_MAX_SIZE:-10m}", "LOG_MAX_SIZE=20m\n", "OTHER=1\n", "10m", "10m"),
    ("${LOG_MAX_SIZE:-10m}", "", "LOG_MAX_SIZE=\n", "10m", "10m"),
    ("${LOG_MAX_SIZE-10m}", "", None, "10m", "10m"),
    ("${LOG_MAX_SIZE-10m}", "LOG_MAX_SIZE=\n", None, None, "not set"),
    ("${LOG_MAX_SIZE-10m}", "LOG_MAX_SIZE=30m\n", None, "30m", "30m"),
    ("${LOG_MAX_SIZE}", "LOG_MAX_SIZE=30m\n", None, "30m", "30m"),
    ("${LOG_MAX_SIZE}", "", None, None, "not set"),
    ("$LOG_MAX_SIZE", "LOG_MAX_SIZE=30m\n", None, "30m", "30m"),
    ('"$LOG_MAX_SIZE"  # comment', "LOG_MAX_SIZE=30m # comment\n", None, "30m", "30m"),
    ("${LOG_MAX_SIZE:?set LOG_MAX_SIZE}", "LOG_MAX_SIZE=30m\n", None, "30m", "30m"),
    (
        "${LOG_MAX_SIZE:?set LOG_MAX_SIZE}",
        "",
        "LOG_MAX_SIZE=\n",
        None,
        "unset (compose refuses to start: set LOG_MAX_SIZE)",
    ),
    ("${LOG_MAX_SIZE?set LOG_MAX_SIZE}", "LOG_MAX_SIZE=\n", None, None, "not set"),
    (
        "${LOG_MAX_SIZE?set LOG_MAX_SIZE}",
        "",
        None,
        None,
        "unset (compose refuses to start: set LOG_MAX_SIZE)",
    ),
    ("${LOG_MAX_SIZE:+25m}", "LOG_MAX_SIZE=30m\n", None, "25m", "25m"),
    ("${LOG_MAX_SIZE:-${LOG_SIZE:-7m}}", "LOG_SIZE=8m\n", None, "8m", "8m"),
    ("${LOG_MAX_SIZE:-${LOG_SIZE:-7m}}", "", None, "7m", "7m"),
    ("${LOG_MAX_SIZE:-$LOG_SIZE}", "LOG_SIZE=8m\n", None, "8m", "8m"),
    ("1$$0m", "", None, "1$0m", "1$0m"),
    ("${LOG_MAX_SIZE}", "export LOG_MAX_SIZE='4$0m'\n", None, "4$0m", "4$0m"),
    ("${LOG_MAX_SIZE}", 'LOG_MAX_SIZE="40m"\nLOG_MAX_SIZE="45m"\n', None, "45m", "45m"),
]


@pytest.mark.parametrize(
    ("written", "example", "dotenv", "value", "printed"),
    INTERPOLATION_CASES,
    ids=[f"{c[0]}|{c[1].strip()}|{(c[2] or 'no .env').strip()}" for c in INTERPOLATION_CASES],
)
def test_report_resolves_each_interpolation_form(
    tmp_path: Path,
    env: Env,
    written: str,
    example: str,
    dotenv: str | None,
    value: str | None,
    printed: str,
) -> None:
    repo = BoundsRepo(tmp_path, env, max_size=written)
    repo.env_file(".env.example", example)
    if dotenv is not None:
        repo.env_file(".env", dotenv)
    text, retention = repo.bounds()
    assert retention["log_max_size"] == value
    assert text["log_max_size"] == printed


def test_report_prints_the_real_compose_files_bounds_resolved(env: Env) -> None:
    """On this repository: what the real docker-compose.yml writes as `${VAR:-default}`
    or `${VAR:?message}` comes out as a value, never as the interpolation."""
    assert "${LOG_MAX_SIZE:-" in REAL_COMPOSE.read_text()
    result = env.run("report", "--json")
    assert result.returncode == 0, result.stderr
    retention = json.loads(result.stdout)["retention"]
    assert all(value and "$" not in value for value in retention.values()), retention
