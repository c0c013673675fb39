"""The shipped price files: strict schema, coverage, exact decimals, and agreement with genai-prices."""

from __future__ import annotations

import re
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from mltrack.engine.price_files import load_price_files, pricing_dir
from mltrack.engine.prices import ModelPrice, PricingDataError
from mltrack.engine.pricing import PriceTable, default_table

PROVIDERS = {"openai", "anthropic", "google", "mistral", "together"}

REQUIRED_MODELS = {
    "openai": [
        "gpt-3.5-turbo", "gpt-4", "gpt-4-32k", "gpt-4-turbo", "gpt-4o", "gpt-4o-2024-05-13", "gpt-4o-mini",
        "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "gpt-5",
        "gpt-5-mini", "gpt-5-nano", "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    ],
    "anthropic": [
        "claude-2.0", "claude-2.1", "claude-instant-1.2", "claude-3-opus-20240229", "claude-3-sonnet-20240229",
        "claude-3-haiku-20240307", "claude-3-5-sonnet-20240620", "claude-3-5-sonnet-20241022",
        "claude-3-5-haiku-20241022", "claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514",
        "claude-sonnet-4-5-20250929", "claude-opus-4-20250514", "claude-opus-4-1-20250805",
        "claude-haiku-4-5-20251001", "claude-3-5-sonnet-latest", "claude-3-5-haiku-latest", "claude-sonnet-4-0",
        "claude-opus-4-0", "claude-sonnet-4-5", "claude-haiku-4-5",
    ],
    "google": [
        "gemini-1.0-pro", "gemini-1.5-pro", "gemini-1.5-flash", "gemini-2.0-flash", "gemini-2.5-pro",
        "gemini-2.5-flash",
    ],
    "mistral": [
        "mistral-tiny", "mistral-small", "mistral-medium", "mistral-large", "open-mixtral-8x7b", "open-mixtral-8x22b",
    ],
    "together": [
        "meta-llama/Llama-2-7b-chat-hf", "meta-llama/Llama-2-13b-chat-hf", "meta-llama/Llama-2-70b-chat-hf",
        "meta-llama/Llama-3-8b-chat-hf", "meta-llama/Llama-3-70b-chat-hf",
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
        "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ],
}


def _raw_files() -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(pricing_dir().glob("*.yml"))}


def test_every_shipped_file_validates() -> None:
    prices = load_price_files()
    assert prices and all(isinstance(price, ModelPrice) for price in prices)
    assert {price.provider for price in prices} == PROVIDERS


def test_at_least_sixty_models() -> None:
    assert len(load_price_files()) >= 60


def test_one_file_per_provider_with_source_and_date() -> None:
    files = _raw_files()
    assert {data["provider"] for data in files.values()} == PROVIDERS
    for name, data in files.items():
        assert data["source"].startswith("https://"), name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(data["as_of"])), name
        assert data["unit"] == "usd_per_1m_tokens", name
    for price in load_price_files():
        assert price.source.startswith("https://") and price.as_of, price.model


@pytest.mark.parametrize(("provider", "model"), [(p, m) for p, models in REQUIRED_MODELS.items() for m in models])
def test_required_model_is_priced(provider: str, model: str) -> None:
    price = default_table().lookup(model)
    assert price is not None, model
    assert price.provider == provider
    assert price.input > 0


def test_numbers_are_exact_decimals() -> None:
    table = default_table()
    assert str(table.lookup("gpt-4o-mini").cached_input) == "0.075"
    assert str(table.lookup("gemini-1.5-flash").input) == "0.075"
    assert table.lookup("gemini-1.5-pro").cached_input == Decimal("0.3125")
    assert table.lookup("gemini-1.5-flash").tiers[0].cached_input == Decimal("0.0375")
    for price in load_price_files():
        for value in (price.input, price.output, price.cached_input, price.cache_write):
            assert value is None or isinstance(value, Decimal)


def test_prices_known_from_the_providers_pages() -> None:
    table = default_table()
    sonnet = table.lookup("claude-3-5-sonnet-20241022")
    assert (sonnet.input, sonnet.output, sonnet.cached_input, sonnet.cache_write) == (
        Decimal("3"), Decimal("15"), Decimal("0.3"), Decimal("3.75"))
    assert (table.lookup("gpt-4o").input, table.lookup("gpt-4o-2024-05-13").input) == (Decimal("2.5"), Decimal("5"))
    pro = table.lookup("gemini-2.5-pro")
    assert [(t.above_prompt_tokens, t.input, t.output) for t in pro.tiers] == [(200000, Decimal("2.5"), Decimal("15"))]
    assert table.lookup("meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo").output == Decimal("3.5")


# --- broken files -------------------------------------------------------------------------------------------

VALID = """\
provider: acme
source: https://acme.example/pricing
as_of: "2026-11-01"
unit: usd_per_1m_tokens
prefixes: [acme/]
models:
  acme-large:
    input: 2.50
    output: 10.00
    cached_input: 1.25
"""


def _write(folder: Path, text: str, name: str = "acme.yml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder


def test_valid_minimal_file_loads(tmp_path: Path) -> None:
    table = PriceTable.from_directory(_write(tmp_path, VALID))
    assert table.lookup("acme/acme-large").cached_input == Decimal("1.25")
    assert table.prefixes == ("acme/",)


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(VALID.replace("    cached_input: 1.25", "    cached_inptu: 1.25"),
        [r"acme\.yml", "acme-large", "cached_inptu", "unknown field", "allowed fields"], id='unknown-model-field'),
    pytest.param(VALID.replace("unit: usd_per_1m_tokens", "unit: usd_per_1m_tokens\ncurrency: usd"),
        [r"acme\.yml", "currency", "unknown field"], id='unknown-file-field'),
    pytest.param(VALID + "  acme-large:\n    input: 1.00\n    output: 2.00\n",
        [r"acme\.yml", "duplicate", "acme-large", "line 11", "remove or rename"], id='duplicate-model'),
    pytest.param(VALID.replace("output: 10.00", "output: -10.00"),
        [r"acme\.yml", "acme-large", "'output'", "negative"], id='negative-price'),
    pytest.param(VALID.replace("source: https://acme.example/pricing\n", ""),
        [r"acme\.yml", "'source'", "missing"], id='missing-source'),
    pytest.param(VALID.replace('as_of: "2026-11-01"\n', ""),
        [r"acme\.yml", "'as_of'", "missing"], id='missing-as-of'),
    pytest.param(VALID.replace('as_of: "2026-11-01"', "as_of: last week"),
        [r"acme\.yml", "'as_of'", "YYYY-MM-DD"], id='bad-as-of'),
    pytest.param(VALID.replace('as_of: "2026-11-01"', 'as_of: "2026-02-30"'),
        [r"acme\.yml", "not a real date"], id='impossible-date'),
    pytest.param(VALID.replace("unit: usd_per_1m_tokens", "unit: usd_per_1k_tokens"),
        [r"acme\.yml", "'unit'", "usd_per_1m_tokens"], id='wrong-unit'),
    pytest.param(VALID.replace("input: 2.50", 'input: "2.50"'),
        [r"acme\.yml", "'input'", "without quotes"], id='quoted-number'),
    pytest.param(VALID.replace("input: 2.50", "input: true"),
        [r"acme\.yml", "'input'", "must be a number"], id='bool-price'),
    pytest.param(VALID.replace("    input: 2.50\n", ""),
        [r"acme\.yml", "acme-large", "'input'", "missing"], id='missing-input'),
    pytest.param(VALID.replace("prefixes: [acme/]", "prefixes: [acme]"),
        [r"acme\.yml", "'prefixes'", "ending in '/'"], id='bad-prefix'),
    pytest.param(VALID + "    tiers:\n      - above_prompt_tokens: 128000\n        input: 5.0\n        output: 20.0\n",
        [r"acme\.yml", "acme-large", r"tiers\[0\]", "cached_input", "add the tier"], id='tier-lacks-cached'),
    pytest.param(VALID + "    tiers:\n      - {above_prompt_tokens: 200000, input: 5, output: 20, cached_input: 2}\n"
             "      - {above_prompt_tokens: 100000, input: 6, output: 24, cached_input: 3}\n",
        [r"tiers\[1\]", "strictly increasing"], id='tiers-not-increasing'),
    pytest.param(VALID + "    tiers:\n      - {above_prompt_tokens: 0, input: 5, output: 20, cached_input: 2}\n",
        [r"tiers\[0\]", "positive whole number"], id='tier-zero-threshold'),
    pytest.param(VALID + "    aliases: acme-l\n",
        [r"acme\.yml", "'aliases'", "list"], id='aliases-not-list'),
    pytest.param("provider: [acme\n", [r"acme\.yml", "not valid YAML"], id='bad-yaml'),
    pytest.param(VALID + "    service_tiers: {Flex: {input: 1.0}}\n",
        [r"acme\.yml", "acme-large", "service_tiers", "lower-case"], id='service-tier-name'),
    pytest.param(VALID + "    service_tiers: {flex: {inptu: 1.0}}\n",
        [r"acme\.yml", "inptu", "unknown field in service tier 'flex'"], id='service-tier-field'),
    pytest.param(VALID + "    history:\n      - {until: \"2025-06-10\", input: 10, output: 40}\n"
             "      - {until: \"2025-01-01\", input: 9, output: 30}\n",
        [r"history\[1\]", "oldest first"], id='history-order'),
    pytest.param(VALID + "    history:\n      - {input: 10, output: 40}\n",
        [r"history\[0\]\.until", "missing"], id='history-without-until'),
    pytest.param(VALID + "    history:\n      - {until: \"June\", input: 10, output: 40}\n",
        [r"history\[0\]\.until", "first day of the next prices", "YYYY-MM-DD"], id='history-bad-date'),
])
def test_broken_file_is_rejected_with_a_fix(tmp_path: Path, text: str, expected: list[str]) -> None:
    with pytest.raises(PricingDataError) as info:
        load_price_files(_write(tmp_path, text))
    for pattern in expected:
        assert re.search(pattern, str(info.value)), (pattern, str(info.value))


def test_duplicate_name_across_files_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, VALID)
    other = VALID.replace("provider: acme", "provider: bcme").replace(
        "  acme-large:\n", "  bcme-large:\n    aliases: [ACME-Large]\n")
    _write(tmp_path, other, "bcme.yml")
    with pytest.raises(PricingDataError, match=r"bcme\.yml.*'ACME-Large'.*already used.*'acme-large' in acme\.yml"):
        load_price_files(tmp_path)


def test_same_provider_in_two_files_is_rejected(tmp_path: Path) -> None:
    _write(tmp_path, VALID)
    _write(tmp_path, VALID.replace("acme-large", "acme-small"), "acme2.yml")
    with pytest.raises(PricingDataError, match=r"acme2\.yml.*'provider'.*already declared in acme\.yml"):
        load_price_files(tmp_path)


def test_empty_folder_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(PricingDataError, match="no price files"):
        load_price_files(tmp_path)


# --- cross-check with genai-prices --------------------------------------------------------------------------

CROSS_CHECKED = [
    "gpt-4o", "gpt-4o-mini", "gpt-4o-2024-05-13", "gpt-4-turbo", "gpt-4.1", "o1", "o3-mini", "gpt-5",
    "claude-3-5-sonnet-20241022", "claude-3-haiku-20240307", "claude-3-opus-20240229", "claude-3-sonnet-20240229",
    "claude-3-7-sonnet-20250219", "claude-sonnet-4-20250514", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001",
    "gemini-1.0-pro", "gemini-1.5-flash", "gemini-1.5-flash-8b", "gemini-1.5-pro", "gemini-2.0-flash",
    "gemini-2.5-pro", "gemini-2.5-flash",
    "mistral-large", "mistral-medium", "open-mixtral-8x22b", "open-mixtral-8x7b", "mistral-embed",
    "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", "meta-llama/Llama-3.3-70B-Instruct-Turbo",
]
_GENAI_FIELDS = {"input": "input_mtok", "output": "output_mtok", "cached_input": "cache_read_mtok",
                 "cache_write": "cache_write_mtok"}


def _numbers(text: str) -> set[Decimal]:
    return {Decimal(number) for number in re.findall(r"\d+(?:\.\d+)?", text)}


def _undocumented_disagreements(ours: ModelPrice, theirs: object) -> list[str]:
    """Differences from genai-prices that ``ours.notes`` does not explain (citing genai's value or the field)."""
    from genai_prices.types import TieredPrices

    notes = ours.notes.lower()
    cited = _numbers(notes)
    problems: list[str] = []

    def check(what: str, mine: Decimal | None, other: Decimal | None, field: str) -> None:
        if other is None or mine == other:
            return
        if "genai-prices" not in notes:
            problems.append(f"{what}: ours {mine}, genai-prices {other}, notes do not mention genai-prices")
        elif other not in cited:
            problems.append(f"{what}: ours {mine}, genai-prices {other}, notes do not cite {other}")

    for field, attr in _GENAI_FIELDS.items():
        value = getattr(theirs, attr, None)
        base = value.base if isinstance(value, TieredPrices) else value
        mine = getattr(ours, field)
        if base is None:
            continue
        if mine is None:
            if field not in notes or "genai-prices" not in notes:
                problems.append(f"{field}: ours unset, genai-prices {base}, notes do not say why")
            continue
        check(field, mine, Decimal(base), field)
        genai_tiers = {tier.start: tier.price for tier in value.tiers} if isinstance(value, TieredPrices) else {}
        our_tiers = {tier.above_prompt_tokens: getattr(tier, field) for tier in ours.tiers}
        if set(genai_tiers) != set(our_tiers) and not ("tier" in notes and "genai-prices" in notes):
            problems.append(f"{field} tiers: ours {sorted(our_tiers)}, genai-prices {sorted(genai_tiers)}")
        for threshold in set(genai_tiers) & set(our_tiers):
            check(f"{field} above {threshold}", our_tiers[threshold], genai_tiers[threshold], field)
    return problems


def _genai_price(price: ModelPrice) -> object:
    genai_prices = pytest.importorskip("genai_prices")
    usage = genai_prices.Usage(input_tokens=1000, output_tokens=1000)
    return genai_prices.calc_price(usage, price.model, provider_id=price.provider).model_price


@pytest.mark.parametrize("model", CROSS_CHECKED)
def test_agrees_with_genai_prices_or_documents_why(model: str) -> None:
    ours = default_table().lookup(model)
    assert ours is not None and ours.model == model
    assert _undocumented_disagreements(ours, _genai_price(ours)) == []


def test_cross_check_catches_an_undocumented_disagreement() -> None:
    ours = default_table().lookup("gpt-4o")
    theirs = _genai_price(ours)
    wrong = ModelPrice(model="gpt-4o", provider="openai", input=Decimal("9.99"), output=ours.output,
                       cached_input=None)
    problems = _undocumented_disagreements(wrong, theirs)
    assert any(problem.startswith("input:") for problem in problems)
    assert any(problem.startswith("cached_input:") for problem in problems)
    documented = ModelPrice(model="gpt-4o", provider="openai", input=Decimal("9.99"), output=ours.output,
                            cached_input=ours.cached_input, notes="genai-prices says 2.50; ours is a test")
    assert _undocumented_disagreements(documented, theirs) == []


# --- coverage of, and agreement with, the pinned genai-prices ------------------------------------------------

_PER_TOKEN = [("input_mtok", "input"), ("output_mtok", "output"), ("cache_read_mtok", "cached_input"),
              ("cache_write_mtok", "cache_write"), ("cache_write_1h_mtok", "cache_write_1h")]


def _genai_models():
    """(mltrack provider, genai model, its prices now) for the per-token models of the providers mltrack covers."""
    import datetime as dt

    genai_prices = pytest.importorskip("genai_prices")
    from genai_prices.data import providers

    from mltrack.engine.price_update import PROVIDERS as MAPPED

    assert genai_prices  # imported for the skip
    # noon UTC: time-of-day prices (DeepSeek) are compared at their day rate, which is what mltrack keeps
    now = dt.datetime.now(dt.timezone.utc).replace(hour=12, minute=0)
    for provider in providers:
        if provider.id in MAPPED:
            for model in provider.models:
                prices = model.get_prices(now)
                if prices.input_mtok is not None or prices.output_mtok is not None:
                    yield MAPPED[provider.id][0], model, prices


def test_genai_prices_is_the_version_the_dev_extra_pins() -> None:
    from importlib.metadata import version

    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    pinned = re.search(r'"genai-prices==([^"]+)"', pyproject)
    assert pinned is not None, "the dev extra must pin genai-prices=="
    assert version("genai-prices") == pinned.group(1)


def test_coverage_of_genai_prices_models_per_provider() -> None:
    """>= 95 % of each provider's per-token (chat, completion, embedding) models in genai-prices are priced."""
    table = default_table()
    counts: dict[str, list[int]] = {}
    missing = []
    for provider, model, _ in _genai_models():
        priced = table.lookup(model.id, provider) is not None
        counts.setdefault(provider, [0, 0])
        counts[provider][0] += priced
        counts[provider][1] += 1
        if not priced:
            missing.append(f"{provider}/{model.id}")
    assert set(counts) == {"openai", "anthropic", "google", "mistral", "deepseek", "xai", "groq", "together",
                           "bedrock", "azure"}
    for provider, (priced, total) in counts.items():
        assert priced >= 0.95 * total, (provider, priced, total, missing)
    assert sum(p for p, _ in counts.values()) >= 500


def _disagreements() -> dict[str, list[str]]:
    """mltrack model -> what differs from genai-prices today (base rates, and the long-context tier thresholds)."""
    import datetime as dt

    from genai_prices.types import TieredPrices

    from mltrack.engine.cost import rates_for

    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    table = default_table()
    found: dict[str, list[str]] = {}
    for provider, model, prices in _genai_models():
        ours = table.lookup(model.id, provider)
        if ours is None:
            continue
        rates = dict(zip([f for _, f in _PER_TOKEN], rates_for(ours, 0, None, day)))
        for theirs, field in _PER_TOKEN:
            value = getattr(prices, theirs)
            base = value.base if isinstance(value, TieredPrices) else value
            if base is not None and rates[field] != base:
                found.setdefault(ours.model, []).append(f"{field} {rates[field]} vs {base}")
        starts = sorted({tier.start for theirs, _ in _PER_TOKEN if isinstance(getattr(prices, theirs), TieredPrices)
                         for tier in getattr(prices, theirs).tiers})
        period = ours.period_for(day)
        mine = sorted(tier.above_prompt_tokens for tier in (period.tiers if period else ours.tiers))
        if mine != starts:
            found.setdefault(ours.model, []).append(f"tiers {mine} vs {starts}")
    return found


def test_every_disagreement_with_genai_prices_is_listed_in_the_docs() -> None:
    docs = (Path(__file__).parent.parent / "docs" / "pricing.md").read_text()
    section = docs.split("## Where mltrack and genai-prices disagree", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().strip("`"): line for line in section.splitlines() if line.startswith("| `")}
    found = _disagreements()
    assert found, "the cross-check found nothing at all: is it still comparing?"
    for model, problems in found.items():
        assert model in rows, f"{model}: {problems} is not listed in docs/pricing.md"
