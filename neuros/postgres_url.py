"""NEUROS_DATABASE_URL: which schemes select PostgreSQL, and naming a URL safely."""

from urllib.parse import urlsplit

SCHEMES = ("postgresql", "postgres")


class DatabaseUrlError(ValueError):
    """NEUROS_DATABASE_URL names no database this agent can use."""


def check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise DatabaseUrlError(f"scheme {scheme or '(none)'!r} is not supported; use postgresql://")


def redacted(url: str) -> str:
    """``url`` without its password, to name it in a message."""
    parts = urlsplit(url)
    host = parts.hostname or "(local socket)"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def connect_error(url: str, exc: BaseException) -> str:
    """One line saying why ``url`` could not be reached, never its password."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    password = urlsplit(url).password
    if password:
        reason = reason.replace(password, "***")
    return f"cannot connect to {redacted(url)}: {reason}"
