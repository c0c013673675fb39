"""What is patched in the ``openai`` SDK (OpenAI, AsyncOpenAI, AzureOpenAI, AsyncAzureOpenAI share resources)."""

from __future__ import annotations

from typing import Any, Mapping

from mltrack.instrumentation._patching import Patch, apply, remove
from mltrack.instrumentation._sdk_wrappers import async_wrapper, sync_wrapper
from mltrack.instrumentation._streams import finish_helper_stream
from mltrack.providers import openai as _openai


def _describe(instance: Any, kwargs: dict) -> tuple[str, Mapping[str, Any]]:
    """OpenAI or Azure OpenAI: Azure calls carry the deployment, the api version and the endpoint host."""
    client = getattr(instance, "_client", None)
    if client is None or not type(client).__name__.startswith(("AzureOpenAI", "AsyncAzureOpenAI")):
        return "openai", {}
    base_url = getattr(client, "base_url", None)
    return "azure", {
        "azure_deployment": getattr(client, "_azure_deployment", None) or kwargs.get("model"),
        "api_version": getattr(client, "_api_version", None),
        "endpoint_host": getattr(base_url, "host", None),
    }


def _chat_stream(kwargs: dict, settings: Any) -> tuple[Any, dict]:
    kwargs = dict(kwargs)
    hide = _openai.prepare_chat_stream(kwargs, settings.stream_include_usage)
    return _openai.stream_accumulator("chat", hide), kwargs


def _responses_stream(kwargs: dict, settings: Any) -> tuple[Any, dict]:
    return _openai.stream_accumulator("responses", False), kwargs


def _close_helper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    """The SDK's stream helpers close the HTTP response, not the raw stream: finish our record there too."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        finish_helper_stream(getattr(instance, "_raw_stream", None))


def _aclose_helper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def close() -> Any:
        try:
            return await wrapped(*args, **kwargs)
        finally:
            finish_helper_stream(getattr(instance, "_raw_stream", None))

    return close()


_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
PATCHES = [
    Patch(_CHAT, "Completions.create", sync_wrapper(_describe, _chat_stream)),
    Patch(_CHAT, "AsyncCompletions.create", async_wrapper(_describe, _chat_stream)),
    Patch(_CHAT, "Completions.parse", sync_wrapper(_describe)),
    Patch(_CHAT, "AsyncCompletions.parse", async_wrapper(_describe)),
    Patch("openai.resources.completions", "Completions.create", sync_wrapper(_describe, _chat_stream)),
    Patch("openai.resources.completions", "AsyncCompletions.create", async_wrapper(_describe, _chat_stream)),
    Patch(_RESPONSES, "Responses.create", sync_wrapper(_describe, _responses_stream)),
    Patch(_RESPONSES, "AsyncResponses.create", async_wrapper(_describe, _responses_stream)),
    Patch(_RESPONSES, "Responses.parse", sync_wrapper(_describe)),
    Patch(_RESPONSES, "AsyncResponses.parse", async_wrapper(_describe)),
    Patch("openai.resources.embeddings", "Embeddings.create", sync_wrapper(_describe)),
    Patch("openai.resources.embeddings", "AsyncEmbeddings.create", async_wrapper(_describe)),
    Patch("openai.lib.streaming.chat._completions", "ChatCompletionStream.close", _close_helper),
    Patch("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream.close", _aclose_helper),
    Patch("openai.lib.streaming.responses._responses", "ResponseStream.close", _close_helper),
    Patch("openai.lib.streaming.responses._responses", "AsyncResponseStream.close", _aclose_helper),
]


def instrument() -> None:
    apply(PATCHES)


def uninstrument() -> None:
    remove(PATCHES)
