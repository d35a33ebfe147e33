"""Static checks of neuros/Dockerfile and .dockerignore (no Docker engine needed).

The Dockerfile is parsed the way the builder reads it (line continuations, comment
lines, stages), and the HEALTHCHECK command is run for real against a stub server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from stacktools.paths import REPO_ROOT
from tests.support.dockerfile import (
    Instruction,
    dockerfile,
    parse_dockerfile,
    split_image,
)

DOCKERIGNORE = REPO_ROOT / ".dockerignore"

# name[:tag][@sha256:digest]; the tag must name a patch release, e.g. 3.11.14-slim-bookworm.
EXACT_TAG = re.compile(r"^\d+\.\d+\.\d+(-[a-z0-9][a-z0-9.-]*)?$")
ROOT_USERS = {"root", "0"}


# --- parser self-checks -------------------------------------------------------------


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile(
        "# syntax=docker/dockerfile:1\nARG B=img:1.2.3\nFROM ${B} AS one\n"
        "RUN a \\\n# inner comment\n    && b\nFROM one\nUSER 1:1\n"
    )

    assert parsed.global_args == {"B": "img:1.2.3"}
    assert [(s.base, s.name) for s in parsed.stages] == [("${B}", "one"), ("one", None)]
    assert parsed.stages[0].instructions == [Instruction("RUN", "a && b", 4)]
    assert parsed.final.last("USER") == Instruction("USER", "1:1", 8)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("python:3.11.14-slim-bookworm", ("python", "3.11.14-slim-bookworm", None)),
        ("localhost:5000/base:1.0.0", ("localhost:5000/base", "1.0.0", None)),
        ("python@sha256:abc", ("python", None, "sha256:abc")),
        ("neuros-base", ("neuros-base", None, None)),
    ],
)
def test_split_image(reference: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_image(reference) == expected


# --- the Dockerfile -------------------------------------------------------------------


def test_base_image_default_is_an_exact_patch_tag() -> None:
    default = dockerfile().global_args.get("BASE_IMAGE")
    assert default, "ARG BASE_IMAGE=<image>:<exact tag> must come before the first FROM"

    repository, tag, _digest = split_image(default)

    assert tag is not None, f"{default}: no tag, which means :latest"
    assert tag != "latest"
    assert EXACT_TAG.match(tag), f"{default}: tag must name a patch release (3.11.14-...)"
    # The local base (--build-arg BASE_IMAGE=neuros-base:bookworm) is a bookworm too.
    assert "bookworm" in tag, f"{default}: keep the default on Debian bookworm"
    assert repository.rsplit("/", 1)[-1] == "python"


def test_every_stage_builds_on_base_image_or_an_earlier_stage() -> None:
    """So that --build-arg BASE_IMAGE=... replaces the base of the whole build."""
    earlier: set[str] = set()
    for stage in dockerfile().stages:
        assert stage.base in {"${BASE_IMAGE}", "$BASE_IMAGE"} | earlier, stage.base
        if stage.name:
            earlier.add(stage.name)


def test_final_stage_runs_as_a_non_root_user() -> None:
    user = dockerfile().final.last("USER")
    assert user is not None, "the final stage has no USER: it would run as root"

    name = user.args.split(":", 1)[0]

    assert name not in ROOT_USERS
    assert name == "10001", "numeric uid, so that runAsNonRoot can check it"


def test_data_directory_is_a_volume_owned_by_the_user() -> None:
    final = dockerfile().final
    volumes: list[str] = []
    for volume in final.all("VOLUME"):
        volumes.extend(volume.exec_form() or volume.args.split())
    envs = " ".join(env.args for env in final.all("ENV"))
    runs = " ".join(run.args for run in final.all("RUN"))

    assert "/data" in volumes
    assert "NEUROS_DB_PATH=/data/" in envs
    assert re.search(r"chown\s+(neuros|10001)(:\S+)?\s+/data", runs), "chown of /data"


def test_exposes_the_agent_port() -> None:
    exposed = " ".join(expose.args for expose in dockerfile().final.all("EXPOSE")).split()

    assert "8000" in exposed or "8000/tcp" in exposed


def test_entrypoint_and_cmd_use_exec_form() -> None:
    final = dockerfile().final
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None

    assert entrypoint.exec_form() == ["python3", "-m", "neuros"], (
        "exec form, so that the agent itself (not a shell) receives SIGTERM"
    )
    for cmd in final.all("CMD"):
        assert cmd.exec_form() is not None, f"line {cmd.line}: CMD in shell form"
    stop = final.last("STOPSIGNAL")
    assert stop is None or stop.args in {"SIGTERM", "15"}


def healthcheck_command() -> list[str]:
    healthcheck = dockerfile().final.last("HEALTHCHECK")
    assert healthcheck is not None, "no HEALTHCHECK"
    assert healthcheck.args.upper() != "NONE"
    _, cmd_keyword, command = healthcheck.args.partition("CMD ")
    assert cmd_keyword, "HEALTHCHECK without CMD"
    argv = Instruction("CMD", command.strip(), healthcheck.line).exec_form()
    assert argv is not None, "HEALTHCHECK CMD must be in exec form"
    return argv


def test_healthcheck_uses_python_against_ready() -> None:
    argv = healthcheck_command()

    assert argv[0] in {"python3", "/opt/venv/bin/python3"}, "no curl in the slim image"
    assert "/ready" in " ".join(argv)
    assert not {"curl", "wget"} & set(" ".join(argv).split())


class _ReadyStub(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/ready" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_reports_readiness(status: int, healthy: bool) -> None:
    handler = type("Stub", (_ReadyStub,), {"status": status})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            argv = [sys.executable, *healthcheck_command()[1:]]
            env = {**os.environ, "NEUROS_PORT": str(server.server_address[1])}
            result = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=30, check=False
            )
        finally:
            server.shutdown()
            thread.join()

    assert (result.returncode == 0) is healthy, result.stderr


# --- .dockerignore -------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i)
            if end == -1:
                out.append(re.escape(char))
            else:
                out.append(pattern[i : end + 1])
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, in order."""
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        pattern = os.path.normpath(pattern)
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def excluded(path: str) -> bool:
    """Whether the builder leaves ``path`` (relative to the context) out.

    As Docker does: a path is out if it or one of its parent directories matches,
    and the last matching line wins.
    """
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in ignore_rules():
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not negated
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".venv",
        ".venv/bin/python",
        ".tools/bin/shellcheck",
        ".git/HEAD",
        "data/neuros.db",
        "k6/results/summary.json",
        "tests/agent/test_api.py",
        "neuros/__pycache__/main.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".env",
    ],
)
def test_dockerignore_keeps_local_state_out(path: str) -> None:
    assert excluded(path), f"{path} would be sent to the builder"


def copied_sources() -> list[str]:
    sources: list[str] = []
    for stage in dockerfile().stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            if "--from=" in copy.args:
                continue
            words = copy.exec_form() or [w for w in copy.args.split() if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def test_copied_sources_exist_and_are_not_ignored() -> None:
    sources = copied_sources()
    assert "pyproject.toml" in sources
    assert "uv.lock" in sources, "the dependencies come from the lock (tests/tools/test_lock.py)"
    assert any(source.rstrip("/") == "neuros" for source in sources)

    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the build context"
        assert not excluded(source), f"COPY {source}: excluded by .dockerignore"
    assert not excluded("neuros/main.py")
