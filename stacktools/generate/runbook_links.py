"""Runbook links of the alerts, from one base URL (prometheus/runbook.yml).

Every alert's ``runbook_url`` is ``<base_url>#<alert name, lower-cased>``, the anchor of
the alert's ``## AlertName`` section in docs/runbook.md. Prometheus rule files cannot
read a setting, so the URL is written out literally in each rule file and promtool test:
``python -m stacktools.generate.runbook_links`` rewrites them from prometheus/runbook.yml,
``--base-url URL`` first sets the base there, and ``--check`` fails when a file
disagrees. The default base is the runbook as shipped in the repository.
"""

import argparse
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from stacktools import paths
from stacktools.paths import REPO_ROOT

CONFIG = paths.RUNBOOK_CONFIG
RULES_DIR = paths.RULES_DIR
RULE_TESTS_DIR = paths.RULE_TESTS_DIR
DEFAULT_BASE_URL = "docs/runbook.md"

_LINE = re.compile(r"^(?P<key>[ \t]*runbook_url:[ \t]*)(?P<value>\S.*?)[ \t]*$", re.M)


class ConfigError(ValueError):
    pass


def load_base_url(repo: Path = REPO_ROOT) -> str:
    path = repo / CONFIG
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    base = raw.get("base_url") if isinstance(raw, dict) else None
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: no base_url")
    return _validate(base.strip())


def _validate(base: str) -> str:
    if urllib.parse.urlsplit(base).fragment or base.endswith("#"):
        raise ConfigError(f"base URL {base!r} must not have a #fragment: the alert adds it")
    return base


def anchor(alert: str) -> str:
    """The anchor of the ``## AlertName`` section (alert names are letters and digits)."""
    return alert.lower()


def url(alert: str, base: str | None = None) -> str:
    return f"{load_base_url() if base is None else base}#{anchor(alert)}"


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when that reads back as itself, else quoted."""
    try:
        if yaml.safe_load(f"k: {value}") == {"k": value}:
            return value
    except yaml.YAMLError:
        pass
    return json.dumps(value)


def rewrite(text: str, base: str) -> str:
    """Every ``runbook_url:`` line of a YAML file, pointed at ``base`` (anchor kept)."""

    def repl(match: re.Match[str]) -> str:
        old = yaml.safe_load(f"k: {match['value']}")["k"]
        fragment = urllib.parse.urlsplit(str(old)).fragment
        return f"{match['key']}{_scalar(f'{base}#{fragment}')}"

    return _LINE.sub(repl, text)


def files(repo: Path = REPO_ROOT) -> list[Path]:
    return sorted((repo / RULES_DIR).glob("*.yml")) + sorted((repo / RULE_TESTS_DIR).glob("*.yml"))


def _rule_urls(doc: Any) -> Iterator[tuple[str, object]]:
    for group in (doc or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule:
                yield rule["alert"], (rule.get("annotations") or {}).get("runbook_url")


def _test_urls(doc: Any) -> Iterator[tuple[str, object]]:
    for case in (doc or {}).get("tests") or []:
        for test in case.get("alert_rule_test") or []:
            for alert in test.get("exp_alerts") or []:
                annotations = alert.get("exp_annotations") or {}
                if "runbook_url" in annotations:
                    yield test["alertname"], annotations["runbook_url"]


def problems(repo: Path = REPO_ROOT, base: str | None = None) -> list[str]:
    """Every runbook_url in rule files and promtool tests that is not ``url(alert)``."""
    base = load_base_url(repo) if base is None else base
    found = []
    for path in files(repo):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        pairs = _test_urls(doc) if path.parent.name == RULE_TESTS_DIR.name else _rule_urls(doc)
        for alert, got in pairs:
            if got != url(alert, base):
                found.append(
                    f"{path.relative_to(repo)}: {alert} runbook_url {got!r} "
                    f"is not {url(alert, base)!r}"
                )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url", help=f"set base_url in {CONFIG} first (with --check: check against URL)"
    )
    parser.add_argument("--check", action="store_true", help="fail if a runbook_url differs")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.base_url is not None and args.check:
            base = _validate(args.base_url.strip())
        elif args.base_url is not None:
            base = _validate(args.base_url.strip())
            config = args.repo / CONFIG
            text = config.read_text(encoding="utf-8")
            new, count = re.subn(
                r"^base_url:.*$", f"base_url: {_scalar(base)}", text, count=1, flags=re.M
            )
            if not count:
                raise ConfigError(f"{config}: no base_url line")
            config.write_text(new, encoding="utf-8")
            base = load_base_url(args.repo)
        else:
            base = load_base_url(args.repo)
    except ConfigError as exc:
        print(f"runbook_links: {exc}", file=sys.stderr)
        return 2
    if args.check:
        found = problems(args.repo, base)
        for problem in found:
            print(f"runbook_links: {problem}", file=sys.stderr)
        return 1 if found else 0
    for path in files(args.repo):
        text = path.read_text(encoding="utf-8")
        new = rewrite(text, base)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
