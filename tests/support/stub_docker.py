"""A stub ``docker`` executable for driving scripts/storage-management.sh in tests.

It records every call (one line of tab-separated arguments per call) and prints
plausible output. It never talks to a real daemon, so tests can run ``clean``
on any machine without pruning anything.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stacktools import paths
from stacktools.paths import REPO_ROOT

STORAGE_SCRIPT = REPO_ROOT / paths.STORAGE_SCRIPT

UNREACHABLE_MESSAGE = (
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    " Is the docker daemon running?"
)

_STUB = r"""#!/usr/bin/env bash
set -u
printf '%s\n' "$(IFS=$'\t'; echo "$*")" >> __LOG__
if [[ __UNREACHABLE__ == true ]]; then
  echo "__UNREACHABLE_MESSAGE__" >&2
  exit 1
fi
case "$1 ${2:-}" in
  "info "*) echo __ROOT__ ;;
  "volume ls") printf '%s\n' neuros_neuros-data neuros_prometheus-data ;;
  "volume inspect") echo /nonexistent/volume ;;
  "system df")
    if [[ " $* " == *" -v "* ]]; then
      cat <<'EOF'
Images space usage:

REPOSITORY   TAG   IMAGE ID   CREATED   SIZE   SHARED SIZE   UNIQUE SIZE   CONTAINERS

Local Volumes space usage:

VOLUME NAME              LINKS     SIZE
neuros_neuros-data       1         12.5MB
neuros_prometheus-data   1         1.2GB

Build cache usage: 0B
EOF
    elif [[ " $* " == *" --format "* ]]; then
      printf '%s%s\n' '{"Active":"1","Reclaimable":"0B","Size":"1.2GB",' \
        '"TotalCount":"2","Type":"Local Volumes"}'
    else
      echo "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"
      echo "Local Volumes   2         1         1.2GB     0B (0%)"
    fi
    ;;
  "container prune" | "image prune" | "builder prune")
    if [[ __FAIL_PRUNE__ == true ]]; then
      echo "Error response from daemon: a prune operation is already running" >&2
      exit 1
    fi
    if [[ "$1" == builder ]]; then
      printf 'ID\tRECLAIMABLE\tSIZE\tLAST ACCESSED\nTotal:\t2.5MB\n'
    else
      printf 'Deleted: sha256:0123\n\nTotal reclaimed space: 1.5MB\n'
    fi
    ;;
  *) echo "stub docker: unhandled: $*" >&2; exit 3 ;;
esac
"""

# Bytes the stub reports per successful clean: 1.5MB x 3 prunes + 2.5MB build cache.
STUB_RECLAIMED_BYTES = 3 * 1_500_000 + 2_500_000


@dataclass
class StubDocker:
    bin_dir: Path
    log: Path

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [line.split("\t") for line in self.log.read_text().splitlines()]

    def env(self) -> dict[str, str]:
        """The environment with the stub first on PATH."""
        env = dict(os.environ)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env.pop("COMPOSE_PROJECT_NAME", None)
        return env


def install_stub_docker(
    directory: Path,
    *,
    fail_prune: bool = False,
    unreachable: bool = False,
    root_dir: Path | None = None,
) -> StubDocker:
    """Writes ``directory/bin/docker`` and returns how to use and inspect it."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = directory / "docker-calls.log"
    script = (
        _STUB.replace("__LOG__", shlex.quote(str(log)))
        .replace("__UNREACHABLE_MESSAGE__", UNREACHABLE_MESSAGE)
        .replace("__UNREACHABLE__", "true" if unreachable else "false")
        .replace("__FAIL_PRUNE__", "true" if fail_prune else "false")
        .replace("__ROOT__", shlex.quote(str(root_dir or directory)))
    )
    docker = bin_dir / "docker"
    docker.write_text(script)
    docker.chmod(0o755)
    return StubDocker(bin_dir=bin_dir, log=log)


def run_storage_script(
    stub: StubDocker, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(STORAGE_SCRIPT), *args],
        capture_output=True,
        text=True,
        env=stub.env(),
        timeout=timeout,
        check=False,
    )
