"""The compose node-exporter flags, run on the real node_exporter binary.

The pinned image (NODE_EXPORTER_IMAGE) and the tools folder's node_exporter are the same
1.11 release, so running the binary with exactly compose's flags proves they are accepted
and that the textfile directory is where the storage and backup crons (docs/operations.md,
docs/backups.md) write their metrics.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support import compose_model as cm
from tests.support.processes import free_port, wait_until
from tests.support.stub_docker import install_stub_docker, run_storage_script
from tests.support.tooling import tool

SERVICE = "node-exporter"
ROOTFS_FLAG = "--path.rootfs"
TEXTFILE_FLAG = "--collector.textfile.directory"
# The pages that give the cron commands: the storage cron and a summary of the backup
# cron in operations.md, the backup cron in full in backups.md.
CRON_PAGES = (
    REPO_ROOT / paths.DOCS_DIR / "operations.md",
    REPO_ROOT / paths.DOCS_DIR / "backups.md",
)
STORAGE_METRIC = "neuros_storage_cleanup_success"


def documented_metrics_file() -> PurePosixPath:
    """The --metrics-file the docs tell the storage cron to write; the backup cron's
    (scripts/backup.sh) must be in the same folder, the one node-exporter reads."""
    found = {
        PurePosixPath(p)
        for page in CRON_PAGES
        for p in re.findall(r"--metrics-file\s+(/\S+\.prom)", page.read_text(encoding="utf-8"))
    }
    assert len({path.parent for path in found}) == 1, f"the docs name several folders: {found}"
    storage = [path for path in found if path.name.startswith("neuros_storage")]
    assert len(storage) == 1, f"the docs must name one storage --metrics-file path, found {found}"
    assert any(path.name.startswith("neuros_backup") for path in found), found
    return storage[0]


@pytest.fixture(scope="module")
def command() -> list[str]:
    stack = cm.Stack(compose_binary=tool("docker-compose"), password=secrets.token_urlsafe(16))
    service = stack.services[SERVICE]
    return [str(argument) for argument in service.get("command") or []]


def flag(command: list[str], name: str) -> str:
    values = [arg.partition("=")[2] for arg in command if arg.partition("=")[0] == name]
    assert len(values) == 1, f"{SERVICE} must pass {name}=... once: {command}"
    return values[0]


def test_textfile_directory_is_where_the_documented_cron_writes(command: list[str]) -> None:
    rootfs = PurePosixPath(flag(command, ROOTFS_FLAG))
    textfile = PurePosixPath(flag(command, TEXTFILE_FLAG))
    assert rootfs in textfile.parents, f"{textfile} is not under the host mount {rootfs}"
    on_host = PurePosixPath("/") / textfile.relative_to(rootfs)
    assert on_host == documented_metrics_file().parent, (
        f"node-exporter reads {on_host} on the host, the documented cron writes "
        f"{documented_metrics_file()}"
    )


@pytest.fixture
def node_exporter(command: list[str], tmp_path: Path) -> Iterator[str]:
    """The real node_exporter with compose's flags, the host root mapped to a tmp dir."""
    binary = tool("node_exporter")
    rootfs = flag(command, ROOTFS_FLAG)
    host = tmp_path / "host"
    metrics_file = host / documented_metrics_file().relative_to("/")
    stub = install_stub_docker(tmp_path / "stub")
    written = run_storage_script(
        stub,
        "clean",
        "--metrics-file",
        str(metrics_file),
        "--log-dir",
        str(tmp_path / "logs"),
        "--lock-file",
        str(tmp_path / "storage.lock"),
    )
    assert written.returncode == 0, written.stderr
    mapped = [re.sub(rf"=({re.escape(rootfs)})(?=/|$)", f"={host}", arg) for arg in command]
    port = free_port()
    process = subprocess.Popen(
        [binary, *mapped, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        process.kill()
        process.wait(timeout=10)


def test_node_exporter_exports_the_storage_textfile(node_exporter: str) -> None:
    body: list[str] = []

    def scraped() -> bool:
        try:
            with urllib.request.urlopen(node_exporter, timeout=2) as response:
                body[:] = [response.read().decode()]
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    wait_until(scraped, timeout=20, what=f"node_exporter to answer on {node_exporter}")
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(body[0])
        for sample in family.samples
    }
    assert samples.get(STORAGE_METRIC) == 1.0, "the storage textfile metric is not exported"
    assert samples.get("node_textfile_scrape_error") == 0.0, "the textfile collector errored"
