"""Read the prompt text and the last user message out of provider request bodies."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["content_text", "chat_texts", "completions_texts", "responses_texts", "anthropic_texts", "embedding_inputs"]

Texts = tuple[str, str]
"""(prompt text: everything the model reads, last user message text)."""


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the text of its parts / blocks joined by spaces."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif part.get("type") == "tool_result":
                    parts.append(content_text(part.get("content")))
                elif isinstance(part.get("output"), str):
                    parts.append(part["output"])
        return " ".join(p for p in parts if p)
    return ""


def _messages_texts(messages: Any, leading: Sequence[str] = ()) -> Texts:
    """Prompt text and last user text of a list of role/content messages."""
    prompt = [t for t in leading if t]
    last_user = ""
    for message in messages if isinstance(messages, Sequence) and not isinstance(messages, str) else []:
        if not isinstance(message, Mapping):
            continue
        text = content_text(message.get("content", message.get("output")))
        if text:
            prompt.append(text)
        if message.get("role") == "user":
            last_user = text
    return "\n".join(prompt), last_user


def chat_texts(body: Mapping[str, Any]) -> Texts:
    """Texts of an OpenAI chat completions request (all messages)."""
    return _messages_texts(body.get("messages"))


def completions_texts(body: Mapping[str, Any]) -> Texts:
    """Texts of a legacy completions request (the prompt)."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = "\n".join(p for p in prompt if isinstance(p, str))
    text = prompt if isinstance(prompt, str) else ""
    return text, text


def responses_texts(body: Mapping[str, Any]) -> Texts:
    """Texts of a Responses API request (instructions + input)."""
    instructions = body.get("instructions")
    leading = [instructions] if isinstance(instructions, str) else []
    given = body.get("input", "")
    if isinstance(given, str):
        return "\n".join(leading + [given] if given else leading), given
    return _messages_texts(given, leading)


def anthropic_texts(body: Mapping[str, Any]) -> Texts:
    """Texts of an Anthropic messages request (system + messages)."""
    return _messages_texts(body.get("messages"), [content_text(body.get("system"))])


def embedding_inputs(body: Mapping[str, Any]) -> list[str]:
    """Each embedding input as text (token arrays become their ids joined by spaces)."""
    given = body.get("input", "")
    if isinstance(given, str):
        return [given]
    if isinstance(given, list) and given and all(isinstance(t, int) for t in given):
        return [" ".join(str(t) for t in given)]
    out: list[str] = []
    for item in given if isinstance(given, list) else []:
        out.append(item if isinstance(item, str) else " ".join(str(t) for t in item))
    return out
