"""Where the database is: a SQLite file, a PostgreSQL URL, or a compose project."""

from dataclasses import dataclass
from pathlib import Path

from neuros.backup import POSTGRESQL, SQLITE
from neuros.backup.compose import Compose
from neuros.backup.errors import BackupError
from neuros.backup.postgres import PgRunner, compose_runner, host_runner, tools_runner


@dataclass(frozen=True)
class Source:
    db: Path | None = None
    url: str | None = None
    compose: Compose | None = None
    pg_bin: Path | None = None

    @property
    def given(self) -> bool:
        return self.db is not None or self.url is not None or self.compose is not None

    def backend(self) -> str:
        if self.db is not None:
            return SQLITE
        if self.url is not None:
            return POSTGRESQL
        if self.compose is not None:
            return self.compose.backend()
        raise BackupError("no database given: --db, --database-url or --compose-project")

    def pg(self) -> PgRunner:
        """The PostgreSQL tools for this source (for a dump alone: the host's)."""
        if self.url is not None:
            return host_runner(self.url, self.pg_bin)
        if self.compose is not None:
            return compose_runner(self.compose.base, self.compose.project)
        return tools_runner(self.pg_bin)

    def describe(self, backend: str) -> str:
        """How a manifest names the source: never a password, never a full path."""
        if self.db is not None:
            return self.db.name
        if self.compose is not None:
            service = "postgres" if backend == POSTGRESQL else "neuros"
            return f"compose project {self.compose.project}, service {service}"
        return self.pg().description
