"""API tokens: generation, hashing, the file's model, and what a token may touch.

A token is ``nrs_`` and 43 url-safe characters: 256 random bits, generated here and
never chosen by a person. The file keeps only its SHA-256. A slow password hash
(scrypt, argon2) protects guessable secrets; against 2**256 candidates it adds
nothing, yet would cost milliseconds of CPU on every request with an unknown token,
which turns credential stuffing into a denial of service. SHA-256 lets the lookup be
a dictionary built once per file load: the request path hashes the presented token
(about a microsecond) and looks the digest up. GitHub and PyPI store their API tokens
the same way.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from fnmatch import translate
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TOKEN_PREFIX = "nrs_"  # noqa: S105 - a prefix that secret scanners can match
ALL_USERS = "*"
# A user id (neuros.schemas.USER_ID_PATTERN) or a shell-style pattern of ids: '*' and
# '?' are not id characters, so an entry without them is one exact id.
USER_ENTRY_PATTERN = r"^[A-Za-z0-9_*?-]{1,64}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_DIGEST_HEX_PATTERN = r"^[0-9a-f]{64}$"


class Scope(StrEnum):
    READINGS_WRITE = "readings:write"
    KPIS_READ = "kpis:read"
    ANALYZE = "analyze"


class TokensFileError(ValueError):
    """The tokens file is missing, unreadable or invalid; the message names no secret."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    # surrogateescape: a header that is not valid UTF-8 still hashes (and fails) in
    # the same time as any other wrong token.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenEntry(BaseModel):
    """One token as the file stores it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    sha256: Annotated[str, Field(pattern=_DIGEST_HEX_PATTERN)]
    scopes: Annotated[list[Scope], Field(min_length=1)]
    users: Annotated[list[Annotated[str, Field(pattern=USER_ENTRY_PATTERN)]], Field(min_length=1)]
    created: datetime | None = None

    @field_validator("scopes", "users")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("lists an entry twice")
        return values


class TokensDocument(BaseModel):
    """The whole file: ``tokens:`` and a list of entries, names and hashes unique."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> "TokensDocument":
        for field in ("name", "sha256"):
            seen: set[str] = set()
            for entry in self.tokens:
                value = getattr(entry, field)
                if value in seen:
                    # The name is safe to show; a hash is not repeated back.
                    shown = f" {value!r}" if field == "name" else ""
                    raise ValueError(f"two tokens share a {field}{shown}")
                seen.add(value)
        return self


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token is: its name, scopes and the users it may touch."""

    name: str
    scopes: frozenset[Scope]
    all_users: bool
    user_ids: frozenset[str]
    user_patterns: re.Pattern[str] | None

    @classmethod
    def of(cls, entry: TokenEntry) -> "Principal":
        exact = {u for u in entry.users if not any(c in u for c in "*?")}
        patterns = [translate(u) for u in entry.users if u not in exact and u != ALL_USERS]
        return cls(
            name=entry.name,
            scopes=frozenset(entry.scopes),
            all_users=ALL_USERS in entry.users,
            user_ids=frozenset(exact),
            user_patterns=re.compile("|".join(patterns)) if patterns else None,
        )

    def may_touch(self, user_id: str) -> bool:
        if self.all_users or user_id in self.user_ids:
            return True
        return self.user_patterns is not None and self.user_patterns.fullmatch(user_id) is not None


# Compared against when no token matches, so a miss runs the same comparison as a hit.
_NO_MATCH = Principal("", frozenset(), False, frozenset(), None)


class TokenSet:
    """The loaded tokens: digest -> principal, built once per file load."""

    def __init__(self, entries: Iterable[TokenEntry] = ()) -> None:
        self._by_digest: Mapping[bytes, tuple[bytes, Principal]] = {
            bytes.fromhex(e.sha256): (bytes.fromhex(e.sha256), Principal.of(e)) for e in entries
        }
        self._dummy = (secrets.token_bytes(32), _NO_MATCH)

    def __len__(self) -> int:
        return len(self._by_digest)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(p.name for _, p in self._by_digest.values())

    def authenticate(self, token: str) -> Principal | None:
        """The token's principal, or None. Every token, of any length, is hashed and
        its digest compared in constant time against a stored one (or a random one)."""
        presented = digest(token)
        stored, principal = self._by_digest.get(presented, self._dummy)
        return principal if hmac.compare_digest(stored, presented) else None
