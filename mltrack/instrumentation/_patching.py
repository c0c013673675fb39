"""Apply and remove wrapt patches by (module, "Class.method"), remembering exactly what was there."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable

import wrapt

_MISSING = object()


@dataclass(frozen=True)
class Patch:
    """Wrap ``module.Class.method`` with ``wrapper(wrapped, instance, args, kwargs)``."""

    module: str
    attribute: str
    wrapper: Callable[[Any, Any, tuple, dict], Any]


# (module, attribute) -> the attribute as it was in the owner's own __dict__ (or _MISSING when inherited)
_originals: dict[tuple[str, str], Any] = {}


def _owner(patch: Patch) -> tuple[Any, str] | None:
    try:
        obj: Any = importlib.import_module(patch.module)
    except ImportError:
        return None
    *path, name = patch.attribute.split(".")
    for part in path:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return (obj, name) if hasattr(obj, name) else None


# patches whose module is not imported yet: applied by a wrapt post-import hook when (if ever) it is, so that
# instrumenting never imports parts of an SDK the application does not use (openai's Responses API alone is 4 MiB)
_pending: set[tuple[str, str]] = set()


def apply(patches: list[Patch]) -> None:
    for patch in patches:
        key = (patch.module, patch.attribute)
        if key in _originals or key in _pending:
            continue
        if patch.module not in sys.modules:
            _pending.add(key)
            wrapt.register_post_import_hook(lambda _module, patch=patch: _apply_pending(patch), patch.module)
            continue
        _apply_now(patch)


def _apply_pending(patch: Patch) -> None:
    key = (patch.module, patch.attribute)
    if key in _pending:  # not removed meanwhile
        _pending.discard(key)
        try:
            _apply_now(patch)
        except Exception as exc:  # noqa: BLE001 - runs inside the application's import statement
            from mltrack import _safety

            _safety.report_internal_error(f"instrumenting {patch.module}", exc)


def _apply_now(patch: Patch) -> None:
    key = (patch.module, patch.attribute)
    if key in _originals:
        return
    found = _owner(patch)
    if found is None:
        return  # this SDK version has no such method
    owner, name = found
    _originals[key] = vars(owner).get(name, _MISSING)
    wrapt.wrap_function_wrapper(owner, name, patch.wrapper)


def remove(patches: list[Patch]) -> None:
    for patch in patches:
        key = (patch.module, patch.attribute)
        _pending.discard(key)
        if key not in _originals:
            continue
        original = _originals.pop(key)
        found = _owner(patch)
        if found is None:
            continue
        owner, name = found
        if original is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, original)
