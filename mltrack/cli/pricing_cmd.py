"""``mltrack pricing list|show`` and ``mltrack cost``: the price table as users (and their overrides) see it."""

from __future__ import annotations

import argparse
from decimal import Decimal

from mltrack.record import Usage


def _table():
    from mltrack.config import get_settings
    from mltrack.engine.process import price_table

    return price_table(get_settings().pricing)


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
    for tier in price.tiers:
        print(f"above {tier.above_prompt_tokens} prompt tokens: input ${_rate(tier.input)}, output ${_rate(tier.output)}")
    print(f"source:       {price.source or 'user configuration'}")
    print(f"as of:        {price.as_of or '-'}")
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
    print(f"prompt:     {args.prompt_tokens} tokens -> ${cost.prompt.normalize():f}")
    print(f"completion: {args.completion_tokens} tokens -> ${cost.completion.normalize():f}")
    print(f"total:      ${cost.total.normalize():f}")
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

    cost = sub.add_parser("cost", help="what a call with these token counts costs")
    cost.add_argument("model")
    cost.add_argument("--prompt-tokens", type=int, required=True, help="prompt tokens, cached ones included")
    cost.add_argument("--completion-tokens", type=int, required=True)
    cost.add_argument("--cached-tokens", type=int, default=0, help="of the prompt tokens, read from cache")
    cost.add_argument("--cache-write-tokens", type=int, default=0, help="of the prompt tokens, written to cache")
    cost.set_defaults(func=cmd_cost)
