"""Bearer-token authorization of the ``/v1`` routes, as a FastAPI dependency.

401 with ``WWW-Authenticate: Bearer`` when the caller is unknown, 403 when a valid
token lacks the route's scope or the user (RFC 6750 section 3). Both are decided
before storage is touched, so neither tells whether the user exists.
"""

from typing import Annotated, Any

from fastapi import Request, Security, status
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from neuros.auth.authenticator import Authenticator, AuthError
from neuros.auth.tokens import Principal, Scope
from neuros.metrics import AuthFailure
from neuros.schemas import ErrorBody

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


class _Bearer(HTTPBearer):
    """Declares the scheme in OpenAPI; hands the raw header on, so that a missing and
    a malformed header are told apart (and counted) by the authenticator."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return request.headers.get("authorization")


BEARER = _Bearer(
    scheme_name="bearerToken",
    bearerFormat="nrs_<43 url-safe characters>",
    description="An API token from `python -m neuros tokens add`.",
    auto_error=False,
)


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


def require(scope: Scope) -> Any:
    """A route dependency: the caller's token must hold ``scope`` and the path's user."""

    async def authorize(
        request: Request, authorization: Annotated[str | None, Security(BEARER)]
    ) -> Principal:
        authenticator: Authenticator = request.app.state.auth
        try:
            principal = authenticator.check(
                authorization, scope, request.path_params.get("user_id", "")
            )
        except AuthError as exc:
            if exc.token_name is not None:
                request.state.token_name = exc.token_name
            raise _http_error(exc) from None
        # The token's name (never the token) for the access log.
        request.state.token_name = principal.name
        return principal

    return Security(authorize, scopes=[scope.value])
