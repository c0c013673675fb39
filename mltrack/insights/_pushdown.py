"""The part of a filter that MLflow's own search answers exactly, as an MLflow filter string.

Only top-level ``AND`` clauses are considered (MLflow joins its clauses with AND and knows no OR, NOT or
``count``), and of those only the ones whose MLflow meaning equals ours: trace status, times and name, tags,
and at most one span clause on span name/type/status (MLflow makes all span clauses of one search hold on the
*same* span, ours each on any span); a ``count(...)`` that needs at least one matching span is pushed as "some
span matches all its clauses", which is exactly what MLflow's same-span rule asks. The store narrows the
candidates with it; the whole filter is still evaluated on every candidate, so the pushed part only has to keep
every trace that matches.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Sequence

from mltrack.insights._ast import And, Compare, Count, Node
from mltrack.insights._evaluate import _ORDER

_SAFE_TEXT = re.compile(r"^[^'\"\\]*$")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
_NUMERIC = {"execution_time_ms", "timestamp_ms"}
_TEXT_OPS = {"=", "!=", "LIKE", "ILIKE"}


def conjuncts(node: Node) -> list[Node]:
    """The clauses of a top-level AND chain (the node itself when it is not an AND)."""
    if isinstance(node, And):
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


def _text(value: object) -> str | None:
    if isinstance(value, str) and _SAFE_TEXT.match(value):
        return f"'{value}'"
    return None


def _values(value: object) -> str | None:
    items = [_text(v) for v in value]  # type: ignore[union-attr]
    if not items or any(i is None for i in items):
        return None
    return "(" + ", ".join(items) + ")"  # type: ignore[arg-type]


def native_clause(clause: Node) -> str | None:
    """MLflow's spelling of one clause when MLflow answers it exactly, else None."""
    if not isinstance(clause, Compare):
        return None
    field, op, value = clause.field, clause.op, clause.value
    if field.kind == "trace":
        if field.key in _NUMERIC and isinstance(value, Decimal) and op not in ("IN", "NOT IN", "LIKE", "ILIKE"):
            if value == value.to_integral_value():
                return f"trace.{field.key} {op} {int(value)}"
            return None
        if field.key in ("status", "name"):
            if op in ("IN", "NOT IN") and field.key == "status":  # MLflow reads trace.name as a tag: no IN
                values = _values(value)
                return None if values is None else f"trace.{field.key} {op} {values}"
            text = _text(value)
            if op in _TEXT_OPS and text is not None and (field.key == "name" or op in ("=", "!=")):
                return f"trace.{field.key} {op} {text}"
        return None
    if field.kind == "tag" and op in _TEXT_OPS and _SAFE_KEY.match(field.key):
        text = _text(value)
        return None if text is None else f"tags.`{field.key}` {op} {text}"
    if field.kind == "span" and op in _TEXT_OPS | {"IN", "NOT IN"}:
        text = _values(value) if op in ("IN", "NOT IN") else _text(value)
        return None if text is None else f"span.{field.key} {op} {text}"
    return None


def span_exists(clauses: Sequence[Compare]) -> str | None:
    """MLflow's filter for "one span matches every clause" when MLflow answers it exactly, else None."""
    parts = []
    for clause in clauses:
        text = native_clause(clause) if clause.field.kind == "span" else None
        if text is None:
            return None
        parts.append(text)
    return " AND ".join(parts) or None


def count_needs_a_span(node: Count) -> bool:
    """Whether ``count(...) op n`` can only hold when at least one span matches (it is false at a count of 0)."""
    return not _ORDER[node.op](0, node.n)


def native_parts(node: Node | None, spans: bool = True) -> list[str]:
    """MLflow's spelling of the exactly-answerable top-level AND clauses of ``node`` (``spans=False``: no span
    clause, for joining with a span clause of one's own)."""
    if node is None:
        return []
    parts: list[str] = []
    span_pushed = not spans
    for clause in conjuncts(node):
        if isinstance(clause, Count):
            text = span_exists(clause.where) if count_needs_a_span(clause) else None
        else:
            text = native_clause(clause)
        if text is None:
            continue
        if text.startswith("span."):
            if span_pushed:
                continue
            span_pushed = True
        parts.append(text)
    return parts


def native_filter(node: Node | None, spans: bool = True) -> str | None:
    """The MLflow filter string for the exactly-answerable top-level AND clauses of ``node`` (None: nothing).

    ``spans=False`` leaves span clauses out: MLflow's span filter is a subquery that SQLite runs for seconds per
    page of 500 traces, where reading the span rows in bulk takes a fraction of that."""
    return " AND ".join(native_parts(node, spans)) or None
