"""``python -m neuros tokens add|list|revoke``: manage the API tokens file.

``add`` prints the new token once, on stdout and alone, so that it can be captured
(``token=$(python -m neuros tokens add ...)``); the file keeps only its hash.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from neuros.auth.tokens import (
    ALL_USERS,
    NAME_PATTERN,
    Scope,
    TokensFileError,
)
from neuros.auth.tokens_file import TokensFile

FILE_VARIABLE = "NEUROS_API_TOKENS_FILE"


def _default_file() -> Path:
    # Imported here: Settings validates every NEUROS_* variable, which a command that
    # only manages tokens should not fail on.
    from neuros.config import DEFAULT_API_TOKENS_FILE

    return Path(os.environ.get(FILE_VARIABLE, DEFAULT_API_TOKENS_FILE))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m neuros tokens",
        description="Manage the API tokens file (hashes only; the agent reloads it).",
    )
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        help=f"tokens file (default: ${FILE_VARIABLE} or the agent's default)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create a token and print it once")
    add.add_argument("name", help=f"how logs and metrics name it ({NAME_PATTERN})")
    add.add_argument(
        "--scope",
        action="append",
        choices=[s.value for s in Scope],
        help="repeat for several; default: all scopes",
    )
    add.add_argument(
        "--user",
        action="append",
        required=True,
        help=f"a user id, a shell-style pattern (team-a-*), or '{ALL_USERS}' for all; "
        "repeat for several",
    )
    commands.add_parser("list", help="names, scopes, users and creation times")
    revoke = commands.add_parser("revoke", help="delete a token by name")
    revoke.add_argument("name")
    return parser


def _list(tokens: TokensFile) -> str:
    rows = [("NAME", "SCOPES", "USERS", "CREATED")]
    for e in tokens.read().tokens if tokens.path.exists() else []:
        created = e.created.isoformat() if e.created else "-"
        rows.append((e.name, ",".join(e.scopes), ",".join(e.users), created))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
        for r in rows
    )


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(argv)
    tokens = TokensFile(args.file or _default_file())
    try:
        if args.command == "add":
            scopes = [Scope(s) for s in dict.fromkeys(args.scope or [s.value for s in Scope])]
            print(tokens.add(args.name, scopes, list(dict.fromkeys(args.user))))
            print(
                f"added {args.name!r} to {tokens.path}; the token is shown only once",
                file=sys.stderr,
            )
        elif args.command == "revoke":
            tokens.revoke(args.name)
            print(f"revoked {args.name!r} in {tokens.path}", file=sys.stderr)
        else:
            print(_list(tokens))
    except ValidationError as exc:
        for e in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in e["loc"])
            print(f"neuros tokens: {where}: {e['msg']}", file=sys.stderr)
        return 2
    except TokensFileError as exc:
        print(f"neuros tokens: {exc}", file=sys.stderr)
        return 1
    return 0
