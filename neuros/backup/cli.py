"""``python3 -m neuros.backup``: backups of the agent's database (scripts/backup.sh).

Commands:
  backup   SOURCE --backup-dir DIR [--keep-daily N] [--keep-weekly M] [--metrics-file F]
  restore  ARCHIVE SOURCE [--force]
  verify   ARCHIVE [--json] [SOURCE: where pg_restore runs for a PostgreSQL archive]
  list     --backup-dir DIR [--json]
  snapshot-sqlite --db PATH           (internal: a consistent snapshot to stdout)
  install-sqlite  --db PATH [--force] (internal: a snapshot from stdin into PATH)

SOURCE is one of --db PATH (SQLite), --database-url URL (PostgreSQL) or
--compose-project NAME [--compose-file FILE]... (the compose project's agent: its
postgres service when it runs one, else its SQLite volume). Every command takes
--dry-run (backup and restore: print what would be done, change nothing).
Exit status: 0 ok, 1 failed (one line on stderr), 2 usage.
"""

import argparse
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from neuros.backup import create, listing, restore
from neuros.backup.compose import Compose
from neuros.backup.errors import BackupError
from neuros.backup.source import Source
from neuros.backup.verify import summary, verify

PROG = "python3 -m neuros.backup"
ERROR_PREFIX = "backup: ERROR:"
DEFAULT_COMPOSE_FILE = "docker-compose.yml"


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _source_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    group = parser.add_argument_group("where the database is (one of)")
    where = group.add_mutually_exclusive_group(required=required)
    where.add_argument("--db", type=Path, metavar="PATH", help="a SQLite database file")
    where.add_argument("--database-url", metavar="URL", help="a PostgreSQL database")
    where.add_argument("--compose-project", metavar="NAME", help="a compose project's agent")
    group.add_argument(
        "--compose-file",
        action="append",
        metavar="FILE",
        help=f"compose file of the project (repeatable; default {DEFAULT_COMPOSE_FILE})",
    )
    group.add_argument(
        "--pg-bin",
        type=Path,
        metavar="DIR",
        default=os.environ.get("NEUROS_PG_BIN") or None,
        help="folder of pg_dump, pg_restore and psql (default $NEUROS_PG_BIN, else PATH)",
    )


def _backup_dir_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("NEUROS_BACKUP_DIR")
    parser.add_argument(
        "--backup-dir",
        type=Path,
        metavar="DIR",
        default=default,
        required=not default,
        help="the archives' folder (default $NEUROS_BACKUP_DIR)",
    )


def _dry_run_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done, change nothing"
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Backups of the NEUROS agent's database.",
        epilog="Exit status: 0 ok, 1 failed, 2 usage.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    backup = commands.add_parser("backup", help="archive the database, online")
    _source_options(backup, required=True)
    _backup_dir_option(backup)
    backup.add_argument(
        "--keep-daily", type=_count, default=7, metavar="N",
        help="keep the newest archive of each of the last N days with one (default 7)",
    )  # fmt: skip
    backup.add_argument(
        "--keep-weekly", type=_count, default=4, metavar="M",
        help="and of each of the last M ISO weeks with one (default 4)",
    )  # fmt: skip
    backup.add_argument(
        "--metrics-file", type=Path, metavar="PATH",
        help="write node-exporter textfile-collector metrics (neuros.backup.textfile)",
    )  # fmt: skip
    _dry_run_option(backup)

    restore_ = commands.add_parser("restore", help="verify an archive, then restore it")
    restore_.add_argument("archive", type=Path, metavar="ARCHIVE", help="a .tar.gz of backup")
    _source_options(restore_, required=True)
    restore_.add_argument("--force", action="store_true", help="overwrite a database with data")
    _dry_run_option(restore_)

    verify_ = commands.add_parser("verify", help="check an archive")
    verify_.add_argument("archive", type=Path, metavar="ARCHIVE", help="a .tar.gz of backup")
    _source_options(verify_, required=False)
    verify_.add_argument("--json", action="store_true")
    _dry_run_option(verify_)

    list_ = commands.add_parser("list", help="the archives, newest first")
    _backup_dir_option(list_)
    list_.add_argument("--json", action="store_true")
    _dry_run_option(list_)

    snapshot = commands.add_parser("snapshot-sqlite", help="internal: a snapshot to stdout")
    snapshot.add_argument("--db", type=Path, metavar="PATH", required=True)

    install = commands.add_parser("install-sqlite", help="internal: a snapshot from stdin")
    install.add_argument("--db", type=Path, metavar="PATH", required=True)
    install.add_argument("--force", action="store_true")
    return top


def _source(args: argparse.Namespace) -> Source:
    compose = None
    if args.compose_project:
        files = tuple(args.compose_file or [DEFAULT_COMPOSE_FILE])
        compose = Compose(args.compose_project, files)
    return Source(db=args.db, url=args.database_url, compose=compose, pg_bin=args.pg_bin)


def _verify(args: argparse.Namespace) -> int:
    source = _source(args)
    try:
        with tempfile.TemporaryDirectory(prefix="neuros-verify-") as scratch:
            verified = verify(args.archive, Path(scratch), source.pg)
    except BackupError as exc:
        if args.json:
            print(json.dumps({"archive": str(args.archive), "ok": False, "error": str(exc)}))
        raise
    if args.json:
        body = {"archive": str(args.archive), "ok": True, "manifest": asdict(verified.manifest)}
        print(json.dumps(body, indent=2))
    else:
        print(summary(verified))
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "backup":
        options = create.Options(
            args.backup_dir, args.keep_daily, args.keep_weekly, args.metrics_file, args.dry_run
        )
        print("\n".join(create.backup(_source(args), options)))
    elif args.command == "restore":
        line = restore.restore(args.archive, _source(args), force=args.force, dry_run=args.dry_run)
        print(line)
    elif args.command == "verify":
        return _verify(args)
    elif args.command == "list":
        listed = listing.entries(args.backup_dir)
        if args.json:
            print(listing.render_json(listed))
        else:
            print("\n".join(listing.render(args.backup_dir, listed)))
    elif args.command == "snapshot-sqlite":
        restore.snapshot_stream(args.db, sys.stdout.buffer)
    elif args.command == "install-sqlite":
        print(restore.install_stream(sys.stdin.buffer, args.db, force=args.force))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    top = parser()
    args = top.parse_args(argv)
    if getattr(args, "compose_file", None) and not args.compose_project:
        top.error("--compose-file needs --compose-project")
    try:
        return _run(args)
    except BackupError as exc:
        message = str(exc)
    except sqlite3.Error as exc:  # one not mapped to a message of ours
        message = f"SQLite: {exc}"
    except OSError as exc:
        message = str(exc)
    except KeyboardInterrupt:
        message = "interrupted"
    print(f"{ERROR_PREFIX} {message}", file=sys.stderr)
    return 1
