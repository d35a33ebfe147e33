"""Backups of the agent's data: ``python3 -m neuros.backup`` (see ``neuros.backup.cli``).

Standard library only, and nothing here imports the agent's own modules beyond pure
data (``neuros.postgres_schema``, ``neuros.postgres_url``): the host's ``python3``
runs it from the repository root with no venv, and the agent image runs it too.
"""

# neuros.store.SCHEMA_VERSION, which imports pydantic; tests/agent/test_backup.py keeps the
# two equal, so the store stays the one source of truth.
SQLITE_SCHEMA_VERSION = 3

# The tables whose rows an archive's manifest counts (the agent's data; ready_probe
# and schema_version are bookkeeping).
TABLES = ("readings", "daily_totals", "user_state", "readiness_counts")

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
