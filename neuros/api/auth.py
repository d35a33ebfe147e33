"""Bearer-token authorization of the ``/v1`` routes.

A route gets the agent only through ``AuthorizedAgent(scope)``: the dependency that
checks the caller's token and hands out the agent is one and the same, so a /v1 route
cannot reach storage unchecked, and auth adds no dependency of its own (each level of
FastAPI's dependency resolution costs about 15 us per request; a Security scheme
dependency and its sub-dependency cost 45 us, 8 % of an ingest).

401 with ``WWW-Authenticate: Bearer`` when the caller is unknown, 403 when a valid
token lacks the route's scope or the user (RFC 6750 section 3). Both are decided
before storage is touched, so neither tells whether the user exists.
"""

from typing import Any

from fastapi import Request, status
from starlette.exceptions import HTTPException

from neuros.agent import Agent
from neuros.auth.authenticator import Authenticator, AuthError
from neuros.auth.tokens import Scope
from neuros.metrics import AuthFailure
from neuros.schemas import ErrorBody

SCHEME_NAME = "bearerToken"
# components.securitySchemes of the OpenAPI document (neuros.main adds it).
SECURITY_SCHEMES: dict[str, Any] = {
    SCHEME_NAME: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "nrs_<43 url-safe characters>",
        "description": "An API token from `python -m neuros tokens add`.",
    }
}
REALM = 'Bearer realm="neuros"'

_DETAILS = {
    AuthFailure.MISSING: "bearer token required",
    AuthFailure.MALFORMED: "Authorization must be 'Bearer <token>'",
    AuthFailure.UNKNOWN: "invalid bearer token",
    AuthFailure.SCOPE: "this token lacks the scope this route needs",
    AuthFailure.USER: "this token may not access this user",
}
_ERRORS = {
    AuthFailure.MALFORMED: "invalid_request",
    AuthFailure.UNKNOWN: "invalid_token",
    AuthFailure.SCOPE: "insufficient_scope",
    AuthFailure.USER: "insufficient_scope",
}

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "No bearer token, or not a valid one",
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "required": True}},
    },
    403: {"model": ErrorBody, "description": "The token lacks this route's scope or user"},
}


def _http_error(error: AuthError) -> HTTPException:
    challenge = REALM
    if (code := _ERRORS.get(error.reason)) is not None:
        challenge += f', error="{code}"'
    if error.reason is AuthFailure.SCOPE:
        challenge += f', scope="{error.scope.value}"'
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED if error.unauthenticated else status.HTTP_403_FORBIDDEN,
        detail=_DETAILS[error.reason],
        headers={"WWW-Authenticate": challenge},
    )


class AuthorizedAgent:
    """Dependency: the agent, for a caller whose token holds ``scope`` for the path's
    user; otherwise 401 or 403. ``openapi()`` is the operation's security requirement."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    def openapi(self) -> dict[str, Any]:
        """``openapi_extra`` of the route: this scheme, with this scope (OpenAPI 3.1
        allows role names in the requirement of a non-OAuth scheme)."""
        return {"security": [{SCHEME_NAME: [self.scope.value]}]}

    async def __call__(self, request: Request) -> Agent:
        authenticator: Authenticator = request.app.state.auth
        try:
            principal = authenticator.check(
                request.headers.get("authorization"),
                self.scope,
                request.path_params.get("user_id", ""),
            )
        except AuthError as exc:
            if exc.token_name is not None:
                request.state.token_name = exc.token_name
            raise _http_error(exc) from None
        # The token's name (never the token) for the access log.
        request.state.token_name = principal.name
        agent: Agent = request.app.state.agent
        return agent
