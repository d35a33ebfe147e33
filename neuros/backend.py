"""The storage interface the agent uses, whichever database is behind it.

Two backends implement it: SQLite (``neuros.sqlite_backend``, the default, embedded)
and PostgreSQL (``neuros.postgres``, selected by ``NEUROS_DATABASE_URL``). Both give
the same guarantees: an ingest returns only once it is committed and durable; a
reading re-sent (same user and instant) replaces the stored one and never counts twice,
also when two replicas receive it at once; per-day totals stay exact; the user's
readiness band and the users per band move in the ingest's own transaction.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from neuros.kpi import DailyInputs, KpiSnapshot
from neuros.store import ReadingRow

# The pure KPI step, run inside the ingest's transaction on the fresh inputs.
Assess = Callable[[DailyInputs], KpiSnapshot]


@dataclass(frozen=True, slots=True)
class Ingested:
    """One committed batch: the user's fresh snapshot and their band before it."""

    snapshot: KpiSnapshot
    previous_band: str | None


class Backend(Protocol):
    # OpenTelemetry ``db.system`` of the database.
    system: str

    async def start(self) -> None:
        """Connect and migrate; raises if the database cannot be reached."""

    async def stop(self) -> None:
        """Finish queued work and close."""

    @property
    def schema_version(self) -> int:
        """The schema version after start()."""

    async def ingest(self, user_id: str, rows: Sequence[ReadingRow], assess: Assess) -> Ingested:
        """Store ``rows`` for ``user_id`` atomically; raises ``StorageError``."""

    async def kpi_inputs(self, user_id: str) -> DailyInputs | None:
        """The user's KPI inputs, None for an unknown user; raises ``StorageError``."""

    async def probe(self) -> None:
        """Commit a small write; raises ``StorageError`` when the database can't."""

    async def readiness_counts(self) -> dict[str, int]:
        """Users per readiness band, over every replica's writes."""
