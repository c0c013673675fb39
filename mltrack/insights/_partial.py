"""Decide a filter on a trace without its spans where that is possible (three-valued: True, False, None).

Reading spans from a tracking server is the slow part, so each "some span matches" question that MLflow's own
search answers exactly is asked of the server once, as the set of trace ids that match (``span_questions``). A
trace outside a ``count(...)``'s set has a count of 0; inside, its count is at least 1. What is still unknown
(None) after that needs the trace's spans.
"""

from __future__ import annotations

from typing import Callable

from mltrack.insights._ast import And, Compare, Count, Node, Not, Or
from mltrack.insights._evaluate import _ORDER, compile_filter
from mltrack.insights._pushdown import span_exists
from mltrack.insights._views import TraceView

Decision = Callable[[TraceView], "bool | None"]
_TOTALS = ("total_cost", "total_tokens")  # read from the spans' attributes first


def span_questions(node: Node) -> set[str]:
    """The MLflow filters ("some span matches ...") whose trace-id sets help decide ``node`` without spans."""
    if isinstance(node, (And, Or)):
        return span_questions(node.left) | span_questions(node.right)
    if isinstance(node, Not):
        return span_questions(node.operand)
    clauses = node.where if isinstance(node, Count) else (node,)
    question = span_exists(clauses) if all(c.field.kind == "span" for c in clauses) else None
    return {question} if question else set()


def _count_of_at_least_one(op: str, n: int) -> bool | None:
    """``count op n`` when all that is known is count >= 1: decided only where every such count agrees."""
    compare = _ORDER[op]
    at_one, far = compare(1, n), compare(max(n, 1) + 1, n)
    if at_one == far and (op not in ("=", "!=") or n < 1):
        return at_one
    return None


def decide(node: Node, sets: dict[str, set[str]]) -> Decision:
    """A function giving ``node``'s value on a trace view without spans, or None when it depends on them."""
    if isinstance(node, (And, Or)):
        left, right = decide(node.left, sets), decide(node.right, sets)
        stop = isinstance(node, Or)  # the value that decides the whole: True for OR, False for AND

        def both(t: TraceView) -> bool | None:
            a = left(t)
            if a is stop:
                return stop
            b = right(t)
            if b is stop:
                return stop
            return None if a is None or b is None else not stop
        return both
    if isinstance(node, Not):
        inner = decide(node.operand, sets)

        def negated(t: TraceView) -> bool | None:
            value = inner(t)
            return None if value is None else not value
        return negated
    if isinstance(node, Count):
        ids = sets.get(span_exists(node.where) or "")
        if ids is None:
            return lambda t: None
        none_match = _ORDER[node.op](0, node.n)
        some_match = _count_of_at_least_one(node.op, node.n)
        return lambda t: some_match if t.trace_id in ids else none_match
    if node.field.is_span:
        ids = sets.get(span_exists([node]) or "") if node.field.kind == "span" else None
        if ids is None:
            return lambda t: None
        return lambda t: t.trace_id in ids
    if node.field.kind == "trace" and node.field.key in _TOTALS:
        return lambda t: None
    return compile_filter(node)  # trace fields, tags, metadata and assessments come with the trace info
