"""API authentication and authorization (issue 17), as a client and an operator see it.

Every /v1 route (read from the app, with the scope its dependency checks) against every
way a request can be refused, and the one way it is accepted; what a refusal tells
(nothing about the user), when it is decided (before the body is read), what is
counted; tokens managed with the real CLI and picked up by a live agent without a
restart (file change, SIGHUP), a bad edit survived; the metrics port; and neither
logs nor spans carrying a token, its hash or a user id.
"""

import hmac
import itertools
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from neuros.api.auth import AuthorizedAgent
from neuros.auth.admin_token import bearer
from neuros.auth.authenticator import Authenticator
from neuros.auth.tokens import (
    ALL_USERS,
    TOKEN_PREFIX,
    Scope,
    TokenEntry,
    TokensDocument,
    TokenSet,
    digest,
    new_token,
)
from neuros.auth.tokens_file import FILE_MODE, TokensFile
from neuros.metrics import AuthFailure, RejectReason, ReloadResult, build_metrics
from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.agent import SCOPES as DOCUMENTED_SCOPES
from tests.support.agent import InProcess, add_token, api_routes, reading, unstarted_app
from tests.support.processes import LiveAgent, free_port, wait_until

StartAgent = Callable[..., LiveAgent]
MakeApp = Callable[..., InProcess]

FAILURES = "neuros_auth_failures_total"
RELOADS = "neuros_auth_token_reloads_total"
LAST_RELOAD_OK = "neuros_auth_tokens_last_reload_successful"
TOKEN_SHAPE = re.compile(rf"^{TOKEN_PREFIX}[A-Za-z0-9_-]{{43}}$")
# A user with data and one without: every refusal must look the same for both.
ALICE = "alice"
NOBODY = "nobody-at-all"


# --- the routes, read from the app ------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the template
    scope: Scope
    success: int  # the route's documented status

    def url(self, user: str) -> str:
        return self.path.format(user_id=user)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _v1_routes() -> list[Route]:
    """Every /v1 route, with the scope its ``AuthorizedAgent`` dependency checks."""
    routes = []
    for route in api_routes(unstarted_app()):
        if not route.path.startswith("/v1"):
            continue
        guards = [
            dep.call
            for dep in route.dependant.dependencies
            if isinstance(dep.call, AuthorizedAgent)
        ]
        assert len(guards) == 1, f"{route.path}: {len(guards)} authorize dependencies"
        scope = guards[0].scope
        assert route.methods is not None
        (method,) = route.methods
        routes.append(Route(method, route.path, Scope(scope), route.status_code or 200))
    return routes


ROUTES = _v1_routes()


def test_every_v1_route_is_guarded_by_the_scope_the_document_and_api_doc_state() -> None:
    assert ROUTES, "no /v1 route found: the matrix below would be empty"
    # Every scope guards something; each route's is what the contract test documents.
    assert {r.scope for r in ROUTES} == set(Scope)
    assert {(r.path, r.method.lower()): r.scope for r in ROUTES} == DOCUMENTED_SCOPES
    document = unstarted_app().openapi()
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        (requirement,) = operation["security"]
        assert list(requirement.values()) == [[route.scope.value]], route
    # Nothing outside /v1 asks for a token.
    for api_route in api_routes(unstarted_app()):
        if not api_route.path.startswith("/v1"):
            assert not any(
                isinstance(d.call, AuthorizedAgent) for d in api_route.dependant.dependencies
            ), api_route.path


def test_the_documented_scope_table_is_the_apps() -> None:
    api_doc = (REPO_ROOT / paths.DOCS_DIR / "api.md").read_text(encoding="utf-8")
    section = api_doc.split("\n## Authentication\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z:]+)` \| `(GET|POST) (/v1/\S+)` \|$", section, re.MULTILINE)
    assert sorted(rows) == sorted((r.scope.value, r.method, r.path) for r in ROUTES)


# --- helpers -----------------------------------------------------------------------------


def call(
    app: InProcess,
    route: Route,
    user: str,
    authorization: str | None,
    **kwargs: Any,
) -> httpx.Response:
    """``route`` for ``user`` with exactly this Authorization header (None: none at all,
    not the client's default token). Ingest gets a valid batch unless told otherwise."""
    if route.method == "POST" and route.success == 201:
        kwargs.setdefault("json", {"readings": [reading(sleep_hours=7)]})
    request = app.client.build_request(route.method, route.url(user), **kwargs)
    del request.headers["authorization"]
    if authorization is not None:
        request.headers["authorization"] = authorization
    response: httpx.Response = app.client.send(request)
    return response


_GRANTS = itertools.count()


def grant(
    app: InProcess,
    name: str,
    scopes: tuple[Scope, ...] = tuple(Scope),
    users: tuple[str, ...] = (ALL_USERS,),
) -> str:
    """A new token (its name made unique), in force at once: the in-process app gets no
    SIGHUP, and a test does not wait for its poll."""
    token = add_token(app.settings.api_tokens_file, f"{name}-{next(_GRANTS)}", scopes, users)
    assert app.auth.reload("test")
    return token


def failures(app: InProcess) -> dict[str, float]:
    return {r.value: app.sample(FAILURES, {"reason": r.value}) for r in AuthFailure}


def seed(app: InProcess, user: str = ALICE) -> None:
    """Data for ``user`` (with the admin token), so that reads can answer 200."""
    body = {"readings": [reading(sleep_hours=6.5, resting_hr_bpm=55)]}
    assert app.client.post(f"/v1/users/{user}/readings", json=body).status_code == 201


# --- the matrix: every route x every way in or out --------------------------------------

# kind -> (status, counted reason or None, RFC 6750 error code in the challenge or None)
KINDS: dict[str, tuple[int, AuthFailure | None, str | None]] = {
    "no-token": (401, AuthFailure.MISSING, None),
    "basic-auth": (401, AuthFailure.MALFORMED, "invalid_request"),
    "bearer-without-token": (401, AuthFailure.MALFORMED, "invalid_request"),
    "unknown-token": (401, AuthFailure.UNKNOWN, "invalid_token"),
    "unknown-short-token": (401, AuthFailure.UNKNOWN, "invalid_token"),
    "revoked-token": (401, AuthFailure.UNKNOWN, "invalid_token"),
    "other-scopes": (403, AuthFailure.SCOPE, "insufficient_scope"),
    "other-user": (403, AuthFailure.USER, "insufficient_scope"),
    "right-token": (0, None, None),  # 0: the route's success status
}


def authorization_for(app: InProcess, kind: str, route: Route) -> str | None:
    """The header a client of this kind sends to ``route`` for ALICE or NOBODY."""
    if kind == "no-token":
        return None
    if kind == "basic-auth":
        return "Basic YWxpY2U6c2VjcmV0"  # alice:secret
    if kind == "bearer-without-token":
        return "Bearer "
    if kind == "unknown-token":
        return f"Bearer {new_token()}"  # the right prefix and length
    if kind == "unknown-short-token":
        return f"Bearer {TOKEN_PREFIX}x"
    if kind == "revoked-token":
        token = grant(app, "revoked")
        tokens_file = TokensFile(app.settings.api_tokens_file)
        (name,) = [e.name for e in tokens_file.read().tokens if e.name.startswith("revoked-")]
        tokens_file.revoke(name)
        assert app.auth.reload("test")
        return f"Bearer {token}"
    if kind == "other-scopes":
        others = tuple(s for s in Scope if s is not route.scope)
        return f"Bearer {grant(app, 'other-scopes', others)}"
    if kind == "other-user":
        return f"Bearer {grant(app, 'other-user', users=('carol', 'team-c-*'))}"
    assert kind == "right-token", kind
    # The least that works: this scope only, these two users only.
    return f"Bearer {grant(app, 'right', (route.scope,), (ALICE, NOBODY))}"


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_every_route_answers_each_kind_of_caller_with_its_documented_status(
    app: InProcess, route: Route, kind: str
) -> None:
    seed(app)
    authorization = authorization_for(app, kind, route)
    before = failures(app)
    response = call(app, route, ALICE, authorization)
    status, reason, error = KINDS[kind]

    if reason is None:
        assert response.status_code == route.success, response.text
        assert "www-authenticate" not in response.headers
    else:
        assert response.status_code == status, response.text
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer "), challenge
        # RFC 6750 3.1: no error code when the request had no authentication at all.
        codes = re.findall(r'\berror="([^"]*)"', challenge)
        assert codes == ([] if error is None else [error]), challenge
        if reason is AuthFailure.SCOPE:
            assert f'scope="{route.scope.value}"' in challenge
        assert set(response.json()) == {"detail"}
    # Each refusal counted once, under its reason; nothing else counted.
    expected = dict(before)
    if reason is not None:
        expected[reason.value] += 1
    assert failures(app) == expected


@pytest.mark.parametrize("kind", [k for k, (_, reason, _) in KINDS.items() if reason])
@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_refusal_does_not_tell_whether_the_user_exists(
    app: InProcess, route: Route, kind: str
) -> None:
    seed(app, ALICE)
    authorization = authorization_for(app, kind, route)
    known = call(app, route, ALICE, authorization)
    unknown = call(app, route, NOBODY, authorization)
    assert known.status_code == unknown.status_code == KINDS[kind][0]
    assert known.content == unknown.content
    volatile = {"date", "x-request-id"}
    assert {k: v for k, v in known.headers.items() if k not in volatile} == {
        k: v for k, v in unknown.headers.items() if k not in volatile
    }


def test_the_right_token_also_reads_a_user_without_data_as_404(app: InProcess) -> None:
    # Authorized for NOBODY, who has no data: the usual 404, after authorization.
    for route in ROUTES:
        if route.success == 200:
            response = call(app, route, NOBODY, authorization_for(app, "right-token", route))
            assert response.status_code == 404, route


# --- auth comes before anything about the request's content -----------------------------

INGEST = next(r for r in ROUTES if r.success == 201)


def test_no_token_is_401_before_the_body_is_validated(app: InProcess) -> None:
    invalid = {"readings": [{"recorded_at": "yesterday", "sleep_hours": 99}]}
    assert call(app, INGEST, ALICE, None, json=invalid).status_code == 401
    malformed = call(
        app, INGEST, ALICE, None, content=b'{"readings": [', headers={"content-type": "x/y"}
    )
    assert malformed.status_code == 401
    # An invalid user id is not validated for an anonymous caller either.
    assert call(app, INGEST, "not a valid id!", None).status_code == 401
    # A valid token without the scope: 403, not 422.
    reader = grant(app, "reader", (Scope.KPIS_READ,))
    assert call(app, INGEST, ALICE, f"Bearer {reader}", json=invalid).status_code == 403
    # Nothing was counted as a rejected reading: the body was never looked at.
    rejected = "neuros_readings_rejected_total"
    assert sum(app.sample(rejected, {"reason": r.value}) for r in RejectReason) == 0


def test_no_token_and_a_huge_body_is_401_not_413(make_app: MakeApp) -> None:
    app = make_app(max_body_bytes=4096)
    huge = {"readings": [reading(rr_intervals_ms=[800.5] * 2000)]}
    assert call(app, INGEST, ALICE, None, json=huge).status_code == 401
    # With the token, the same body is too large.
    assert call(app, INGEST, ALICE, f"Bearer {app.token}", json=huge).status_code == 413


# --- the users a token may touch ----------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "allowed", "refused"),
    [
        pytest.param(
            ("team-a-*",), ["team-a-1", "team-a-xyz"], ["team-b-1", "team-a"], id="pattern"
        ),
        pytest.param(("u-?",), ["u-1", "u-x"], ["u-10", "u-"], id="one-character"),
        pytest.param(("u1", "u2"), ["u1", "u2"], ["u3", "u1x", "xu1", "U1"], id="exact-list"),
        pytest.param((ALL_USERS,), ["u1", "team-b-1", "a" * 64], [], id="everyone"),
        pytest.param(("u1", "team-a-*"), ["u1", "team-a-2"], ["u2", "team-b-2"], id="mixed"),
    ],
)
def test_a_token_touches_exactly_its_users(
    app: InProcess, users: tuple[str, ...], allowed: list[str], refused: list[str]
) -> None:
    token = f"Bearer {grant(app, 'scoped', users=users)}"
    for user in allowed:
        assert call(app, INGEST, user, token).status_code == 201, user
    for user in refused:
        response = call(app, INGEST, user, token)
        assert response.status_code == 403, user
    assert app.sample(FAILURES, {"reason": AuthFailure.USER.value}) == len(refused)


# --- metrics --------------------------------------------------------------------------------


def test_auth_failures_are_labelled_only_by_the_fixed_reasons(app: InProcess) -> None:
    seed(app)
    for kind in KINDS:
        for route in ROUTES:
            call(app, route, ALICE, authorization_for(app, kind, route))
    samples = [
        sample
        for family in app.registry.collect()
        for sample in family.samples
        if sample.name == FAILURES
    ]
    assert {tuple(s.labels) for s in samples} == {("reason",)}
    assert {s.labels["reason"] for s in samples} == {r.value for r in AuthFailure}
    # Per reason: one per route for each kind refused for that reason.
    for reason in AuthFailure:
        kinds = [k for k, (_, r, _) in KINDS.items() if r is reason]
        assert app.sample(FAILURES, {"reason": reason.value}) == len(kinds) * len(ROUTES)


# --- spans ----------------------------------------------------------------------------------


def test_spans_carry_no_token_hash_or_user_id(app: InProcess) -> None:
    user = "span-canary-3c9d"
    tokens = [app.token]
    requests = 0
    for kind in KINDS:
        for route in ROUTES:
            authorization = authorization_for(app, kind, route)
            if authorization is not None and authorization.startswith("Bearer nrs_"):
                tokens.append(authorization.removeprefix("Bearer "))
            call(app, route, user, authorization)
            requests += 1
    servers = [s for s in app.spans.get_finished_spans() if s.parent is None]
    assert len(servers) == requests, "every request, refused or not, has its span"
    private = [user]
    for token in tokens:
        private += [token.removeprefix(TOKEN_PREFIX), digest(token).hex()]
    for span in app.spans.get_finished_spans():
        texts = [span.name, *map(str, (span.attributes or {}).items())]
        texts += [f"{e.name} {dict(e.attributes or {})}" for e in span.events]
        leaks = [t for t in texts if any(p in t for p in private)]
        assert not leaks, (span.name, leaks)


# --- constant time, by construction -----------------------------------------------------------


def test_authenticate_runs_one_comparison_of_digests_for_a_hit_and_any_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = new_token()
    entry = TokenEntry(name="t", sha256=digest(token).hex(), scopes=list(Scope), users=[ALL_USERS])
    tokens = TokenSet([entry])
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        assert isinstance(a, bytes)
        assert isinstance(b, bytes)
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    cases = {
        "hit": token,
        "miss of the same length": new_token(),
        "miss of another length": "x",
        "miss, long": TOKEN_PREFIX + "y" * 4096,
        "not UTF-8": token[:-1] + "\udcff",
    }
    for what, presented in cases.items():
        compared.clear()
        principal = tokens.authenticate(presented)
        assert (principal is not None) == (what == "hit"), what
        # Whatever was presented: one comparison, of two 32-byte digests.
        assert compared == [(32, 32)], what
    assert tokens.authenticate(token) is not None


# --- the CLI ----------------------------------------------------------------------------------


def cli(tokens_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m neuros tokens --file F ...``, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "neuros", "tokens", "--file", str(tokens_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )


def test_cli_add_prints_the_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    tokens_file = tmp_path / "secrets" / "tokens.yml"  # folder created on first add
    added = cli(tokens_file, "add", "k6", "--scope", "readings:write", "--user", "load-*")
    assert added.returncode == 0, added.stderr
    token = added.stdout.removesuffix("\n")
    assert added.stdout == token + "\n", "stdout carries the token and nothing else"
    assert TOKEN_SHAPE.match(token), token
    assert token not in added.stderr
    assert "k6" in added.stderr

    text = tokens_file.read_text()
    assert token.removeprefix(TOKEN_PREFIX) not in text
    (entry,) = yaml.safe_load(text)["tokens"]
    assert entry["sha256"] == digest(token).hex()
    assert (entry["name"], entry["scopes"], entry["users"]) == (
        "k6",
        ["readings:write"],
        ["load-*"],
    )

    # Default: every scope.
    every = cli(tokens_file, "add", "admin", "--user", "*")
    assert every.returncode == 0, every.stderr
    (_, admin) = yaml.safe_load(tokens_file.read_text())["tokens"]
    assert admin["scopes"] == [s.value for s in Scope]
    assert every.stdout.strip() != token


def test_cli_writes_atomically_with_mode_0644(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yml"
    assert cli(tokens_file, "add", "first", "--user", "*").returncode == 0
    with tokens_file.open() as held:  # a reader holding the old file...
        before = held.read()
        inode = os.fstat(held.fileno()).st_ino
        assert cli(tokens_file, "add", "second", "--user", "*").returncode == 0
        held.seek(0)
        assert held.read() == before  # ...keeps reading it whole: a new file was renamed in
    assert tokens_file.stat().st_ino != inode
    assert stat.S_IMODE(tokens_file.stat().st_mode) == FILE_MODE == 0o644
    assert "second" in tokens_file.read_text()
    # No temporary file left beside it (the lock file stays, empty).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tokens.yml.lock", "tokens.yml"]
    assert (tmp_path / ".tokens.yml.lock").read_text() == ""


def test_cli_list_shows_names_scopes_users_but_no_hash(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yml"
    token = cli(
        tokens_file, "add", "grafana", "--scope", "kpis:read", "--user", "u1", "--user", "team-a-*"
    ).stdout.strip()
    listed = cli(tokens_file, "list")
    assert listed.returncode == 0, listed.stderr
    (header, row) = listed.stdout.splitlines()
    assert header.split() == ["NAME", "SCOPES", "USERS", "CREATED"]
    assert row.split()[:3] == ["grafana", "kpis:read", "u1,team-a-*"]
    for secret in (token, token.removeprefix(TOKEN_PREFIX), digest(token).hex()):
        assert secret not in listed.stdout + listed.stderr


def test_cli_revoke_removes_the_token(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.yml"
    kept = cli(tokens_file, "add", "kept", "--user", "*").stdout.strip()
    gone = cli(tokens_file, "add", "gone", "--user", "*").stdout.strip()
    revoked = cli(tokens_file, "revoke", "gone")
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == ""
    text = tokens_file.read_text()
    assert digest(gone).hex() not in text
    assert digest(kept).hex() in text
    assert [row.split()[0] for row in cli(tokens_file, "list").stdout.splitlines()[1:]] == ["kept"]
    # Revoking it again, or a name never added, fails and changes nothing.
    for name in ("gone", "never"):
        again = cli(tokens_file, "revoke", name)
        assert again.returncode != 0
        assert name in again.stderr
        assert tokens_file.read_text() == text


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["add", "dup", "--user", "*"], id="duplicate-name"),
        pytest.param(["add", "new", "--scope", "admin", "--user", "*"], id="unknown-scope"),
        pytest.param(["add", "new", "--user", "not a user!"], id="invalid-user"),
        pytest.param(["add", "new"], id="no-user"),
        pytest.param(["add", "bad name", "--user", "*"], id="invalid-name"),
        pytest.param(["add", "-", "--user", "*"], id="name-not-starting-alphanumeric"),
    ],
)
def test_cli_add_refuses_bad_input_and_changes_nothing(tmp_path: Path, args: list[str]) -> None:
    tokens_file = tmp_path / "tokens.yml"
    assert cli(tokens_file, "add", "dup", "--user", "*").returncode == 0
    before = tokens_file.read_text()
    result = cli(tokens_file, *args)
    assert result.returncode != 0
    assert result.stdout == "", "no token printed for a token that was not stored"
    assert result.stderr.strip()
    assert "Traceback" not in result.stderr
    assert tokens_file.read_text() == before


# --- start-up ----------------------------------------------------------------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEUROS_", "OTEL_"))}
    return {**env, "OTEL_SDK_DISABLED": "true", "NEUROS_HOST": "127.0.0.1", **extra}


@pytest.mark.parametrize("problem", ["unset", "missing", "empty-entry", "plaintext-token"])
def test_the_agent_does_not_start_without_a_valid_tokens_file(tmp_path: Path, problem: str) -> None:
    env = _clean_env(NEUROS_PORT=str(free_port()), NEUROS_DB_PATH=str(tmp_path / "db" / "n.db"))
    tokens_file = tmp_path / "tokens.yml"
    token = new_token()
    if problem != "unset":  # unset: the default, relative to cwd, does not exist there
        env["NEUROS_API_TOKENS_FILE"] = str(tokens_file)
    if problem == "empty-entry":
        tokens_file.write_text("tokens:\n  - name: x\n")
    elif problem == "plaintext-token":  # the token pasted where its hash belongs
        entry = {"name": "x", "sha256": token, "scopes": ["analyze"], "users": ["*"]}
        tokens_file.write_text(yaml.safe_dump({"tokens": [entry]}))
    result = subprocess.run(
        [sys.executable, "-m", "neuros"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "NEUROS_API_TOKENS_FILE" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert token.removeprefix(TOKEN_PREFIX) not in result.stderr
    assert not (tmp_path / "db").exists(), "stopped before opening the database"


# --- a live agent: reloads ----------------------------------------------------------------------


def metric(agent: LiveAgent, name: str, port: int | None = None, **labels: str) -> float:
    url = f"http://127.0.0.1:{port}/metrics" if port else f"{agent.url}/metrics"
    text = httpx.get(url, timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def status_with(agent: LiveAgent, token: str, user: str = ALICE) -> int:
    url = f"{agent.url}/v1/users/{user}/kpis"
    return httpx.get(url, headers=bearer(token), timeout=5).status_code


@pytest.fixture
def polling_agent(live_agent: StartAgent) -> LiveAgent:
    """A live agent that looks at its tokens file every 0.1 s, with data for ALICE."""
    agent = live_agent(env={"NEUROS_API_TOKENS_RELOAD_SECONDS": "0.1"})
    with agent.client(timeout=10) as client:
        body = {"readings": [reading(sleep_hours=7)]}
        assert client.post(f"/v1/users/{ALICE}/readings", json=body).status_code == 201
    return agent


def test_a_token_added_with_the_cli_works_without_a_restart_and_revoked_stops(
    polling_agent: LiveAgent,
) -> None:
    agent = polling_agent
    added = cli(agent.tokens_file, "add", "dashboard", "--scope", "kpis:read", "--user", ALICE)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    wait_until(lambda: status_with(agent, token) == 200, what="the added token to work")
    assert status_with(agent, token, "bob") == 403  # its users, nobody else
    assert metric(agent, "neuros_auth_tokens") == 2

    assert cli(agent.tokens_file, "revoke", "dashboard").returncode == 0
    wait_until(lambda: status_with(agent, token) == 401, what="the revoked token to stop")
    assert status_with(agent, agent.token) == 200  # the others are untouched
    assert metric(agent, RELOADS, result=ReloadResult.OK.value) >= 2
    assert metric(agent, RELOADS, result=ReloadResult.ERROR.value) == 0
    assert "added ['dashboard']" in agent.log()
    assert "removed ['dashboard']" in agent.log()


def test_sighup_reloads_at_once_whatever_the_poll_interval(live_agent: StartAgent) -> None:
    agent = live_agent(env={"NEUROS_API_TOKENS_RELOAD_SECONDS": "3600"})
    token = cli(agent.tokens_file, "add", "late", "--user", "*").stdout.strip()
    # The next poll is an hour away: without a signal the token is unknown.
    assert status_with(agent, token) == 401
    assert agent.process is not None
    agent.process.send_signal(signal.SIGHUP)
    wait_until(lambda: status_with(agent, token) == 404, timeout=5, what="SIGHUP reload")
    assert metric(agent, RELOADS, result=ReloadResult.OK.value) == 1
    assert "api tokens reloaded (SIGHUP)" in agent.log()
    assert agent.process.poll() is None, "SIGHUP must not stop the agent"


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as an editor that saves atomically does."""
    scratch = path.with_name(path.name + ".edit")
    scratch.write_text(text)
    scratch.replace(path)


@pytest.mark.parametrize("edit", ["yaml-syntax", "duplicate-hash", "plaintext-token", "emptied"])
def test_an_invalid_edit_keeps_the_previous_tokens_and_is_reported_without_secrets(
    polling_agent: LiveAgent, edit: str
) -> None:
    agent = polling_agent
    good = agent.tokens_file.read_text()
    document = yaml.safe_load(good)
    (admin,) = document["tokens"]
    pasted = new_token()
    if edit == "yaml-syntax":
        bad, problem = good + "\n  - name: [unclosed\n", "not valid YAML"
    elif edit == "duplicate-hash":
        document["tokens"].append({**admin, "name": "copy"})
        bad, problem = yaml.safe_dump(document), "two tokens share a sha256"
    elif edit == "emptied":
        bad, problem = "", "empty"
    else:
        document["tokens"].append({**admin, "name": "pasted", "sha256": pasted})
        bad, problem = yaml.safe_dump(document), "tokens.1.sha256"
    assert metric(agent, LAST_RELOAD_OK) == 1
    _replace(agent.tokens_file, bad)
    wait_until(
        lambda: metric(agent, RELOADS, result=ReloadResult.ERROR.value) == 1,
        what="the failed reload to be counted",
        details=agent.log,
    )
    assert status_with(agent, agent.token) == 200, "the previous tokens stay in force"
    assert metric(agent, "neuros_auth_tokens") == 1
    assert metric(agent, LAST_RELOAD_OK) == 0
    log = agent.log()
    (line,) = [x for x in log.splitlines() if "api tokens not reloaded" in x]
    assert problem in line, line
    assert str(agent.tokens_file) in line, line
    for token in (agent.token, pasted):
        for secret in (token.removeprefix(TOKEN_PREFIX), digest(token).hex()):
            assert secret not in log

    # Fixed, with a token more: reloaded, and the failure was not retried meanwhile.
    added = new_token()
    fixed = yaml.safe_load(good)
    fixed["tokens"].append({**admin, "name": "fixed", "sha256": digest(added).hex()})
    _replace(agent.tokens_file, yaml.safe_dump(fixed))
    wait_until(lambda: status_with(agent, added) == 200, what="the fixed file to load")
    assert metric(agent, RELOADS, result=ReloadResult.ERROR.value) == 1
    assert metric(agent, LAST_RELOAD_OK) == 1


# --- a live agent: where /metrics is served -------------------------------------------------------


def test_with_a_metrics_port_the_api_port_serves_no_metrics(live_agent: StartAgent) -> None:
    port = free_port()
    agent = live_agent(env={"NEUROS_METRICS_PORT": str(port)})
    assert httpx.get(f"{agent.url}/metrics", timeout=5).status_code == 404
    assert httpx.get(f"{agent.url}/health", timeout=5).status_code == 200
    assert httpx.get(f"{agent.url}/ready", timeout=5).status_code == 200
    assert "/metrics" not in httpx.get(f"{agent.url}/openapi.json", timeout=5).json()["paths"]
    missing = AuthFailure.MISSING.value
    assert metric(agent, FAILURES, port, reason=missing) == 0
    assert httpx.get(f"{agent.url}/v1/users/{ALICE}/kpis", timeout=5).status_code == 401
    assert metric(agent, FAILURES, port, reason=missing) == 1
    # The API's own requests are counted there too, /metrics among them no longer.
    exposition = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'route="/v1/users/{user_id}/kpis"' in exposition
    assert 'route="/metrics"' not in exposition


def test_without_a_metrics_port_metrics_stay_on_the_api_port(live_agent: StartAgent) -> None:
    agent = live_agent()
    response = httpx.get(f"{agent.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert f'{FAILURES}{{reason="missing"}}' in response.text


# --- reload races ------------------------------------------------------------------------------


def test_a_file_fixed_while_a_failed_reload_runs_is_loaded_by_the_next_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed reload must remember the file it failed on, not whatever is there
    after: else a fix saved in between is taken as already seen, and never loaded."""
    tokens_file = tmp_path / "tokens.yml"
    add_token(tokens_file, "admin")
    auth = Authenticator(TokensFile(tokens_file), build_metrics(CollectorRegistry()))
    good = tokens_file.read_text()
    _replace(tokens_file, "tokens: [unclosed\n")
    fixed_token = new_token()
    real_read = TokensFile.read

    def read_while_the_operator_saves_a_fix(self: TokensFile) -> TokensDocument:
        try:
            return real_read(self)
        finally:
            monkeypatch.setattr(TokensFile, "read", real_read)
            entry = {"name": "fixed", "sha256": digest(fixed_token).hex(), "scopes": ["analyze"]}
            fixed = yaml.safe_load(good)
            fixed["tokens"].append({**entry, "users": [ALL_USERS]})
            _replace(tokens_file, yaml.safe_dump(fixed))

    monkeypatch.setattr(TokensFile, "read", read_while_the_operator_saves_a_fix)
    assert auth.reload_if_changed() is False  # the broken file: refused, previous kept
    assert auth.tokens.authenticate(fixed_token) is None
    assert auth.reload_if_changed() is True  # the fix, at the next poll
    assert auth.tokens.authenticate(fixed_token) is not None
