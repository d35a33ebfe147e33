"""Who is asking, and may they: the loaded tokens, their reloads, and the decision.

The decision is made before anything is read from storage, so a refusal looks the same
whether or not the user has data.
"""

import logging

from neuros.auth.tokens import Principal, Scope, TokenSet
from neuros.auth.tokens_file import Signature, TokensFile
from neuros.metrics import AuthFailure, Metrics, ReloadResult

logger = logging.getLogger("neuros.auth")

BEARER_SCHEME = "bearer"


def bearer_token(authorization: str | None) -> str | AuthFailure:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750)."""
    if authorization is None:
        return AuthFailure.MISSING
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != BEARER_SCHEME or not token:
        return AuthFailure.MALFORMED
    return token


class Authenticator:
    def __init__(self, tokens_file: TokensFile, metrics: Metrics) -> None:
        """Loads the file; a missing or invalid one raises TokensFileError."""
        self.tokens_file = tokens_file
        self._metrics = metrics
        self._tokens, self._signature = tokens_file.load()
        metrics.auth_tokens.set(len(self._tokens))
        metrics.auth_last_reload_ok.set(1)

    @property
    def tokens(self) -> TokenSet:
        return self._tokens

    def reload(self, why: str) -> bool:
        """Load the file again. On error the previous tokens stay in force (a bad edit
        must not lock every client out) and the failure is logged and counted."""
        # Taken before the read: a file saved while this reload fails differs from it,
        # so the next poll loads that file instead of taking it as already seen.
        signature = self.tokens_file.signature()
        try:
            tokens, signature = self.tokens_file.load()
        except ValueError as exc:
            self._metrics.auth_reloads.labels(ReloadResult.ERROR.value).inc()
            self._metrics.auth_last_reload_ok.set(0)
            logger.error("api tokens not reloaded (%s), previous tokens kept: %s", why, exc)
            # Not retried until the file changes again.
            self._signature = signature
            return False
        added, removed = tokens.names - self._tokens.names, self._tokens.names - tokens.names
        self._tokens, self._signature = tokens, signature
        self._metrics.auth_tokens.set(len(tokens))
        self._metrics.auth_reloads.labels(ReloadResult.OK.value).inc()
        self._metrics.auth_last_reload_ok.set(1)
        logger.info(
            "api tokens reloaded (%s): %d tokens, added %s, removed %s",
            why,
            len(tokens),
            sorted(added) or "none",
            sorted(removed) or "none",
        )
        return True

    def reload_if_changed(self) -> bool:
        signature: Signature | None = self.tokens_file.signature()
        if signature == self._signature:
            return False
        return self.reload("file changed")

    def check(self, authorization: str | None, scope: Scope, user_id: str) -> Principal:
        """The caller's principal; raises AuthError (counted) if refused."""
        token = bearer_token(authorization)
        if isinstance(token, AuthFailure):
            raise self._refuse(token, scope)
        principal = self._tokens.authenticate(token)
        if principal is None:
            raise self._refuse(AuthFailure.UNKNOWN, scope)
        if scope not in principal.scopes:
            raise self._refuse(AuthFailure.SCOPE, scope, principal.name)
        if not principal.may_touch(user_id):
            raise self._refuse(AuthFailure.USER, scope, principal.name)
        return principal

    def _refuse(self, reason: AuthFailure, scope: Scope, name: str | None = None) -> "AuthError":
        self._metrics.auth_failures.labels(reason.value).inc()
        return AuthError(reason, scope, name)


class AuthError(Exception):
    def __init__(self, reason: AuthFailure, scope: Scope, token_name: str | None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.scope = scope
        self.token_name = token_name  # of a valid token refused for scope or user

    @property
    def unauthenticated(self) -> bool:
        """401 (who are you?) rather than 403 (not this)."""
        return self.reason in (AuthFailure.MISSING, AuthFailure.MALFORMED, AuthFailure.UNKNOWN)
