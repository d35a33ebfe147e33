"""Schemathesis hooks for tests/agent/test_contract.py (loaded through ``SCHEMATHESIS_HOOKS``).

JSON Schema cannot say "not more than a day after the server's clock", so the agent's
OpenAPI document states its time bounds as vendor extensions beside the pattern:
``x-earliest`` (an RFC 3339 instant) and ``x-max-future`` (an ISO 8601 duration after
the server's clock). A generator that ignores them would send a date-time in 1066 as a
*positive* case, to be rejected; and a *negative* case, meant to break one constraint,
would break the time bound as well and be rejected for that alone, hiding whether the
server enforces the constraint under test. This hook reads the extensions from the
document being tested and moves every value that matches its schema's pattern into the
bounds before the case is sent (only its year changes). A value that does not match
the pattern is left alone: that is what a negative case is testing.
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

EARLIEST = "x-earliest"
MAX_FUTURE = "x-max-future"

_DURATION = re.compile(
    r"^P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def duration(text: str) -> timedelta:
    """An ISO 8601 duration in days, hours, minutes and seconds (what the schema uses)."""
    match = _DURATION.match(text)
    if match is None or text in ("P", "PT"):
        raise ValueError(f"unsupported ISO 8601 duration {text!r}")
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    return timedelta(**parts)


def instant(text: str) -> datetime:
    """The UTC instant of an RFC 3339 date-time ('t', 'z' and a space separator too)."""
    return datetime.fromisoformat(text.upper()).astimezone(UTC)


def within_bounds(value: str, spec: Mapping[str, Any], now: datetime) -> bool:
    """Whether the instant of ``value`` (a string matching the pattern) honours the
    extensions of ``spec``; an instant outside datetime's range honours neither."""
    try:
        at = instant(value)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before 0001-01-01 in UTC
        return False
    if EARLIEST in spec and at < instant(spec[EARLIEST]):
        return False
    return not (MAX_FUTURE in spec and at > now + duration(spec[MAX_FUTURE]))


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def into_bounds(value: str, spec: Mapping[str, Any], now: datetime) -> str:
    """``value`` with its year replaced so that its instant is within the bounds.

    Only the four year digits change, so the value still matches the pattern; a
    29 February gets a leap year. The candidate years lie a whole year inside the
    bounds, which no offset (at most a day) can undo.
    """
    if within_bounds(value, spec, now):
        return value
    low = instant(spec[EARLIEST]).year + 1 if EARLIEST in spec else 1
    high = now.year - 1
    years = [y for y in range(low, high + 1) if value[5:10] != "02-29" or _is_leap(y)]
    assert years, f"no year between {low} and {high} for {value!r}"
    moved = f"{years[int(value[:4]) % len(years)]:04d}{value[4:]}"
    assert within_bounds(moved, spec, now), (value, moved)
    return moved


def _matches(pattern: str | None, value: str) -> bool:
    # ECMA-262 "$" is the end of the input; Python's also matches before a final newline.
    return pattern is None or (re.search(pattern, value) is not None and "\n" not in value)


class _Document:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    def resolve(self, schema: Any) -> Any:
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            ref: str = schema["$ref"]
            assert ref.startswith("#/"), f"only local references are expected: {ref}"
            node: Any = self.raw
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        return schema

    def bound(self, value: Any, schema: Any, now: datetime) -> Any:
        """A copy of ``value`` with every string that matches a bounded schema's
        pattern moved into its bounds (the generated value itself is not modified)."""
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping):
            return value
        bounded = EARLIEST in schema or MAX_FUTURE in schema
        if bounded and isinstance(value, str) and _matches(schema.get("pattern"), value):
            value = into_bounds(value, schema, now)
        for keyword in ("allOf", "anyOf", "oneOf"):
            for branch in schema.get(keyword, ()):
                value = self.bound(value, branch, now)
        if isinstance(value, dict):
            properties = schema.get("properties", {})
            value = {
                name: self.bound(item, properties[name], now) if name in properties else item
                for name, item in value.items()
            }
        elif isinstance(value, list) and "items" in schema:
            value = [self.bound(item, schema["items"], now) for item in value]
        return value


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Request bodies honour ``x-earliest`` / ``x-max-future`` wherever they match."""
    if not isinstance(case.body, dict | list):
        return case
    operation = case.operation
    raw = operation.schema.raw_schema
    request_body = raw["paths"][operation.path][operation.method.lower()].get("requestBody")
    document = _Document(raw)
    content = document.resolve(request_body or {}).get("content", {})
    media = content.get(case.media_type or "application/json")
    if media is not None and "schema" in media:
        case.body = document.bound(case.body, media["schema"], datetime.now(UTC))
    return case
