"""Money as the CLI prints it: USD with at least two decimals and three significant digits (``$1.00``, ``$0.000150``)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_SIGNIFICANT = 3


def format_usd(amount: Decimal | float | int | None, *, sign: bool = True) -> str:
    """``amount`` in USD for people: at least two decimals, more for small amounts so three significant digits
    show (``$1.00``, ``$12.35``, ``$0.000150``); ``-`` for None. Exact Decimal rounding, half up."""
    if amount is None:
        return "-"
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    decimals = 2
    if value and abs(value) < 1:
        decimals = max(2, _SIGNIFICANT - 1 - value.copy_abs().adjusted())
    rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if abs(rounded) >= 1:  # 0.999999 rounds up to 1: print $1.00, not $1.000
        rounded = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    text = f"{abs(rounded):f}"
    negative = rounded < 0
    return f"{'-' if negative else ''}{'$' if sign else ''}{text}"
