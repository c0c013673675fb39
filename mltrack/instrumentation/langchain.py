"""What is patched in LangChain: every ``BaseChatModel`` subclass, at the two places a chat request is made.

* ``BaseChatModel._generate_with_cache`` / ``_agenerate_with_cache``: one request per prompt for ``invoke``,
  ``ainvoke``, ``batch``, ``generate`` and ``agenerate`` (and for models that stream internally); usage comes
  from the ``AIMessage.usage_metadata`` of the result.
* ``BaseChatModel.stream`` / ``astream``: the request is made while the caller iterates, so the stream is
  proxied and the call is recorded when it ends (usage from the chunks' ``usage_metadata``).

The call is marked "inside an LLM call" only while LangChain works (around the request, and around each
``next()`` of a stream), so the OpenAI / Anthropic SDK call LangChain makes underneath is logged once, here,
and the caller's own code between two chunks is not affected. Field names live in
:mod:`mltrack.providers.langchain`.
"""

from __future__ import annotations

from typing import Any, Callable

from mltrack import _safety
from mltrack.config import get_settings
from mltrack.instrumentation._call import CallScope
from mltrack.instrumentation._frameworks import Deferred, begin, call_async, call_sync, stream_proxy
from mltrack.instrumentation._patching import Patch
from mltrack.providers import langchain as _lc
from mltrack.providers._base import Extracted

# --- LangChain --------------------------------------------------------------------------------------------------


def _ls_params(instance: Any, kwargs: dict) -> dict:
    try:
        params = instance._get_ls_params(**kwargs)
    except Exception:  # noqa: BLE001 - a model without LangSmith params still gets logged
        params = {}
    return params if isinstance(params, dict) else {}


def _provider(instance: Any, ls_params: dict) -> str:
    return _lc.provider_name(ls_params.get("ls_provider") or type(instance).__name__)


def _extract(provider: str) -> Callable[[Any], tuple[Extracted | None, dict]]:
    def extract(result: Any) -> tuple[Extracted | None, dict]:
        extracted, cache_hit = _lc.extract_result(result, provider)
        return extracted, ({"cache_hit": True} if cache_hit else {})

    return extract


def _scope_for_messages(instance: Any, messages: Any, kwargs: dict) -> tuple[CallScope | None, str]:
    """``kwargs``: the call's keyword arguments (``stop`` and the model's own), as ``_get_ls_params`` takes them."""
    params = _ls_params(instance, kwargs)
    provider = _provider(instance, params)
    scope = begin(lambda: provider, lambda: _lc.request(messages, params), {"framework": "langchain"})
    return scope, provider


def _generate_args(args: tuple, kwargs: dict) -> tuple[Any, dict]:
    """``_generate_with_cache(messages, stop=None, run_manager=None, **kwargs)``: the messages and the call kwargs."""
    messages = args[0] if args else kwargs.get("messages")
    call_kwargs = {k: v for k, v in kwargs.items() if k not in ("messages", "run_manager")}
    if len(args) > 1:
        call_kwargs["stop"] = args[1]
    return messages, call_kwargs


def _generate_with_cache(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    messages, call_kwargs = _generate_args(args, kwargs)
    scope, provider = _scope_for_messages(instance, messages, call_kwargs)
    if scope is None:
        return wrapped(*args, **kwargs)
    return call_sync(scope, wrapped, args, kwargs, _extract(provider))


def _agenerate_with_cache(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def call() -> Any:
        messages, call_kwargs = _generate_args(args, kwargs)
        scope, provider = _scope_for_messages(instance, messages, call_kwargs)
        if scope is None:
            return await wrapped(*args, **kwargs)
        return await call_async(scope, wrapped, args, kwargs, _extract(provider))

    return call()


def _ask_stream_usage(instance: Any, kwargs: dict) -> bool:
    """Models with a ``stream_usage`` switch left unset (ChatOpenAI on a custom base URL): ask for usage."""
    if "stream_usage" in kwargs or getattr(instance, "stream_usage", False) is not None:
        return False
    return bool(get_settings().stream_include_usage)


def _stream_wrapper(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    try:
        stream_input = args[0] if args else kwargs.get("input")
        messages = instance._convert_input(stream_input).to_messages()
    except Exception:  # noqa: BLE001 - LangChain raises its own error for bad input when iterated
        return wrapped(*args, **kwargs)
    call_kwargs = {k: v for k, v in kwargs.items() if k not in ("input", "config")}
    scope, provider = _scope_for_messages(instance, messages, call_kwargs)
    if scope is None:
        return wrapped(*args, **kwargs)
    hide = _safety.guarded("preparing a stream", _ask_stream_usage, instance, kwargs, default=False)
    if hide:
        kwargs = {**kwargs, "stream_usage": True}
    result = scope.run(wrapped, args, kwargs)  # a generator: nothing is sent yet
    return stream_proxy(result, scope, _lc.MessageChunkAccumulator(provider, hide_usage_chunk=hide))


_CHAT = "langchain_core.language_models.chat_models"
PATCHES = [
    Patch(_CHAT, "BaseChatModel._generate_with_cache", _generate_with_cache),
    Patch(_CHAT, "BaseChatModel._agenerate_with_cache", _agenerate_with_cache),
    Patch(_CHAT, "BaseChatModel.stream", _stream_wrapper),
    Patch(_CHAT, "BaseChatModel.astream", _stream_wrapper),
]


_DEFERRED = Deferred(_CHAT, lambda: PATCHES)


def instrument() -> None:
    _DEFERRED.instrument()


def uninstrument() -> None:
    _DEFERRED.uninstrument()
