"""The process-wide settings: a cached, frozen Settings (lock-free reads) plus configure() overrides."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Mapping

from .._safety import warn_once
from ..errors import ConfigError
from .keys import KEYS
from .loader import Base, Problem, build_settings, merge_overrides, read_base, read_enabled, validate_overrides
from .settings import Settings, thaw

_lock = threading.Lock()
_settings: Settings | None = None  # published atomically; readers never lock
_base: Base | None = None
_error: str | None = None  # a failed load is cached too, so a broken file is not re-read on every call
_overrides: dict[str, Any] = {}


def cwd_or_none() -> Path | None:
    """The working directory, or None when it no longer exists."""
    try:
        return Path(os.getcwd())
    except OSError:
        return None


def emit(problems: tuple[Problem, ...]) -> None:
    """Warn (once per message) about warning problems; raise ConfigError listing every error."""
    for problem in problems:
        if problem.level == "warning":
            warn_once(f"mltrack.config:{problem.message}", problem.message, UserWarning, stacklevel=5)
    errors = [p.message for p in problems if p.level == "error"]
    if errors:
        raise ConfigError("\n".join(errors))


def _ensure_base() -> Base:
    """Load file and environment once (caller holds the lock)."""
    global _base, _error
    if _error is not None:
        raise ConfigError(_error)
    if _base is None:
        base = _switched_off(os.environ) or read_base(os.environ, cwd_or_none())
        try:
            emit(base.problems)
        except ConfigError as exc:
            _error = str(exc)
            raise
        _base = base
    return _base


def _switched_off(environ: Mapping[str, str]) -> Base | None:
    """With MLTRACK_ENABLED / MLFLOW_ENABLED false: defaults only, no file searched or read (the switch wins)."""
    enabled, source, problems = read_enabled(environ)
    if enabled or problems:
        return None
    return Base(enabled=False, enabled_source=source)


def get_settings() -> Settings:
    """The effective settings; the first call loads file and env, later calls only read a variable."""
    global _settings
    settings = _settings
    if settings is not None:
        return settings
    with _lock:
        if _settings is None:
            _settings = build_settings(_ensure_base(), _overrides)
        return _settings


def configure(**settings: Any) -> Settings:
    """Validate and apply run-time overrides (they win over file and env); returns the new Settings."""
    global _settings, _overrides
    values = validate_overrides(settings)
    with _lock:
        merged = merge_overrides(_overrides, values)
        new = build_settings(_ensure_base(), merged)
        _overrides, _settings = merged, new
        return new


def get_config() -> dict[str, Any]:
    """Every key's effective value as plain data, plus ``enabled``."""
    settings = get_settings()
    config = {key.name: thaw(getattr(settings, key.name)) for key in KEYS}
    config["enabled"] = settings.enabled
    return config


def reload() -> Settings:
    """Forget the cache, re-read file and environment (configure() overrides stay); returns the Settings."""
    global _settings, _base, _error
    with _lock:
        _settings, _base, _error = None, None, None
    return get_settings()


def reset() -> None:
    """Drop configure() overrides and the cache; the next get_settings() loads afresh."""
    global _settings, _base, _error, _overrides
    with _lock:
        _settings, _base, _error, _overrides = None, None, None, {}


def current_overrides() -> Mapping[str, Any]:
    """A snapshot of the configure() overrides."""
    return dict(_overrides)

