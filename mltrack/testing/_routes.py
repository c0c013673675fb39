"""Map a request path to the provider endpoint that answers it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from . import _anthropic_wire as anthropic
from . import _openai_wire as openai
from ._script import ScriptedReply
from ._wire import Context, JsonReply, StreamReply

__all__ = ["Route", "match"]

Builder = Callable[[Mapping[str, Any], ScriptedReply, Context], Union[JsonReply, StreamReply]]
ErrorBuilder = Callable[[int, ScriptedReply, Context], JsonReply]

_OPENAI_PATH = re.compile(
    r"^(?:/v1|/openai(?:/v1)?|/openai/deployments/(?P<deployment>[^/]+))"
    r"/(?P<op>chat/completions|completions|responses|embeddings)/?$"
)
_OPENAI_OPS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "chat/completions": (openai.chat_completions, ("model", "messages")),
    "completions": (openai.completions, ("model", "prompt")),
    "responses": (openai.responses, ("model",)),
    "embeddings": (openai.embeddings, ("model", "input")),
}
_ANTHROPIC_OPS: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "/v1/messages": (anthropic.messages, ("model", "messages", "max_tokens")),
    "/v1/messages/count_tokens": (anthropic.count_tokens, ("model", "messages")),
}


@dataclass(frozen=True)
class Route:
    """One fake endpoint: its provider, builders and required body fields."""

    provider: str
    build: Builder
    error: ErrorBuilder
    required: tuple[str, ...]
    deployment: str | None = None

    def bad_request(self, message: str) -> JsonReply:
        """A 400 in this provider's format."""
        return anthropic.bad_request(message) if self.provider == "anthropic" else openai.bad_request(message)

    def missing(self, body: Mapping[str, Any]) -> str | None:
        """The first required field absent from `body` (Azure takes the model from the URL)."""
        for name in self.required:
            if name == "model" and self.deployment:
                continue
            if body.get(name) in (None, ""):
                return name
        return None


def match(method: str, path: str) -> Route | None:
    """The route for a POST to `path`, or None."""
    if method != "POST":
        return None
    path = path.rstrip("/") or "/"
    if path in _ANTHROPIC_OPS:
        build, required = _ANTHROPIC_OPS[path]
        return Route("anthropic", build, anthropic.error_reply, required)
    found = _OPENAI_PATH.match(path)
    if found:
        build, required = _OPENAI_OPS[found.group("op")]
        return Route("openai", build, openai.error_reply, required, found.group("deployment"))
    return None
