"""Numbers for people: separators, bytes, money, h:mm (pure; properties where they fit)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from feedserver.api.portal import fmt


def test_examples() -> None:
    assert fmt.count(1234567) == "1,234,567"
    assert fmt.count(-5) == "\u22125"
    assert [fmt.nbytes(n) for n in (0, 999, 1000, 1_234_567, 10**9, 12_345_678_901,
                                    999_999_999_999)] == [
        "0 B", "999 B", "1.00 kB", "1.23 MB", "1.00 GB", "12.3 GB", "1.00 TB"]
    assert fmt.nbytes(-2_500_000_000) == "\u22122.50 GB"
    assert fmt.hours(5400) == "1:30" and fmt.hours(74) == "0:01" and fmt.hours(0) == "0:00"
    assert fmt.hours(360_000) == "100:00"
    assert fmt.money(Decimal("1234.5"), "USD") == "1,234.50 USD"
    assert fmt.money(Decimal("-12.5"), "EUR") == "\u221212.50 EUR"
    assert fmt.money(Decimal("1500.4"), "JPY") == "1,500 JPY"
    assert fmt.quantity("stream_seconds", 3600) == "1:00"
    assert fmt.decimal_quantity("GB", Decimal("3.500040")) == "3.500 GB"
    assert fmt.decimal_quantity("1000 lookups", Decimal("0.077")) == "77 lookups"
    assert fmt.short("0123456789abcdef") == "01234567\u2026"


@given(st.integers(min_value=0, max_value=10**18))
def test_count_round_trips(n: int) -> None:
    assert int(fmt.count(n).replace(",", "")) == n


@given(st.integers(min_value=1000, max_value=10**17))
def test_nbytes_is_within_rounding_of_the_value(n: int) -> None:
    number, unit = fmt.nbytes(n).split(" ")
    scale = {"kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15}[unit]
    shown = Decimal(number.replace(",", "")) * scale
    # three significant digits: off by at most half a unit of the third, 0.5% of the value
    assert abs(shown - n) <= Decimal(n) * Decimal("0.005")
    assert len(number.replace(",", "").replace(".", "")) <= 4


@given(st.integers(min_value=0, max_value=10**9))
def test_hours_are_whole_minutes(seconds: int) -> None:
    h, m = fmt.hours(seconds).replace(",", "").split(":")
    assert len(m) == 2 and 0 <= int(m) < 60
    assert abs((int(h) * 60 + int(m)) * 60 - seconds) <= 30


@given(st.decimals(min_value=-10**9, max_value=10**9, places=4, allow_nan=False))
def test_money_has_two_decimals(amount: Decimal) -> None:
    text = fmt.money(amount, "USD")
    assert text.endswith(" USD") and len(text.split(" ")[0].split(".")[1]) == 2
