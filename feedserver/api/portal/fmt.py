"""Numbers for people (pure): thousands separators, bytes in kB/MB/GB, money with 2 decimals,
hours as h:mm. Used as template filters and by the table builders.

Bytes are decimal (1 GB = 10^9 B), as the invoice prices egress. A quantity is formatted by what
its meter counts: ``bytes`` as bytes, ``stream_seconds`` as h:mm, everything else as a count.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
_ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
MINUS = "\u2212"  # a real minus sign, as wide as a digit
METER_LABELS = {
    "bytes": "Bytes", "requests": "Requests", "articles": "Articles",
    "stream_seconds": "Stream time", "stream_events": "Stream events", "downloads": "Downloads",
    "credit": "Credit",
}


def _sign(negative: bool, text: str) -> str:
    return f"{MINUS}{text}" if negative else text


def count(n: int | Decimal) -> str:
    """``1234567`` -> ``1,234,567``."""
    value = int(n)
    return _sign(value < 0, f"{abs(value):,}")


def nbytes(n: int) -> str:
    """``1234567`` -> ``1.23 MB``; below 1 kB the exact number of bytes."""
    size = abs(int(n))
    if size < 1000:
        return _sign(n < 0, f"{size:,} B")
    unit = 0
    value = Decimal(size)
    while True:
        while value >= 1000 and unit < len(_UNITS) - 1:
            value /= 1000
            unit += 1
        digits = 2 if value < 10 else 1 if value < 100 else 0
        shown = value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
        if shown < 1000 or unit == len(_UNITS) - 1:
            break
        value = shown  # 999.6 GB rounds to 1,000 GB: say 1.00 TB
    return _sign(n < 0, f"{shown:,} {_UNITS[unit]}")


def hours(seconds: int | Decimal) -> str:
    """Seconds as ``h:mm`` (``5400`` -> ``1:30``), rounded to the minute."""
    total = int((abs(Decimal(seconds)) / 60).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return _sign(Decimal(seconds) < 0 and total > 0, f"{total // 60:,}:{total % 60:02d}")


def money(amount: Decimal | int, currency: str = "") -> str:
    """``Decimal("1234.5")``, ``"USD"`` -> ``1,234.50 USD`` (no decimals for JPY and the like)."""
    exp = 0 if currency.upper() in _ZERO_DECIMAL_CURRENCIES else 2
    value = Decimal(amount).quantize(Decimal(1).scaleb(-exp), rounding=ROUND_HALF_UP)
    text = _sign(value < 0, f"{abs(value):,}")
    return f"{text} {currency}" if currency else text


def quantity(meter: str, n: int) -> str:
    """A meter's quantity in its own unit."""
    if meter == "bytes":
        return nbytes(n)
    if meter == "stream_seconds":
        return hours(n)
    return count(n)


def decimal_quantity(unit: str, q: Decimal) -> str:
    """An invoice line's quantity: ``GB`` with 3 decimals, ``hour`` as h:mm, else a count."""
    if unit == "GB":
        return f"{q.quantize(Decimal('0.001'), rounding=ROUND_HALF_UP):,} GB"
    if unit == "hour":
        return hours(q * 3600) + " h"
    if unit == "1000 lookups":
        n = q * 1000
        return f"{count(n)} lookup{'' if n == 1 else 's'}"
    if q == q.to_integral_value():
        return count(q)
    return f"{q.normalize():,}"


def meter_label(meter: str) -> str:
    return METER_LABELS.get(meter, meter.replace("_", " ").capitalize())


def short(text: str, keep: int = 8) -> str:
    """A long id shortened for a table cell (the full value goes in a title attribute)."""
    return text if len(text) <= keep + 1 else text[:keep] + "\u2026"
