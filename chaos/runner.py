"""Runs experiments: steady state, method, steady state again; rollbacks always.

Chaos Toolkit semantics: the method only runs when the steady-state hypothesis holds
before, and the hypothesis is checked again after it. Ours on top: a probe may ``wait``
(poll until within tolerance) or ``hold`` (stay within it for a while), ``mark`` an
instant, ``measure`` the time since one, ``save_as`` its value for later references, and
run in the ``background`` while the method goes on; an activity with
``after_background`` first stops and joins the background probes (e.g. to read back
what a load wrote, once it wrote its last); the ``verdict`` section bounds the measures.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from chaos import actions, probes, report
from chaos.context import Context
from chaos.docker import DockerError, Project, RefusedTarget
from chaos.experiment import (
    EXPERIMENTS_DIR,
    Experiment,
    ExperimentError,
    available,
    substitute,
    within,
)
from neuros.auth.admin_token import ADMIN_TOKEN_FILE, TOKEN_VARIABLE, NoAdminToken, admin_token
from stacktools import paths
from stacktools.compose import project_name
from stacktools.paths import REPO_ROOT

DEFAULT_COMPOSE = REPO_ROOT / paths.COMPOSE_FILE
# Any image with iproute2's tc; the agent's image has none. Not pullable where this
# repository is built, so only dry runs use it there (override: CHAOS_TC_IMAGE).
DEFAULT_TC_IMAGE = "nicolaka/netshoot:v0.13"
DEFAULT_REPORT_DIR = REPO_ROOT / "chaos" / "reports"
EXIT_FAIL, EXIT_USAGE = 1, 2
# Where the experiment files are read from (tests point it at their own).
EXPERIMENTS_DIR_ENV = "CHAOS_EXPERIMENTS_DIR"


OBSERVATION_ERRORS = (
    probes.ProbeError,
    actions.ActionFailed,
    DockerError,
    RefusedTarget,
    OSError,
    ValueError,
    KeyError,
)


class Interrupted(Exception):
    """SIGINT or SIGTERM during an experiment."""


def _now() -> float:
    return time.time()


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def exit_status_of(interrupted: str) -> int:
    """128 + the signal's number, as a shell reports a process killed by it."""
    return 128 + int(signal.Signals[interrupted])


@contextmanager
def _signals(handler: Any) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Run:
    """One experiment run, building its report record."""

    def __init__(self, experiment: Experiment, ctx: Context, dry_run: bool) -> None:
        self.experiment = experiment
        self.ctx = ctx
        self.dry_run = dry_run
        self.measures: dict[str, float] = {}
        self.background: list[tuple[threading.Thread, dict[str, Any]]] = []
        self.record: dict[str, Any] = {
            "name": experiment.name,
            "title": experiment.title,
            "description": experiment.description,
            "configuration": ctx.configuration,
            "hypothesis_before": None,
            "hypothesis_after": None,
            "method": [],
            "rollbacks": [],
            "measures": self.measures,
            "alerts_seen": [],
            "alerts_due": [],
            "interrupted": None,
        }

    # -- activities -------------------------------------------------------------------

    def _args(self, activity: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        provider = dict(activity["provider"])
        kind = str(provider.pop("type"))
        return kind, substitute(provider, self.ctx.scope(), strict=not self.dry_run)

    def activity(self, activity: dict[str, Any], section: str) -> dict[str, Any]:
        if activity.get("after_background") and not self.dry_run:
            self._join_background()
        entry: dict[str, Any] = {
            "section": section,
            "type": activity["type"],
            "name": activity["name"],
            "provider": activity["provider"].get("type"),
            "started_at": report.stamp(_now()),
            "ok": False,
            "why": "",
        }
        pauses = activity.get("pauses") or {}
        try:
            # Inside the try: a reference to a value a failed probe never saved fails
            # this activity, not the run.
            kind, args = self._args(activity)
            self._pause(pauses.get("before"), entry)
            if "mark" in activity and not self.dry_run:
                self.ctx.marks[str(activity["mark"])] = _now()
            if activity["type"] == "action":
                self._action(kind, args, entry)
            elif activity.get("background") and not self.dry_run:
                self._start_background(activity, kind, args, entry)
                return entry
            else:
                self._probe(activity, kind, args, entry)
            self._pause(pauses.get("after"), entry)
        except (*OBSERVATION_ERRORS, ExperimentError) as exc:
            entry.update(ok=False, why=f"error: {exc}")
        entry["ended_at"] = report.stamp(_now())
        return entry

    def _pause(self, seconds: Any, entry: dict[str, Any]) -> None:
        if not seconds:
            return
        seconds = float(substitute(seconds, self.ctx.scope()))
        entry.setdefault("pauses_s", []).append(seconds)
        if not self.dry_run:
            # Holding the fault for a while is the experiment, not synchronisation.
            self.ctx.stop.wait(seconds)

    def _action(self, kind: str, args: dict[str, Any], entry: dict[str, Any]) -> None:
        if kind not in actions.ACTIONS:
            raise ExperimentError(f"unknown action provider {kind!r}")
        output = actions.ACTIONS[kind](self.ctx, args, self.dry_run)
        entry["commands"] = output.pop("commands")
        entry["output"] = output
        entry.update(ok=True, why="would run" if self.dry_run else "done")

    def _probe(
        self, activity: dict[str, Any], kind: str, args: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        if kind not in probes.PROBES:
            raise ExperimentError(f"unknown probe provider {kind!r}")
        if self.dry_run:
            entry["commands"] = [probes.describe(self.ctx, kind, args)]
            entry.update(ok=True, why="would probe")
            return
        wait = activity.get("wait") or {}
        hold = activity.get("hold") or {}
        scope = self.ctx.scope()
        timeout = float(substitute(wait.get("timeout_s", 0), scope))
        hold_s = float(substitute(hold.get("duration_s", 0), scope))
        interval = float(wait.get("interval_s", hold.get("interval_s", 0.5)))
        begin = _now()
        polls = 0
        while True:
            polls += 1
            try:
                value = probes.PROBES[kind](self.ctx, args)
                ok, why = self._tolerate(activity, value)
            except OBSERVATION_ERRORS as exc:
                # A service coming back refuses probes for a while: poll on.
                value, ok, why = None, False, f"error: {exc}"
            elapsed = _now() - begin
            if hold_s and (not ok or elapsed >= hold_s):
                break
            if not hold_s and (ok or elapsed >= timeout):
                break
            self.ctx.stop.wait(interval)
        entry.update(value=value, ok=ok, why=why, polls=polls)
        if ok:
            self._after_success(activity, value, entry)

    def _tolerate(self, activity: dict[str, Any], value: Any) -> tuple[bool, str]:
        if "tolerance" not in activity:
            return True, f"observed {value!r}"
        return within(value, substitute(activity["tolerance"], self.ctx.scope()))

    def _after_success(self, activity: dict[str, Any], value: Any, entry: dict[str, Any]) -> None:
        if "save_as" in activity:
            self.ctx.saved[str(activity["save_as"])] = value
        if "measure" in activity:
            origin = str(activity.get("measure_from", "fault"))
            if origin not in self.ctx.marks:
                raise ExperimentError(f"measure from unknown mark {origin!r}")
            at = value.get("at") if isinstance(value, dict) else None
            seconds = float(at if at is not None else _now()) - self.ctx.marks[origin]
            self.measures[str(activity["measure"])] = round(seconds, 3)
            entry["measure"] = {str(activity["measure"]): round(seconds, 3)}

    def _start_background(
        self, activity: dict[str, Any], kind: str, args: dict[str, Any], entry: dict[str, Any]
    ) -> None:
        def work() -> None:
            try:
                self._probe(activity, kind, args, entry)
            except (*OBSERVATION_ERRORS, ExperimentError) as exc:
                entry.update(ok=False, why=f"error: {exc}")
            entry["ended_at"] = report.stamp(_now())

        thread = threading.Thread(target=work, name=entry["name"], daemon=True)
        thread.start()
        entry["why"] = "running in the background"
        self.background.append((thread, entry))

    def _join_background(self) -> None:
        self.ctx.stop.set()
        for thread, _ in self.background:
            thread.join(timeout=30)
        self.ctx.stop.clear()

    # -- phases -----------------------------------------------------------------------

    def hypothesis(self, after: bool = False) -> dict[str, Any]:
        """The steady-state probes; ``after`` the method, not those marked
        ``only_before`` (preconditions the fault undoes by design)."""
        hypothesis = self.experiment.hypothesis
        probes = [
            probe
            for probe in hypothesis.get("probes") or []
            if not (after and probe.get("only_before"))
        ]
        results = [self.activity(p, "steady-state") for p in probes]
        return {
            "title": hypothesis["title"],
            "met": None if self.dry_run else all(r["ok"] for r in results),
            "probes": results,
        }

    def execute(self, steady_state_only: bool = False) -> dict[str, Any]:
        self.record["started_at"] = report.stamp(_now())
        try:
            with _signals(_raise_interrupted):
                self.record["hypothesis_before"] = self.hypothesis()
                if not steady_state_only and (
                    self.record["hypothesis_before"]["met"] or self.dry_run
                ):
                    for activity in self.experiment.activities("method"):
                        self.record["method"].append(self.activity(activity, "method"))
                    self._join_background()
                    self.record["hypothesis_after"] = self.hypothesis(after=True)
        except Interrupted as exc:
            self.record["interrupted"] = str(exc)
        finally:
            # Rollbacks always run, and a second Ctrl-C cannot cut them short.
            with _signals(signal.SIG_IGN):
                self._join_background()
                if not steady_state_only:
                    for activity in self.experiment.activities("rollbacks"):
                        self.record["rollbacks"].append(self.activity(activity, "rollbacks"))
        self.record["ended_at"] = report.stamp(_now())
        self.record["marks"] = {k: report.stamp(v) for k, v in self.ctx.marks.items()}
        self.record["alerts_seen"] = [
            {"alert": alert, "state": state, "at": report.stamp(at), "epoch": at}
            for (alert, state), at in sorted(self.ctx.alerts_seen.items(), key=lambda i: i[1])
        ]
        self.record["alerts_due"] = [
            {"alert": alert, "held_at": mark} for alert, mark in sorted(self.ctx.alerts_due.items())
        ]
        self.record["verdict"] = self.verdict(steady_state_only)
        return self.record

    def verdict(self, steady_state_only: bool) -> dict[str, Any]:
        if self.dry_run:
            return {"result": "dry-run", "pass": None, "reasons": ["nothing was changed"]}
        reasons: list[str] = []
        before, after = self.record["hypothesis_before"], self.record["hypothesis_after"]
        if self.record["interrupted"]:
            reasons.append(f"interrupted by {self.record['interrupted']}")
        if not before or not before["met"]:
            reasons.append("steady state not met before the method (method not run)")
        if steady_state_only:
            return {
                "result": "pass" if not reasons else "fail",
                "pass": not reasons,
                "reasons": reasons or ["steady state met"],
            }
        reasons += [
            f"{a['section']} {a['type']} {a['name']}: {a['why']}"
            for a in self.record["method"] + self.record["rollbacks"]
            if not a["ok"]
        ]
        if before and before["met"] and (not after or not after["met"]):
            reasons.append("steady state not met after the method")
        bounds = substitute(self.experiment.data["verdict"].get("bounds") or {}, self.ctx.scope())
        for name, limit in bounds.items():
            measured = self.measures.get(name)
            if measured is None:
                reasons.append(f"{name} not measured")
            elif measured > float(limit):
                reasons.append(f"{name} {measured:.2f} s over the bound of {limit} s")
        self.record["bounds"] = bounds
        return {
            "result": "pass" if not reasons else "fail",
            "pass": not reasons,
            "reasons": reasons or ["hypothesis held, every probe within tolerance"],
        }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run-chaos-test.sh",
        description="Chaos experiments against the NEUROS compose stack (chaos/experiments/).",
        epilog="Exit status: 0 every verdict passed, 1 a verdict failed, 2 refused or "
        "usage error, 130 on SIGINT (Ctrl-C), 143 on SIGTERM (rollbacks ran). "
        f"{EXPERIMENTS_DIR_ENV}: read the experiments from this directory instead. "
        f"{TOKEN_VARIABLE}: the API token of the probes that call /v1/ (default: the file "
        f"{ADMIN_TOKEN_FILE}, which scripts/setup.sh creates).",
    )
    parser.add_argument("experiments", nargs="*", metavar="EXPERIMENT")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--dry-run", action="store_true", help="print every action; change nothing")
    parser.add_argument(
        "--steady-state-only",
        action="store_true",
        help="only check the steady-state hypotheses: no fault, no rollback; the probes "
        "still send requests (the load probes store readings of synthetic chaos-<random> "
        "users in the agent's database)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write FILE.json and FILE.txt (default: chaos/reports/<UTC time>)",
    )
    parser.add_argument("--yes", action="store_true", help="required outside CI (CI=true)")
    parser.add_argument("--project", help="compose project (default: name: of the compose file)")
    parser.add_argument(
        "-f",
        "--compose-file",
        type=Path,
        action="append",
        help="compose file(s) naming the project (default: docker-compose.yml)",
    )
    parser.add_argument(
        "--base-url",
        default=None,
        help="the agent (default: http://127.0.0.1:${NEUROS_PUBLISHED_PORT:-8000})",
    )
    return parser


def needs_api_token(experiment: Experiment) -> bool:
    """Whether a probe of the experiment calls the agent's API (and so needs a token)."""
    activities = [
        *experiment.hypothesis.get("probes", []),
        *experiment.activities("method"),
        *experiment.activities("rollbacks"),
    ]
    return any(
        a.get("type") == "probe"
        and probes.needs_api_token(str(a["provider"].get("type")), a["provider"])
        for a in activities
    )


def _err(message: str) -> None:
    print(f"run-chaos-test: ERROR: {message}", file=sys.stderr)


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    directory = Path(os.environ.get(EXPERIMENTS_DIR_ENV) or EXPERIMENTS_DIR)
    try:
        catalogue = available(directory)
    except (ExperimentError, ValueError, OSError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    if not catalogue:
        _err(f"no experiment (*.json) in {directory}")
        return EXIT_USAGE
    if args.list:
        width = max(len(name) for name in catalogue)
        for name, experiment in catalogue.items():
            print(f"{name:<{width}}  {experiment.title}")
        return 0
    unknown = [name for name in args.experiments if name not in catalogue]
    if not args.experiments or unknown:
        _err(f"unknown experiment(s) {unknown}" if unknown else "no experiment given (see --list)")
        return EXIT_USAGE
    changes = not (args.dry_run or args.steady_state_only)
    if changes and not args.yes and os.environ.get("CI", "").lower() != "true":
        _err("this injects real faults: pass --yes (not needed with CI=true)")
        return EXIT_USAGE
    try:
        project = Project(
            args.project or project_name(args.compose_file or [DEFAULT_COMPOSE]) or ""
        )
    except RefusedTarget as exc:
        _err(f"refusing: {exc}")
        return EXIT_USAGE
    # Read before any fault: a probe without it would fail only after the damage.
    api_token = ""
    if not args.dry_run and any(needs_api_token(catalogue[n]) for n in args.experiments):
        try:
            api_token = admin_token(REPO_ROOT)
        except NoAdminToken as exc:
            _err(str(exc))
            return EXIT_USAGE
    base_url = (
        args.base_url
        or os.environ.get("CHAOS_BASE_URL")
        or (f"http://127.0.0.1:{os.environ.get('NEUROS_PUBLISHED_PORT', '8000')}")
    )
    mode = "dry-run" if args.dry_run else "steady-state-only" if args.steady_state_only else "run"
    started = datetime.now(UTC)
    run: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "project": project.name,
        "base_url": base_url,
        "mode": mode,
        "experiments": [],
    }
    for name in args.experiments:
        experiment = catalogue[name]
        ctx = Context(
            project=project,
            base_url=base_url,
            tc_image=os.environ.get("CHAOS_TC_IMAGE", DEFAULT_TC_IMAGE),
            configuration=experiment.configuration(),
            api_token=api_token,
        )
        record = Run(experiment, ctx, args.dry_run).execute(args.steady_state_only)
        run["experiments"].append(record)
        if record["interrupted"]:
            break
    print(report.text(run), end="")
    if args.report or not args.dry_run:
        base = args.report or DEFAULT_REPORT_DIR / f"chaos-{started:%Y%m%dT%H%M%SZ}"
        for path in report.write(run, base):
            print(f"report: {path}")
    for record in run["experiments"]:
        if record["interrupted"]:
            return exit_status_of(str(record["interrupted"]))
    return EXIT_FAIL if any(r["verdict"]["pass"] is False for r in run["experiments"]) else 0
