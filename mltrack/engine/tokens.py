"""Count tokens locally, for calls whose provider reported no usage; callers flag the result as estimated."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from mltrack.engine import _encodings

__all__ = [
    "count_completion_tokens",
    "count_prompt_tokens",
    "count_text_tokens",
    "encoding_name_for",
    "provision_offline_encodings",
]

CL100K = "cl100k_base"
O200K = "o200k_base"

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMER = 3

_O200K_MODELS = re.compile(r"(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o[134](?![0-9a-z.]))")


@functools.lru_cache(maxsize=1024)
def encoding_name_for(model: str | None) -> str:
    """The tiktoken encoding for ``model``; cl100k_base as an estimate for non-OpenAI or unknown models."""
    if not model:
        return CL100K
    name = model.strip().lower().rsplit("/", 1)[-1].removeprefix("ft:")
    return O200K if _O200K_MODELS.match(name) else CL100K


def count_text_tokens(text: str, model: str | None = None) -> int:
    """Tokens in ``text`` under ``model``'s encoding; special-token text counts as ordinary text."""
    if not text:
        return 0
    if not isinstance(text, str):
        text = str(text)
    return _encodings.counter_for(encoding_name_for(model))(text)


def count_completion_tokens(text: str, model: str | None = None) -> int:
    """Tokens in a completion's text."""
    return count_text_tokens(text, model)


def count_prompt_tokens(prompt: object, model: str | None = None) -> int:
    """Tokens in a prompt: text as is, chat messages with OpenAI's per-message overhead."""
    prompt = _dumped(prompt)
    if isinstance(prompt, str):
        return count_text_tokens(prompt, model)
    return _count_any(prompt, _encodings.counter_for(encoding_name_for(model)))


def provision_offline_encodings(cache_dir: str | os.PathLike[str]) -> list[str]:
    """Unpack bpe-openai's cl100k_base / o200k_base into ``cache_dir`` as tiktoken's cache files."""
    return _encodings.provision(cache_dir)


def _dumped(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        try:
            return dump(exclude_none=True)
        except TypeError:
            return dump()
    return value


def _count_text(text: str, count: _encodings.Counter) -> int:
    return count(text) if text else 0


def _count_any(value: Any, count: _encodings.Counter) -> int:
    value = _dumped(value)
    if value is None:
        return 0
    if isinstance(value, str):
        return _count_text(value, count)
    if isinstance(value, Mapping):
        return _count_request_or_message(value, count)
    if isinstance(value, (list, tuple)):
        return _count_sequence(value, count)
    return _count_text(str(value), count)


def _count_request_or_message(obj: Mapping[str, Any], count: _encodings.Counter) -> int:
    if "role" in obj or "content" in obj:
        return _count_messages([obj], count)
    if "messages" in obj:
        return _count_any(obj["messages"], count) + _count_content(_dumped(obj.get("system")), count)
    if "input" in obj:
        return _count_any(obj.get("instructions"), count) + _count_any(obj["input"], count)
    if "prompt" in obj:
        return _count_content(_dumped(obj["prompt"]), count)
    return _count_text(str(dict(obj)), count)


def _count_sequence(items: Iterable[Any], count: _encodings.Counter) -> int:
    items = [_dumped(item) for item in items]
    if any(isinstance(item, Mapping) for item in items):
        return _count_messages(items, count)
    return sum(_count_content(item, count) for item in items)


def _count_messages(messages: list[Any], count: _encodings.Counter) -> int:
    if not messages:
        return 0
    total = TOKENS_REPLY_PRIMER
    for message in messages:
        if not isinstance(message, Mapping):
            total += _count_content(message, count)
            continue
        total += TOKENS_PER_MESSAGE
        for key in ("role", "name"):
            value = message.get(key)
            if isinstance(value, str):
                total += _count_text(value, count)
        if message.get("name"):
            total += TOKENS_PER_NAME
        total += _count_content(_dumped(message.get("content")), count)
        total += _count_tool_calls(message, count)
    return total


def _count_content(content: Any, count: _encodings.Counter) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return _count_text(content, count)
    if isinstance(content, Mapping):
        return _count_part(content, count)
    if isinstance(content, (list, tuple)):
        return sum(_count_content(_dumped(part), count) for part in content)
    return _count_text(str(content), count)


def _count_part(part: Mapping[str, Any], count: _encodings.Counter) -> int:
    text = part.get("text")
    if isinstance(text, str):
        return _count_text(text, count)
    nested = part.get("content")
    if isinstance(nested, (str, list, tuple)):
        return _count_content(nested, count)
    return 0


def _count_tool_calls(message: Mapping[str, Any], count: _encodings.Counter) -> int:
    tool_calls = _dumped(message.get("tool_calls"))
    calls = list(tool_calls) if isinstance(tool_calls, (list, tuple)) else []
    if message.get("function_call"):
        calls.append({"function": message["function_call"]})
    total = 0
    for call in calls:
        call = _dumped(call)
        function = _dumped(call.get("function")) if isinstance(call, Mapping) else None
        if isinstance(function, Mapping):
            for key in ("name", "arguments"):
                value = function.get(key)
                if isinstance(value, str):
                    total += _count_text(value, count)
    return total
