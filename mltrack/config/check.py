"""`mltrack config check`: which file is used, each key's value and source, and every problem found."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from .keys import KEYS
from .loader import Problem, read_base, resolve
from .runtime import current_overrides, cwd_or_none

_FOUND_BY = {
    "MLTRACK_CONFIG": "from MLTRACK_CONFIG",
    "search": "nearest .mltrack.yml from the working directory",
    "argument": "given explicitly",
    "none": "no config file found; defaults apply",
}


@dataclass(frozen=True)
class CheckEntry:
    """One key: effective value, where it came from (default/file/env/configure, mappings joined by +), its env var."""

    key: str
    value: Any
    source: str
    env: str | None


@dataclass(frozen=True)
class CheckResult:
    """The outcome of check(): data for the CLI to print."""

    path: str | None
    found_by: str
    enabled: bool
    enabled_source: str
    entries: tuple[CheckEntry, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[str]:
        return [p.message for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[str]:
        return [p.message for p in self.problems if p.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        """0 when there are no errors (warnings allowed), else 1."""
        return 0 if self.ok else 1

    def entry(self, key: str) -> CheckEntry:
        """The entry of one key."""
        return next(e for e in self.entries if e.key == key)


def check(path: str | None = None) -> CheckResult:
    """Load the config (``path``, or the discovered file) plus env and configure() overrides, collecting problems."""
    base = read_base(os.environ, cwd_or_none(), path)
    values, sources = resolve(base, current_overrides())
    entries = tuple(CheckEntry(key.name, values[key.name], sources[key.name], key.env) for key in KEYS)
    return CheckResult(base.path, base.found_by, base.enabled, base.enabled_source, entries, base.problems)


def _show(value: Any) -> str:
    if value is None or isinstance(value, (bool, dict, list)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()
    return str(value)


def format_check(result: CheckResult) -> str:
    """Human-readable report of a CheckResult."""
    lines = [f"config file: {result.path or '(none)'} ({_FOUND_BY.get(result.found_by, result.found_by)})",
             f"tracking enabled: {'yes' if result.enabled else 'no'} ({result.enabled_source})", ""]
    width = max(len(e.key) for e in result.entries)
    shown = [_show(e.value) for e in result.entries]
    value_width = min(max(len(s) for s in shown), 40)
    lines.append(f"{'key'.ljust(width)}  {'value'.ljust(value_width)}  source")
    for entry, text in zip(result.entries, shown):
        lines.append(f"{entry.key.ljust(width)}  {text.ljust(value_width)}  {entry.source}")
    if result.problems:
        lines.append("")
        lines.append("problems:")
        lines += [f"  {p.level}: {line}" if i == 0 else f"    {line}"
                  for p in result.problems for i, line in enumerate(p.message.splitlines())]
    lines.append("")
    n_err, n_warn = len(result.errors), len(result.warnings)
    lines.append("OK" if not result.problems else
                 f"{n_err} error{'s' if n_err != 1 else ''}, {n_warn} warning{'s' if n_warn != 1 else ''}")
    return "\n".join(lines)
