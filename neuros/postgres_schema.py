"""Versioned PostgreSQL schema (``neuros.postgres``): version -> statements.

Applied in order inside one transaction under an advisory lock, so replicas starting
at once migrate once; ``schema_version`` records what was applied. Never edit an
applied version: add the next one.
"""

# The advisory lock key migrations hold (any constant; "neuros" in ASCII).
MIGRATION_LOCK = 0x6E6575726F73

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """
        CREATE TABLE readings (
            user_id           text             NOT NULL,
            recorded_at_us    bigint           NOT NULL,  -- UTC epoch microseconds
            recorded_at       text             NOT NULL,  -- as sent, offset included
            rr_intervals_ms   text,                       -- JSON array, as validated
            reported_rmssd_ms double precision,
            hrv_rmssd_ms      double precision,
            resting_hr_bpm    double precision,
            sleep_hours       double precision,
            PRIMARY KEY (user_id, recorded_at_us)
        )
        """,
        """
        CREATE INDEX readings_hrv ON readings (user_id, recorded_at_us DESC)
            INCLUDE (hrv_rmssd_ms) WHERE hrv_rmssd_ms IS NOT NULL
        """,
        """
        CREATE INDEX readings_resting_hr ON readings (user_id, recorded_at_us DESC)
            INCLUDE (resting_hr_bpm) WHERE resting_hr_bpm IS NOT NULL
        """,
        """
        CREATE TABLE daily_totals (
            user_id text    NOT NULL,
            day     integer NOT NULL,           -- UTC days since 1970-01-01
            hrv_q   bigint  NOT NULL DEFAULT 0, -- sums in quanta (neuros.kpi)
            hrv_n   integer NOT NULL DEFAULT 0,
            rhr_q   bigint  NOT NULL DEFAULT 0,
            rhr_n   integer NOT NULL DEFAULT 0,
            sleep_q bigint  NOT NULL DEFAULT 0,
            sleep_n integer NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, day)
        )
        """,
        """
        CREATE TABLE user_state (
            user_id   text PRIMARY KEY,
            readiness text NOT NULL
        )
        """,
        # Users per band, spread over shards so that concurrent band moves of
        # different users rarely wait for the same row; a read sums the shards.
        """
        CREATE TABLE readiness_counts (
            readiness text     NOT NULL,
            shard     smallint NOT NULL,
            users     bigint   NOT NULL,
            PRIMARY KEY (readiness, shard)
        )
        """,
        """
        CREATE TABLE ready_probe (
            id integer PRIMARY KEY CHECK (id = 1),
            at timestamptz NOT NULL
        )
        """,
    ),
}

SCHEMA_VERSION = max(MIGRATIONS)
