"""Evaluate a filter on trace views: the tree is compiled once into plain closures, then run once per trace.

A field that a trace does not have (a missing tag, no assessment of that name) makes every comparison on
it false, ``!=`` and ``NOT IN`` included, as in MLflow's own search; ``NOT (...)`` is then true.
"""

from __future__ import annotations

import json
import operator
import re
from decimal import Decimal
from typing import Any, Callable, Iterable

from mltrack.insights._ast import And, Compare, Count, Field, Node, Not, Or
from mltrack.insights._views import SpanView, TraceView, to_decimal

Predicate = Callable[[TraceView], bool]
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "=": operator.eq,
          "!=": operator.ne}


def text_of(value: Any) -> str:
    """A value as text for string comparisons: JSON spelling for booleans, numbers, lists and dicts."""
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return str(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def like_regex(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """SQL LIKE as a regex: ``%`` any text, ``_`` one character, everything else literal."""
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def value_test(op: str, literal: Any) -> Callable[[Any], bool]:
    """A test of one actual value against the literal; ``None`` (absent) never passes."""
    if op in ("IN", "NOT IN"):
        tests = [value_test("=", item) for item in literal]
        if op == "IN":
            return lambda actual: actual is not None and any(t(actual) for t in tests)
        return lambda actual: actual is not None and not any(t(actual) for t in tests)
    if op in ("LIKE", "ILIKE"):
        match = like_regex(literal, op == "ILIKE").fullmatch
        return lambda actual: actual is not None and match(text_of(actual)) is not None
    compare = _ORDER[op]
    if isinstance(literal, Decimal):
        def numeric(actual: Any) -> bool:
            number = to_decimal(actual)
            return number is not None and compare(number, literal)
        return numeric
    literal_number = to_decimal(literal)

    def textual(actual: Any) -> bool:
        if actual is None:
            return False
        if op not in ("=", "!=") and literal_number is not None:
            number = to_decimal(actual)
            if number is not None:
                return compare(number, literal_number)
        return compare(text_of(actual), literal)
    return textual


def _span_getter(field: Field) -> Callable[[SpanView], Any]:
    if field.kind == "span_attr":
        key = field.key
        return lambda span: span.attributes.get(key)
    return operator.attrgetter(field.key)


def span_test(clauses: Iterable[Compare]) -> Callable[[SpanView], bool]:
    """One span matches every clause."""
    tests = [(_span_getter(c.field), value_test(c.op, c.value)) for c in clauses]
    if len(tests) == 1:
        get, test = tests[0]
        return lambda span: test(get(span))
    return lambda span: all(test(get(span)) for get, test in tests)


def _trace_getter(field: Field) -> Callable[[TraceView], Any]:
    if field.kind == "trace":
        if field.key == "end_time_ms":
            return lambda t: None if t.execution_time_ms is None else t.timestamp_ms + t.execution_time_ms
        if field.key == "request_id":
            return operator.attrgetter("trace_id")
        return operator.attrgetter(field.key)
    key = field.key
    if field.kind == "tag":
        return lambda t: t.tags.get(key)
    return lambda t: t.metadata.get(key)


def compile_filter(node: Node) -> Predicate:
    """A function telling whether a trace view matches ``node``."""
    if isinstance(node, And):
        left, right = compile_filter(node.left), compile_filter(node.right)
        return lambda t: left(t) and right(t)
    if isinstance(node, Or):
        left, right = compile_filter(node.left), compile_filter(node.right)
        return lambda t: left(t) or right(t)
    if isinstance(node, Not):
        inner = compile_filter(node.operand)
        return lambda t: not inner(t)
    if isinstance(node, Count):
        matches = span_test(node.where)
        compare, n = _ORDER[node.op], node.n
        return lambda t: compare(sum(1 for s in t.spans if matches(s)), n)
    field = node.field
    if field.is_span:
        matches = span_test([node])
        return lambda t: any(matches(s) for s in t.spans)
    test = value_test(node.op, node.value)
    if field.kind in ("feedback", "expectation", "assessment"):
        kinds = ("feedback", "expectation") if field.kind == "assessment" else (field.kind,)
        name = field.key
        return lambda t: any(test(a.value) for a in t.assessments if a.name == name and a.kind in kinds)
    get = _trace_getter(field)
    return lambda t: test(get(t))


def needs(node: Node) -> set[str]:
    """Which parts of a trace a filter reads: spans, span_attributes, tags, metadata, assessments."""
    if isinstance(node, (And, Or)):
        return needs(node.left) | needs(node.right)
    if isinstance(node, Not):
        return needs(node.operand)
    clauses = node.where if isinstance(node, Count) else (node,)
    found: set[str] = set()
    for clause in clauses:
        kind = clause.field.kind
        if kind == "span":
            found.add("spans")
        elif kind == "span_attr":
            found |= {"spans", "span_attributes"}
        elif kind == "tag":
            found.add("tags")
        elif kind == "metadata":
            found.add("metadata")
        elif kind in ("feedback", "expectation", "assessment"):
            found.add("assessments")
        elif clause.field.key in ("total_tokens", "total_cost"):
            found |= {"metadata", "spans", "span_attributes"}
        elif clause.field.key == "name":
            found.add("tags")
    return found
