"""Every alert has a runbook section, and its runbook_url points at it."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from .files import RUNBOOK
from .report import Report
from .rules import Rule


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check_runbook(repo: Path, rules: Sequence[Rule], report: Report) -> None:
    path = repo / RUNBOOK
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        report.add(RUNBOOK, f"cannot read: {error.strerror}")
        return
    sections = {m.group(1).strip() for m in re.finditer(r"^## +(.+?)\s*#*\s*$", text, re.M)}
    for rule in rules:
        if rule.kind != "alert":
            continue
        if rule.name not in sections:
            report.add(
                rule.file, f"alert {rule.name!r} has no '## {rule.name}' section in {RUNBOOK}"
            )
        url = rule.annotations.get("runbook_url")
        if not isinstance(url, str) or not url:
            report.add(rule.file, f"alert {rule.name!r} has no runbook_url annotation")
            continue
        parts = urllib.parse.urlsplit(url)
        want = github_anchor(rule.name)
        if not parts.path.endswith(str(RUNBOOK)) or parts.fragment != want:
            report.add(
                rule.file,
                f"alert {rule.name!r} runbook_url {url!r} does not point at {RUNBOOK}#{want}",
            )
