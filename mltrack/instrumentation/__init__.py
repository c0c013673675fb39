"""Zero-code instrumentation of installed LLM client libraries (patched with wrapt, restored exactly)."""

from __future__ import annotations

import importlib.util

# Framework name -> the module whose presence means it is installed (checked without importing it).
FRAMEWORKS: dict[str, str] = {
    "anthropic": "anthropic",
    "dspy": "dspy",
    "langchain": "langchain_core",
    "litellm": "litellm",
    "llama_index": "llama_index.core",
    "openai": "openai",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def detect_frameworks() -> list[str]:
    """Names of the supported LLM frameworks installed here, sorted (nothing is imported to find out)."""
    return sorted(name for name, module in FRAMEWORKS.items() if _installed(module))


def instrument(*frameworks: str) -> list[str]:
    """Patch the named installed client libraries (all installed ones when none are named); idempotent."""
    from mltrack.instrumentation._manager import instrument as _instrument

    return _instrument(*frameworks)


def uninstrument(*frameworks: str) -> list[str]:
    """Restore exactly what :func:`instrument` patched (all when none are named)."""
    from mltrack.instrumentation._manager import uninstrument as _uninstrument

    return _uninstrument(*frameworks)


def auto_instrument() -> None:
    """``auto_instrument: true``: patch each supported SDK when it is imported (importing nothing now)."""
    import wrapt

    from mltrack.instrumentation._manager import PATCHERS

    for name, module in FRAMEWORKS.items():
        if name in PATCHERS and _installed(module):
            wrapt.register_post_import_hook(lambda _module, name=name: instrument(name), module.partition(".")[0])
