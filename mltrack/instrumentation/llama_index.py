"""What is patched in LlamaIndex: the LLM classes of the installed integrations that call an SDK we know.

``llama_index.llms.openai.OpenAI`` (and its subclasses: ``AzureOpenAI``, ``OpenAILike``...) and, when
installed, ``llama_index.llms.anthropic.Anthropic``: ``chat`` / ``achat`` / ``complete`` / ``acomplete`` and
the streams ``stream_chat`` / ``astream_chat`` / ``stream_complete`` / ``astream_complete``. Usage and model
come from ``response.raw`` (the provider SDK's response); the SDK call underneath is not logged again. A
stream's request is made while it is iterated, so the stream is proxied and recorded when it ends; for OpenAI
LLMs mltrack asks for the usage chunk (``stream_options.include_usage``) and hides it from the caller, as the
OpenAI SDK instrumentation does.
"""

from __future__ import annotations

from typing import Any

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.instrumentation._patching import Patch
from mltrack.instrumentation._frameworks import Deferred, begin, call_async, call_sync, stream_proxy
from mltrack.providers import llama_index as _li
from mltrack.providers._base import Extracted


def _extract(provider: str) -> Any:
    def extract(result: Any) -> tuple[Extracted | None, dict]:
        return _li.extract_response(result, provider), {}

    return extract


def _split(args: tuple, kwargs: dict, chat: bool) -> tuple[Any, dict]:
    """``chat(messages, **kwargs)`` / ``complete(prompt, formatted=False, **kwargs)``: the input and the kwargs."""
    name = "messages" if chat else "prompt"
    value = args[0] if args else kwargs.get(name)
    rest = {k: v for k, v in kwargs.items() if k not in (name, "formatted")}
    return value, rest


def _scope(instance: Any, args: tuple, kwargs: dict, chat: bool) -> tuple[Any, str]:
    provider = _li.provider_of(instance)
    value, rest = _split(args, kwargs, chat)
    scope = begin(lambda: provider, lambda: _li.request(instance, value, rest, chat), {"framework": "llama_index"})
    return scope, provider


def _plain(chat: bool) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        scope, provider = _scope(instance, args, kwargs, chat)
        if scope is None:
            return wrapped(*args, **kwargs)
        return call_sync(scope, wrapped, args, kwargs, _extract(provider))

    return wrapper


def _aplain(chat: bool) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        async def call() -> Any:
            scope, provider = _scope(instance, args, kwargs, chat)
            if scope is None:
                return await wrapped(*args, **kwargs)
            return await call_async(scope, wrapped, args, kwargs, _extract(provider))

        return call()

    return wrapper


def _prepare(instance: Any, kwargs: dict) -> tuple[dict, bool]:
    kwargs = dict(kwargs)
    hide = _safety.guarded("preparing a stream", _li.prepare_stream, instance, kwargs,
                           get_settings().stream_include_usage, default=False)
    return kwargs, hide


def _stream(chat: bool) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        scope, provider = _scope(instance, args, kwargs, chat)
        if scope is None:
            return wrapped(*args, **kwargs)
        kwargs, hide = _prepare(instance, kwargs)
        result = scope.run(wrapped, args, kwargs)
        return stream_proxy(result, scope, _li.ResponseStreamAccumulator(provider, hide), asynchronous=False)

    return wrapper


def _astream(chat: bool) -> Any:
    def wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
        async def call() -> Any:
            scope, provider = _scope(instance, args, kwargs, chat)
            if scope is None:
                return await wrapped(*args, **kwargs)
            send, hide = _prepare(instance, kwargs)
            result = await scope.arun(wrapped, args, send)
            return stream_proxy(result, scope, _li.ResponseStreamAccumulator(provider, hide), asynchronous=True)

        return call()

    return wrapper


def _patches(module: str, cls: str) -> list[Patch]:
    return [
        Patch(module, f"{cls}.chat", _plain(True)),
        Patch(module, f"{cls}.complete", _plain(False)),
        Patch(module, f"{cls}.achat", _aplain(True)),
        Patch(module, f"{cls}.acomplete", _aplain(False)),
        Patch(module, f"{cls}.stream_chat", _stream(True)),
        Patch(module, f"{cls}.stream_complete", _stream(False)),
        Patch(module, f"{cls}.astream_chat", _astream(True)),
        Patch(module, f"{cls}.astream_complete", _astream(False)),
    ]


_CLASSES = {"llama_index.llms.openai.base": "OpenAI", "llama_index.llms.anthropic.base": "Anthropic"}
PATCHES = [patch for module, cls in _CLASSES.items() for patch in _patches(module, cls)]
# Each integration is patched when it is imported (or at once when it already is).
_DEFERRED = [Deferred(module, lambda module=module: [p for p in PATCHES if p.module == module]) for module in _CLASSES]


def instrument() -> None:
    for deferred in _DEFERRED:
        deferred.instrument()


def uninstrument() -> None:
    for deferred in _DEFERRED:
        deferred.uninstrument()
