"""Find the external tools the tests run (installed by scripts/install-tools.sh).

This is the one place that decides what happens when a tool is missing: outside CI
the test is skipped; with ``CI=true`` it fails, so CI can never skip silently.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stacktools.paths import REPO_ROOT, TOOLS_DIR

INSTALL_HINT = "run scripts/install-tools.sh (or scripts/test.sh, which runs it)"


def in_ci() -> bool:
    """True when running in CI (``CI=true``), where missing tools are failures."""
    return os.environ.get("CI", "").strip().lower() == "true"


def tools_bin_dir() -> Path:
    """``$NEUROS_TOOLS_DIR/bin``, by default ``<repo>/.tools/bin``."""
    tools_dir = os.environ.get("NEUROS_TOOLS_DIR") or str(REPO_ROOT / TOOLS_DIR)
    return Path(tools_dir).absolute() / "bin"


def tool(name: str) -> str:
    """Absolute path of the binary ``name``: first in the tools folder, then on PATH.

    When it is nowhere to be found the calling test fails in CI and is skipped
    elsewhere.
    """
    bin_dir = tools_bin_dir()
    candidate = bin_dir / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is not None:
        return str(Path(found).absolute())
    message = f"{name!r} not found in {bin_dir} or on PATH: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
