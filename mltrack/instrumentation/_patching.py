"""Apply and remove wrapt patches by (module, "Class.method"), remembering exactly what was there."""

from __future__ import annotations

import importlib
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


def apply(patches: list[Patch]) -> None:
    for patch in patches:
        key = (patch.module, patch.attribute)
        if key in _originals:
            continue
        found = _owner(patch)
        if found is None:
            continue  # this SDK version has no such method
        owner, name = found
        _originals[key] = vars(owner).get(name, _MISSING)
        wrapt.wrap_function_wrapper(owner, name, patch.wrapper)


def remove(patches: list[Patch]) -> None:
    for patch in patches:
        key = (patch.module, patch.attribute)
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
