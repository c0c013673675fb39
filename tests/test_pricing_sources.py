"""Prices for the names people send, prices that depend on the call, and `mltrack pricing update` / money output."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import openai
import pytest

import mltrack
from mltrack.cli.main import main
from mltrack.cli.money import format_usd
from mltrack.engine.cost import compute_cost
from mltrack.engine.pricing import PriceTable, default_table
from mltrack.record import Usage
from mltrack.testing import ScriptedReply

M = Decimal(10**6)


def _cost(name: str, prompt: int, completion: int, **kw) -> Decimal:
    price = default_table().lookup(name)
    assert price is not None, name
    usage = Usage(prompt, completion, prompt + completion, kw.pop("cached", 0), kw.pop("writes", 0), 0,
                  kw.pop("writes_1h", 0))
    return compute_cost(price, usage, **kw).total


# --- names as people send them ---------------------------------------------------------------------------

SONNET_35 = (1234 * Decimal(3) + 567 * Decimal(15)) / M  # claude-3-5-sonnet-20241022: $3 / $15


@pytest.mark.parametrize(("name", "expected"), [
    # Bedrock ids, with inference-profile prefixes
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", SONNET_35),
    ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", SONNET_35),
    ("eu.anthropic.claude-3-5-sonnet-20241022-v2:0", SONNET_35),
    ("apac.anthropic.claude-3-5-sonnet-20241022-v2:0", SONNET_35),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", SONNET_35),  # Sonnet 4.5: also $3 / $15
    ("us.amazon.nova-pro-v1:0", (1234 * Decimal("0.8") + 567 * Decimal("3.2")) / M),
    ("apac.amazon.nova-micro-v1:0", (1234 * Decimal("0.035") + 567 * Decimal("0.14")) / M),
    # Vertex
    ("claude-3-5-sonnet-v2@20241022", SONNET_35),
    ("claude-sonnet-4@20250514", SONNET_35),
    ("publishers/google/models/gemini-2.5-pro", (1234 * Decimal("1.25") + 567 * Decimal(10)) / M),
    # OpenRouter / LiteLLM
    ("anthropic/claude-3.5-sonnet", SONNET_35),
    ("anthropic/claude-3-haiku", (1234 * Decimal("0.25") + 567 * Decimal("1.25")) / M),
    ("openai/gpt-4o", (1234 * Decimal("2.5") + 567 * Decimal(10)) / M),
    ("deepseek/deepseek-chat", (1234 * Decimal("0.27") + 567 * Decimal("1.1")) / M),  # the day rate
    ("x-ai/grok-3-mini", (1234 * Decimal("0.3") + 567 * Decimal("0.5")) / M),
    ("groq/llama-3.1-8b-instant", (1234 * Decimal("0.05") + 567 * Decimal("0.08")) / M),
    # -latest aliases
    ("claude-3-5-sonnet-latest", SONNET_35),
    ("grok-3-latest", (1234 * Decimal(3) + 567 * Decimal(15)) / M),
])
def test_names_as_people_send_them(name: str, expected: Decimal) -> None:
    assert _cost(name, 1234, 567) == expected


def test_unknown_provider_prefix_and_unknown_model_stay_unpriced() -> None:
    assert default_table().lookup("anthropic/claude-9-opus") is None
    assert default_table().lookup("mistral-large-latest") is None  # re-pointed between prices: see docs


def test_provider_qualified_name_of_another_provider_is_not_taken() -> None:
    # groq's model "openai/gpt-oss-120b" must not price OpenAI's own gpt-oss-120b
    assert default_table().lookup("openai/gpt-oss-120b").provider == "groq"
    ours = default_table().lookup("gpt-oss-120b", "openai")
    assert (ours.provider, ours.model, ours.input) == ("openai", "gpt-oss-120b", Decimal("0.039"))


# --- prices that depend on the call ---------------------------------------------------------------------


def test_long_context_tier_applies_to_the_whole_call() -> None:
    # gemini-2.5-pro: $1.25 / $10 up to 200k prompt tokens, $2.50 / $15 above
    assert _cost("gemini-2.5-pro", 200_000, 1000) == (200_000 * Decimal("1.25") + 1000 * Decimal(10)) / M
    assert _cost("gemini-2.5-pro", 200_001, 1000) == (200_001 * Decimal("2.5") + 1000 * Decimal(15)) / M
    # claude-sonnet-4 above 200k: $6 input, $22.50 output, 1h cache writes $12
    assert _cost("claude-sonnet-4-20250514", 250_000, 100, writes=1000, writes_1h=1000) == (
        249_000 * Decimal(6) + 1000 * Decimal(12) + 100 * Decimal("22.5")) / M


def test_service_tier_prices() -> None:
    # gpt-5-mini: standard $0.25 / $2, flex $0.125 / $1, priority $0.45 / $3.60, batch $0.125 / $1
    assert _cost("gpt-5-mini", 10_000, 2000) == (10_000 * Decimal("0.25") + 2000 * Decimal(2)) / M
    assert _cost("gpt-5-mini", 10_000, 2000, service_tier="flex") == (10_000 * Decimal("0.125") + 2000) / M
    assert _cost("gpt-5-mini", 10_000, 2000, service_tier="priority") == (
        10_000 * Decimal("0.45") + 2000 * Decimal("3.6")) / M
    assert _cost("gpt-5-mini", 10_000, 2000, service_tier="batch") == (10_000 * Decimal("0.125") + 2000) / M
    assert _cost("gpt-5-mini", 10_000, 2000, service_tier="default") == (
        10_000 * Decimal("0.25") + 2000 * Decimal(2)) / M


def test_price_history_by_call_date() -> None:
    # o3 cost $10 / $40 until OpenAI's price cut of 2025-06-10, $2 / $8 since
    assert _cost("o3", 1000, 1000, day="2025-06-09") == (1000 * Decimal(10) + 1000 * Decimal(40)) / M
    assert _cost("o3", 1000, 1000, day="2025-06-10") == (1000 * Decimal(2) + 1000 * Decimal(8)) / M
    assert _cost("o3", 1000, 1000) == (1000 * Decimal(2) + 1000 * Decimal(8)) / M
    # a moving -latest alias priced by date: mistral-small-latest was $0.10 / $0.30 until 2026-03-16
    assert _cost("mistral-small-latest", 1000, 1000, day="2026-03-15") == (1000 * Decimal("0.1") + 300) / M
    assert _cost("mistral-small-latest", 1000, 1000, day="2026-03-16") == (1000 * Decimal("0.15") + 600) / M


def test_the_engine_prices_a_call_by_its_own_date() -> None:
    import calendar

    from mltrack.config import get_settings
    from mltrack.engine.process import RawCall, process

    def cost_on(day: str) -> Decimal:
        stamp = calendar.timegm(time.strptime(day + " 12:00", "%Y-%m-%d %H:%M"))
        raw = RawCall(prompt="p", response="r", model="o3", provider="openai", timestamp=stamp,
                      token_usage={"prompt_tokens": 1000, "completion_tokens": 1000})
        return process(raw, get_settings(), None).call.cost.total

    assert cost_on("2025-06-09") == (1000 * Decimal(10) + 1000 * Decimal(40)) / M
    assert cost_on("2025-06-10") == (1000 * Decimal(2) + 1000 * Decimal(8)) / M


def test_one_hour_cache_writes_are_priced_at_their_own_rate() -> None:
    # claude-3-5-haiku: $0.80 input, $0.08 read, $1 5-minute write, $1.60 1-hour write, $4 output
    cost = _cost("claude-3-5-haiku-20241022", 2000, 100, cached=500, writes=1000, writes_1h=600)
    assert cost == (500 * Decimal("0.8") + 500 * Decimal("0.08") + 400 * Decimal(1) + 600 * Decimal("1.6")
                    + 100 * Decimal(4)) / M


@pytest.fixture
def instrumented():
    mltrack.instrument("openai", "anthropic")
    yield
    mltrack.uninstrument("openai", "anthropic")


def test_anthropic_one_hour_cache_writes_through_the_sdk(store, fake_llm, anthropic_client, instrumented):
    usage = {"input_tokens": 40, "output_tokens": 12, "cache_read_input_tokens": 1000,
             "cache_creation_input_tokens": 300,
             "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}}
    fake_llm.queue(ScriptedReply(text="Hi!", usage=usage))
    with mltrack.track_llm_context("cache-1h"):
        anthropic_client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=64,
                                         messages=[{"role": "user", "content": "Hello"}])
    assert mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("cache-1h").info.run_id)[0]
    expected = (40 * Decimal(3) + 1000 * Decimal("0.3") + 100 * Decimal("3.75") + 200 * Decimal(6)
                + 12 * Decimal(15)) / M
    assert Decimal(line["total_cost"]) == expected
    assert (line["cache_write_tokens"], line["prompt_tokens"]) == (300, 1340)


@pytest.mark.parametrize(("tier", "rates"), [
    (None, (Decimal("0.25"), Decimal(2))),
    ("flex", (Decimal("0.125"), Decimal(1))),
    ("priority", (Decimal("0.45"), Decimal("3.6"))),
])
def test_openai_service_tier_through_the_sdk(store, fake_llm, openai_client, instrumented, tier, rates):
    fake_llm.queue(ScriptedReply(text="ok", usage={"prompt_tokens": 3000, "completion_tokens": 500,
                                                   "total_tokens": 3500}))
    extra = {"service_tier": tier} if tier else {}
    with mltrack.track_llm_context("tiered"):
        response = openai_client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}], **extra)
    assert response.service_tier == (tier or "default")
    assert mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("tiered").info.run_id)[0]
    assert Decimal(line["total_cost"]) == (3000 * rates[0] + 500 * rates[1]) / M


def test_openai_stream_priced_at_its_service_tier(store, fake_llm, openai_client, instrumented):
    fake_llm.queue(ScriptedReply(text="one two", usage={"prompt_tokens": 3000, "completion_tokens": 500,
                                                        "total_tokens": 3500}))
    with mltrack.track_llm_context("tiered-stream"):
        chunks = list(openai_client.chat.completions.create(
            model="gpt-5-mini", messages=[{"role": "user", "content": "hi"}], service_tier="flex", stream=True))
    assert chunks[0].service_tier == "flex"
    assert mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("tiered-stream").info.run_id)[0]
    assert Decimal(line["total_cost"]) == (3000 * Decimal("0.125") + 500 * Decimal(1)) / M


def test_anthropic_stream_one_hour_cache_writes(store, fake_llm, anthropic_client, instrumented):
    usage = {"input_tokens": 40, "output_tokens": 12, "cache_read_input_tokens": 0,
             "cache_creation_input_tokens": 1000,
             "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000}}
    fake_llm.queue(ScriptedReply(text="streamed", usage=usage))
    with mltrack.track_llm_context("cache-1h-stream"):
        list(anthropic_client.messages.create(model="claude-3-5-sonnet-20241022", max_tokens=64, stream=True,
                                              messages=[{"role": "user", "content": "Hello"}]))
    assert mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("cache-1h-stream").info.run_id)[0]
    assert Decimal(line["total_cost"]) == (40 * Decimal(3) + 1000 * Decimal(6) + 12 * Decimal(15)) / M


def test_azure_deployment_priced_as_its_model(store, fake_llm, instrumented):
    mltrack.configure(llm_providers={"azure": {"deployments": {"prod-chat": "gpt-4o"}}})
    client = openai.AzureOpenAI(azure_endpoint=fake_llm.azure_endpoint, api_version="2024-10-21", api_key="az",
                                max_retries=0)
    fake_llm.queue(ScriptedReply(text="ok", usage={"prompt_tokens": 1000, "completion_tokens": 100,
                                                   "total_tokens": 1100}))
    with mltrack.track_llm_context("azure-mapped"):
        client.chat.completions.create(model="prod-chat", messages=[{"role": "user", "content": "hi"}])
    assert mltrack.flush(timeout=30)
    line = store.artifact_lines(store.run_named("azure-mapped").info.run_id)[0]
    assert line["provider"] == "azure" and line["model"] == "prod-chat"
    assert Decimal(line["total_cost"]) == (1000 * Decimal("2.5") + 100 * Decimal(10)) / M


def test_unmapped_azure_deployment_warns_once_with_the_hint(store, fake_llm, instrumented):
    client = openai.AzureOpenAI(azure_endpoint=fake_llm.azure_endpoint, api_version="2024-10-21", api_key="az",
                                max_retries=0)
    with pytest.warns(Warning) as caught:
        with mltrack.track_llm_context("azure-unmapped"):
            for _ in range(2):
                client.chat.completions.create(model="team-bot", messages=[{"role": "user", "content": "hi"}])
        assert mltrack.flush(timeout=30)
    hints = [str(w.message) for w in caught if "team-bot" in str(w.message)]
    assert len(hints) == 1
    assert "llm_providers: {azure: {deployments: {team-bot: gpt-4o}}}" in hints[0]
    line = store.artifact_lines(store.run_named("azure-unmapped").info.run_id)[0]
    assert "total_cost" not in line and line["prompt_tokens"] > 0


def test_azure_deployments_config_is_validated(tmp_path, monkeypatch):
    from mltrack import config
    from mltrack.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLTRACK_CONFIG", raising=False)
    (tmp_path / ".mltrack.yml").write_text("llm_providers:\n  azure:\n    deployments: [gpt-4o]\n")
    config.reset()
    try:
        with pytest.raises(ConfigError, match=r"\.mltrack\.yml.*llm_providers\.azure\.deployments.*deployment name"):
            config.get_settings()
        (tmp_path / ".mltrack.yml").write_text("llm_providers:\n  azure:\n    deployments: {prod: gpt-4o}\n")
        config.reset()
        assert dict(config.get_settings().llm_providers["azure"]["deployments"]) == {"prod": "gpt-4o"}
    finally:
        config.reset()


# --- money ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "text"), [
    ("1", "$1.00"), ("0.00015", "$0.000150"), ("12.345", "$12.345"), ("0", "$0.00"), ("0.0123", "$0.0123"),
    ("0.0003525", "$0.0003525"), ("1234.5678", "$1234.57"), ("0.9999999", "$1.00"), ("1234.5", "$1234.50"),
    ("-0.0004", "-$0.000400"), ("0.5", "$0.500"), ("0.00000001234567", "$0.0000000123457"),
])
def test_money_has_two_decimals_and_three_significant_digits(amount: str, text: str) -> None:
    assert format_usd(Decimal(amount)) == text


def test_money_from_floats_and_none() -> None:
    assert (format_usd(0.25), format_usd(0.1 + 0.2), format_usd(2), format_usd(None)) == (
        "$0.250", "$0.300000", "$2.00", "-")  # 0.30000000000000004: six significant digits at most


def test_cost_command_prints_dollars_and_cents(capsys):
    assert main(["cost", "claude-3-haiku-20240307", "--prompt-tokens", "2000000", "--completion-tokens",
                 "400000"]) == 0
    out = capsys.readouterr().out
    assert "total:      $1.00\n" in out and "-> $0.500" in out


# --- mltrack pricing update ---------------------------------------------------------------------------------


def _data(gpt_test_input: str) -> list[dict]:
    return [
        {"id": "openai", "name": "OpenAI", "pricing_urls": ["https://openai.example/pricing"], "models": [
            {"id": "gpt-test-1", "match": {"or": [{"equals": "gpt-test-1"}, {"equals": "gpt-test-1-2030-01-01"}]},
             "prices": {"input_mtok": gpt_test_input, "output_mtok": "2"},
             "price_variants": [{"when": {"service_tier": "flex"}, "prices": {"input_mtok": "0.5"}}]},
            {"id": "gpt-4o", "match": {"equals": "gpt-4o"}, "prices": {"input_mtok": "99", "output_mtok": "99"}},
            {"id": "tts-test", "match": {"equals": "tts-test"}, "prices": {"output_audio_mtok": "5"}},
        ]},
        {"id": "x-ai", "name": "xAI", "pricing_urls": ["https://x.example/pricing"], "models": [
            {"id": "grok-test", "match": {"equals": "grok-test"},
             "prices": [{"prices": {"input_mtok": "4", "output_mtok": "8"}},
                        {"constraint": {"start_date": "2030-01-01"},
                         "prices": {"input_mtok": {"base": "2", "tiers": [{"start": 128000, "price": "3"}]},
                                    "output_mtok": "6"}}]},
        ]},
        {"id": "deepseek", "name": "DeepSeek", "pricing_urls": ["https://ds.example/pricing"], "models": [
            {"id": "ds-test", "match": {"equals": "ds-test"},
             "prices": [{"prices": {"input_mtok": "0.1", "output_mtok": "0.2"}},  # night discount
                        {"constraint": {"start_time": "00:30:00Z", "end_time": "16:30:00Z"},
                         "prices": {"input_mtok": "0.27", "output_mtok": "1.1"}}]},
        ]},
        {"id": "someone-else", "name": "Ignored", "models": []},
    ]


@pytest.fixture
def user_prices(tmp_path, monkeypatch):
    """MLTRACK_PRICING_DIR in tmp_path (never the real user config dir), settings read afresh."""
    from mltrack import config

    target = tmp_path / "prices"
    monkeypatch.setenv("MLTRACK_PRICING_DIR", str(target))
    config.reset()
    assert config.get_settings().pricing_dir == str(target)
    yield target
    config.reset()


def test_pricing_update_from_a_data_file(tmp_path, capsys, user_prices):
    target = user_prices
    data = tmp_path / "data.json"
    data.write_text(json.dumps(_data("1")))

    assert main(["pricing", "update", "--from", str(data), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+ openai/gpt-test-1: input 1, output 2, flex: 0.5/-\n" in out
    assert "+ xai/grok-test: input 2, output 6, above 128000: 3/6\n" in out
    assert "+ deepseek/ds-test: input 0.27, output 1.1\n" in out  # the 16-hour day rate, not the night one
    assert "- bedrock/amazon.nova-pro-v1:0: input 0.8, output 3.2, cached_input 0.2" in out
    # hand-checked gpt-4o keeps its rates (not the file's 99); only the service tiers it took from the old data go
    assert ("~ openai/gpt-4o: input 2.5, output 10, cached_input 1.25, priority: 4.25/17, fast: 4.25/17, "
            "batch: 1.25/5 -> input 2.5, output 10, cached_input 1.25\n") in out
    assert "nothing written" in out and not target.exists()

    assert main(["pricing", "update", "--from", str(data)]) == 0
    assert sorted(p.name for p in target.glob("*.yml")) == ["deepseek.yml", "openai.yml", "xai.yml"]
    table = PriceTable.layered(Path(mltrack.__file__).parent.parent / "pricing", target)
    test = table.lookup("gpt-test-1-2030-01-01")
    assert (test.input, test.output, test.source, test.origin) == (
        Decimal(1), Decimal(2), "https://openai.example/pricing", "genai-prices data file data.json")
    grok = table.lookup("grok-test")
    assert (grok.history[0].until, grok.history[0].rates.input, grok.tiers[0].input) == (
        "2030-01-01", Decimal(4), Decimal(3))
    assert table.lookup("gpt-4o").input == Decimal("2.50")
    assert table.lookup("tts-test") is None
    capsys.readouterr()

    data.write_text(json.dumps(_data("1.5")))
    assert main(["pricing", "update", "--from", str(data)]) == 0
    out = capsys.readouterr().out
    assert "~ openai/gpt-test-1: input 1, output 2, flex: 0.5/- -> input 1.5, output 2, flex: 0.5/-\n" in out
    assert "0 added, 1 changed, 0 removed" in out

    # the refreshed table is what tracking and the CLI use, without a release
    assert main(["cost", "gpt-test-1", "--prompt-tokens", "1000000", "--completion-tokens", "1000000"]) == 0
    assert "total:      $3.50\n" in capsys.readouterr().out


def test_broken_user_prices_fall_back_to_the_shipped_ones_with_one_warning(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "openai.yml").write_text("provider: openai\nmodels: {}\n")
    with pytest.warns(Warning, match=r"prices in .*broken are not usable.*openai\.yml.*using the shipped prices"):
        table = default_table(broken)
    assert table.lookup("gpt-4o").input == Decimal("2.50")


def test_pricing_update_rejects_a_file_that_is_not_genai_prices_data(tmp_path, capsys, user_prices):
    bad = tmp_path / "data.json"
    bad.write_text(json.dumps({"models": []}))
    assert main(["pricing", "update", "--from", str(bad), "--dry-run"]) == 2
    assert "not a genai-prices data file" in capsys.readouterr().err


def test_shipped_generated_files_are_what_the_pinned_genai_prices_gives(tmp_path):
    """pricing/generated is exactly `mltrack pricing update --out pricing/generated` run on its as_of date."""
    import datetime as dt

    import yaml

    from mltrack.engine import price_update
    from mltrack.engine.pricing import generated_dir

    pytest.importorskip("genai_prices")
    shipped = {path.name: yaml.safe_load(path.read_text()) for path in sorted(generated_dir().glob("*.yml"))}
    (as_of,) = {content["as_of"] for content in shipped.values()}
    providers, origin = price_update.read_source()
    price_update.write_files(price_update.generate(providers, origin, dt.date.fromisoformat(as_of)), tmp_path)
    fresh = {path.name: yaml.safe_load(path.read_text()) for path in sorted(tmp_path.glob("*.yml"))}
    assert fresh == shipped
    assert len(shipped) == 10 and sum(len(content["models"]) for content in shipped.values()) == 528
