"""The real Prometheus from the tools folder, on a free port, for tests.

``prometheus_servers(folder)`` yields ``start(config)``, which writes ``config`` into
the folder and starts ``prometheus`` on it with a temporary TSDB and the flags
docker-compose.yml gives it (remote-write receiver for Tempo's metrics generator,
exemplar storage), then waits for ``/-/ready``; every server is stopped on exit.
:func:`repo_config` derives a test config from prometheus/prometheus.yml that keeps
the repository's rule files.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.processes import free_port, serves, stop_process, wait_until
from tests.support.tooling import tool

PROMETHEUS_CONFIG = REPO_ROOT / paths.PROMETHEUS_CONFIG
# As docker-compose.yml runs Prometheus (tests/stack/test_stack_e2e.py checks they agree).
STACK_FLAGS = ("--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage")


def repo_config(
    scrape_configs: Sequence[Mapping[str, Any]],
    *,
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    fast_rules_dir: Path | None = None,
) -> dict[str, Any]:
    """prometheus/prometheus.yml with these scrape jobs, short intervals and no
    Alertmanager; ``rule_files`` made absolute, so they still name the repo's rules.

    With ``fast_rules_dir`` the rule files are copied there without their groups' own
    ``interval``, so every group runs at ``evaluation_interval`` (a 5m group would
    otherwise first run up to 5 minutes after start).
    """
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {
        **(config.get("global") or {}),
        "scrape_interval": scrape_interval,
        "evaluation_interval": evaluation_interval,
    }
    patterns = [str(PROMETHEUS_CONFIG.parent / p) for p in config.get("rule_files") or []]
    if fast_rules_dir is not None:
        patterns = [str(fast_rules_dir / "*.yml")]
        fast_rules_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for pattern in config["rule_files"] for p in _glob(pattern)):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            for group in document.get("groups") or []:
                group.pop("interval", None)
            (fast_rules_dir / path.name).write_text(yaml.safe_dump(document), encoding="utf-8")
    config["rule_files"] = patterns
    config.pop("alerting", None)
    config["scrape_configs"] = [dict(job) for job in scrape_configs]
    return config


def _glob(pattern: str) -> list[Path]:
    """Files of a ``rule_files`` pattern, relative to prometheus.yml's folder."""
    return sorted(PROMETHEUS_CONFIG.parent.glob(pattern))


@dataclass
class PrometheusServer:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "prometheus.log"

    def start(self, config: Mapping[str, Any], timeout: float = 30.0) -> PrometheusServer:
        config_file = self.directory / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        command = [
            tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *STACK_FLAGS,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._ready, timeout=timeout, what=f"Prometheus ready on {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        return serves(self.process, f"{self.url}/-/ready", self.log)

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` answer."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        answer = response.json()
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The series of an instant query."""
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextmanager
def prometheus_servers(directory: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """``start(config)`` runs one more Prometheus; all are stopped on exit (the fixture
    ``prometheus_server`` of tests/conftest.py)."""
    servers: list[PrometheusServer] = []

    def start(config: Mapping[str, Any]) -> PrometheusServer:
        server_dir = directory / f"prometheus-{len(servers)}"
        server_dir.mkdir()
        server = PrometheusServer(server_dir)
        servers.append(server)
        return server.start(config)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
