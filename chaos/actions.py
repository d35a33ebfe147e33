"""Actions: the faults and their undoing, on containers of the compose project only.

Every action resolves its container through ``Project`` (compose labels, checked on
inspect), so it cannot touch anything outside the project. ``plan`` returns the
commands an action would run, which is all ``--dry-run`` prints.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaos.context import Context
from chaos.docker import DockerError, RefusedTarget, docker

# The init (tini) that compose's `init: true` runs as the container's main process.
DOCKER_INIT = "docker-init"
PROC = Path("/proc")
# Exit messages of `tc qdisc del` when there is no qdisc to delete: rollback succeeded.
_NO_QDISC = ("No such file or directory", "Cannot delete qdisc with handle of zero")


def _replica(args: dict[str, Any]) -> int | None:
    """The replica (compose container number) an activity names, if any."""
    return None if args.get("replica") is None else int(args["replica"])


def _target(ctx: Context, args: dict[str, Any], dry: bool) -> str:
    service, replica = str(args["service"]), _replica(args)
    if dry:
        return ctx.project.describe(service, replica)
    return ctx.project.container(service, replica).id


def require_replicas(ctx: Context, service: str, at_least: int) -> int:
    """The number of running containers of ``service``; RefusedTarget, saying how to get
    them, when fewer than ``at_least`` run (an experiment on one replica of several
    must not take down the only one)."""
    running = sum(c.running for c in ctx.project.containers(service))
    if running < at_least:
        raise RefusedTarget(
            f"{at_least} running replicas of {service!r} needed, {running} in project "
            f"{ctx.project.name!r}: bring up the scale stack "
            "(docker compose -f docker-compose.yml -f docker-compose.scale.yml up -d)"
        )
    return running


class ActionFailed(Exception):
    """An action ran but did not do what it should (e.g. a non-zero exit status)."""


def _comm(pid: int) -> str:
    return (PROC / str(pid) / "comm").read_text(encoding="utf-8").strip()


def _children(pid: int) -> list[int]:
    children = PROC / str(pid) / "task" / str(pid) / "children"
    return [int(child) for child in children.read_text(encoding="utf-8").split()]


def _crash_target(main_pid: int) -> tuple[int, str, str]:
    """The process to crash: the container's main process, or, when that is docker-init
    (compose ``init: true``), its one child, the service itself. Killing the init would
    also end the container, but the issue asks for the agent process to crash."""
    main = _comm(main_pid)
    if main != DOCKER_INIT:
        return main_pid, main, main
    children = _children(main_pid)
    if len(children) != 1:
        raise RefusedTarget(f"{DOCKER_INIT} (pid {main_pid}) has children {children}, not one")
    return children[0], _comm(children[0]), main


def _kill_pid(ctx: Context, args: dict[str, Any], dry: bool) -> dict[str, Any]:
    """A crash as the kernel delivers it: the signal to the service's process by its host
    PID. ``docker kill`` would count as a manual stop and skip the restart policy. With
    ``replica``, that replica of the service, and only while at least ``min_running``
    of its containers run."""
    sig = signal.Signals[str(args.get("signal", "SIGKILL"))]
    service, replica = str(args["service"]), _replica(args)
    min_running = int(args.get("min_running", 0))
    if dry:
        return {
            "commands": [
                f"docker inspect -f '{{{{.State.Pid}}}}' {ctx.project.describe(service, replica)}",
                f"(if that PID is {DOCKER_INIT}: its child, from /proc/<PID>/task/<PID>/children)",
                f"kill -{sig.name.removeprefix('SIG')} <that host PID>",
            ]
        }
    if min_running:
        require_replicas(ctx, service, min_running)
    target = ctx.project.container(service, replica)
    if not target.running or target.pid <= 0:
        raise RefusedTarget(f"{service} is not running (pid {target.pid})")
    pid, name, main = _crash_target(target.pid)
    # Checked again right before the kill: the container is still the same and running.
    if ctx.project.container(service, replica).pid != target.pid:
        raise RefusedTarget(f"{service} changed its main process before the kill")
    os.kill(pid, sig)
    return {
        "commands": [f"kill -{sig.name.removeprefix('SIG')} {pid}"],
        "container": target.id[:12],
        "replica": target.number,
        "main_pid": target.pid,
        "main_process": main,
        "pid": pid,
        "process": name,
        "restart_count_before": target.restart_count,
    }


def _docker_on(verb: str, *extra: str) -> Callable[[Context, dict[str, Any], bool], Any]:
    def act(ctx: Context, args: dict[str, Any], dry: bool) -> dict[str, Any]:
        target = _target(ctx, args, dry)
        command = ["docker", verb, *extra, target]
        if not dry:
            docker(*command[1:])
        return {"commands": [shlex.join(command)]}

    return act


def _netem(ctx: Context, args: dict[str, Any], dry: bool, tc: list[str]) -> dict[str, Any]:
    """``tc`` from a helper container in the target's network namespace: the agent's
    image has no ``tc`` and drops every capability."""
    target = _target(ctx, args, dry)
    command = [
        "docker",
        "run",
        "--rm",
        "--network",
        f"container:{target}",
        "--cap-add",
        "NET_ADMIN",
        ctx.tc_image,
        "tc",
        *tc,
    ]
    if not dry:
        try:
            docker(*command[1:], timeout=120)
        except DockerError as exc:
            if tc[0:2] != ["qdisc", "del"] or not any(m in str(exc) for m in _NO_QDISC):
                raise
    return {"commands": [shlex.join(command)]}


def _netem_add(ctx: Context, args: dict[str, Any], dry: bool) -> dict[str, Any]:
    delay = [f"{int(args['delay_ms'])}ms"]
    if args.get("jitter_ms"):
        delay.append(f"{int(args['jitter_ms'])}ms")
    device = str(args.get("device", "eth0"))
    return _netem(ctx, args, dry, ["qdisc", "add", "dev", device, "root", "netem", "delay", *delay])


def _netem_del(ctx: Context, args: dict[str, Any], dry: bool) -> dict[str, Any]:
    device = str(args.get("device", "eth0"))
    return _netem(ctx, args, dry, ["qdisc", "del", "dev", device, "root"])


def _process(ctx: Context, args: dict[str, Any], dry: bool) -> dict[str, Any]:
    """Chaos Toolkit's ``process`` provider, reduced: runs ``path`` with the list
    ``arguments`` (no shell) on this host, within ``timeout`` seconds. Unlike the
    Chaos Toolkit, a non-zero exit status fails the action."""
    result = run_process(args, dry)
    if not dry and result["status"] != 0:
        raise ActionFailed(f"exit status {result['status']}: {result['stderr'].strip()}")
    return result


def run_process(args: dict[str, Any], dry: bool) -> dict[str, Any]:
    """``{"status", "stdout", "stderr"}`` of the command, as the Chaos Toolkit returns."""
    arguments = args.get("arguments") or []
    if not isinstance(arguments, list):
        raise ActionFailed("process arguments must be a list (no shell)")
    command = [str(args["path"]), *(str(a) for a in arguments)]
    commands = [shlex.join(command)]
    if dry:
        return {"commands": commands}
    try:
        done = subprocess.run(  # noqa: S603 - the experiment file's command, no shell
            command,
            capture_output=True,
            text=True,
            timeout=float(args.get("timeout", 60)),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ActionFailed(f"{commands[0]}: took longer than {exc.timeout} s") from exc
    return {
        "commands": commands,
        "status": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


ACTIONS: dict[str, Callable[[Context, dict[str, Any], bool], dict[str, Any]]] = {
    "compose-kill-pid": _kill_pid,
    # `docker stop`: a manual stop, so the restart policy leaves the service down.
    "compose-stop": _docker_on("stop", "--time", "10"),
    # Idempotent: starting a running container succeeds and changes nothing.
    "compose-start": _docker_on("start"),
    "netem-add": _netem_add,
    "netem-del": _netem_del,
    "process": _process,
}
