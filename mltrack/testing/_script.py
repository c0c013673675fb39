"""Scripted replies: what the fake server sends for the next request instead of its default."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

__all__ = ["ScriptedReply", "ToolCall"]


@dataclass(frozen=True)
class ToolCall:
    """One tool (function) call the fake model makes."""

    name: str
    arguments: Union[Mapping[str, Any], str] = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON text OpenAI sends."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), separators=(",", ":"))

    @property
    def arguments_dict(self) -> dict[str, Any]:
        """The arguments as the object Anthropic sends."""
        if isinstance(self.arguments, str):
            parsed = json.loads(self.arguments) if self.arguments.strip() else {}
            return parsed if isinstance(parsed, dict) else {"value": parsed}
        return dict(self.arguments)


ToolCallLike = Union[ToolCall, Mapping[str, Any]]


def _to_tool_call(item: ToolCallLike) -> ToolCall:
    """Accept a ToolCall or a {"name", "arguments", "id"} dict."""
    if isinstance(item, ToolCall):
        return item
    return ToolCall(name=str(item["name"]), arguments=item.get("arguments", {}), id=item.get("id"))


@dataclass(frozen=True)
class ScriptedReply:
    """What the fake server answers to one request; every field is optional."""

    text: str | None = None
    """Reply text; default: the deterministic `fake_reply` (or JSON when a schema is asked for)."""
    usage: Mapping[str, Any] | None = None
    """Usage dict in the provider's own naming, sent verbatim instead of the computed one."""
    model: str | None = None
    """Model name echoed in the response; default: the request's model."""
    status: int | None = None
    """HTTP error status (>= 400) answered with a provider-format error body."""
    error_message: str | None = None
    """Message of the error body; default: a provider-like message for `status`."""
    error_type: str | None = None
    """Error type of the error body (e.g. "insufficient_quota", "overloaded_error")."""
    retry_after_s: float = 1.0
    """Value of the `retry-after` header sent with a 429."""
    delay_s: float = 0.0
    """Seconds to wait before sending anything."""
    chunk_delay_s: float = 0.0
    """Seconds to wait before each content chunk of a stream."""
    drop_after_chunks: int | None = None
    """Close the connection abruptly after this many content chunks (non-stream: before any response)."""
    tool_calls: Sequence[ToolCallLike] = ()
    """Tool calls the model makes (ToolCall or {"name", "arguments", "id"} dicts)."""
    finish_reason: str | None = None
    """Finish / stop reason, in either provider's naming (translated for the other)."""
    headers: Mapping[str, str] | None = None
    """Extra response headers."""

    def __post_init__(self) -> None:
        """Normalise tool calls to a tuple of ToolCall."""
        object.__setattr__(self, "tool_calls", tuple(_to_tool_call(t) for t in self.tool_calls))

    @property
    def is_error(self) -> bool:
        """True when this reply is an HTTP error."""
        return self.status is not None and self.status >= 400


DEFAULT_SCRIPT = ScriptedReply()
