"""The filter language's syntax tree (frozen dataclasses) and its printer: ``parse(to_text(node)) == node``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Union

Value = Union[str, Decimal]

TRACE_KEYS = ("status", "execution_time_ms", "timestamp_ms", "end_time_ms", "name", "request_id", "total_tokens",
              "total_cost")
SPAN_KEYS = ("type", "name", "status")
# kind of field -> the prefix it is written with
KINDS = ("trace", "span", "span_attr", "tag", "metadata", "feedback", "expectation", "assessment")
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEYWORDS = frozenset({"and", "or", "not", "in", "like", "ilike", "count"})


@dataclass(frozen=True)
class Field:
    """What a comparison reads: ``kind`` (one of ``KINDS``) and the key within it."""

    kind: str
    key: str

    @property
    def is_span(self) -> bool:
        return self.kind in ("span", "span_attr")


@dataclass(frozen=True)
class Compare:
    """``field op value``; ``op`` is one of = != < <= > >= LIKE ILIKE IN NOT IN (IN values are a tuple)."""

    field: Field
    op: str
    value: Value | tuple[Value, ...]


@dataclass(frozen=True)
class Count:
    """``count(span condition) op n``: the number of spans of a trace matching every clause of ``where``."""

    where: tuple[Compare, ...]
    op: str
    n: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


Node = Union[Compare, Count, Not, And, Or]


def quote(text: str) -> str:
    """A string literal: single quotes, backslash escapes for quotes and backslashes."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _key(key: str) -> str:
    if _SIMPLE_KEY.match(key) and key.lower() not in KEYWORDS:
        return key
    return "`" + key.replace("`", "``") + "`"


def field_text(field: Field) -> str:
    if field.kind == "span_attr":
        return f"span.attributes[{quote(field.key)}]"
    prefix = {"tag": "tags"}.get(field.kind, field.kind)
    return f"{prefix}.{_key(field.key)}"


def value_text(value: Value) -> str:
    return format(value, "f") if isinstance(value, Decimal) else quote(value)  # plain digits, never 6.5E+3


def compare_text(node: Compare) -> str:
    if node.op in ("IN", "NOT IN"):
        values = ", ".join(value_text(v) for v in node.value)  # type: ignore[union-attr]
        return f"{field_text(node.field)} {node.op} ({values})"
    return f"{field_text(node.field)} {node.op} {value_text(node.value)}"  # type: ignore[arg-type]


_PRECEDENCE = {Or: 1, And: 2, Not: 3}


def _prec(node: Node) -> int:
    return _PRECEDENCE.get(type(node), 4)


def to_text(node: Node) -> str:
    """The canonical text of a filter: re-parsing it gives the same tree."""
    if isinstance(node, Compare):
        return compare_text(node)
    if isinstance(node, Count):
        return f"count({' AND '.join(compare_text(c) for c in node.where)}) {node.op} {node.n}"
    if isinstance(node, Not):
        inner = to_text(node.operand)
        return f"NOT ({inner})" if _prec(node.operand) < 3 else f"NOT {inner}"
    word = "AND" if isinstance(node, And) else "OR"
    mine = _prec(node)
    left = to_text(node.left)
    right = to_text(node.right)
    if _prec(node.left) < mine:
        left = f"({left})"
    if _prec(node.right) <= mine:  # the parser groups to the left: a right child of equal rank needs parentheses
        right = f"({right})"
    return f"{left} {word} {right}"
