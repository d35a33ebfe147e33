"""The tokens file on disk: read, watch for changes, and rewrite atomically.

The agent reads it; ``python -m neuros tokens`` writes it. A write goes to a temporary
file in the same folder and is renamed over the old one, so a reader sees the old
file or the new one, never half of either. The folder (not the file) is what compose
mounts, so a rename shows up inside the container too.
"""

import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError

from neuros.auth.tokens import (
    Scope,
    TokenEntry,
    TokensDocument,
    TokenSet,
    TokensFileError,
    digest,
    new_token,
)

HEADER = (
    "# NEUROS API tokens: the SHA-256 of each token, never the token itself.\n"
    "# Managed by `python -m neuros tokens add|list|revoke`; the agent reloads this\n"
    "# file when it changes and on SIGHUP. users: ids, shell-style patterns, or '*'.\n"
)
# Readable by the agent's own uid inside its container, which is not the host user
# that wrote it. Hashes of 256-bit tokens give nothing away; the folder is private.
FILE_MODE = 0o644

Signature = tuple[int, int, int, int]


def parse(text: str, source: str = "tokens file") -> TokensDocument:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise TokensFileError(f"{source}: not valid YAML{where}") from None
    if raw is None:
        # What a non-atomic save looks like half-way; write "tokens: []" to accept none.
        raise TokensFileError(f"{source}: empty (to accept no token, write 'tokens: []')")
    try:
        return TokensDocument.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise TokensFileError(f"{source}: {problems}") from None


def dump(document: TokensDocument) -> str:
    body = document.model_dump(mode="json", exclude_none=True)
    return HEADER + yaml.safe_dump(body, sort_keys=False)


class TokensFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def signature(self) -> Signature | None:
        """What changes when the file is replaced or edited; None if it is missing."""
        try:
            st = self.path.stat()
        except OSError:
            # Missing or unreadable: the reload that follows says which.
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> TokensDocument:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TokensFileError(f"{self.path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TokensFileError(f"{self.path}: cannot read ({type(exc).__name__})") from None
        return parse(text, str(self.path))

    def load(self) -> tuple[TokenSet, Signature | None]:
        """The token set and the signature of the file it came from."""
        before = self.signature()
        return TokenSet(self.read().tokens), before

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        with lock.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def update(self, change: Callable[[TokensDocument], TokensDocument]) -> TokensDocument:
        """Read (an absent file is empty), apply ``change``, write atomically; one
        writer at a time."""
        with self._locked():
            empty = not self.path.exists() or self.path.stat().st_size == 0
            current = TokensDocument() if empty else self.read()
            updated = TokensDocument.model_validate(change(current).model_dump())
            self._write(dump(updated))
            return updated

    def add(self, name: str, scopes: Sequence[Scope], users: Sequence[str]) -> str:
        """A new token under ``name``; returns it (the file keeps only its hash)."""
        token = new_token()

        def change(doc: TokensDocument) -> TokensDocument:
            if any(e.name == name for e in doc.tokens):
                raise TokensFileError(f"a token named {name!r} exists; revoke it first")
            entry = TokenEntry(
                name=name,
                sha256=digest(token).hex(),
                scopes=list(scopes),
                users=list(users),
                created=datetime.now(UTC).replace(microsecond=0),
            )
            return TokensDocument(tokens=[*doc.tokens, entry])

        self.update(change)
        return token

    def revoke(self, name: str) -> None:
        def change(doc: TokensDocument) -> TokensDocument:
            kept = [e for e in doc.tokens if e.name != name]
            if len(kept) == len(doc.tokens):
                raise TokensFileError(f"no token named {name!r}")
            return TokensDocument(tokens=kept)

        self.update(change)

    def _write(self, text: str) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
