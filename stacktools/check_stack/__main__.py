"""``python -m stacktools.check_stack`` (what scripts/check-stack runs): options, the
checks, and the report on stdout; exit 1 on any finding, 2 on a usage error."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from ..paths import COMPOSE_FILE, EXPECTED_EMPTY_FILE, REPO_ROOT
from .driver import Options, check
from .promql import Windows, duration_seconds
from .report import json_report, summary


def _url_arg(text: str) -> str:
    if urllib.parse.urlsplit(text).scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def _duration_arg(text: str) -> str:
    try:
        duration_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error
    return text


def parse_args(argv: Sequence[str] | None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(
        prog="check-stack",
        description="Cross-check dashboards, datasources, rules, runbook and compose"
        " services so no panel shows 'No data'. Exit 1 on any finding.",
    )
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository to check")
    parser.add_argument(
        "--prometheus",
        metavar="URL",
        type=_url_arg,
        help="also run every dashboard query against this Prometheus",
    )
    parser.add_argument(
        "--promtool",
        metavar="PATH",
        help="promtool binary (default: .tools/bin/promtool, then PATH)",
    )
    parser.add_argument(
        "--rate-interval",
        type=_duration_arg,
        default=Windows.rate_interval,
        help="value of $__rate_interval and $__interval (default %(default)s)",
    )
    parser.add_argument(
        "--range",
        type=_duration_arg,
        default=Windows.range,
        help="value of $__range (default %(default)s)",
    )
    parser.add_argument(
        "--strict-expectations",
        action="store_true",
        help=f"an {EXPECTED_EMPTY_FILE} entry whose query has data is a finding",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    args = parser.parse_args(argv)
    options = Options(
        repo=args.repo,
        prometheus=args.prometheus,
        promtool=args.promtool,
        windows=Windows(rate_interval=args.rate_interval, range=args.range),
        strict_expectations=args.strict_expectations,
    )
    return options, bool(args.json)


def main(argv: Sequence[str] | None = None) -> int:
    options, as_json = parse_args(argv)
    if not (options.repo / COMPOSE_FILE).is_file() and not (options.repo / "prometheus").is_dir():
        print(f"check-stack: {options.repo} is not a NEUROS repository", file=sys.stderr)
        return 2
    report = check(options)
    for warning in report.warnings:
        print(f"check-stack: warning: {warning}", file=sys.stderr)
    if as_json:
        print(json.dumps(json_report(report), indent=2))
    else:
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        for finding in report.findings:
            print(finding)
        if report.findings:
            print(summary(report), file=sys.stderr)
        else:
            print(summary(report))
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
