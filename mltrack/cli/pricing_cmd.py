"""``mltrack pricing list|show|update`` and ``mltrack cost``: the price table as users (and their overrides) see it."""

from __future__ import annotations

import argparse
import sys
import tempfile
from decimal import Decimal

from mltrack.cli.money import format_usd
from mltrack.record import Usage


def _table():
    from mltrack.config import get_settings
    from mltrack.engine.process import price_table

    settings = get_settings()
    return price_table(settings.pricing, settings.pricing_dir)


def _rate(value: Decimal | None) -> str:
    return "-" if value is None else f"{value.normalize():f}"


def cmd_pricing_list(args: argparse.Namespace) -> int:
    prices = sorted(_table().models(), key=lambda p: (p.provider, p.model))
    if args.provider:
        prices = [p for p in prices if p.provider == args.provider]
    rows = [("provider", "model", "input", "output", "cached_input", "cache_write")]
    rows += [(p.provider, p.model, _rate(p.input), _rate(p.output), _rate(p.cached_input), _rate(p.cache_write))
             for p in prices]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"\n{len(prices)} models, USD per 1M tokens")
    return 0


def cmd_pricing_show(args: argparse.Namespace) -> int:
    price = _table().lookup(args.model)
    if price is None:
        print(f"mltrack: no price known for {args.model!r} (add it under 'pricing:' in .mltrack.yml)")
        return 1
    print(f"model:        {price.model}")
    if price.model != args.model:
        print(f"looked up as: {args.model}")
    print(f"provider:     {price.provider}")
    print(f"input:        ${_rate(price.input)} / 1M tokens")
    print(f"output:       ${_rate(price.output)} / 1M tokens")
    print(f"cached_input: {'$' + _rate(price.cached_input) + ' / 1M tokens' if price.cached_input is not None else '-'}")
    print(f"cache_write:  {'$' + _rate(price.cache_write) + ' / 1M tokens' if price.cache_write is not None else '-'}")
    if price.cache_write_1h is not None:
        print(f"cache_write_1h: ${_rate(price.cache_write_1h)} / 1M tokens")
    for tier in price.tiers:
        print(f"above {tier.above_prompt_tokens} prompt tokens: input ${_rate(tier.input)}, output ${_rate(tier.output)}")
    for name, rates in price.service_tiers:
        given = ", ".join(f"{field} ${_rate(getattr(rates, field))}" for field in
                          ("input", "output", "cached_input", "cache_write") if getattr(rates, field) is not None)
        print(f"service_tier {name}: {given}")
    for period in price.history:
        print(f"before {period.until}: input ${_rate(period.rates.input)}, output ${_rate(period.rates.output)}")
    print(f"source:       {price.source or 'user configuration'}")
    print(f"as of:        {price.as_of or '-'}")
    if price.origin:
        print(f"from:         {price.origin} (mltrack pricing update)")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from mltrack.engine.cost import compute_cost

    price = _table().lookup(args.model)
    if price is None:
        print(f"mltrack: no price known for {args.model!r} (add it under 'pricing:' in .mltrack.yml)")
        return 1
    usage = Usage(prompt_tokens=args.prompt_tokens, completion_tokens=args.completion_tokens,
                  total_tokens=args.prompt_tokens + args.completion_tokens,
                  cached_prompt_tokens=args.cached_tokens, cache_write_tokens=args.cache_write_tokens)
    cost = compute_cost(price, usage)
    print(f"model:      {price.model} ({price.provider})")
    print(f"prompt:     {args.prompt_tokens} tokens -> {format_usd(cost.prompt)}")
    print(f"completion: {args.completion_tokens} tokens -> {format_usd(cost.completion)}")
    print(f"total:      {format_usd(cost.total)}")
    return 0


def cmd_pricing_update(args: argparse.Namespace) -> int:
    """Regenerate the generated price files from genai-prices and print what changes for the user."""
    import datetime as _dt
    from pathlib import Path

    from mltrack.config import get_settings
    from mltrack.engine import price_update
    from mltrack.engine.pricing import PriceTable, generated_dir, pricing_dir, user_pricing_dir
    from mltrack.engine.price_files import has_price_files

    settings = get_settings()
    target = Path(args.out).expanduser() if args.out else user_pricing_dir(settings.pricing_dir)
    current = target if has_price_files(target) else generated_dir()
    before = PriceTable.layered(pricing_dir(), current)
    providers, origin = price_update.read_source(Path(args.source) if args.source else None)
    files = price_update.generate(providers, origin, _dt.datetime.now(_dt.timezone.utc).date())
    if not files:
        print(f"mltrack: {origin} has none of the providers mltrack prices; nothing written", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as scratch:
        price_update.write_files(files, Path(scratch))
        after = PriceTable.layered(pricing_dir(), Path(scratch))  # validates what would be written
    if settings.pricing:
        before, after = before.with_overrides(settings.pricing), after.with_overrides(settings.pricing)
    changes = price_update.diff(before.models(), after.models())
    for change in changes:
        if change.kind == "added":
            print(f"+ {change.provider}/{change.model}: {change.after}")
        elif change.kind == "removed":
            print(f"- {change.provider}/{change.model}: {change.before}")
        else:
            print(f"~ {change.provider}/{change.model}: {change.before} -> {change.after}")
    counts = {kind: sum(1 for c in changes if c.kind == kind) for kind in ("added", "changed", "removed")}
    summary = (f"{counts['added']} added, {counts['changed']} changed, {counts['removed']} removed "
               f"({len(after.models())} models; prices from {origin}, USD per 1M tokens)")
    if args.dry_run:
        print(f"\ndry run: {summary}; nothing written (would write {target})")
        return 0
    price_update.write_files(files, target)
    print(f"\n{summary}; written to {target}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    pricing = sub.add_parser("pricing", help="list or show model prices")
    verbs = pricing.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="every known model and its prices")
    listing.add_argument("--provider", help="only this provider's models")
    listing.set_defaults(func=cmd_pricing_list)
    show = verbs.add_parser("show", help="one model's prices and where they came from")
    show.add_argument("model")
    show.set_defaults(func=cmd_pricing_show)
    update = verbs.add_parser("update", help="refresh prices from genai-prices (installed, or a data file)")
    update.add_argument("--from", dest="source", metavar="FILE",
                        help="a genai-prices data.json to read instead of the installed genai-prices package")
    update.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    update.add_argument("--out", metavar="DIR",
                        help="folder to write (default: pricing_dir, else mltrack/pricing in the user config dir)")
    update.set_defaults(func=cmd_pricing_update)

    cost = sub.add_parser("cost", help="what a call with these token counts costs")
    cost.add_argument("model")
    cost.add_argument("--prompt-tokens", type=int, required=True, help="prompt tokens, cached ones included")
    cost.add_argument("--completion-tokens", type=int, required=True)
    cost.add_argument("--cached-tokens", type=int, default=0, help="of the prompt tokens, read from cache")
    cost.add_argument("--cache-write-tokens", type=int, default=0, help="of the prompt tokens, written to cache")
    cost.set_defaults(func=cmd_cost)
