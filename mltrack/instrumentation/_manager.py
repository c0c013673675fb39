"""Which patches are applied: one table of framework -> patcher, applied and removed idempotently."""

from __future__ import annotations

import threading
from typing import Callable

from mltrack.instrumentation import FRAMEWORKS, _installed


def _lazy(module: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """Import the framework's instrumentation module only when it is applied or removed."""
    import importlib

    def call(name: str) -> None:
        getattr(importlib.import_module(f"mltrack.instrumentation.{module}"), name)()

    return (lambda: call("instrument"), lambda: call("uninstrument"))


# The one table of what can be patched: framework -> (apply, remove).
PATCHERS: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
    "openai": _lazy("openai"),
    "anthropic": _lazy("anthropic"),
    "langchain": _lazy("langchain"),
    "llama_index": _lazy("llama_index"),
    "litellm": _lazy("litellm"),
    "dspy": _lazy("dspy"),
}
_applied: set[str] = set()
_lock = threading.Lock()


def _select(frameworks: tuple[str, ...]) -> list[str]:
    unknown = [f for f in frameworks if f not in FRAMEWORKS]
    if unknown:
        raise ValueError(f"unknown framework(s) {unknown}; supported: {sorted(FRAMEWORKS)}")
    names = list(frameworks) or sorted(FRAMEWORKS)
    return [n for n in names if n in PATCHERS and _installed(FRAMEWORKS[n])]


def instrument(*frameworks: str) -> list[str]:
    with _lock:
        done = []
        for name in _select(frameworks):
            if name not in _applied:
                PATCHERS[name][0]()
                _applied.add(name)
            done.append(name)
        return done


def uninstrument(*frameworks: str) -> list[str]:
    with _lock:
        done = []
        for name in _select(frameworks):
            if name in _applied:
                PATCHERS[name][1]()
                _applied.discard(name)
                done.append(name)
        return done
