"""Probes: read-only observations of the agent, its container and Prometheus.

Each takes the run context and the provider's arguments and returns a JSON value; an
exception means the probe could not observe anything (its message is the report's).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from chaos.actions import require_replicas, run_process
from chaos.context import Context
from chaos.report import stamp
from neuros.auth.admin_token import TOKEN_VARIABLE, bearer

PROMETHEUS_SERVICE = "prometheus"
PROMETHEUS_API = "http://127.0.0.1:9090/api/v1"
ALERTMANAGER_SERVICE = "alertmanager"
ALERTMANAGER_API = "http://127.0.0.1:9093/api/v2"
_ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Label values interpolated into PromQL: a job name or a host:port, nothing to escape.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:-]+$")
# A plausible RR series (ms); only its length varies between experiments.
_RR = (800, 810, 790, 805, 795)
# The agent's API, which needs the bearer token; /health and /ready do not.
API_PREFIX = "/v1/"
# Probes that always call the API (an ``http`` probe does when its path is under it).
API_PROBES = frozenset({"reading-write", "reading-read", "light-load", "readings-read-back"})


class ProbeError(Exception):
    """The probe could not observe (target missing, bad answer)."""


def needs_api_token(kind: str, args: dict[str, Any]) -> bool:
    """Whether the probe ``kind`` with ``args`` calls the agent's API."""
    return kind in API_PROBES or (
        kind == "http" and str(args.get("path", "")).startswith(API_PREFIX)
    )


def _request(
    url: str,
    method: str = "GET",
    body: Any = None,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - http only
        url, data=data, method=method, headers=headers or {}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except (OSError, ValueError):
        return 0, b""


def _api(
    ctx: Context, path: str, method: str = "GET", body: Any = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    """A request to the agent's API (``path`` under /v1/), with the run's token."""
    if not ctx.api_token:
        raise ProbeError(f"no API token for {API_PREFIX}: set {TOKEN_VARIABLE}")
    return _request(ctx.base_url + path, method, body, timeout, bearer(ctx.api_token))


def http(ctx: Context, args: dict[str, Any]) -> int:
    """Status of ``method path`` on the agent's published port; 0 when unreachable. A
    path under /v1/ carries the token."""
    path, method, timeout = (
        str(args["path"]),
        str(args.get("method", "GET")),
        float(args.get("timeout", 3)),
    )
    if needs_api_token("http", args):
        return _api(ctx, path, method, timeout=timeout)[0]
    status, _ = _request(ctx.base_url + path, method, timeout=timeout)
    return status


def container(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The container of ``service`` (of its replica ``replica``, a compose container
    number, when given)."""
    replica = None if args.get("replica") is None else int(args["replica"])
    return ctx.project.container(str(args["service"]), replica).summary()


def replicas(ctx: Context, args: dict[str, Any]) -> dict[str, int]:
    """How many containers of ``service`` exist, run and are healthy. Fewer than
    ``at_least`` running is an error that says how to bring up the scale stack."""
    service = str(args["service"])
    require_replicas(ctx, service, int(args.get("at_least", 1)))
    found = ctx.project.containers(service)
    return {
        "containers": len(found),
        "running": sum(c.running for c in found),
        "healthy": sum(c.health == "healthy" for c in found),
    }


def _reading(recorded_at: str, rr_count: int) -> dict[str, Any]:
    rr = [_RR[i % len(_RR)] for i in range(rr_count)]
    return {"recorded_at": recorded_at, "rr_intervals_ms": rr}


def _unique_reading() -> tuple[str, str]:
    """A synthetic user (never a real one) and a distinct instant."""
    now = datetime.now(UTC).replace(microsecond=0)
    return f"chaos-{uuid.uuid4().hex[:16]}", now.isoformat()


def reading_write(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Writes one reading; remembered under ``key`` once acknowledged (201)."""
    user, at = _unique_reading()
    status, _ = _api(ctx, f"/v1/users/{user}/readings", "POST", {"readings": [_reading(at, 5)]})
    if status == 201:
        ctx.readings[str(args["key"])] = (user, at)
    return {"status": status, "acknowledged": status == 201}


def _read_back(ctx: Context, user: str, at: str) -> tuple[int, bool]:
    """``(status, found)`` of the user's KPIs: found when they are as of ``at``."""
    status, body = _api(ctx, f"/v1/users/{user}/kpis")
    found = False
    if status == 200:
        as_of = json.loads(body).get("as_of")
        found = as_of is not None and datetime.fromisoformat(as_of) == datetime.fromisoformat(at)
    return status, found


def reading_read(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Reads back the reading written under ``key``: ``found`` when the KPIs are as of
    its instant."""
    key = str(args["key"])
    if key not in ctx.readings:
        raise ProbeError(f"no acknowledged reading under {key!r} to read back")
    status, found = _read_back(ctx, *ctx.readings[key])
    return {"status": status, "found": found}


def readings_read_back(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Reads back every reading a load acknowledged under ``key`` (light-load with
    ``remember``); ``lost`` counts those not read back. Counts only: the synthetic users
    stay out of the report."""
    key = str(args["key"])
    if key not in ctx.acknowledged:
        raise ProbeError(f"no load remembered its readings under {key!r}")
    statuses: dict[str, int] = {}
    found = 0
    for user, at in list(ctx.acknowledged[key]):
        status, ok = _read_back(ctx, user, at)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        found += ok
    total = len(ctx.acknowledged[key])
    return {"acknowledged": total, "found": found, "lost": total - found, "statuses": statuses}


def _prometheus(ctx: Context, endpoint: str, params: dict[str, str] | None = None) -> Any:
    raw = ctx.project.http_get(PROMETHEUS_SERVICE, f"{PROMETHEUS_API}/{endpoint}", params)
    answer = json.loads(raw)
    if answer.get("status") != "success":
        raise ProbeError(f"Prometheus {endpoint}: {answer.get('error', answer)}")
    return answer["data"]


def prometheus_query(ctx: Context, args: dict[str, Any]) -> float | None:
    """The first sample of an instant query, None when the result is empty."""
    data = _prometheus(ctx, "query", {"query": str(args["query"])})
    if not data["result"]:
        return None
    value = float(data["result"][0]["value"][1])
    return None if math.isnan(value) else value


def _live_alerts(ctx: Context) -> dict[str, str]:
    """Alert name -> its most severe live state (firing over pending)."""
    states: dict[str, str] = {}
    for alert in _prometheus(ctx, "alerts")["alerts"]:
        name, state = alert["labels"]["alertname"], alert["state"]
        if states.get(name) != "firing":
            states[name] = state
    return states


def _alert_names(args: dict[str, Any]) -> list[str]:
    """The alert of ``alert``, or the alerts of ``alerts`` (a list)."""
    names = [str(args["alert"])] if "alert" in args else [str(a) for a in args.get("alerts", [])]
    if not names:
        raise ProbeError("name an alert (alert) or several (alerts)")
    for name in names:
        if not _ALERT_NAME.match(name):
            raise ProbeError(f"{name!r} is not an alert name")
    return names


def prometheus_alert(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Has ``alert`` (or any of ``alerts``) reached ``state`` since the mark ``since``?
    For pending/firing the ALERTS series is read too, so an alert that fired and resolved
    between two polls still counts, at Prometheus' own evaluation time; ``alert`` is then
    the one that got there first. ``inactive``: none of them is active now. ``states``
    has each alert's live state."""
    names, wanted = _alert_names(args), str(args.get("state", "firing"))
    now = time.time()
    live_all = _live_alerts(ctx)
    states = {name: live_all.get(name, "inactive") for name in names}
    for name, live in states.items():
        ctx.saw_alert(name, live, now)
    if wanted == "inactive":
        active = [name for name, live in states.items() if live != "inactive"]
        state = states[active[0]] if active else "inactive"
        return {"state": state, "seen": not active, "at": now, "states": states}
    since = ctx.since(str(args.get("since", "fault")))
    accepted = ["firing"] if wanted == "firing" else ["pending", "firing"]
    window = max(5, math.ceil(now - since) + 5)
    matcher = "|".join(names)
    query = f'ALERTS{{alertname=~"{matcher}",alertstate=~"{"|".join(accepted)}"}}[{window}s]'
    first: dict[str, float] = {}
    for series in _prometheus(ctx, "query", {"query": query})["result"]:
        name, state = series["metric"]["alertname"], series["metric"]["alertstate"]
        stamps = [float(ts) for ts, _ in series["values"] if float(ts) >= since]
        if stamps:
            ctx.saw_alert(name, state, min(stamps))
            first[name] = min(first.get(name, min(stamps)), min(stamps))
    for name, live in states.items():
        if name not in first and live in accepted:
            first[name] = now
    by = min(first, key=first.__getitem__) if first else None
    return {
        "state": states[by] if by else states[names[0]],
        "seen": by is not None,
        "at": first[by] if by else None,
        "alert": by,
        "states": states,
    }


def _epoch(stamp: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time as Alertmanager writes it (nanoseconds, Z)."""
    if not stamp:
        return None
    return datetime.fromisoformat(str(stamp)).timestamp()


def alertmanager_alert(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """What Alertmanager holds of ``alert``, read from its API in its own container:
    ``found``, ``state`` (active, suppressed), ``receivers`` it is routed to,
    ``last_received`` (its ``updatedAt``: every send from Prometheus refreshes it),
    ``silent_s`` since then, ``ends_at`` (when Alertmanager resolves it without a new
    send). With a mark ``since``: ``received_since`` (a send arrived at or after the
    mark) and ``at``, that send's time, when one did."""
    (alert,) = _alert_names({"alert": args["alert"]})
    raw = ctx.project.http_get(
        ALERTMANAGER_SERVICE, f"{ALERTMANAGER_API}/alerts", {"filter": f'alertname="{alert}"'}
    )
    found = [a for a in json.loads(raw) if a.get("labels", {}).get("alertname") == alert]
    now = time.time()
    latest = max(found, key=lambda a: _epoch(a.get("updatedAt")) or 0.0) if found else {}
    updated = _epoch(latest.get("updatedAt"))
    ends = _epoch(latest.get("endsAt"))
    value: dict[str, Any] = {
        "alert": alert,
        "found": bool(found),
        "state": (latest.get("status") or {}).get("state"),
        "receivers": sorted({r["name"] for a in found for r in a.get("receivers") or []}),
        "last_received": stamp(updated),
        "silent_s": None if updated is None else round(now - updated, 3),
        "ends_at": stamp(ends),
    }
    if "since" in args:
        since = ctx.since(str(args["since"]))
        received = updated is not None and updated >= since
        value.update(received_since=received, at=updated if received else None)
    return value


def prometheus_active_alerts(ctx: Context, args: dict[str, Any]) -> list[str]:
    """Names of the alerts in one of ``states`` (default pending and firing) now or, with
    a mark ``since``, at any rule evaluation since it (from the ALERTS series, so an alert
    pending between two polls counts). Each is recorded as seen.

    With a mark ``unless_held_at``, an alert whose rule expression already held for its
    labels at that mark (evaluated now, over the samples scraped before it) is left out
    and recorded as due: the state was there before the fault, and only the rule's next
    evaluation had not come yet when the alerts were read before it."""
    states = [str(state) for state in args.get("states", ["pending", "firing"])]
    if not set(states) <= {"pending", "firing"}:
        raise ProbeError(f"states must be pending and/or firing, not {states}")
    now = time.time()
    found: dict[str, list[dict[str, str]]] = {}
    for alert in _prometheus(ctx, "alerts")["alerts"]:
        name, state = alert["labels"]["alertname"], alert["state"]
        if state in states:
            found.setdefault(name, []).append(alert["labels"])
            ctx.saw_alert(name, state, now)
    if "since" in args:
        since = ctx.since(str(args["since"]))
        window = max(5, math.ceil(now - since) + 5)
        query = f'ALERTS{{alertstate=~"{"|".join(states)}"}}[{window}s]'
        for series in _prometheus(ctx, "query", {"query": query})["result"]:
            stamps = [float(ts) for ts, _ in series["values"] if float(ts) >= since]
            if stamps:
                name = series["metric"]["alertname"]
                found.setdefault(name, []).append(series["metric"])
                ctx.saw_alert(name, series["metric"]["alertstate"], min(stamps))
    if "unless_held_at" in args and found:
        mark = str(args["unless_held_at"])
        if mark not in ctx.marks:
            # Evaluated now instead, it would excuse every alert that holds now.
            raise ProbeError(f"unless_held_at: no mark {mark!r} was set")
        for name in _held_at(ctx, found, ctx.marks[mark]):
            del found[name]
            ctx.alerts_due[name] = mark
    return sorted(found)


def _held_at(ctx: Context, found: dict[str, list[dict[str, str]]], at: float) -> list[str]:
    """The alerts of ``found`` each of whose label sets the expression of a rule of that
    name matched at the instant ``at``. A past instant's answer never changes, so each
    name is evaluated once per run (a held probe asks again every poll)."""
    missing = [name for name in found if (name, at) not in ctx.matched_at]
    if missing:
        rules: dict[str, list[dict[str, Any]]] = {}
        for group in _prometheus(ctx, "rules", {"type": "alert"})["groups"]:
            for rule in group["rules"]:
                rules.setdefault(rule["name"], []).append(rule)
        for name in missing:
            matched: list[dict[str, str]] = []
            for rule in rules.get(name, []):
                query = {"query": rule["query"], "time": f"{at:.3f}"}
                own = rule.get("labels") or {}
                matched += [
                    {k: v for k, v in s["metric"].items() if k != "__name__" and k not in own}
                    for s in _prometheus(ctx, "query", query)["result"]
                ]
            ctx.matched_at[(name, at)] = matched
    return [
        name
        for name, label_sets in found.items()
        if all(
            any(m.items() <= labels.items() for m in ctx.matched_at[(name, at)])
            for labels in label_sets
        )
    ]


def prometheus_up_seen(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Did Prometheus record ``up == value`` for ``instance`` of ``job`` since the mark
    ``since`` (and after the epoch ``after``, when given)? From the raw samples of
    ``up[...]``, so one failed scrape between two polls counts; ``at`` is the first such
    sample's time. A replica back within a scrape interval may never have a 0 sample."""
    job, instance, wanted = str(args["job"]), str(args["instance"]), float(args["value"])
    if not _LABEL_VALUE.match(job) or not _LABEL_VALUE.match(instance):
        raise ProbeError(f"{job!r}/{instance!r}: not a job and an instance (host:port)")
    since = max(ctx.since(str(args.get("since", "fault"))), float(args.get("after", 0)))
    window = max(5, math.ceil(time.time() - since) + 5)
    query = f'up{{job="{job}",instance="{instance}"}}[{window}s]'
    stamps = [
        float(ts)
        for series in _prometheus(ctx, "query", {"query": query})["result"]
        for ts, value in series["values"]
        if float(ts) >= since and float(value) == wanted
    ]
    return {
        "instance": instance,
        "seen": bool(stamps),
        "samples": len(stamps),
        "at": min(stamps) if stamps else None,
    }


def prometheus_gap(ctx: Context, args: dict[str, Any]) -> float:
    """Largest interval (s) between raw samples of ``selector`` since the mark."""
    since = ctx.since(str(args.get("since", "fault")))
    window = max(5, math.ceil(time.time() - since) + int(args.get("margin_s", 30)))
    query = f"{args['selector']}[{window}s]"
    result = _prometheus(ctx, "query", {"query": query})["result"]
    if not result:
        raise ProbeError(f"no samples of {args['selector']} in the last {window}s")
    stamps = sorted(float(ts) for ts, _ in result[0]["values"])
    return round(max((b - a for a, b in itertools.pairwise(stamps)), default=0.0), 3)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[index]


def light_load(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``requests`` writes (or until ``duration_s`` / the run's stop) at ``rate_per_s``,
    one synthetic user each; a failure is anything but 201. ``rr_count`` sizes the body:
    a body beyond the initial TCP window needs round trips the server-side latency sees.
    With ``remember``, each acknowledged reading is kept under that key for
    ``readings-read-back``."""
    total = int(args.get("requests", 0)) or None
    duration = float(args.get("duration_s", 0)) or None
    interval = 1.0 / float(args.get("rate_per_s", 5))
    rr_count = int(args.get("rr_count", 5))
    acknowledged: list[tuple[str, str]] = []
    if args.get("remember"):
        acknowledged = ctx.acknowledged.setdefault(str(args["remember"]), [])
    started = time.time()
    latencies: list[float] = []
    failures = 0
    while not ctx.stop.is_set():
        if total is not None and len(latencies) >= total:
            break
        if duration is not None and time.time() - started >= duration:
            break
        user, at = _unique_reading()
        begin = time.perf_counter()
        status, _ = _api(
            ctx,
            f"/v1/users/{user}/readings",
            "POST",
            {"readings": [_reading(at, rr_count)]},
            timeout=10,
        )
        elapsed = time.perf_counter() - begin
        latencies.append(elapsed)
        failures += status != 201
        if status == 201:
            acknowledged.append((user, at))
        ctx.stop.wait(max(0.0, interval - elapsed))
    if not latencies:
        raise ProbeError("no request was sent")
    return {
        "requests": len(latencies),
        "failures": failures,
        "p50_ms": round(1000 * _percentile(latencies, 0.5), 1),
        "p95_ms": round(1000 * _percentile(latencies, 0.95), 1),
        "started_at": started,
        "ended_at": time.time(),
    }


def tempo_search(ctx: Context, args: dict[str, Any]) -> int:
    """Traces of ``service_name`` Tempo finds in the window of a saved load result."""
    window = ctx.saved[str(args["window_of"])]
    params = {
        "tags": f"service.name={args.get('service_name', 'neuros')}",
        "start": str(math.floor(window["started_at"])),
        "end": str(math.ceil(window["ended_at"]) + 1),
        "limit": str(args.get("limit", 10000)),
    }
    raw = ctx.project.http_get(PROMETHEUS_SERVICE, str(args["url"]), params)
    return len(json.loads(raw).get("traces") or [])


def process(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """Chaos Toolkit's ``process`` probe: ``{"status", "stdout", "stderr"}`` of a local
    command (see ``actions.run_process``); the tolerance judges the status."""
    result = run_process(args, dry=False)
    result.pop("commands")
    return result


PROBES: dict[str, Callable[[Context, dict[str, Any]], Any]] = {
    "http": http,
    "container": container,
    "replicas": replicas,
    "reading-write": reading_write,
    "reading-read": reading_read,
    "readings-read-back": readings_read_back,
    "prometheus-query": prometheus_query,
    "prometheus-up-seen": prometheus_up_seen,
    "prometheus-alert": prometheus_alert,
    "prometheus-active-alerts": prometheus_active_alerts,
    "alertmanager-alert": alertmanager_alert,
    "prometheus-gap": prometheus_gap,
    "light-load": light_load,
    "tempo-search": tempo_search,
    "process": process,
}


def describe(ctx: Context, kind: str, args: dict[str, Any]) -> str:
    """What the probe would read, for --dry-run."""
    if kind in {"http", "reading-write", "reading-read", "light-load", "readings-read-back"}:
        return f"{kind} against {ctx.base_url} {json.dumps(args, sort_keys=True)}"
    if kind == "process":
        return str(run_process(args, dry=True)["commands"][0])
    if kind == "container":
        replica = None if args.get("replica") is None else int(args["replica"])
        return f"docker inspect {ctx.project.describe(str(args['service']), replica)}"
    if kind == "replicas":
        return f"docker ps: containers of {ctx.project.name}/{args['service']}"
    service = ALERTMANAGER_SERVICE if kind.startswith("alertmanager-") else PROMETHEUS_SERVICE
    via = ctx.project.describe(service)
    return f"{kind} via wget in {via} {json.dumps(args, sort_keys=True)}"
