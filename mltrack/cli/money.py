"""Money as the CLI prints it (``mltrack cost``, ``mltrack report``): ``$``, at least two decimals and three
significant digits, more when the exact value has them, up to six (``$1.00``, ``$0.000150``, ``$0.0003525``)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_MIN_SIGNIFICANT = 3
_MAX_SIGNIFICANT = 6


def format_usd(value: Decimal | float | int | None) -> str:
    """``value`` USD for people: ``$1.00``, ``$12.345``, ``$0.000150``, ``$0.0003525``, ``$1234.57``, ``-$0.50``;
    ``-`` for None. Exact Decimal rounding, half up (floats are read through ``str``)."""
    if value is None:
        return "-"
    value = value if isinstance(value, Decimal) else Decimal(str(value))
    if value == 0:
        return "$0.00"
    sign = "-" if value < 0 else ""
    value = abs(value)
    magnitude = value.adjusted()  # exponent of the leading digit: 0.00015 -> -4, 12.3 -> 1
    exact_decimals = max(0, -value.normalize().as_tuple().exponent)  # type: ignore[operator]
    min_decimals = max(2, _MIN_SIGNIFICANT - 1 - magnitude)
    max_decimals = max(2, _MAX_SIGNIFICANT - 1 - magnitude)
    decimals = min(max(min_decimals, exact_decimals), max_decimals)
    rounded = value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if rounded.adjusted() > magnitude:  # 0.9999999 rounds up to 1: print $1.00, not $1.00000
        return format_usd(Decimal(sign + str(rounded)))
    return f"{sign}${rounded:f}"
