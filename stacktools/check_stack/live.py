"""``--prometheus``: every dashboard panel query run against a live Prometheus."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence

from ..paths import EXPECTED_EMPTY_FILE
from .files import as_dict, as_list, one_line
from .grafana import Expectation
from .promql import Query
from .report import LiveResult, Report

QueryFunction = Callable[[str], int]


def prometheus_query_function(base_url: str, timeout: float = 30.0) -> QueryFunction:
    """Series count of an instant query at "now", via the HTTP API.

    Raises RuntimeError when Prometheus refuses the query, OSError when it cannot be
    reached. Instant rather than range queries: a panel must have data now, not just
    somewhere in the dashboard's time range.
    """
    endpoint = base_url.rstrip("/") + "/api/v1/query"

    def query(promql: str) -> int:
        body = urllib.parse.urlencode({"query": promql}).encode()
        request = urllib.request.Request(endpoint, data=body, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            answer = json.loads(error.read() or b"{}")
            raise RuntimeError(answer.get("error") or f"HTTP {error.code}") from error
        data = as_dict(answer.get("data"))
        if data.get("resultType") in ("vector", "matrix"):
            return len(as_list(data.get("result")))
        return 1

    return query


def run_live(
    queries: Sequence[Query],
    query: QueryFunction,
    expectations: Sequence[Expectation],
    report: Report,
    *,
    strict_expectations: bool = False,
) -> list[LiveResult]:
    results: list[LiveResult] = []
    for item in queries:
        expected = next((e.reason for e in expectations if e.matches(item)), None)
        try:
            result = LiveResult(item, query(item.promql), expected_empty=expected)
        except (OSError, RuntimeError, ValueError) as error:
            result = LiveResult(item, None, error=str(error), expected_empty=expected)
        results.append(result)
        shown = one_line(item.expr)
        if result.error is not None:
            report.add(item.file, f"{item.where}: query failed: {result.error}: {shown}")
        elif result.series == 0 and expected is None:
            report.add(item.file, f"{item.where}: no data: {shown}")
        elif result.series == 0:
            report.notes.append(f"{item.file}: {item.where}: expected empty: {expected}")
        elif expected is not None and strict_expectations:
            report.add(
                EXPECTED_EMPTY_FILE,
                f"stale expectation: {item.where} returns data ({expected}): {shown}",
            )
    return results
