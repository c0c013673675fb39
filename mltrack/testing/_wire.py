"""Provider-neutral pieces of a fake answer: the answer itself, JSON and SSE replies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ._rules import completion_text, fake_reply, fake_usage, json_reply
from ._script import ScriptedReply, ToolCall

__all__ = ["Answer", "Context", "JsonReply", "SseEvent", "StreamReply", "make_answer", "dumps"]


def dumps(value: Any) -> str:
    """Compact JSON, as the providers send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Context:
    """Per-request facts the wire builders need besides the body."""

    seq: int
    created: int
    deployment: str | None = None

    def ident(self, prefix: str) -> str:
        """A deterministic id such as "chatcmpl-fake000001"."""
        return f"{prefix}fake{self.seq:06d}"


@dataclass(frozen=True)
class JsonReply:
    """A complete JSON response."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event; `content` marks a content chunk (delayed, and counted for drops)."""

    data: str
    event: str | None = None
    content: bool = False

    def encode(self) -> bytes:
        """Wire bytes of the event, ending with its blank line."""
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {self.data}\n\n".encode()


@dataclass(frozen=True)
class StreamReply:
    """A streamed (text/event-stream) response."""

    events: tuple[SseEvent, ...]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    """What the fake model says, before any provider formatting."""

    model: str
    text: str
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_override: Mapping[str, Any] | None


def make_answer(
    script: ScriptedReply,
    model: str,
    prompt_text: str,
    user_text: str,
    *,
    schema: Mapping[str, Any] | None = None,
    json_mode: bool = False,
) -> Answer:
    """Apply the script (or the default rules) to one request."""
    tool_calls = tuple(script.tool_calls)  # type: ignore[arg-type]
    if script.text is not None:
        text = script.text
    elif tool_calls:
        text = ""
    elif schema is not None or json_mode:
        text = json_reply(schema, user_text)
    else:
        text = fake_reply(user_text)
    prompt_tokens, completion_tokens = fake_usage(prompt_text, completion_text(text, tool_calls))
    return Answer(
        model=script.model or model,
        text=text,
        tool_calls=tool_calls,
        finish_reason=script.finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        usage_override=dict(script.usage) if script.usage is not None else None,
    )


_TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def openai_finish(answer: Answer) -> str:
    """Finish reason in OpenAI naming."""
    if answer.finish_reason is None:
        return "tool_calls" if answer.tool_calls else "stop"
    return _TO_OPENAI.get(answer.finish_reason, answer.finish_reason)


def anthropic_stop(answer: Answer) -> str:
    """Stop reason in Anthropic naming."""
    if answer.finish_reason is None:
        return "tool_use" if answer.tool_calls else "end_turn"
    return _TO_ANTHROPIC.get(answer.finish_reason, answer.finish_reason)
