"""Split a filter string into tokens, each with its 0-based position (for error messages)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from mltrack.insights._errors import FilterError


@dataclass(frozen=True)
class Token:
    kind: str  # ident, key (backquoted), string, number, op, punct, eof
    value: object
    pos: int
    text: str


_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = ("!=", "<>", "<=", ">=", "=", "<", ">")


def _quoted(text: str, start: int, quote: str) -> tuple[str, int]:
    """The content of a quoted string starting at ``start`` (a quote) and the index after it.

    Backslash escapes the next character; a doubled quote stands for one quote (SQL style)."""
    out = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        elif ch == quote:
            if text[i + 1:i + 2] == quote:
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    kind = "backquoted name" if quote == "`" else "string"
    raise FilterError(text, start, f"this {kind} is never closed (expected a closing {quote})")


def tokenize(text: str) -> list[Token]:
    """Every token of ``text``, ending with an ``eof`` token."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "'\"`":
            value, end = _quoted(text, i, ch)
            tokens.append(Token("key" if ch == "`" else "string", value, i, text[i:end]))
            i = end
            continue
        if ch in "()[],.":
            if ch == "." and i + 1 < len(text) and text[i + 1].isdigit() and (
                    not tokens or tokens[-1].kind == "op" or (tokens[-1].kind == "punct" and tokens[-1].value in "(,")):
                pass  # a number such as .5 where a value goes
            else:
                tokens.append(Token("punct", ch, i, ch))
                i += 1
                continue
        number = _NUMBER.match(text, i)
        if number and (ch != "-" or not tokens or tokens[-1].kind in ("op", "punct")):
            end = number.end()
            if end < len(text) and (text[end].isalpha() or text[end] == "_"):
                raise FilterError(text, i, f"a number runs into letters: {text[i:end + 1]!r}")
            tokens.append(Token("number", Decimal(number.group()), i, number.group()))
            i = end
            continue
        ident = _IDENT.match(text, i)
        if ident:
            tokens.append(Token("ident", ident.group(), i, ident.group()))
            i = ident.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                tokens.append(Token("op", "!=" if op == "<>" else op, i, op))
                i += len(op)
                break
        else:
            raise FilterError(text, i, f"unexpected character {ch!r}")
    tokens.append(Token("eof", None, len(text), ""))
    return tokens
