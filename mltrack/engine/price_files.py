"""The price files in ``pricing/``: YAML read strictly (duplicate keys, exact decimals), every field validated.

A file that breaks the schema raises :class:`PricingDataError` naming the file, the model, the field and what
to fix; user overrides from ``.mltrack.yml`` / ``configure(pricing=...)`` go through the same checks.
"""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from mltrack.engine.prices import (
    PRICE_FIELDS,
    RATE_FIELDS,
    UNIT,
    ModelPrice,
    PricePeriod,
    PriceTier,
    PricingDataError,
    Rates,
)
from mltrack.engine.prices import norm as _norm

_FILE_FIELDS = ("provider", "source", "as_of", "unit", "prefixes", "origin", "models")
_FILE_REQUIRED = ("provider", "source", "as_of", "unit", "models")
_MODEL_FIELDS = (*RATE_FIELDS, "aliases", "tiers", "service_tiers", "history", "notes", "source", "as_of", "origin")
_TIER_FIELDS = ("above_prompt_tokens", *RATE_FIELDS)
_PERIOD_FIELDS = ("until", *RATE_FIELDS, "tiers")
_SERVICE_TIER_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# --- YAML reading -------------------------------------------------------------------------------------------


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key = key
        self.line = line


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml parses ~5x faster
    """Safe YAML that reads floats as exact Decimals and refuses duplicate keys (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str):
                key = key.strip()
            try:
                duplicate = key in seen
            except TypeError:
                continue
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    try:
        value = Decimal(str(text).replace("_", ""))
    except InvalidOperation:
        return text
    return value if value.is_finite() else text


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


# --- validation ---------------------------------------------------------------------------------------------


class _Where:
    """Builds error messages that name the file, the model and the field."""

    def __init__(self, file: str, model: str | None = None, field: str | None = None) -> None:
        self.file, self.model, self.field = file, model, field

    def at(self, *, model: str | None = None, field: str | None = None) -> _Where:
        return _Where(self.file, model if model is not None else self.model, field)

    def error(self, problem: str) -> PricingDataError:
        parts = [self.file]
        if self.model is not None:
            parts.append(f"model {self.model!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return PricingDataError(f"{': '.join(parts)}: {problem}")


def _rate(value: Any, where: _Where, *, strings: bool) -> Decimal:
    """A non-negative finite rate as an exact Decimal (floats via ``str`` so 0.075 stays 0.075)."""
    if isinstance(value, bool) or value is None:
        raise where.error(f"must be a number of USD per 1M tokens, got {value!r}")
    if isinstance(value, str) and not strings:
        raise where.error(f"must be a bare number, got the string {value!r}; write it without quotes")
    if isinstance(value, (int, float, Decimal, str)):
        try:
            rate = Decimal(str(value).strip())
        except InvalidOperation:
            raise where.error(f"must be a number of USD per 1M tokens, got {value!r}") from None
    else:
        raise where.error(f"must be a number of USD per 1M tokens, got {type(value).__name__} {value!r}")
    if not rate.is_finite():
        raise where.error(f"must be a finite number, got {value!r}")
    if rate < 0:
        raise where.error(f"must not be negative, got {value!r}; prices are USD per 1M tokens, >= 0")
    return rate


def _optional_rate(entry: Mapping[str, Any], field: str, where: _Where, *, strings: bool) -> Decimal | None:
    value = entry.get(field)
    return None if value is None else _rate(value, where.at(field=field), strings=strings)


def _check_fields(entry: Mapping[Any, Any], allowed: tuple[str, ...], where: _Where, what: str) -> None:
    for key in entry:
        if key not in allowed:
            raise where.at(field=str(key)).error(f"unknown field in {what}; allowed fields: {', '.join(allowed)}")


def _require(entry: Mapping[str, Any], fields: Iterable[str], where: _Where, what: str) -> None:
    for field in fields:
        if entry.get(field) is None:
            raise where.at(field=field).error(f"missing; every {what} needs {field!r}")


def _list_of_mappings(value: Any, where: _Where, field: str, entry_shape: str, example: str,
                      allowed: tuple[str, ...], what: str) -> Iterator[tuple[int, Mapping[str, Any], _Where]]:
    """The entries of a non-empty list of mappings (``tiers``, ``history``), each checked for unknown fields."""
    if not isinstance(value, list) or not value:
        raise where.at(field=field).error(f"must be a non-empty list of {entry_shape} entries")
    for index, entry in enumerate(value):
        item = where.at(field=f"{field}[{index}]")
        if not isinstance(entry, dict):
            raise item.error(f"must be a mapping like {example}")
        _check_fields(entry, allowed, item, what)
        yield index, entry, item


def _tiers(value: Any, base: Mapping[str, Decimal | None], where: _Where) -> tuple[PriceTier, ...]:
    tiers: list[PriceTier] = []
    for index, entry, item in _list_of_mappings(value, where, "tiers", "{above_prompt_tokens, input, output, ...}",
                                                "{above_prompt_tokens: 128000, input: ..., output: ...}",
                                                _TIER_FIELDS, "a tier"):
        threshold = entry.get("above_prompt_tokens")
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold <= 0:
            raise item.error(f"'above_prompt_tokens' must be a positive whole number of tokens, got {threshold!r}")
        _require(entry, ("input", "output"), item, "tier")
        tier = PriceTier(
            above_prompt_tokens=threshold,
            input=_rate(entry["input"], item, strings=False),
            output=_rate(entry["output"], item, strings=False),
            cached_input=_optional_rate(entry, "cached_input", item, strings=False),
            cache_write=_optional_rate(entry, "cache_write", item, strings=False),
            cache_write_1h=_optional_rate(entry, "cache_write_1h", item, strings=False),
        )
        for field in ("cached_input", "cache_write"):
            if base[field] is not None and getattr(tier, field) is None:
                raise item.error(f"lacks {field!r} while the model has one; add the tier's {field} rate")
        if tiers and threshold <= tiers[-1].above_prompt_tokens:
            raise item.error("tiers must be listed with strictly increasing 'above_prompt_tokens'")
        tiers.append(tier)
    return tuple(tiers)


def _names(value: Any, where: _Where) -> tuple[str, ...]:
    here = where.at(field="aliases")
    if not isinstance(value, list) or not all(isinstance(alias, str) and alias.strip() for alias in value):
        raise here.error("must be a list of non-empty model names")
    return tuple(alias.strip() for alias in value)


def _as_of(value: Any, where: _Where, what: str = "the date the prices were checked") -> str:
    here = where if where.field else where.at(field="as_of")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise here.error(f"must be {what}, as \"YYYY-MM-DD\", got {value!r}")
    try:
        _dt.date.fromisoformat(value)
    except ValueError:
        raise here.error(f"is not a real date: {value!r}; write \"YYYY-MM-DD\"") from None
    return value


def _model(name: Any, entry: Any, provider: str, source: str, as_of: str, origin: str, where: _Where) -> ModelPrice:
    if not isinstance(name, str) or not name:
        raise where.error(f"model names must be non-empty strings, got {name!r}; quote the name")
    here = where.at(model=name)
    if not isinstance(entry, dict):
        raise here.error("must be a mapping like {input: 2.50, output: 10.00}")
    _check_fields(entry, _MODEL_FIELDS, here, "a model")
    _require(entry, ("input", "output"), here, "model")
    rates = {
        "input": _rate(entry["input"], here.at(field="input"), strings=False),
        "output": _rate(entry["output"], here.at(field="output"), strings=False),
        "cached_input": _optional_rate(entry, "cached_input", here, strings=False),
        "cache_write": _optional_rate(entry, "cache_write", here, strings=False),
        "cache_write_1h": _optional_rate(entry, "cache_write_1h", here, strings=False),
    }
    texts = {}
    for field in ("notes", "origin"):
        value = entry.get(field, origin if field == "origin" else "")
        if not isinstance(value, str):
            raise here.at(field=field).error("must be text")
        texts[field] = value.strip()
    if "source" in entry:
        source = _source(entry["source"], here)
    if "as_of" in entry:
        as_of = _as_of(entry["as_of"], here)
    return ModelPrice(
        model=name,
        provider=provider,
        tiers=_tiers(entry["tiers"], rates, here) if "tiers" in entry else (),
        source=source,
        as_of=as_of,
        aliases=_names(entry["aliases"], here) if "aliases" in entry else (),
        service_tiers=_service_tiers(entry["service_tiers"], here) if "service_tiers" in entry else (),
        history=_history(entry["history"], rates, here) if "history" in entry else (),
        **texts,
        **rates,
    )


def _partial_rates(entry: Mapping[str, Any], where: _Where) -> Rates:
    return Rates(**{field: _optional_rate(entry, field, where, strings=False) for field in RATE_FIELDS})


def _service_tiers(value: Any, where: _Where) -> tuple[tuple[str, Rates], ...]:
    """``{flex: {input: ..., output: ...}, priority: {...}, batch: {...}}``: rates replacing the model's for calls
    whose response reports that ``service_tier``; rates left out stay the model's."""
    here = where.at(field="service_tiers")
    if not isinstance(value, dict) or not value:
        raise here.error("must be a mapping of service tier name to rates, like {flex: {input: 1.25, output: 5}}")
    tiers = []
    for name, entry in value.items():
        item = where.at(field=f"service_tiers.{name}")
        if not isinstance(name, str) or not _SERVICE_TIER_RE.match(name):
            raise here.error(f"tier names must be lower-case words like 'flex', got {name!r}")
        if not isinstance(entry, dict) or not entry:
            raise item.error("must be a mapping of rates like {input: 1.25, output: 5}")
        _check_fields(entry, RATE_FIELDS, item, f"service tier {name!r}")
        tiers.append((name, _partial_rates(entry, item)))
    return tuple(tiers)


def _history(value: Any, base: Mapping[str, Decimal | None], where: _Where) -> tuple[PricePeriod, ...]:
    """``[{until: "2025-08-01", input: ..., output: ...}, ...]``: the rates of calls made before ``until`` (UTC),
    oldest first; the model's own rates apply from the last ``until`` on."""
    periods: list[PricePeriod] = []
    for index, entry, item in _list_of_mappings(value, where, "history",
                                                "{until: \"YYYY-MM-DD\", input: ..., output: ...}",
                                                "{until: \"2025-08-01\", input: 3, output: 15}", _PERIOD_FIELDS,
                                                "a price period"):
        if entry.get("until") is None:
            raise where.at(field=f"history[{index}].until").error("missing; every price period needs 'until'")
        _require(entry, ("input", "output"), item, "price period")
        until = _as_of(entry["until"], where.at(field=f"history[{index}].until"),
                       "the first day of the next prices (UTC)")
        if periods and until <= periods[-1].until:
            raise item.error("periods must be listed oldest first, with strictly increasing 'until' dates")
        rates = {field: _optional_rate(entry, field, item, strings=False) for field in RATE_FIELDS}
        tiers = _tiers(entry["tiers"], rates, item) if "tiers" in entry else ()
        periods.append(PricePeriod(until=until, rates=Rates(**rates), tiers=tiers))
    return tuple(periods)


def _source(value: Any, where: _Where) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise where.at(field="source").error(f"must be the URL the prices were taken from, got {value!r}")
    return value


def _read(path: Path) -> Mapping[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except _DuplicateKey as exc:
        raise PricingDataError(f"{path.name}: duplicate key {exc.key!r} at line {exc.line}; "
                               "each model (and each field) may appear once, remove or rename one") from None
    except yaml.YAMLError as exc:
        raise PricingDataError(f"{path.name}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(data, dict):
        raise PricingDataError(f"{path.name}: must be a mapping with {', '.join(_FILE_REQUIRED)}")
    return data


def _parse_file(path: Path) -> tuple[str, tuple[ModelPrice, ...], tuple[str, ...]]:
    data = _read(path)
    where = _Where(path.name)
    _check_fields(data, _FILE_FIELDS, where, "a price file")
    _require(data, _FILE_REQUIRED, where, "price file")
    provider = data["provider"]
    if not isinstance(provider, str) or not _PROVIDER_RE.match(provider):
        raise where.at(field="provider").error(f"must be a lower-case provider name like 'openai', got {provider!r}")
    source = _source(data["source"], where)
    as_of = _as_of(data["as_of"], where)
    if data["unit"] != UNIT:
        raise where.at(field="unit").error(f"must be {UNIT!r}, got {data['unit']!r}; convert the prices")
    prefixes = data.get("prefixes") or []
    if not isinstance(prefixes, list) or not all(
        isinstance(prefix, str) and len(prefix) > 1 and prefix.endswith(("/", ".")) for prefix in prefixes
    ):
        raise where.at(field="prefixes").error("must be a list of prefixes ending in '/' or '.', like [openai/]")
    models = data["models"]
    if not isinstance(models, dict) or not models:
        raise where.at(field="models").error("must be a non-empty mapping of model name to prices")
    origin = data.get("origin") or ""
    if not isinstance(origin, str):
        raise where.at(field="origin").error("must be text naming where generated prices came from")
    prices = tuple(_model(name, entry, provider, source, as_of, origin, where) for name, entry in models.items())
    return provider, prices, tuple(_norm(prefix) for prefix in prefixes)


def load_prices(directory: Path | None) -> tuple[tuple[ModelPrice, ...], tuple[str, ...]]:
    """Every model of every ``*.yml`` in ``directory`` (default: :func:`pricing_dir`), and the provider prefixes
    the files declare; raises :class:`PricingDataError` on the first file that breaks the schema."""
    folder = Path(directory) if directory is not None else pricing_dir()
    files = sorted(folder.glob("*.yml"))
    if not files:
        raise PricingDataError(f"{folder}: no price files (*.yml) found; add one file per provider")
    prices: list[ModelPrice] = []
    prefixes: list[str] = []
    providers: dict[str, str] = {}
    owners: dict[str, tuple[str, str]] = {}
    for path in files:
        provider, file_prices, file_prefixes = _parse_file(path)
        if provider in providers:
            raise PricingDataError(f"{path.name}: field 'provider': {provider!r} is already declared in "
                                   f"{providers[provider]}; keep one file per provider")
        providers[provider] = path.name
        for price in file_prices:
            for name in (price.model, *price.aliases):
                key = _norm(name)
                if key in owners:
                    file, model = owners[key]
                    raise PricingDataError(f"{path.name}: model {price.model!r}: name {name!r} is already used by "
                                           f"model {model!r} in {file}; each model name and alias may appear once")
                owners[key] = (path.name, price.model)
        prices.extend(file_prices)
        prefixes.extend(file_prefixes)
    return tuple(prices), tuple(dict.fromkeys(prefixes))


def has_price_files(directory: Path | None) -> bool:
    """Does ``directory`` exist and hold at least one ``*.yml``?"""
    return directory is not None and Path(directory).is_dir() and any(Path(directory).glob("*.yml"))


def pricing_dir() -> Path:
    """The shipped price folder: ``mltrack/_pricing_data`` in a wheel, else the checkout's ``pricing/``."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_pricing_data"
    return packaged if packaged.is_dir() else package.parent / "pricing"


def load_price_files(directory: Path | None = None) -> tuple[ModelPrice, ...]:
    """Every model price in ``directory`` (default: :func:`pricing_dir`), strictly validated."""
    return load_prices(directory)[0]


def parse_override(name: Any, entry: Any, index: Mapping[str, ModelPrice]) -> ModelPrice:
    """A user's price for ``name`` (USD per 1M tokens), validated like the files; keeps a known model's provider."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"pricing: model names must be non-empty strings, got {name!r}")
    where = _Where("pricing", name)
    if not isinstance(entry, Mapping):
        raise where.error("must be a mapping like {input: 1.00, output: 2.00} (USD per 1M tokens)")
    _check_fields(entry, PRICE_FIELDS, where, "a price override")
    _require(entry, ("input", "output"), where, "price override")
    existing = index.get(_norm(name))
    return ModelPrice(
        model=name.strip(),
        provider=existing.provider if existing is not None else "",
        input=_rate(entry["input"], where.at(field="input"), strings=True),
        output=_rate(entry["output"], where.at(field="output"), strings=True),
        cached_input=_optional_rate(entry, "cached_input", where, strings=True),
        cache_write=_optional_rate(entry, "cache_write", where, strings=True),
        source="user override (pricing)",
        as_of=_dt.date.today().isoformat(),
    )


