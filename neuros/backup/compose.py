"""The compose project's agent: which backend it runs, its SQLite volume, its image.

Everything goes through ``docker compose`` and ``docker``, run from the repository
root. A restore writes only into a volume that compose created for this project
(labels ``com.docker.compose.project`` and ``com.docker.compose.volume``): it never
touches a volume it did not create.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from neuros.backup import POSTGRESQL, SQLITE
from neuros.backup.errors import BackupError
from neuros.backup.postgres import SERVICE as POSTGRES_SERVICE

AGENT_SERVICE = "neuros"
AGENT_VOLUME = "neuros-data"  # docker-compose.yml: neuros-data:/data
AGENT_DB = "/data/neuros.db"  # docker-compose.yml: NEUROS_DB_PATH
AGENT_USER = "10001:10001"  # neuros/Dockerfile and docker-compose.yml
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Compose:
    project: str
    files: tuple[str, ...] = ("docker-compose.yml",)

    @property
    def base(self) -> tuple[str, ...]:
        """``docker compose`` for this project."""
        files = [arg for file in self.files for arg in ("--file", file)]
        return ("docker", "compose", "--project-name", self.project, *files)

    def _output(self, argv: list[str]) -> str:
        done = _run(argv, stdout=subprocess.PIPE)
        return bytes(done.stdout).decode(errors="replace")

    def running(self, service: str) -> bool:
        argv = [*self.base, "ps", "--status", "running", "--quiet", service]
        return bool(self._output(argv).strip())

    def backend(self) -> str:
        """PostgreSQL when the project runs a postgres service, else SQLite."""
        services = set(
            self._output([*self.base, "ps", "--status", "running", "--services"]).split()
        )
        if POSTGRES_SERVICE in services:
            return POSTGRESQL
        if AGENT_SERVICE in services:
            return SQLITE
        raise BackupError(
            f"compose project {self.project}: neither {AGENT_SERVICE} nor "
            f"{POSTGRES_SERVICE} is running"
        )

    def check_agent_stopped(self) -> None:
        if self.running(AGENT_SERVICE):
            raise BackupError(
                f"compose project {self.project}: the agent ({AGENT_SERVICE}) is running: "
                f"stop it first (docker compose stop {AGENT_SERVICE})"
            )

    def agent_volume(self) -> str:
        """The project's own neuros-data volume, found by compose's labels."""
        argv = ["docker", "volume", "ls", "--quiet",
                "--filter", f"label=com.docker.compose.project={self.project}",
                "--filter", f"label=com.docker.compose.volume={AGENT_VOLUME}"]  # fmt: skip
        names = self._output(argv).split()
        if len(names) != 1:
            raise BackupError(
                f"compose project {self.project}: {len(names)} volumes labelled as its "
                f"{AGENT_VOLUME}, expected 1: refusing (a restore never touches a volume "
                "it did not create)"
            )
        return names[0]

    def agent_image(self) -> str:
        images = self._output([*self.base, "config", "--images", AGENT_SERVICE]).split()
        if len(images) != 1:
            raise BackupError(f"compose project {self.project}: no image for {AGENT_SERVICE}")
        return images[0]

    def snapshot_sqlite(self, dest: Path) -> None:
        """A consistent snapshot, taken inside the running agent's container."""
        argv = [*self.base, "exec", "-T", AGENT_SERVICE, "python3", "-m", "neuros.backup",
                "snapshot-sqlite", "--db", AGENT_DB]  # fmt: skip
        with dest.open("xb") as out:
            _run(argv, stdout=out)

    def install_sqlite(self, snapshot: Path, *, force: bool) -> str:
        """Puts ``snapshot`` into the project's volume, from a one-off container of the
        agent's image, as the agent's user; returns what it printed."""
        argv = ["docker", "run", "--rm", "-i", "--network", "none", "--user", AGENT_USER,
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
                "--volume", f"{self.agent_volume()}:/data", "--entrypoint", "python3",
                self.agent_image(), "-m", "neuros.backup", "install-sqlite",
                "--db", AGENT_DB, *(["--force"] if force else [])]  # fmt: skip
        with snapshot.open("rb") as source:
            done = _run(argv, stdin=source, stdout=subprocess.PIPE)
        return bytes(done.stdout).decode(errors="replace").strip()


def _run(
    argv: list[str], *, stdout: int | IO[bytes], stdin: int | IO[bytes] = subprocess.DEVNULL
) -> "subprocess.CompletedProcess[bytes]":
    try:
        done = subprocess.run(  # noqa: S603 - our argv, no shell
            argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False
        )
    except FileNotFoundError:
        raise BackupError(f"{argv[0]} not found: compose mode needs Docker") from None
    if done.returncode != 0:
        lines = bytes(done.stderr).decode(errors="replace").strip().splitlines()
        # The tool in the container prints its own one-line error last.
        reason = lines[-1] if lines else "no message"
        raise BackupError(
            f"{' '.join(argv[:2])} ... failed (exit {done.returncode}): "
            f"{reason[:MAX_MESSAGE_CHARS]}"
        )
    return done
