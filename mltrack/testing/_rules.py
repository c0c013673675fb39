"""The fake model's deterministic rules: reply text, token usage, stream chunks, JSON and embeddings."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Mapping

from ._script import ToolCall

__all__ = [
    "PROMPT_OVERHEAD",
    "REPLY_PREFIX",
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "fake_reply",
    "fake_usage",
    "count_words",
    "split_chunks",
    "completion_text",
    "minimal_json",
    "fake_embedding",
]

PROMPT_OVERHEAD = 3
"""Tokens added to every prompt count (like the real per-request overhead)."""
REPLY_PREFIX = "Fake reply to: "
"""Start of every default reply."""
SNIPPET_CHARS = 40
"""How many characters of the last user message the default reply echoes."""
DEFAULT_EMBEDDING_DIMENSIONS = 8
"""Vector length of fake embeddings when the request gives no `dimensions`."""


def count_words(text: str) -> int:
    """Whitespace-separated words in `text`."""
    return len(text.split())


def fake_reply(user_text: str) -> str:
    """Default reply: "Fake reply to: " + the first 40 characters of the (stripped) last user message."""
    return (REPLY_PREFIX + user_text.strip()[:SNIPPET_CHARS]).rstrip()


def fake_usage(prompt_text: str, reply_text: str) -> tuple[int, int]:
    """Default (prompt_tokens, completion_tokens): words of the prompt + 3, words of the reply."""
    return count_words(prompt_text) + PROMPT_OVERHEAD, count_words(reply_text)


def completion_text(text: str, tool_calls: Iterable[ToolCall] = ()) -> str:
    """Text whose words are the completion tokens: the reply text, then each tool call's name and JSON arguments."""
    parts = [text] + [f"{call.name} {call.arguments_json}" for call in tool_calls]
    return " ".join(p for p in parts if p)


def split_chunks(text: str) -> list[str]:
    """Stream pieces of `text`, one per word with its leading whitespace; they join back to `text`."""
    pieces = re.findall(r"\s*\S+", text)
    tail = text[len("".join(pieces)) :]
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def split_fixed(text: str, size: int = 16) -> list[str]:
    """Pieces of at most `size` characters (for streamed tool-call arguments)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


_STRING_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "duration": "PT0S",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "email": "user@example.com",
    "uri": "https://example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def minimal_json(schema: Mapping[str, Any]) -> Any:
    """A minimal value valid for a JSON schema: required properties only, first enum/anyOf choices."""
    return _minimal(schema, schema, 0)


def _resolve(ref: str, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local "#/..." reference."""
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _minimal(schema: Any, root: Mapping[str, Any], depth: int) -> Any:
    """Recursive worker of `minimal_json`."""
    if not isinstance(schema, Mapping) or depth > 32:
        return None
    if "$ref" in schema:
        return _minimal(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            non_null = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
            return _minimal((non_null or options)[0], root, depth + 1)
    if schema.get("allOf"):
        return _minimal(schema["allOf"][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties", {})
        return {name: _minimal(props.get(name, {}), root, depth + 1) for name in schema.get("required", [])}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [_minimal(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        value = _STRING_FORMATS.get(str(schema.get("format")), "fake")
        min_len = int(schema.get("minLength", 0))
        return value if len(value) >= min_len else value + "x" * (min_len - len(value))
    if kind in ("integer", "number"):
        low = schema.get("minimum")
        if low is None and schema.get("exclusiveMinimum") is not None:
            low = schema["exclusiveMinimum"] + 1
        value = low if low is not None else 0
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None


def json_reply(schema: Mapping[str, Any] | None, user_text: str) -> str:
    """Reply text for a JSON response format: a minimal schema instance, or {"reply": default text}."""
    value = minimal_json(schema) if schema is not None else {"reply": fake_reply(user_text)}
    return json.dumps(value)


def fake_embedding(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """Deterministic vector for `text`: SHA-256 bytes mapped to (b - 128) / 128, exact in float32."""
    out: list[float] = []
    block = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(f"{block}:{text}".encode()).digest()
        out.extend((b - 128) / 128 for b in digest)
        block += 1
    return out[:dimensions]
