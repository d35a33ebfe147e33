"""Gauges every agent replica exports with the same value must not be summed.

With the scale override (docker-compose.scale.yml) the job ``neuros`` has one target
per replica. Per-request counters are each replica's own and sum across instances;
a population gauge is read from the shared database, so every replica exports the
same value and a ``sum`` over instances counts the population once per replica. Such
a gauge must first be deduplicated (``max without (instance)``, ``max by
(readiness)``, ...): the aggregation nearest to its selector must be one of
:data:`DEDUPLICATING`, or keep ``instance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import promql_parser

from .promql import Query
from .report import Report

# Population gauges: computed from the database, identical on every replica.
SHARED_GAUGES = frozenset({"neuros_users_by_readiness"})
# Aggregations whose result does not grow with the number of identical inputs.
DEDUPLICATING = frozenset({"max", "min", "avg", "group"})
INSTANCE = "instance"


def _keeps_instance(modifier: promql_parser.AggModifier | None) -> bool:
    if modifier is None:
        return False
    labels = set(modifier.labels)
    if modifier.type == promql_parser.AggModifierType.By:
        return INSTANCE in labels
    return INSTANCE not in labels


def _selector_name(node: promql_parser.VectorSelector) -> str | None:
    if node.name:
        return str(node.name)
    for matcher in node.matchers.matchers:
        if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
            return str(matcher.value)
    return None


def replica_sums(expr: promql_parser.Expr, gauges: frozenset[str] = SHARED_GAUGES) -> list[str]:
    """One line per selector of ``gauges`` whose nearest aggregation adds replicas up."""
    found: list[str] = []

    def visit(node: object, nearest: promql_parser.AggregateExpr | None) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = _selector_name(node)
            if name not in gauges or nearest is None:
                return
            op = str(nearest.op)
            if op not in DEDUPLICATING and not _keeps_instance(nearest.modifier):
                found.append(
                    f"{op} over {name} counts the replicas' identical values once per"
                    f" replica: deduplicate first, e.g. max without ({INSTANCE}) ({name})"
                )
            return
        if isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr, node)
            if node.param is not None:
                visit(node.param, nearest)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs, nearest)
            visit(node.rhs, nearest)
        elif isinstance(node, promql_parser.Call):
            for argument in node.args:
                visit(argument, nearest)
        elif isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector, nearest)
        elif isinstance(
            node, (promql_parser.ParenExpr, promql_parser.SubqueryExpr, promql_parser.UnaryExpr)
        ):
            visit(node.expr, nearest)

    visit(expr, None)
    return found


def check_replica_sums(
    queries: Sequence[Query], asts: Mapping[int, promql_parser.Expr], report: Report
) -> None:
    for index, ast in asts.items():
        query = queries[index]
        for problem in replica_sums(ast):
            report.add(query.file, f"{query.where}: {problem}")
