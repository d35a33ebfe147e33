"""``python -m neuros``: validate settings, then serve with uvicorn.
``python -m neuros tokens ...`` manages the API tokens file instead (neuros.auth.cli)."""

import logging
import signal
import sys
from typing import Any

import uvicorn
from pydantic import ValidationError

from neuros.auth.tokens import TokensFileError
from neuros.config import Settings
from neuros.main import create_app
from neuros.tracing import TracingConfigError


def _settings_or_exit() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"NEUROS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        sys.exit(f"neuros: invalid settings: {problems}")


def _database_or_exit(url: str) -> None:
    """An unreachable PostgreSQL stops the start with one line, password left out."""
    from neuros.postgres import check_reachable
    from neuros.postgres_url import connect_error

    try:
        check_reachable(url)
    except Exception as exc:
        sys.exit(f"neuros: NEUROS_DATABASE_URL: {connect_error(url, exc)}")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the agent is served; the benchmark serves its floor app the same way."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # Named, not "auto": a missing dependency fails the start instead of quietly
        # serving on the slower pure-Python stack.
        "loop": "uvloop",
        "http": "httptools",
        # The default access log prints raw paths, which carry user ids.
        "access_log": False,
        # Leave room inside Docker's 10 s stop timeout for span flushing.
        "timeout_graceful_shutdown": 5,
    }


def main() -> None:
    if sys.argv[1:2] == ["tokens"]:
        from neuros.auth.cli import main as tokens_main

        sys.exit(tokens_main(sys.argv[2:]))
    # The span exporter thread is CPU-bound while it encodes a batch; with the
    # default 5 ms GIL switch interval the event loop waits behind it after every
    # socket call. 0.5 ms measured full/off 0.70 -> 0.82 in scripts/bench-agent.sh.
    sys.setswitchinterval(0.0005)
    settings = _settings_or_exit()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if settings.database_url is not None:
        _database_or_exit(settings.database_url.get_secret_value())
    try:
        app = create_app(settings)
    except TracingConfigError as exc:
        sys.exit(f"neuros: invalid settings: {exc}")
    except TokensFileError as exc:
        sys.exit(
            f"neuros: NEUROS_API_TOKENS_FILE: {exc}; create it with scripts/setup.sh or "
            "`python -m neuros tokens add <name> --user '*'`"
        )
    # uvicorn re-raises SIGTERM after its graceful shutdown, which would end the
    # process with 143; a clean stop should exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(app, **uvicorn_options(settings))


if __name__ == "__main__":
    main()
