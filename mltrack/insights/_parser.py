"""Recursive-descent parser of the filter language: precedence NOT > AND > OR, parentheses, ``count(...)``.

Grammar (keywords case-insensitive)::

    filter     := or
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | "(" or ")" | count | comparison
    count      := "COUNT" "(" span_cmp ("AND" span_cmp)* ")" cmp_op INTEGER
    comparison := field cmp_op value | field ("LIKE" | "ILIKE") STRING | field ["NOT"] "IN" "(" value ("," value)* ")"
    field      := "trace." TRACE_KEY | "span." ("type" | "name" | "status")
                | "span.attributes" ("[" STRING "]" | "." key)
                | ("tags" | "metadata" | "feedback" | "expectation" | "assessment") "." key
    key        := NAME ("." NAME)* | `backquoted`
    value      := STRING | NUMBER
"""

from __future__ import annotations

from decimal import Decimal

from mltrack.insights._ast import SPAN_KEYS, TRACE_KEYS, And, Compare, Count, Field, Node, Not, Or
from mltrack.insights._errors import FilterError
from mltrack.insights._lexer import Token, tokenize

_PREFIXES = {"trace": "trace", "attributes": "trace", "span": "span", "tags": "tag", "tag": "tag",
             "metadata": "metadata", "request_metadata": "metadata", "feedback": "feedback",
             "expectation": "expectation", "assessment": "assessment"}
_FIELD_HINT = ("a field (trace.*, span.*, tags.*, metadata.*, feedback.*, expectation.*, assessment.*), "
               "count(...), NOT or '('")
_CMP_OPS = ("=", "!=", "<", "<=", ">", ">=")
_NUMERIC_TRACE_KEYS = {"execution_time_ms", "timestamp_ms", "end_time_ms", "total_tokens", "total_cost"}


def _describe(token: Token) -> str:
    return "the end of the filter" if token.kind == "eof" else repr(token.text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def fail(self, expected: str, token: Token | None = None) -> FilterError:
        token = token or self.tok
        return FilterError(self.text, token.pos, f"expected {expected}, got {_describe(token)}")

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and str(self.tok.value).lower() in words

    def take_word(self, word: str) -> Token:
        if not self.is_word(word):
            raise self.fail(word.upper())
        return self.advance()

    def is_punct(self, ch: str) -> bool:
        return self.tok.kind == "punct" and self.tok.value == ch

    def take_punct(self, ch: str, expected: str | None = None) -> Token:
        if not self.is_punct(ch):
            raise self.fail(expected or repr(ch))
        return self.advance()

    def advance(self) -> Token:
        token = self.tok
        self.i += 1
        return token

    # -- grammar
    def parse(self) -> Node:
        if self.tok.kind == "eof":
            raise self.fail(_FIELD_HINT)
        node = self.parse_or()
        if self.tok.kind != "eof":
            raise self.fail("AND, OR or the end of the filter")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.is_word("or"):
            self.advance()
            node = Or(node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_not()
        while self.is_word("and"):
            self.advance()
            node = And(node, self.parse_not())
        return node

    def parse_not(self) -> Node:
        if self.is_word("not"):
            self.advance()
            return Not(self.parse_not())
        if self.is_punct("("):
            self.advance()
            node = self.parse_or()
            self.take_punct(")", "')' or AND/OR")
            return node
        if self.is_word("count") and self.tokens[self.i + 1].kind == "punct" and self.tokens[self.i + 1].value == "(":
            return self.parse_count()
        return self.parse_comparison()

    def parse_count(self) -> Count:
        self.advance()
        self.take_punct("(")
        clauses = [self.parse_comparison(spans_only=True)]
        while self.is_word("and"):
            self.advance()
            clauses.append(self.parse_comparison(spans_only=True))
        self.take_punct(")", "')' or AND (a count() condition joins span.* clauses with AND only)")
        if self.tok.kind != "op":
            raise self.fail("a comparison after count(...): =, !=, <, <=, >, >=")
        op = self.advance().value
        token = self.tok
        if token.kind != "number" or token.value != token.value.to_integral_value() or token.value < 0:
            raise self.fail("a whole number of spans (0 or more)")
        self.advance()
        return Count(tuple(clauses), str(op), int(token.value))

    def parse_field(self, spans_only: bool) -> Field:
        start = self.tok
        if start.kind != "ident" or start.value.lower() not in _PREFIXES:
            raise self.fail("a span.* field (inside count(...))" if spans_only else _FIELD_HINT)
        kind = _PREFIXES[str(start.value).lower()]
        if spans_only and kind != "span":
            raise self.fail("a span.* field (count(...) counts the spans of a trace)")
        self.advance()
        self.take_punct(".", f"'.' and a name after {start.text!r}")
        if kind == "trace":
            name = self.tok
            if name.kind != "ident" or name.value.lower() not in TRACE_KEYS:
                raise self.fail("a trace field: " + ", ".join(f"trace.{k}" for k in TRACE_KEYS))
            self.advance()
            return Field("trace", str(name.value).lower())
        if kind == "span":
            name = self.tok
            if name.kind == "ident" and name.value.lower() == "attributes":
                self.advance()
                if self.is_punct("["):
                    self.advance()
                    if self.tok.kind != "string":
                        raise self.fail("a quoted attribute name, e.g. span.attributes['mlflow.llm.model']")
                    key = str(self.advance().value)
                    self.take_punct("]")
                    return Field("span_attr", key)
                self.take_punct(".", "'[' or '.' after span.attributes")
                return Field("span_attr", self.parse_key())
            if name.kind != "ident" or name.value.lower() not in SPAN_KEYS:
                raise self.fail("a span field: span.type, span.name, span.status, span.attributes['key']")
            self.advance()
            return Field("span", str(name.value).lower())
        return Field(kind, self.parse_key())

    def parse_key(self) -> str:
        if self.tok.kind == "key":
            return str(self.advance().value)
        if self.tok.kind not in ("ident", "number"):
            raise self.fail("a name (letters, digits, '_', '.'; other names in `backquotes`)")
        parts = [self.advance().text]
        while self.is_punct(".") and self.tokens[self.i + 1].kind in ("ident", "number"):
            self.advance()
            parts.append(self.advance().text)
        return ".".join(parts)

    def parse_value(self, field: Field) -> str | Decimal:
        token = self.tok
        if token.kind not in ("string", "number"):
            raise self.fail("a value: a quoted string or a number")
        self.advance()
        if field.kind == "trace" and field.key in _NUMERIC_TRACE_KEYS and token.kind != "number":
            raise self.fail(f"a number (trace.{field.key} is numeric)", token)
        return token.value  # type: ignore[return-value]

    def parse_comparison(self, spans_only: bool = False) -> Compare:
        field = self.parse_field(spans_only)
        op_token = self.tok
        if op_token.kind == "op":
            self.advance()
            return Compare(field, str(op_token.value), self.parse_value(field))
        if self.is_word("like", "ilike"):
            op = str(self.advance().value).upper()
            if self.tok.kind != "string":
                raise self.fail(f"a quoted pattern after {op} (% matches any text, _ one character)")
            return Compare(field, op, str(self.advance().value))
        negated = False
        if self.is_word("not"):
            self.advance()
            negated = True
            if not self.is_word("in"):
                raise self.fail("IN after NOT")
        if self.is_word("in"):
            self.advance()
            self.take_punct("(", "'(' and a list of values after IN")
            values = [self.parse_value(field)]
            while self.is_punct(","):
                self.advance()
                values.append(self.parse_value(field))
            self.take_punct(")", "',' or ')' in the IN list")
            return Compare(field, "NOT IN" if negated else "IN", tuple(values))
        raise self.fail("a comparison: =, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN")


def parse(filter_string: str) -> Node:
    """The syntax tree of ``filter_string``; raises ``FilterError`` naming the position and what was expected."""
    if not isinstance(filter_string, str):
        raise TypeError(f"a filter is a string, got {type(filter_string).__name__}")
    return _Parser(filter_string).parse()
