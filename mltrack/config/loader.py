"""Pure loading: find the file, read file and environment, layer them with overrides into Settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ConfigError
from .keys import CONFIG_ENV, ENABLED_ENVS, FILE_NAMES, KEY_NAMES, KEYS, KEYS_BY_NAME
from .kinds import BAD, Bool, Sink, describe
from .settings import Settings, freeze

LAYERS = ("default", "file", "env", "configure")


@dataclass(frozen=True)
class Problem:
    """One finding: level is "error" or "warning"."""

    level: str
    message: str


@dataclass(frozen=True)
class Base:
    """What the file and the environment say (read once per load)."""

    path: str | None = None
    found_by: str = "none"  # "MLTRACK_CONFIG", "search", "argument" or "none"
    file_values: Mapping[str, Any] = field(default_factory=dict)
    env_values: Mapping[str, Any] = field(default_factory=dict)
    env_names: Mapping[str, str] = field(default_factory=dict)  # key -> env var that set it
    enabled: bool = True
    enabled_source: str = "default"
    problems: tuple[Problem, ...] = ()

    @property
    def errors(self) -> list[str]:
        return [p.message for p in self.problems if p.level == "error"]


def _problems(sink: Sink) -> list[Problem]:
    return [Problem("error", m) for m in sink.errors] + [Problem("warning", m) for m in sink.warnings]


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def find_file(environ: Mapping[str, str], cwd: Path | None) -> tuple[Path | None, str, list[Problem]]:
    """The config file to use: $MLTRACK_CONFIG, else the nearest .mltrack.yml/.yaml from ``cwd`` upwards."""
    explicit = environ.get(CONFIG_ENV, "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_absolute() and cwd is not None:
            path = cwd / path
        if not _is_file(path):
            return None, CONFIG_ENV, [Problem("error", f"environment variable {CONFIG_ENV}: "
                                              f"no config file at {explicit!r}")]
        return path, CONFIG_ENV, []
    if cwd is None:
        return None, "none", []
    for folder in (cwd, *cwd.parents):
        found = [folder / name for name in FILE_NAMES if _is_file(folder / name)]
        if found:
            problems = []
            if len(found) > 1:
                problems.append(Problem("warning", f"{found[1]}: ignored, {found[0].name} in the same folder is used"))
            return found[0], "search", problems
    return None, "none", []


def parse_document(data: Any, where: str, strict_unknown: bool = False) -> tuple[dict[str, Any], list[Problem]]:
    """Validate a top-level mapping of keys (from a file, or configure() when strict)."""
    sink = Sink(where, strict_unknown=strict_unknown)
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [Problem("error", f"{where}: expects a mapping of keys at the top level (key: value lines), "
                                     f"got {describe(data)}")]
    values: dict[str, Any] = {}
    for name, raw in data.items():
        key = KEYS_BY_NAME.get(name) if isinstance(name, str) else None
        if key is None:
            if name == "enabled":
                message = (f"{where}: 'enabled' is not a config key; set {ENABLED_ENVS[0]}=false "
                           "in the environment to turn tracking off")
                (sink.errors if strict_unknown else sink.warnings).append(message)
            else:
                sink.unknown("", str(name), KEY_NAMES)
            continue
        checked = key.kind.check(raw, name, sink)
        if checked is not BAD:
            values[name] = checked
    return values, _problems(sink)


def read_file(path: Path) -> tuple[dict[str, Any], list[Problem]]:
    """Read and validate one YAML config file."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [Problem("error", f"{where}: cannot be read ({exc})")]
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = "; ".join(filter(None, (exc.context, exc.problem)))
        return {}, [Problem("error", f"{where}: not valid YAML{at}: {what}")]
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        return {}, [Problem("error", f"{where}: not valid YAML: {exc}")]
    return parse_document(data, where)


def read_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str], list[Problem]]:
    """Values of keys set through their env vars (an empty variable counts as unset)."""
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    problems: list[Problem] = []
    for key in KEYS:
        if key.env is None:
            continue
        text = environ.get(key.env)
        if text is None or text.strip() == "":
            continue
        sink = Sink(f"environment variable {key.env}")
        try:
            parsed = key.kind.from_env(text)
        except ValueError as exc:
            sink.bad(key.name, str(exc), text)
        else:
            checked = key.kind.check(parsed, key.name, sink)
            if checked is not BAD:
                values[key.name] = checked
                names[key.name] = key.env
        problems += _problems(sink)
    return values, names, problems


def read_enabled(environ: Mapping[str, str]) -> tuple[bool, str, list[Problem]]:
    """The master switch: False when MLTRACK_ENABLED or MLFLOW_ENABLED is false."""
    enabled, source, problems = True, "default", []
    for var in ENABLED_ENVS:
        text = environ.get(var)
        if text is None or text.strip() == "":
            continue
        try:
            on = Bool().from_env(text)
        except ValueError as exc:
            problems.append(Problem("error", f"environment variable {var}: expects {exc}, got {describe(text)}"))
            continue
        if not on and enabled:
            enabled, source = False, f"env {var}"
        elif on and source == "default":
            source = f"env {var}"
    return enabled, source, problems


def read_base(environ: Mapping[str, str], cwd: Path | None, path: str | Path | None = None) -> Base:
    """Everything below configure(): the file (``path`` or discovered) and the environment."""
    if path is not None:
        file_path: Path | None = Path(path).expanduser()
        found_by = "argument"
        problems = [] if _is_file(file_path) else [Problem("error", f"{path}: no such config file")]
        if problems:
            file_path = None
    else:
        file_path, found_by, problems = find_file(environ, cwd)
    file_values: dict[str, Any] = {}
    if file_path is not None:
        file_values, file_problems = read_file(file_path)
        problems += file_problems
    env_values, env_names, env_problems = read_env(environ)
    enabled, enabled_source, enabled_problems = read_enabled(environ)
    return Base(
        path=str(file_path) if file_path is not None else None,
        found_by=found_by,
        file_values=file_values,
        env_values=env_values,
        env_names=env_names,
        enabled=enabled,
        enabled_source=enabled_source,
        problems=tuple(problems + env_problems + enabled_problems),
    )


def validate_overrides(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check configure() keyword arguments; any problem (an unknown key too) raises ConfigError."""
    values, problems = parse_document(dict(settings), "configure()", strict_unknown=True)
    errors = [p.message for p in problems if p.level == "error"]
    if errors:
        raise ConfigError("\n".join(errors))
    return values


def merge_overrides(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Later configure() calls win; mapping keys merge entry by entry."""
    merged = dict(old)
    for name, value in new.items():
        if KEYS_BY_NAME[name].kind.merge and name in merged:
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    return merged


def resolve(base: Base, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Effective value and source of every key: defaults < file < env < configure (mappings merge by entry)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    layers = (("file", base.file_values), ("env", base.env_values), ("configure", overrides))
    for key in KEYS:
        value: Any = dict(key.default) if key.kind.merge else key.default
        used: list[str] = []
        for layer, layer_values in layers:
            if key.name not in layer_values:
                continue
            used.append(layer)
            value = {**value, **layer_values[key.name]} if key.kind.merge else layer_values[key.name]
        values[key.name] = value
        sources[key.name] = ("+".join(used) if key.kind.merge else used[-1]) if used else "default"
    return values, sources


def build_settings(base: Base, overrides: Mapping[str, Any]) -> Settings:
    """Frozen Settings from the base layers and configure() overrides."""
    values, _ = resolve(base, overrides)
    return Settings(**{name: freeze(value) for name, value in values.items()},
                    enabled=base.enabled, source=base.path)

