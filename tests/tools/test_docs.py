"""The README and docs/ as a newcomer meets them (issue 15).

The README stays short and points at every topic page; every relative link in the
README and in docs/*.md resolves (to a file, and for ``#anchor`` into a Markdown page,
to one of its headings); the README's repository map names every top-level entry that
git tracks.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from stacktools import paths
from stacktools.check_stack.files import load_yaml
from stacktools.paths import PROMETHEUS_CONFIG, REPO_ROOT
from tests.support.tooling import in_ci

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / paths.DOCS_DIR
README_MAX_LINES = 150

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
# The target of an inline link or image: ](target) or ](target "title").
LINK_TARGET = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks (their content is not Markdown)."""
    return FENCE.sub("", text)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of ``page``: lower-cased, punctuation dropped, spaces to
    hyphens, repeats numbered ``-1``, ``-2``..."""
    seen: dict[str, int] = {}
    result = set()
    for _, title in HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", prose(page.read_text(encoding="utf-8")))
    return [t for t in LINK_TARGET.findall(text) if not SCHEME.match(t)]


def test_the_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_the_readme_links_every_docs_page() -> None:
    linked = {t.split("#", 1)[0] for t in relative_links(README)}
    pages = [f"docs/{page.name}" for page in sorted(DOCS.glob("*.md"))]
    missing = [page for page in pages if page not in linked]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{target}: no {file.relative_to(REPO_ROOT)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            problems.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO_ROOT)}")
    assert not problems, f"{page.relative_to(REPO_ROOT)}: " + "; ".join(problems)


def test_the_anchor_rule_matches_known_headings() -> None:
    found = anchors(DOCS / "load-testing.md")
    assert {"load-tests-k6", "the-demos-synthetic-users", "reading-the-gate"} <= found


def tracked_top_level() -> set[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        message = f"git ls-files failed ({error}): not a git checkout?"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return {name.split("/", 1)[0] for name in listed.split("\0") if name}


def test_the_readme_map_names_every_tracked_top_level_entry() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Repository map\n", 1)[1].split("\n## ", 1)[0]
    named = {name.rstrip("/") for name in re.findall(r"`([^`\s]+)`", section)}
    missing = sorted(tracked_top_level() - named - {README.name})
    assert not missing, f"the README's repository map does not name {missing}"


def documented_jobs(operations: str, runbook: str) -> tuple[set[str], set[str]]:
    """The scrape jobs docs/operations.md lists, and those of the runbook's job table."""
    listed = operations.split("scrape jobs ", 1)[1].split(";", 1)[0]
    table = re.findall(r"^\| `([a-z-]+)` \|", runbook, re.MULTILINE)
    return set(re.findall(r"`([^`]+)`", listed)), set(table)


def test_the_docs_list_every_scrape_job() -> None:
    config = load_yaml(REPO_ROOT / PROMETHEUS_CONFIG)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    operations = (DOCS / "operations.md").read_text(encoding="utf-8")
    runbook = (DOCS / "runbook.md").read_text(encoding="utf-8")
    assert documented_jobs(operations, runbook) == (jobs, jobs)
