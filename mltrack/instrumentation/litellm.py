"""What is patched in LiteLLM: ``litellm.completion`` and ``litellm.acompletion`` (plain and ``stream=True``).

Both names are patched where users reach them (``litellm.completion``) and where LiteLLM calls them itself
(``litellm.main.completion``: ``acompletion`` runs ``completion`` in a worker, and the Router calls it), so a
call is recorded once, at the outermost one. The provider is LiteLLM's (``custom_llm_provider``, the model's
``openai/`` / ``anthropic/`` prefix, else ``litellm.get_llm_provider``); the OpenAI / Anthropic SDK call LiteLLM
makes underneath is not logged again. ``from litellm import completion`` done before ``instrument()`` keeps
the unpatched function (as with any patch of a module attribute).
"""

from __future__ import annotations

import sys
from typing import Any

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._patching import Patch
from mltrack.instrumentation._frameworks import Deferred, begin, call_async, call_sync, stream_proxy
from mltrack.providers import litellm as _ll
from mltrack.providers._base import Extracted


def _resolve(model: str) -> Any:
    litellm = sys.modules.get("litellm")
    return litellm.get_llm_provider(model) if litellm is not None else None


def _provider(args: tuple, kwargs: dict) -> str:
    model = kwargs.get("model", args[0] if args else None)
    return _ll.provider_of(model, kwargs.get("custom_llm_provider"), _resolve)


def _extract(provider: str) -> Any:
    def extract(result: Any) -> tuple[Extracted | None, dict]:
        return _ll.extract_response(result, provider), {}

    return extract


def _start(args: tuple, kwargs: dict) -> tuple[CallScope | None, str, dict, Any]:
    """The scope, the provider, the kwargs to send, and the stream accumulator (None unless ``stream=True``)."""
    provider_box: list[str] = []

    def provider() -> str:
        provider_box.append(_provider(args, kwargs))
        return provider_box[0]

    scope = begin(provider, lambda: _ll.extract_request(args, kwargs), {"framework": "litellm"})
    if scope is None:
        return None, "", kwargs, None
    accumulator = None
    if kwargs.get("stream") is True:
        kwargs = dict(kwargs)
        hide = _safety.guarded("preparing a stream", _ll.prepare_stream, kwargs, get_settings().stream_include_usage,
                               default=False)
        accumulator = _ll.StreamAccumulator(provider_box[0], hide_usage_chunk=hide)
    return scope, provider_box[0], kwargs, accumulator


def _completion(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    scope, provider, kwargs, accumulator = _start(args, kwargs)
    if scope is None:
        return wrapped(*args, **kwargs)
    if accumulator is None:
        return call_sync(scope, wrapped, args, kwargs, _extract(provider))
    result = scope.run(wrapped, args, kwargs)
    return stream_proxy(result, scope, accumulator, asynchronous=False)


def _acompletion(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def call() -> Any:
        scope, provider, send, accumulator = _start(args, kwargs)
        if scope is None:
            return await wrapped(*args, **send)
        if accumulator is None:
            return await call_async(scope, wrapped, args, send, _extract(provider))
        result = await scope.arun(wrapped, args, send)
        return stream_proxy(result, scope, accumulator, asynchronous=True)

    return call()


PATCHES = [
    Patch("litellm", "completion", _completion),
    Patch("litellm", "acompletion", _acompletion),
    Patch("litellm.main", "completion", _completion),
    Patch("litellm.main", "acompletion", _acompletion),
]


# Patched once ``litellm`` has finished importing (``litellm.main`` is imported by then).
_DEFERRED = Deferred("litellm", lambda: PATCHES)


def instrument() -> None:
    _DEFERRED.instrument()


def uninstrument() -> None:
    _DEFERRED.uninstrument()
