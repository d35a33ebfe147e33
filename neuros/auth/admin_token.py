"""Where the clients of this repository (k6, the chaos probes) find
the admin token that scripts/setup.sh created: ``$NEUROS_API_TOKEN``, else the file
``secrets/neuros-admin-token`` under the repository root."""

import os
from pathlib import Path

TOKEN_VARIABLE = "NEUROS_API_TOKEN"  # noqa: S105 - a variable name
ADMIN_TOKEN_FILE = "secrets/neuros-admin-token"  # noqa: S105 - a path


class NoAdminToken(RuntimeError):
    pass


def admin_token(repo_root: Path) -> str:
    value = os.environ.get(TOKEN_VARIABLE, "").strip()
    if value:
        return value
    path = repo_root / ADMIN_TOKEN_FILE
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    if not value:
        raise NoAdminToken(f"no API token: set {TOKEN_VARIABLE} or run scripts/setup.sh ({path})")
    return value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
