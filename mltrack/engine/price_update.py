"""``mltrack pricing update``: translate genai-prices data into mltrack's price files, and the diff it makes.

Runs only when a user (or a maintainer) asks for it: tracking itself never imports genai-prices. The source is
the installed ``genai-prices`` package, or a genai-prices ``data.json`` the user names. One file is written per
provider; hand-checked prices (``pricing/*.yml``) and ``pricing:`` overrides stay on top at run time.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from mltrack.engine.prices import UNIT, ModelPrice
from mltrack.engine.prices import norm as _norm

PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # genai-prices provider id -> (mltrack provider name, prefixes people put before its model names).
    # First-party providers first: when two providers use one model name, the earlier one keeps the bare name
    # and the later one's entry is named "<provider>/<model>".
    "openai": ("openai", ("openai/",)),
    "anthropic": ("anthropic", ("anthropic/",)),
    "google": ("google", ("google/", "gemini/", "vertex_ai/", "models/", "publishers/google/models/")),
    "mistral": ("mistral", ("mistral/", "mistralai/")),
    "deepseek": ("deepseek", ("deepseek/",)),
    "x-ai": ("xai", ("xai/", "x-ai/")),
    "groq": ("groq", ("groq/",)),
    "together": ("together", ("together/", "together_ai/")),
    "aws": ("bedrock", ("bedrock/", "us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.")),
    "azure": ("azure", ("azure/", "azure_ai/")),
}
_ALL_PREFIXES = tuple(prefix for _, prefixes in PROVIDERS.values() for prefix in prefixes if prefix.endswith("/"))
_RATES = {"input_mtok": "input", "output_mtok": "output", "cache_read_mtok": "cached_input",
          "cache_write_mtok": "cache_write", "cache_write_1h_mtok": "cache_write_1h"}


# --- reading genai-prices -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """genai-prices objects as the plain JSON shape of its ``data.json`` (Decimals and dates as strings)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if not f.name.startswith("_")}
    else:
        fields = {key: item for key, item in vars(value).items() if not key.startswith("_")}
    return {key.rstrip("_"): _plain(item) for key, item in fields.items() if item is not None}


def read_source(path: Path | None = None) -> tuple[list[dict[str, Any]], str]:
    """The providers of a genai-prices ``data.json`` at ``path``, else of the installed package; and a label."""
    if path is not None:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot read a genai-prices data file ({exc})") from None
        providers = data.get("providers") if isinstance(data, dict) else data
        if not isinstance(providers, list) or not all(isinstance(p, dict) and "id" in p for p in providers):
            raise ValueError(f"{path}: not a genai-prices data file (expected a list of providers with 'id' and "
                             "'models', like genai-prices' prices/data.json)")
        return providers, f"genai-prices data file {Path(path).name}"
    try:
        from importlib.metadata import version

        from genai_prices.data import providers as installed
    except ImportError:
        raise ValueError("genai-prices is not installed: pip install 'mltrack[pricing]', or name a genai-prices "
                         "data.json with --from FILE") from None
    return [_plain(provider) for provider in installed], f"genai-prices {version('genai-prices')}"


# --- translating ----------------------------------------------------------------------------------------------


def _base(value: Any) -> Decimal:
    return Decimal(str(value["base"] if isinstance(value, Mapping) else value))


def _rates(prices: Mapping[str, Any]) -> dict[str, Any] | None:
    """One genai-prices price set as mltrack fields (with long-context tiers), or None when not per token."""
    if prices.get("input_mtok") is None and prices.get("output_mtok") is None:
        return None
    entry: dict[str, Any] = {ours: _base(prices[theirs]) for theirs, ours in _RATES.items()
                             if prices.get(theirs) is not None}
    entry.setdefault("input", Decimal(0))
    entry.setdefault("output", Decimal(0))  # embeddings: input only
    tiered = {ours: prices[theirs] for theirs, ours in _RATES.items() if isinstance(prices.get(theirs), Mapping)}
    starts = sorted({int(tier["start"]) for value in tiered.values() for tier in value.get("tiers") or ()})
    if starts:
        tiers = []
        for start in starts:
            tier: dict[str, Any] = {"above_prompt_tokens": start}
            for field in ("input", "output", "cached_input", "cache_write", "cache_write_1h"):
                if field not in entry:
                    continue
                value, rate = tiered.get(field), entry[field]
                for step in sorted((value or {}).get("tiers") or (), key=lambda t: int(t["start"])):
                    if int(step["start"]) <= start:
                        rate = Decimal(str(step["price"]))
                tier[field] = rate
            tiers.append(tier)
        entry["tiers"] = tiers
    return entry


def _names(match: Any) -> list[str]:
    """Exact model names a genai-prices match clause accepts (``equals``, inside ``or``)."""
    if not isinstance(match, Mapping):
        return []
    if "equals" in match:
        return [str(match["equals"])]
    if "or" in match:
        return [name for clause in match["or"] for name in _names(clause)]
    return []


def _hours(constraint: Mapping[str, Any]) -> float:
    """How many hours a day a time-of-day price applies."""
    try:
        start, end = (_dt.time.fromisoformat(str(constraint[key])[:8]) for key in ("start_time", "end_time"))
    except (KeyError, ValueError):
        return 0.0
    minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
    return (minutes % (24 * 60)) / 60


def _active(constraint: Any, today: _dt.date) -> bool:
    start = constraint.get("start_date") if isinstance(constraint, Mapping) else None
    return constraint is None or (start is not None and _dt.date.fromisoformat(start) <= today)


def _service_tiers(variants: Iterable[Mapping[str, Any]], today: _dt.date) -> dict[str, Any]:
    tiers: dict[str, Any] = {}
    for variant in variants or ():
        when = variant.get("when") or {}
        name = when.get("service_tier") if len(when) == 1 else None
        if when == {"processing": "batch"}:
            name = "batch"
        if not name or name == "default" or name in tiers or not _active(variant.get("constraint"), today):
            continue
        rates = {ours: _base(value) for theirs, ours in _RATES.items()
                 if (value := (variant.get("prices") or {}).get(theirs)) is not None}
        if rates:
            tiers[name] = rates
    return tiers


def model_entry(model: Mapping[str, Any], today: _dt.date) -> dict[str, Any] | None:
    """One genai-prices model as an mltrack price entry (current rates, history, service tiers), or None when it
    is not priced per token. Time-of-day prices (DeepSeek's off-peak discount) are left out: the day rate."""
    prices = model.get("prices")
    periods: list[tuple[str | None, Mapping[str, Any]]] = []
    if isinstance(prices, list):
        for conditional in prices:
            constraint = conditional.get("constraint")
            if constraint is None:
                periods = [(None, conditional["prices"])]
            elif "start_date" in constraint:
                periods.append((constraint["start_date"], conditional["prices"]))
            elif periods and _hours(constraint) > 12:  # the rate of most of the day (DeepSeek's day rate)
                periods[-1] = (periods[-1][0], conditional["prices"])
        if not periods and prices:
            periods = [(None, prices[0]["prices"])]
    elif isinstance(prices, Mapping):
        periods = [(None, prices)]
    periods.sort(key=lambda period: period[0] or "")
    converted = [(start, _rates(rates)) for start, rates in periods]
    if not converted or converted[-1][1] is None:
        return None
    entry = dict(converted[-1][1])
    history = []
    for (_, rates), (next_start, _) in zip(converted, converted[1:]):
        if rates is not None and next_start is not None:
            history.append({"until": next_start, **rates})
    if history:
        entry["history"] = history
    tiers = _service_tiers(model.get("price_variants") or (), today)
    if tiers:
        entry["service_tiers"] = tiers
    return entry


def generate(providers: list[Mapping[str, Any]], origin: str, today: _dt.date) -> dict[str, dict[str, Any]]:
    """mltrack price files (provider name -> file content) for the providers of :data:`PROVIDERS`."""
    by_id = {provider["id"]: provider for provider in providers}
    owner: dict[str, str] = {}  # normalized name -> mltrack provider that has it
    files: dict[str, dict[str, Any]] = {}
    for genai_id, (name, prefixes) in PROVIDERS.items():
        provider = by_id.get(genai_id)
        if provider is None:
            continue
        models: dict[str, Any] = {}
        for model in provider.get("models") or ():
            entry = model_entry(model, today)
            if entry is None:
                continue
            key = str(model["id"])
            if _norm(key) in owner:
                if owner[_norm(key)] == name:
                    continue  # the same model listed twice by one provider: the first one stands
                key = f"{name}/{key}"
                if _norm(key) in owner:
                    continue
            owner[_norm(key)] = name
            aliases = []
            for alias in _names(model.get("match")):
                if alias.startswith(_ALL_PREFIXES):
                    continue  # "anthropic/claude-sonnet-4": the lookup strips the prefix and finds the provider's own
                if _norm(alias) not in owner:
                    owner[_norm(alias)] = name
                    aliases.append(alias)
            if aliases:
                entry["aliases"] = aliases
            models[key] = entry
        if not models:
            continue
        urls = provider.get("pricing_urls") or []
        files[name] = {
            "provider": name,
            "source": urls[0] if urls else "https://github.com/pydantic/genai-prices",
            "as_of": today.isoformat(),
            "unit": UNIT,
            "origin": origin,
            "prefixes": list(prefixes),
            "models": models,
        }
    return files


# --- writing -------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Decimals as bare numbers in plain notation (``0.075``, never ``7.5E-2``)."""


def _decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.Node:
    text = format(value.normalize(), "f")
    return dumper.represent_scalar("tag:yaml.org,2002:float" if "." in text else "tag:yaml.org,2002:int", text)


_Dumper.add_representer(Decimal, _decimal)


def write_files(files: Mapping[str, Mapping[str, Any]], folder: Path) -> list[Path]:
    """Write one ``<provider>.yml`` per file into ``folder`` (atomically each) and remove other ``*.yml`` there."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        target = folder / f"{name}.yml"
        header = (f"# Generated by `mltrack pricing update` from {content['origin']} on {content['as_of']}.\n"
                  "# Do not edit: hand-checked prices go in mltrack's pricing/*.yml, your own in .mltrack.yml.\n")
        text = header + yaml.dump(dict(content), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, target)
        written.append(target)
    for stale in folder.glob("*.yml"):
        if stale not in written:
            stale.unlink()
    return written


# --- the diff ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One model whose price the update adds, changes or removes."""

    kind: str  # "added", "changed", "removed"
    provider: str
    model: str
    before: str = ""
    after: str = ""


def _summary(price: ModelPrice) -> str:
    parts = [f"{field} {format(value.normalize(), 'f')}" for field in
             ("input", "output", "cached_input", "cache_write", "cache_write_1h")
             if (value := getattr(price, field)) is not None]
    parts += [f"above {tier.above_prompt_tokens}: {format(tier.input.normalize(), 'f')}/"
              f"{format(tier.output.normalize(), 'f')}" for tier in price.tiers]
    parts += [f"{name}: {format(rates.input.normalize(), 'f') if rates.input is not None else '-'}/"
              f"{format(rates.output.normalize(), 'f') if rates.output is not None else '-'}"
              for name, rates in price.service_tiers]
    return ", ".join(parts)


def diff(before: Iterable[ModelPrice], after: Iterable[ModelPrice]) -> list[Change]:
    """What changes between two tables, by provider and model name."""
    old = {(price.provider, price.model): price for price in before}
    new = {(price.provider, price.model): price for price in after}
    changes = []
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            changes.append(Change("added", *key, after=_summary(new[key])))
        elif key not in new:
            changes.append(Change("removed", *key, before=_summary(old[key])))
        elif _summary(old[key]) != _summary(new[key]) or old[key].history != new[key].history:
            changes.append(Change("changed", *key, before=_summary(old[key]), after=_summary(new[key])))
    return changes
