"""mltrack configuration: `.mltrack.yml`, environment variables and configure(), driven by one key table.

Precedence, lowest to highest: defaults < file < environment < configure(). See docs/configuration.md.
"""

from __future__ import annotations

from ..errors import ConfigError
from .check import CheckEntry, CheckResult, check, format_check
from .example import render_example, render_reference
from .keys import KEYS, KEYS_BY_NAME, Key
from .loader import Problem
from .runtime import configure, get_config, get_settings, reload, reset
from .settings import Settings

__all__ = [
    "CheckEntry",
    "CheckResult",
    "ConfigError",
    "KEYS",
    "KEYS_BY_NAME",
    "Key",
    "Problem",
    "Settings",
    "check",
    "configure",
    "format_check",
    "get_config",
    "get_settings",
    "reload",
    "render_example",
    "render_reference",
    "reset",
]
