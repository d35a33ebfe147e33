"""Bounded labels for a request: its route template and method."""

from starlette.types import Scope

UNMATCHED_ROUTE = "unmatched"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The matched route's template (``/v1/users/{user_id}/kpis``), never the raw path.

    Starlette stores the matched route in the scope during routing; anything that did
    not match (404s, scanners) shares one label so cardinality stays fixed.
    """
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def method_label(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in _KNOWN_METHODS else "OTHER"
