"""Value kinds of the config table: how a value is checked, parsed from an env var and described."""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
NULL_WORDS = ("none", "null")


class _Bad:
    """Marker returned by a check that found (and reported) a problem."""

    def __repr__(self) -> str:
        return "<invalid>"


BAD: Any = _Bad()


def describe(value: Any) -> str:
    """Show a found value as ``repr (type)``, shortened."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def closest(name: str, options: Iterable[str]) -> str:
    """The option most similar to ``name`` (difflib ratio)."""
    return max(options, key=lambda option: difflib.SequenceMatcher(None, name.lower(), option.lower()).ratio())


class Sink:
    """Collects the errors and warnings found while checking values from one source."""

    def __init__(self, where: str, strict_unknown: bool = False):
        self.where = where
        self.strict_unknown = strict_unknown
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def bad(self, dotted: str, expected: str, value: Any) -> Any:
        """Record a wrong value; returns BAD."""
        self.errors.append(f"{self.where}: key '{dotted}' expects {expected}, got {describe(value)}")
        return BAD

    def missing(self, dotted: str, expected: str) -> None:
        """Record a required nested key that is absent."""
        self.errors.append(f"{self.where}: key '{dotted}' is missing; it expects {expected}")

    def unknown(self, parent: str, name: str, options: Iterable[str]) -> None:
        """Record an unknown key under ``parent`` with the closest valid one (an error when strict, else a warning)."""
        prefix = f"{parent}." if parent else ""
        message = f"{self.where}: unknown key '{prefix}{name}'; did you mean '{prefix}{closest(name, options)}'?"
        (self.errors if self.strict_unknown else self.warnings).append(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A number (not a bool) that converts to a finite float."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _mapping(value: Any, dotted: str, sink: Sink, expected: str) -> dict[Any, Any] | Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        return sink.bad(dotted, expected, value)
    return value


@dataclass(frozen=True)
class Bool:
    """true or false."""

    merge = False

    @property
    def label(self) -> str:
        return "bool"

    @property
    def expected(self) -> str:
        return "true or false"

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        if isinstance(value, bool):
            return value
        return sink.bad(dotted, self.expected, value)

    def from_env(self, text: str) -> bool:
        word = text.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError("one of true/false/1/0/yes/no/on/off")


@dataclass(frozen=True)
class Str:
    """A string, or null; an empty string means null."""

    nullable: bool = True
    path: bool = False  # expand a leading ~
    merge = False

    @property
    def label(self) -> str:
        return ("path" if self.path else "string") + (" or null" if self.nullable else "")

    @property
    def expected(self) -> str:
        return "a path (string)" if self.path else "a string"

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        if value is None and self.nullable:
            return None
        if not isinstance(value, str):
            return sink.bad(dotted, self.expected, value)
        if value.strip() == "" and self.nullable:
            return None
        return os.path.expanduser(value) if self.path else value

    def from_env(self, text: str) -> str:
        return text


@dataclass(frozen=True)
class Int:
    """An integer above ``minimum`` (integral floats are accepted), or null when nullable."""

    minimum: int = 0
    nullable: bool = False
    maximum: int | None = None  # inclusive
    merge = False

    @property
    def label(self) -> str:
        return f"int > {self.minimum}{self._top}" + (" or null" if self.nullable else "")

    @property
    def expected(self) -> str:
        return f"an integer > {self.minimum}{self._top}"

    @property
    def _top(self) -> str:
        return "" if self.maximum is None else f" and <= {self.maximum}"

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        if value is None and self.nullable:
            return None
        if not _is_number(value):
            return sink.bad(dotted, self.expected, value)
        if isinstance(value, float):
            if not value.is_integer():
                return sink.bad(dotted, self.expected, value)
            value = int(value)
        if value <= self.minimum or (self.maximum is not None and value > self.maximum):
            return sink.bad(dotted, self.expected, value)
        return value

    def from_env(self, text: str) -> int | None:
        word = text.strip()
        if self.nullable and word.lower() in NULL_WORDS:
            return None
        try:
            return int(word)
        except ValueError:
            raise ValueError(self.expected) from None


@dataclass(frozen=True)
class Number:
    """A finite number >= (or >) ``minimum``, or null when nullable; ``as_given`` keeps it (and numeric strings) unchanged."""

    minimum: float = 0.0
    exclusive: bool = False
    nullable: bool = False
    as_given: bool = False
    merge = False

    @property
    def label(self) -> str:
        return f"number {self._bound}" + (" or null" if self.nullable else "")

    @property
    def expected(self) -> str:
        return f"a number {self._bound}"

    @property
    def _bound(self) -> str:
        return f"{'>' if self.exclusive else '>='} {self.minimum:g}"

    def _in_range(self, number: float | Decimal) -> bool:
        return number > self.minimum if self.exclusive else number >= self.minimum

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        if value is None and self.nullable:
            return None
        if isinstance(value, str) and self.as_given:
            try:
                exact = Decimal(value.strip())
            except InvalidOperation:
                return sink.bad(dotted, self.expected, value)
            if not exact.is_finite() or not self._in_range(exact):
                return sink.bad(dotted, self.expected, value)
            return value
        if not _finite(value) or not self._in_range(value):
            return sink.bad(dotted, self.expected, value)
        return value if self.as_given else float(value)

    def from_env(self, text: str) -> float | None:
        word = text.strip()
        if self.nullable and word.lower() in NULL_WORDS:
            return None
        try:
            return float(word)
        except ValueError:
            raise ValueError(self.expected) from None


PROVIDER_FIELDS = ("default_model", "deployments")


@dataclass(frozen=True)
class Providers:
    """Provider name -> {default_model: model name, deployments: {deployment: model}} (deployments: Azure)."""

    merge = True

    @property
    def label(self) -> str:
        return "mapping: provider -> {default_model: string, deployments?: {deployment: model}}"

    @property
    def expected(self) -> str:
        return "a mapping of provider name to {default_model: ...}"

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        mapping = _mapping(value, dotted, sink, self.expected)
        if mapping is BAD:
            return BAD
        out: dict[str, dict[str, str]] = {}
        ok = True
        for name, entry in mapping.items():
            if not isinstance(name, str) or not name:
                sink.bad(dotted, "provider names (strings) as keys", name)
                ok = False
                continue
            here = f"{dotted}.{name}"
            if not isinstance(entry, dict):
                sink.bad(here, "a mapping like {default_model: ...}", entry)
                ok = False
                continue
            for field in entry:
                if field not in PROVIDER_FIELDS:
                    sink.unknown(here, str(field), PROVIDER_FIELDS)
            checked: dict[str, Any] = {}
            if "deployments" in entry:
                deployments = entry["deployments"]
                if not isinstance(deployments, dict) or not all(
                        isinstance(key, str) and key.strip() and isinstance(value, str) and value.strip()
                        for key, value in deployments.items()):
                    sink.bad(f"{here}.deployments", "a mapping of deployment name to model name, like "
                             "{my-deployment: gpt-4o}", deployments)
                    ok = False
                    continue
                checked["deployments"] = {key.strip(): value.strip() for key, value in deployments.items()}
            if "default_model" not in entry:
                if checked:
                    out[name] = checked
                    continue
                sink.missing(f"{here}.default_model", "a model name (string)")
                ok = False
                continue
            model = entry["default_model"]
            if not isinstance(model, str) or not model.strip():
                sink.bad(f"{here}.default_model", "a model name (string)", model)
                ok = False
                continue
            out[name] = {"default_model": model, **checked}
        return out if ok else BAD

    def from_env(self, text: str) -> Any:
        raise ValueError("no environment variable")


PRICE_FIELDS = ("input", "output", "cached_input", "cache_write")
PRICE_REQUIRED = ("input", "output")
_PRICE = Number(as_given=True)


@dataclass(frozen=True)
class Pricing:
    """Model name -> {input, output, cached_input?, cache_write?}, USD per 1M tokens, kept as given."""

    merge = True

    @property
    def label(self) -> str:
        return "mapping: model -> {input, output, cached_input?, cache_write?} (USD per 1M tokens, >= 0)"

    @property
    def expected(self) -> str:
        return "a mapping of model name to {input: ..., output: ...}"

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        mapping = _mapping(value, dotted, sink, self.expected)
        if mapping is BAD:
            return BAD
        out: dict[str, dict[str, Any]] = {}
        ok = True
        for model, entry in mapping.items():
            if not isinstance(model, str) or not model:
                sink.bad(dotted, "model names (strings) as keys", model)
                ok = False
                continue
            here = f"{dotted}.{model}"
            if not isinstance(entry, dict):
                sink.bad(here, "a mapping like {input: ..., output: ...} (USD per 1M tokens)", entry)
                ok = False
                continue
            prices: dict[str, Any] = {}
            for field, price in entry.items():
                if not isinstance(field, str) or field not in PRICE_FIELDS:
                    sink.unknown(here, str(field), PRICE_FIELDS)
                    continue
                if price is None and field not in PRICE_REQUIRED:
                    continue
                checked = _PRICE.check(price, f"{here}.{field}", sink)
                if checked is BAD:
                    ok = False
                else:
                    prices[field] = checked
            for field in PRICE_REQUIRED:
                if field not in entry:
                    sink.missing(f"{here}.{field}", f"{_PRICE.expected} (USD per 1M tokens)")
                    ok = False
            out[model] = prices
        return out if ok else BAD

    def from_env(self, text: str) -> Any:
        raise ValueError("no environment variable")


def _tag_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


@dataclass(frozen=True)
class Tags:
    """Tag name -> value, both strings; numbers and bools are stringified."""

    merge = True

    @property
    def label(self) -> str:
        return "mapping: string -> string"

    @property
    def expected(self) -> str:
        return "a mapping of tag name to value"

    def check(self, value: Any, dotted: str, sink: Sink) -> Any:
        mapping = _mapping(value, dotted, sink, self.expected)
        if mapping is BAD:
            return BAD
        out: dict[str, str] = {}
        ok = True
        for name, tag in mapping.items():
            key = _tag_text(name)
            if key is None:
                sink.bad(dotted, "tag names (strings) as keys", name)
                ok = False
                continue
            text = _tag_text(tag)
            if text is None:
                sink.bad(f"{dotted}.{key}", "a string, number or bool", tag)
                ok = False
                continue
            out[key] = text
        return out if ok else BAD

    def from_env(self, text: str) -> Any:
        raise ValueError("no environment variable")


Kind = Bool | Str | Int | Number | Providers | Pricing | Tags
