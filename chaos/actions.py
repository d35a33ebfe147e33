"""Actions: the faults and their undoing, on containers of the compose project only.

Every action resolves its container through ``Project`` (compose labels, checked on
inspect), so it cannot touch anything outside the project. ``plan`` returns the
commands an action would run, which is all ``--dry-run`` prints.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Callable
from typing import Any

from chaos.context import Context
from chaos.docker import DockerError, RefusedTarget, docker

# Exit messages of `tc qdisc del` when there is no qdisc to delete: rollback succeeded.
_NO_QDISC = ("No such file or directory", "Cannot delete qdisc with handle of zero")


def _target(ctx: Context, args: dict[str, Any], dry: bool) -> str:
    service = str(args["service"])
    if dry:
        return ctx.project.describe(service)
    return ctx.project.container(service).id


def _kill_pid(ctx: Context, args: dict[str, Any], dry: bool) -> dict[str, Any]:
    """A crash as the kernel delivers it: the signal to the container's main process by
    its host PID. ``docker kill`` would count as a manual stop and skip the restart policy."""
    sig = signal.Signals[str(args.get("signal", "SIGKILL"))]
    service = str(args["service"])
    if dry:
        return {
            "commands": [
                f"docker inspect -f '{{{{.State.Pid}}}}' {ctx.project.describe(service)}",
                f"kill -{sig.name.removeprefix('SIG')} <that host PID>",
            ]
        }
    target = ctx.project.container(service)
    if not target.running or target.pid <= 0:
        raise RefusedTarget(f"{service} is not running (pid {target.pid})")
    os.kill(target.pid, sig)
    return {
        "commands": [f"kill -{sig.name.removeprefix('SIG')} {target.pid}"],
        "container": target.id[:12],
        "pid": target.pid,
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


ACTIONS: dict[str, Callable[[Context, dict[str, Any], bool], dict[str, Any]]] = {
    "compose-kill-pid": _kill_pid,
    # `docker stop`: a manual stop, so the restart policy leaves the service down.
    "compose-stop": _docker_on("stop", "--time", "10"),
    # Idempotent: starting a running container succeeds and changes nothing.
    "compose-start": _docker_on("start"),
    "netem-add": _netem_add,
    "netem-del": _netem_del,
}
