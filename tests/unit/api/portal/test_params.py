"""What arrives in portal URLs and forms is hostile input: every parser either accepts it or
raises its typed error, for any text (property-based)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.api.portal.params import (
    day_param,
    feed_param,
    local_path,
    month_param,
    whole_number,
)
from feedserver.errors import InvalidParameter, NotFound

NOW = datetime(2026, 11, 5, tzinfo=UTC)


@given(st.text(max_size=40))
def test_month(value: str) -> None:
    try:
        month = month_param(value, NOW)
    except InvalidParameter:
        return
    assert month == (value or "2026-11")
    assert 2000 <= int(month[:4]) <= 2999 and len(month) == 7


@given(st.text(max_size=20))
def test_day(value: str) -> None:
    with contextlib.suppress(NotFound):
        assert len(day_param(value)) == 10


@given(st.text(max_size=20))
def test_feed(value: str) -> None:
    with contextlib.suppress(NotFound):
        feed_param(value)


@given(st.text(max_size=300))
def test_redirects_stay_on_the_portal(value: str) -> None:
    target = local_path(value, default="/usage")
    assert target.startswith("/usage") and not target.startswith("//")
    assert "\\" not in target and all(ord(ch) > 0x20 for ch in target)


@given(st.text(max_size=30))
def test_whole_number(value: str) -> None:
    try:
        n = whole_number(value, "quantity")
    except InvalidParameter:
        return
    assert 0 <= n < 10**18


@pytest.mark.parametrize("value", ["0000-01", "9999-12", "2026-13", "²026-01", " 2026-01"])
def test_months_out_of_range_or_malformed(value: str) -> None:
    with pytest.raises(InvalidParameter):
        month_param(value, NOW)
