"""Looking models up in the price table: exact name or alias, then a provider prefix stripped, then a dated
snapshot's base model (only when the snapshot has no entry of its own). Unknown names return ``None``: an
unknown model is never priced at $0. The files themselves are read in :mod:`mltrack.engine.price_files`.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from mltrack.engine.price_files import has_price_files, load_prices, parse_override, pricing_dir
from mltrack.engine.prices import ModelPrice, PricingDataError
from mltrack.engine.prices import norm as _norm

_SNAPSHOT_SUFFIXES = (
    re.compile(r"-v\d+(?::\d+)?$"),  # Bedrock revision: -v2:0
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # -2024-08-06
    re.compile(r"-20\d{6}$"),  # -20241022 (and @20241022, read as -20241022)
    re.compile(r"-(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])$"),  # -0125, -1106 (a real month and day, so
    # Mistral's -2407 year-month versions, priced differently from one another, never fall back)
    re.compile(r"-preview-\d{2}-\d{2}$"),  # -preview-05-06
    re.compile(r"-0\d\d$"),  # Google's -001, -002
)
_MAX_STRIPS = 3
_CACHE_LIMIT = 4096


# --- lookup -------------------------------------------------------------------------------------------------


_MISS = object()


class PriceTable:
    """An immutable name -> price index with the lookup rule of contract §3; lookups are cached dict hits."""

    def __init__(self, prices: Iterable[ModelPrice], prefixes: Iterable[str] = ()) -> None:
        self._prices = tuple(prices)
        index: dict[str, ModelPrice] = {}
        for price in self._prices:
            for name in (price.model, *price.aliases):
                index.setdefault(_norm(name), price)
        self._index: Mapping[str, ModelPrice] = MappingProxyType(index)
        self._prefixes = tuple(sorted({_norm(prefix) for prefix in prefixes}, key=len, reverse=True))
        self._cache: dict[tuple[str, str], ModelPrice | None] = {}

    @classmethod
    def from_directory(cls, directory: Path | None = None) -> PriceTable:
        """A table of every price file in ``directory`` (default: the shipped hand-checked prices only)."""
        prices, prefixes = load_prices(directory)
        return cls(prices, prefixes)

    @classmethod
    def layered(cls, checked: Path, generated: Path | None) -> PriceTable:
        """Hand-checked prices (``checked``) on top of generated ones (``generated``, from genai-prices): a
        generated model whose name a hand-checked entry already has is left out; a generated alias
        another model already has is ignored."""
        prices, prefixes = load_prices(checked)
        if not has_price_files(generated):
            return cls(prices, prefixes)
        more, more_prefixes = load_prices(generated)
        taken = {_norm(name): price.provider for price in prices for name in (price.model, *price.aliases)}
        same = {(price.provider, _norm(price.model)): price for price in more}
        prices = tuple(_fill_from(price, same) for price in prices)
        kept = []
        for price in more:
            owner = taken.get(_norm(price.model))
            if owner is None:
                kept.append(price)
            elif owner != price.provider and f"{_norm(price.provider)}/{_norm(price.model)}" not in taken:
                kept.append(replace(price, model=f"{price.provider}/{price.model}"))  # e.g. groq's copy of a
                # model whose bare name a hand-checked entry of another provider has
        return cls((*prices, *kept), (*prefixes, *more_prefixes))

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Provider prefixes stripped during lookup, longest first."""
        return self._prefixes

    def models(self) -> tuple[ModelPrice, ...]:
        """Every priced model, in file order."""
        return self._prices

    def lookup(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model`` (``provider/model`` entries win when ``provider`` is given), or None."""
        if not isinstance(model, str):
            return None
        if provider is not None and not isinstance(provider, str):
            provider = None
        # Keyed as given first (the common case: no normalizing); a given key and its normal form give one price.
        found = self._cache.get((model, provider), _MISS)
        if found is not _MISS:
            return found  # type: ignore[return-value]
        if not model.strip():
            return None
        key = (_norm(model), _norm(provider) if provider else "")
        found = self._cache.get(key, _MISS)
        if found is _MISS:
            found = self._resolve(*key)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = self._cache[(model, provider)] = found
        return found  # type: ignore[return-value]

    def _resolve(self, name: str, provider: str) -> ModelPrice | None:
        if provider:
            qualified = self._index.get(f"{provider}/{name}")
            if qualified is not None and (qualified.provider == provider or not qualified.provider):
                return qualified
        forms = self._forms(name)
        for form in forms:
            if form in self._index:
                return self._index[form]
        for form in forms:
            base = form
            for _ in range(_MAX_STRIPS):
                stripped = _strip_snapshot(base)
                if stripped is None:
                    break
                base = stripped
                if base in self._index:
                    return self._index[base]
        return None

    def _forms(self, name: str) -> list[str]:
        """The name itself, ``@`` read as ``-`` (Vertex), and each provider prefix stripped in turn."""
        forms = [name]
        current = name
        for _ in range(_MAX_STRIPS):
            prefix = next((p for p in self._prefixes if current.startswith(p) and len(current) > len(p)), None)
            if prefix is None:
                break
            current = current[len(prefix):]
            forms.append(current)
        forms += [form.replace("@", "-") for form in forms if "@" in form]
        return list(dict.fromkeys(forms))

    def with_overrides(self, overrides: Mapping[str, Mapping[str, object]]) -> PriceTable:
        """A new table with the user's prices (USD per 1M tokens) on top; raises ValueError naming model and field.

        Overriding a model's canonical name reprices it under all its aliases (so ``gpt-4o`` also covers the
        ``gpt-4o-2024-08-06`` the API reports); overriding an alias or a new name prices just that name.
        """
        if not isinstance(overrides, Mapping):
            raise ValueError(f"pricing overrides must be a mapping of model name to prices, got {overrides!r}")
        replaced: dict[str, ModelPrice] = {}
        added: list[ModelPrice] = []
        for name, entry in overrides.items():
            price = parse_override(name, entry, self._index)
            key = _norm(name)
            existing = self._index.get(key)
            if existing is not None and _norm(existing.model) == key:
                replaced[key] = replace(price, model=existing.model, provider=existing.provider,
                                        aliases=existing.aliases)
            else:
                added.append(price)
        prices = [replaced.get(_norm(price.model), price) for price in self._prices]
        extra = {_norm(price.model) for price in added}
        if extra:
            prices = [_without_aliases(price, extra) for price in prices]
        return PriceTable((*added, *prices), self._prefixes)


def _fill_from(price: ModelPrice, generated: Mapping[tuple[str, str], ModelPrice]) -> ModelPrice:
    """A hand-checked price with what only the generated entry of the same model has: service tiers, price
    history, the 1-hour cache-write rate. The hand-checked rates themselves always stay."""
    if price.service_tiers and price.history and price.cache_write_1h is not None:
        return price
    other = next((found for name in (price.model, *price.aliases)
                  if (found := generated.get((price.provider, _norm(name)))) is not None), None)
    if other is None:
        return price
    return replace(price, service_tiers=price.service_tiers or other.service_tiers,
                   history=price.history or _older(other.history, price),
                   cache_write_1h=price.cache_write_1h if price.cache_write_1h is not None else (
                       other.cache_write_1h if price.cache_write is not None else None))


def _older(history: tuple, price: ModelPrice) -> tuple:
    """Generated price periods that end on or before the hand-checked prices were checked."""
    return tuple(period for period in history if period.until <= price.as_of)


def _without_aliases(price: ModelPrice, names: set[str]) -> ModelPrice:
    kept = tuple(alias for alias in price.aliases if _norm(alias) not in names)
    return price if kept == price.aliases else replace(price, aliases=kept)


def _strip_snapshot(name: str) -> str | None:
    """``name`` without its dated-snapshot or revision suffix, or None when it has none."""
    for pattern in _SNAPSHOT_SUFFIXES:
        stripped = pattern.sub("", name, count=1)
        if stripped != name and stripped:
            return stripped
    return None


def user_pricing_dir(setting: str | Path | None = None) -> Path:
    """Where ``mltrack pricing update`` writes and tracking reads the user's refreshed prices: the
    ``pricing_dir`` setting, else ``mltrack/pricing`` in the user config dir (``$XDG_CONFIG_HOME``,
    ``~/.config``, or ``%APPDATA%`` on Windows)."""
    if setting:
        return Path(setting).expanduser()
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "mltrack" / "pricing"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mltrack" / "pricing"


def generated_dir() -> Path:
    """The shipped generated prices (``pricing/generated``, made by ``mltrack pricing update``)."""
    return pricing_dir() / "generated"


@functools.cache
def default_table(user_dir: Path | None = None) -> PriceTable:
    """mltrack's hand-checked prices on top of the generated ones: the user's refreshed table in ``user_dir``
    when it holds price files, else the shipped one. Parsed and validated once per process."""
    if has_price_files(user_dir):
        try:
            return PriceTable.layered(pricing_dir(), Path(user_dir))
        except PricingDataError as exc:  # a hand-edited or half-copied folder must not stop all pricing
            from mltrack import _safety

            _safety.warn_once(f"pricing-dir:{user_dir}", f"mltrack: the prices in {user_dir} are not usable "
                              f"({exc}); using the shipped prices. Run `mltrack pricing update` to rewrite them.")
    return PriceTable.layered(pricing_dir(), generated_dir())
