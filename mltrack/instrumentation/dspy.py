"""What is patched in DSPy: the one place every ``dspy.LM`` call runs.

DSPy 3.4+: ``dspy.clients.execution.execute`` / ``aexecute`` (``lm(...)``, ``lm.acall``, ``lm.forward``,
``lm.aforward``, every module and ``dspy.streamify``), whichever engine sends the request (DSPy's native lm15
engine or LiteLLM). Older DSPy: ``dspy.clients.lm.LM.forward`` / ``aforward``. The call is logged once, at the
DSPy level, with DSPy's own usage; the LiteLLM / OpenAI / Anthropic calls underneath are not logged again.
An answer from DSPy's cache is logged as a call with zero tokens and ``metadata.cache_hit``.
"""

from __future__ import annotations

import importlib
from typing import Any

from mltrack.instrumentation._patching import Patch, remove
from mltrack.instrumentation._frameworks import Deferred, begin, call_async, call_sync
from mltrack.providers import dspy as _dspy
from mltrack.providers._base import Extracted


def _extract(provider: str) -> Any:
    def extract(result: Any) -> tuple[Extracted | None, dict]:
        extracted, cache_hit = _dspy.extract_result(result, provider)
        return extracted, ({"cache_hit": True} if cache_hit else {})

    return extract


def _execute_args(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    lm = args[0] if args else kwargs.get("lm")
    call = args[1] if len(args) > 1 else kwargs.get("call")
    return lm, call


def _execute(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    lm, call = _execute_args(args, kwargs)
    provider = _dspy.provider_of(lm)
    scope = begin(lambda: provider, lambda: _dspy.request(lm, call), {"framework": "dspy"})
    if scope is None:
        return wrapped(*args, **kwargs)
    return call_sync(scope, wrapped, args, kwargs, _extract(provider))


def _aexecute(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def run() -> Any:
        lm, call = _execute_args(args, kwargs)
        provider = _dspy.provider_of(lm)
        scope = begin(lambda: provider, lambda: _dspy.request(lm, call), {"framework": "dspy"})
        if scope is None:
            return await wrapped(*args, **kwargs)
        return await call_async(scope, wrapped, args, kwargs, _extract(provider))

    return run()


def _forward_request(instance: Any, args: tuple, kwargs: dict) -> Any:
    prompt = args[0] if args else kwargs.get("prompt")
    messages = args[1] if len(args) > 1 else kwargs.get("messages")
    rest = {k: v for k, v in kwargs.items() if k not in ("prompt", "messages")}
    return _dspy.forward_request(instance, prompt, messages, rest)


def _forward(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    provider = _dspy.provider_of(instance)
    scope = begin(lambda: provider, lambda: _forward_request(instance, args, kwargs), {"framework": "dspy"})
    if scope is None:
        return wrapped(*args, **kwargs)
    return call_sync(scope, wrapped, args, kwargs, _extract(provider))


def _aforward(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def run() -> Any:
        provider = _dspy.provider_of(instance)
        scope = begin(lambda: provider, lambda: _forward_request(instance, args, kwargs), {"framework": "dspy"})
        if scope is None:
            return await wrapped(*args, **kwargs)
        return await call_async(scope, wrapped, args, kwargs, _extract(provider))

    return run()


_EXECUTION = [
    Patch("dspy.clients.execution", "execute", _execute),
    Patch("dspy.clients.execution", "aexecute", _aexecute),
]
_LEGACY = [
    Patch("dspy.clients.lm", "LM.forward", _forward),
    Patch("dspy.clients.lm", "LM.aforward", _aforward),
]


def _has_execution() -> bool:
    try:
        return hasattr(importlib.import_module("dspy.clients.execution"), "execute")
    except ImportError:
        return False


# Patched once ``dspy`` has finished importing; which patches depends on the DSPy version found then.
_DEFERRED = Deferred("dspy", lambda: _EXECUTION if _has_execution() else _LEGACY)


def instrument() -> None:
    _DEFERRED.instrument()


def uninstrument() -> None:
    _DEFERRED.uninstrument()
    remove(_EXECUTION + _LEGACY)
