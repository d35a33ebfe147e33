"""prometheus/alertmanager.yml: valid, routed by severity, secret-free, inhibiting, and
the always-firing Watchdog routed to its own heartbeat receiver only.

The last tests run a real Alertmanager with a copy of the config whose webhook URL files
point at local HTTP servers, and check inhibition through its v2 API and which receiver
each alert reaches.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.processes import free_port, wait_until
from tests.support.tooling import in_ci, tool

CONFIG = REPO_ROOT / paths.ALERTMANAGER_CONFIG
META_RULES = REPO_ROOT / paths.RULES_DIR / "meta-alerts.yml"
PROMETHEUS_CONFIG = REPO_ROOT / paths.PROMETHEUS_CONFIG
WATCHDOG, WATCHDOG_RECEIVER = "Watchdog", "watchdog"
NOTIFYING_RECEIVERS = ("page", "ticket", WATCHDOG_RECEIVER)

# Consequences of the agent being down: NeurosAgentDown inhibits exactly these.
AGENT_DOWN_TARGETS = frozenset(
    {
        "NeurosAvailabilityBurnRateHigh",
        "NeurosAvailabilityBurnRateElevated",
        "NeurosLatencyBurnRateHigh",
        "NeurosLatencyBurnRateElevated",
        "NeurosHighErrorRate",
        "NeurosHrvPopulationDrop",
        "NeurosSleepDebtShareRising",
        "NeurosLowRecoveryShareRising",
        "NeurosKpiPipelineStale",
    }
)

_MATCHER = re.compile(r'^\s*(?P<label>\w+)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>.*)"\s*$')


def _config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    return loaded


def _matcher(text: str) -> tuple[str, str, str]:
    match = _MATCHER.match(text)
    assert match is not None, f"unparsable matcher {text!r}"
    return match["label"], match["op"], match["value"]


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("amtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_config_passes_amtool_check_config() -> None:
    result = _amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page"], "page"),
        (["severity=ticket"], "ticket"),
        (["severity=info"], "null"),
        ([], "ticket"),
        (["severity=unexpected"], "ticket"),
    ],
)
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels, "alertname=X")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_null_receiver_never_notifies() -> None:
    receivers = {r["name"]: r for r in _config()["receivers"]}
    assert set(receivers) == {*NOTIFYING_RECEIVERS, "null"}
    assert set(receivers["null"]) == {"name"}


def test_webhooks_read_their_url_from_a_file_and_commit_no_url() -> None:
    text = CONFIG.read_text()
    assert not re.search(r"https?://", text, re.IGNORECASE), "a URL is committed"
    receivers = {r["name"]: r for r in _config()["receivers"]}
    for name in NOTIFYING_RECEIVERS:
        webhooks = receivers[name]["webhook_configs"]
        assert webhooks, name
        for webhook in webhooks:
            assert "url" not in webhook, name
            assert webhook["url_file"].startswith("/etc/alertmanager/secrets/"), name


def test_page_repeats_faster_than_ticket() -> None:
    def seconds(duration: str) -> int:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return int(duration[:-1]) * units[duration[-1]]

    route = _config()["route"]
    assert route["group_by"] == ["alertname", "job"]
    by_receiver = {r["receiver"]: r for r in route["routes"]}
    page = seconds(by_receiver["page"]["repeat_interval"])
    ticket = seconds(by_receiver["ticket"].get("repeat_interval", route["repeat_interval"]))
    assert page < ticket


# --- The Watchdog (dead man's switch) ------------------------------------------------


def watchdog_labels() -> list[str]:
    """The labels Alertmanager gets with the Watchdog: its rule's (name and labels, from
    prometheus/rules/meta-alerts.yml) and Prometheus' external labels."""
    rules = [
        rule
        for group in yaml.safe_load(META_RULES.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == WATCHDOG
    ]
    assert len(rules) == 1, rules
    external = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["global"]["external_labels"]
    labels = {"alertname": WATCHDOG, **external, **rules[0].get("labels", {})}
    return [f"{name}={value}" for name, value in labels.items()]


@pytest.mark.parametrize(
    "extra",
    [[], ["severity=page"], ["severity=ticket"], ["job=neuros", "instance=x:1"]],
    ids=["as-written", "page", "ticket", "with-job"],
)
def test_watchdog_routes_to_its_own_receiver_only(extra: list[str]) -> None:
    """Exactly one receiver (amtool lists every matching one), whatever else it carries:
    its route matches by name, first, without `continue`."""
    labels = watchdog_labels() + extra
    result = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == WATCHDOG_RECEIVER
    verify = _amtool(
        "config", "routes", "test", f"--config.file={CONFIG}",
        f"--verify.receivers={WATCHDOG_RECEIVER}", *labels,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_no_other_alert_reaches_the_watchdog_receiver() -> None:
    for labels in (["alertname=WatchdogX", "severity=info"], ["alertname=X", "severity=page"]):
        result = _amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() != WATCHDOG_RECEIVER, labels


def test_watchdog_is_sent_every_minute_without_resolved_messages() -> None:
    def seconds(duration: str) -> int:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return int(duration[:-1]) * units[duration[-1]]

    route = _config()["route"]["routes"][0]
    assert route["receiver"] == WATCHDOG_RECEIVER, "the Watchdog's route must come first"
    assert not route.get("continue", False)
    assert seconds(route["repeat_interval"]) <= 60
    assert seconds(route["group_interval"]) <= seconds(route["repeat_interval"])
    assert seconds(route["group_wait"]) == 0
    receivers = {r["name"]: r for r in _config()["receivers"]}
    # A "resolved" request would count as one more ping at the heartbeat service.
    assert [w["send_resolved"] for w in receivers[WATCHDOG_RECEIVER]["webhook_configs"]] == [False]


def test_crash_loop_inhibits_the_restart_ticket_of_the_same_instance() -> None:
    rules = [
        rule
        for rule in _config()["inhibit_rules"]
        if [_matcher(m) for m in rule["source_matchers"]]
        == [("alertname", "=", "NeurosAgentCrashLooping")]
    ]
    assert len(rules) == 1
    assert [_matcher(m) for m in rules[0]["target_matchers"]] == [
        ("alertname", "=", "NeurosAgentRestarted")
    ]
    assert sorted(rules[0]["equal"]) == ["instance", "job"]


def _agent_down_rule() -> dict[str, Any]:
    rules = [
        rule
        for rule in _config()["inhibit_rules"]
        if [_matcher(m) for m in rule["source_matchers"]] == [("alertname", "=", "NeurosAgentDown")]
    ]
    assert len(rules) == 1
    rule: dict[str, Any] = rules[0]
    return rule


def test_agent_down_inhibits_exactly_the_slo_and_kpi_alerts() -> None:
    rule = _agent_down_rule()
    targets = [_matcher(m) for m in rule["target_matchers"]]
    assert len(targets) == 1
    label, op, value = targets[0]
    assert (label, op) == ("alertname", "=~")
    assert set(value.split("|")) == AGENT_DOWN_TARGETS
    # SLO alerts carry service="neuros" and no job: an `equal` would never match.
    assert "equal" not in rule
    # The regex is fully anchored by Alertmanager, so names listed are names matched.
    pattern = re.compile(value)
    assert all(pattern.fullmatch(name) for name in AGENT_DOWN_TARGETS)
    for other in ("NeurosAgentDown", "NeurosKpiPipelineStaleX", "HighErrorRate"):
        assert not pattern.fullmatch(other)


def test_page_inhibits_the_ticket_of_the_same_alert() -> None:
    rules = [
        rule
        for rule in _config()["inhibit_rules"]
        if [_matcher(m) for m in rule["source_matchers"]] == [("severity", "=", "page")]
    ]
    assert len(rules) == 1
    assert [_matcher(m) for m in rules[0]["target_matchers"]] == [("severity", "=", "ticket")]
    assert sorted(rules[0]["equal"]) == ["alertname", "job"]


# --- A real Alertmanager ---------------------------------------------------------------


class _Webhook:
    """A tiny HTTP server recording the alert names Alertmanager notifies."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def alertnames(self) -> set[str]:
        return {a["labels"]["alertname"] for body in self.received for a in body["alerts"]}


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    hook = _Webhook()
    hook.thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def _render(tmp_path: Path, urls: dict[str, str]) -> Path:
    """The committed config with each receiver's URL file replaced by a temporary one
    holding ``urls[receiver]``."""
    config = _config()
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            url_file = tmp_path / f"{receiver['name']}-webhook-url"
            url_file.write_text(urls[receiver["name"]])
            webhook["url_file"] = str(url_file)
    # Notify quickly in the test; routing and inhibition stay as committed.
    config["route"]["group_wait"] = "0s"
    for route in config["route"]["routes"]:
        route["group_wait"] = "0s"
    rendered = tmp_path / "alertmanager.yml"
    rendered.write_text(yaml.safe_dump(config, sort_keys=False))
    return rendered


def _unrunnable(log: str) -> None:
    """Skip (fail in CI) when the binary cannot start for reasons outside this repo.

    Debian's build reads its default notification templates from
    /usr/share/prometheus/alertmanager/ instead of embedding them, so the copy unpacked
    into .tools/ by scripts/install-tools.sh exits at startup on a host without the
    system package.
    """
    if "default.tmpl" in log and "no such file or directory" in log:
        message = f"alertmanager cannot load its default templates:\n{log}"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@contextmanager
def _alertmanager(tmp_path: Path, config: Path) -> Iterator[str]:
    """A real Alertmanager (the .tools binary) on a free port; yields its base URL."""
    binary = tool("alertmanager")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                _unrunnable(log_path.read_text(errors="replace"))
                raise AssertionError(f"alertmanager exited:\n{log_path.read_text()}")
            try:
                return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=30, what="alertmanager ready")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _alert(labels: dict[str, str]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": labels,
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def _post(base: str, *alerts: dict[str, Any]) -> None:
    posted = httpx.post(f"{base}/api/v2/alerts", json=list(alerts), timeout=5)
    assert posted.status_code == 200, posted.text


def _statuses(base: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v2/alerts", timeout=5)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


@pytest.mark.slow
def test_real_alertmanager_inhibits_kpi_alert_while_agent_is_down(
    tmp_path: Path, webhook: _Webhook
) -> None:
    config = _render(tmp_path, dict.fromkeys(NOTIFYING_RECEIVERS, webhook.url))
    with _alertmanager(tmp_path, config) as base:

        def alert(name: str, severity: str) -> dict[str, Any]:
            return _alert({"alertname": name, "job": "neuros", "severity": severity})

        # The agent goes down first; its page goes out through the file-configured URL.
        _post(base, alert("NeurosAgentDown", "page"))
        wait_until(
            lambda: "NeurosAgentDown" in webhook.alertnames(),
            timeout=30,
            what="page webhook notified of NeurosAgentDown",
        )
        _post(base, alert("NeurosKpiPipelineStale", "ticket"))

        statuses: dict[str, dict[str, Any]] = {}

        def kpi_inhibited() -> bool:
            statuses.clear()
            for item in _statuses(base):
                statuses[item["labels"]["alertname"]] = item["status"]
            stale = statuses.get("NeurosKpiPipelineStale")
            return stale is not None and bool(stale["inhibitedBy"])

        wait_until(kpi_inhibited, timeout=30, what="NeurosKpiPipelineStale inhibited")
        down = statuses["NeurosAgentDown"]
        assert down["state"] == "active", statuses
        assert not down["inhibitedBy"], statuses
        assert statuses["NeurosKpiPipelineStale"]["state"] == "suppressed", statuses

        # A ticket alert that nothing inhibits, posted after the KPI alert: once it has
        # been notified, the inhibited one would have been too, had it not been muted.
        _post(base, alert("NeurosCanary", "ticket"))
        wait_until(
            lambda: "NeurosCanary" in webhook.alertnames(),
            timeout=30,
            what="ticket webhook notified of NeurosCanary",
        )
        assert "NeurosKpiPipelineStale" not in webhook.alertnames()


@pytest.mark.slow
def test_real_alertmanager_sends_the_watchdog_to_its_receiver_only(tmp_path: Path) -> None:
    """One webhook per receiver: the Watchdog reaches the heartbeat's, repeatedly, and
    neither page nor ticket; a crash loop mutes the restart ticket of its instance."""
    hooks = {name: _Webhook() for name in NOTIFYING_RECEIVERS}
    for hook in hooks.values():
        hook.thread.start()
    config = _render(tmp_path, {name: hook.url for name, hook in hooks.items()})
    # Repeat and regroup within the test's patience; routing is as committed.
    document = yaml.safe_load(config.read_text())
    for route in document["route"]["routes"]:
        route["group_interval"] = "1s"
        if route["receiver"] == WATCHDOG_RECEIVER:
            route["repeat_interval"] = "2s"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        with _alertmanager(tmp_path, config) as base:
            labels = dict(label.split("=", 1) for label in watchdog_labels())
            _post(base, _alert(labels))
            watchdog = hooks[WATCHDOG_RECEIVER]

            def pings() -> int:
                return sum(
                    a["labels"]["alertname"] == WATCHDOG
                    for body in watchdog.received
                    for a in body["alerts"]
                )

            wait_until(lambda: pings() >= 2, timeout=30, what="two Watchdog notifications")
            assert {b["receiver"] for b in watchdog.received} == {WATCHDOG_RECEIVER}
            assert all(b["status"] == "firing" for b in watchdog.received)
            [held] = [a for a in _statuses(base) if a["labels"]["alertname"] == WATCHDOG]
            assert [r["name"] for r in held["receivers"]] == [WATCHDOG_RECEIVER]
            assert held["status"]["state"] == "active"

            # Canaries on page and ticket: once they arrived, a Watchdog sent there
            # would have too.
            # The crash loop first, so that it is known when the tickets arrive.
            restart = {"job": "neuros", "instance": "neuros:9464"}
            _post(
                base,
                _alert({"alertname": "NeurosAgentCrashLooping", "severity": "page", **restart}),
            )
            wait_until(
                lambda: "NeurosAgentCrashLooping" in hooks["page"].alertnames(),
                timeout=30,
                what="page notified of NeurosAgentCrashLooping",
            )
            _post(
                base,
                _alert({"alertname": "NeurosAgentRestarted", "severity": "ticket", **restart}),
                _alert(
                    {"alertname": "NeurosAgentRestarted", "severity": "ticket",
                     "job": "neuros", "instance": "10.0.0.3:9464"}
                ),
            )  # fmt: skip

            def ticketed() -> set[str]:
                return {
                    a["labels"]["instance"]
                    for body in hooks["ticket"].received
                    for a in body["alerts"]
                    if a["labels"]["alertname"] == "NeurosAgentRestarted"
                }

            wait_until(lambda: bool(ticketed()), timeout=30, what="ticket notified of a restart")
            for name in ("page", "ticket"):
                assert WATCHDOG not in hooks[name].alertnames(), name
            assert ticketed() == {"10.0.0.3:9464"}, "the crash-looping instance is muted"
            [muted] = [
                a
                for a in _statuses(base)
                if a["labels"]["alertname"] == "NeurosAgentRestarted"
                and a["labels"]["instance"] == restart["instance"]
            ]
            assert muted["status"]["state"] == "suppressed", muted
            assert muted["status"]["inhibitedBy"], muted
    finally:
        for hook in hooks.values():
            hook.server.shutdown()
            hook.server.server_close()
