"""Finding a model's price: exact name, alias, provider prefix, dated snapshot, overrides; unknown is None."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from mltrack.engine.price_files import pricing_dir
from mltrack.engine.pricing import PriceTable, default_table


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return default_table()


def test_default_table_is_parsed_once() -> None:
    assert default_table() is default_table()


def test_pricing_dir_is_the_checkout_folder_in_a_source_tree() -> None:
    folder = pricing_dir()
    assert (folder / "openai.yml").is_file()
    packaged = Path(__file__).resolve().parents[1] / "mltrack" / "_pricing_data"
    assert folder == (packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "pricing")


def test_exact_name(table: PriceTable) -> None:
    price = table.lookup("gpt-4o")
    assert (price.model, price.provider, price.input, price.output, price.cached_input) == (
        "gpt-4o", "openai", Decimal("2.50"), Decimal("10.00"), Decimal("1.25"))
    assert price.source == "https://developers.openai.com/api/docs/pricing"


def test_names_are_case_insensitive(table: PriceTable) -> None:
    assert table.lookup("GPT-4o") is table.lookup("gpt-4o")
    assert table.lookup("meta-llama/llama-3.3-70b-instruct-turbo").model == "meta-llama/Llama-3.3-70B-Instruct-Turbo"


@pytest.mark.parametrize(("alias", "model"), [
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022"),
    ("claude-sonnet-4-0", "claude-sonnet-4-20250514"),
    ("claude-opus-4-1", "claude-opus-4-1-20250805"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4-0613", "gpt-4"),
    ("gpt-4-1106-preview", "gpt-4-turbo"),
    ("gemini-pro", "gemini-1.0-pro"),
    ("mistral-small", "open-mixtral-8x7b"),
    ("open-mistral-7b", "mistral-tiny"),
])
def test_alias(table: PriceTable, alias: str, model: str) -> None:
    assert table.lookup(alias).model == model


@pytest.mark.parametrize(("name", "model"), [
    ("openai/gpt-4o", "gpt-4o"),
    ("azure/gpt-4o-mini", "gpt-4o-mini"),
    ("anthropic/claude-3-haiku-20240307", "claude-3-haiku-20240307"),
    ("models/gemini-1.5-pro", "gemini-1.5-pro"),
    ("gemini/gemini-2.5-flash", "gemini-2.5-flash"),
    ("vertex_ai/gemini-2.0-flash", "gemini-2.0-flash"),
    ("google/gemini-2.5-pro", "gemini-2.5-pro"),
    ("mistral/open-mixtral-8x22b", "open-mixtral-8x22b"),
    ("together_ai/meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo"),
    ("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022"),
    ("us.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku-20240307"),
    ("vertex_ai/claude-3-5-sonnet@20240620", "claude-3-5-sonnet-20240620"),
])
def test_provider_prefix_is_stripped(table: PriceTable, name: str, model: str) -> None:
    assert table.lookup(name).model == model


@pytest.mark.parametrize(("name", "model"), [
    ("gpt-4o-2025-06-01", "gpt-4o"),
    ("openai/gpt-4o-mini-2025-01-01", "gpt-4o-mini"),
    ("gpt-4-turbo-0409", "gpt-4-turbo"),
    ("gpt-4.1-2025-09-01", "gpt-4.1"),
    ("claude-opus-4-6-20260205", "claude-opus-4-6"),
    ("claude-sonnet-5@20260630", "claude-sonnet-5"),
    ("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
    ("gemini-1.5-flash-002", "gemini-1.5-flash"),
])
def test_dated_snapshot_falls_back_to_its_base_model(table: PriceTable, name: str, model: str) -> None:
    assert table.lookup(name).model == model


def test_dated_snapshot_with_its_own_entry_wins(table: PriceTable) -> None:
    snapshot = table.lookup("gpt-4o-2024-05-13")
    assert snapshot.model == "gpt-4o-2024-05-13"
    assert (snapshot.input, snapshot.output, snapshot.cached_input) == (Decimal("5.00"), Decimal("15.00"), None)
    assert table.lookup("openai/gpt-4o-2024-05-13") is snapshot
    assert table.lookup("gpt-4o").input == Decimal("2.50")
    assert table.lookup("gemini-2.5-flash-preview-05-20").input == Decimal("0.15") != table.lookup(
        "gemini-2.5-flash").input


@pytest.mark.parametrize("name", [
    "my-own-model", "", "   ", "gpt-4o-ultra", "claude-9-sonnet-20990101",
    "mistral-large-latest", "mistral-large-2912", "mistral-small-2903", "openai/", "models/",
])
def test_unknown_model_is_none(table: PriceTable, name: str) -> None:
    assert table.lookup(name) is None


def test_non_string_model_is_none(table: PriceTable) -> None:
    assert table.lookup(None) is None  # type: ignore[arg-type]


def test_lookups_are_cached_including_misses(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = PriceTable(default_table().models(), default_table().prefixes)
    calls: list[tuple[str, str]] = []
    resolve = fresh._resolve

    def counting(name: str, provider: str):
        calls.append((name, provider))
        return resolve(name, provider)

    monkeypatch.setattr(fresh, "_resolve", counting)
    for _ in range(3):
        assert fresh.lookup("openai/gpt-4o-2024-11-20").model == "gpt-4o"
        assert fresh.lookup("no-such-model") is None
    assert calls == [("openai/gpt-4o-2024-11-20", ""), ("no-such-model", "")]


def test_models_lists_every_entry_once(table: PriceTable) -> None:
    names = [price.model for price in table.models()]
    assert len(names) == len(set(names)) >= 60


# --- user overrides -----------------------------------------------------------------------------------------


def test_override_adds_a_new_model_without_touching_the_default(table: PriceTable) -> None:
    custom = table.with_overrides({"my-finetune": {"input": 1.0, "output": 2.0, "cached_input": 0.1,
                                                   "cache_write": 1.25}})
    price = custom.lookup("my-finetune")
    assert (price.input, price.output, price.cached_input, price.cache_write) == (
        Decimal("1.0"), Decimal("2.0"), Decimal("0.1"), Decimal("1.25"))
    assert price.source == "user override (pricing)"
    assert custom.lookup("openai/my-finetune") is price
    assert table.lookup("my-finetune") is None
    assert custom.lookup("gpt-4o") == table.lookup("gpt-4o")


def test_override_wins_over_shipped_price_for_all_its_names(table: PriceTable) -> None:
    custom = table.with_overrides({"gpt-4o": {"input": "2.00", "output": "8.00"}})
    price = custom.lookup("gpt-4o")
    assert (price.input, price.output, price.cached_input, price.provider) == (
        Decimal("2.00"), Decimal("8.00"), None, "openai")
    assert custom.lookup("gpt-4o-2024-08-06") is price
    assert custom.lookup("openai/gpt-4o-2025-03-01") is price
    assert custom.lookup("gpt-4o-2024-05-13").input == Decimal("5.00")
    assert table.lookup("gpt-4o").input == Decimal("2.50")
    turbo = table.with_overrides({"gpt-4-turbo": {"input": 9, "output": 27}})
    assert turbo.lookup("gpt-4-1106-preview").input == Decimal("9")
    assert turbo.lookup("gpt-4-turbo").aliases == table.lookup("gpt-4-turbo").aliases


def test_override_of_an_alias_reprices_only_that_name(table: PriceTable) -> None:
    custom = table.with_overrides({"gpt-4o-2024-11-20": {"input": 3, "output": 12}})
    assert custom.lookup("gpt-4o-2024-11-20").input == Decimal("3")
    assert custom.lookup("gpt-4o").input == Decimal("2.50")
    assert custom.lookup("gpt-4o-2024-08-06").input == Decimal("2.50")
    assert "gpt-4o-2024-11-20" not in custom.lookup("gpt-4o").aliases


def test_override_keeps_floats_exact(table: PriceTable) -> None:
    price = table.with_overrides({"m": {"input": 0.075, "output": 0.3}}).lookup("m")
    assert str(price.input) == "0.075" and str(price.output) == "0.3"


def test_provider_qualified_override_applies_to_that_provider_only(table: PriceTable) -> None:
    custom = table.with_overrides({"azure/gpt-4o": {"input": 2.75, "output": 11}})
    assert custom.lookup("gpt-4o", provider="azure").input == Decimal("2.75")
    assert custom.lookup("gpt-4o", provider="openai").input == Decimal("2.50")
    assert custom.lookup("gpt-4o").input == Decimal("2.50")


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"m": {"input": -1, "output": 2}}, ["'m'", "'input'", "negative"]),
    ({"m": {"input": 1, "output": 2, "cache_read": 0.1}}, ["'m'", "'cache_read'", "unknown field", "cached_input"]),
    ({"m": {"input": 1}}, ["'m'", "'output'", "missing"]),
    ({"m": {"input": True, "output": 2}}, ["'m'", "'input'", "number"]),
    ({"m": {"input": "cheap", "output": 2}}, ["'m'", "'input'", "number"]),
    ({"m": {"input": float("nan"), "output": 2}}, ["'m'", "'input'", "finite"]),
    ({"m": 1.5}, ["'m'", "mapping"]),
    ({"": {"input": 1, "output": 2}}, ["non-empty"]),
])
def test_override_is_validated(table: PriceTable, overrides: dict, expected: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        table.with_overrides(overrides)
    for part in expected:
        assert part in str(info.value), (part, str(info.value))
