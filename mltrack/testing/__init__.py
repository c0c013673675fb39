"""A local fake of the OpenAI, Azure OpenAI and Anthropic HTTP APIs, for tests and offline demos.

The real `openai` and `anthropic` SDKs talk to it over HTTP (point their `base_url` at it); replies and
token usage follow deterministic rules (`fake_reply`, `fake_usage`) unless a `ScriptedReply` is queued.
"""

from ._rules import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    PROMPT_OVERHEAD,
    REPLY_PREFIX,
    completion_text,
    count_words,
    fake_embedding,
    fake_reply,
    fake_usage,
    minimal_json,
    split_chunks,
)
from ._script import ScriptedReply, ToolCall
from ._server import FakeLLMServer, RecordedRequest

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "PROMPT_OVERHEAD",
    "REPLY_PREFIX",
    "FakeLLMServer",
    "RecordedRequest",
    "ScriptedReply",
    "ToolCall",
    "completion_text",
    "count_words",
    "fake_embedding",
    "fake_reply",
    "fake_usage",
    "minimal_json",
    "split_chunks",
]
