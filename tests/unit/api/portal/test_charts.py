"""Stacked bar geometry: bars stack to the day's total, scale to a round top, stay inside."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feedserver.api.portal.charts import HEIGHT, WIDTH, nice_step, stacked_bars

DAYS = [f"2026-11-{d:02d}" for d in range(1, 31)]


def test_bars_stack_by_series_in_a_fixed_colour_order() -> None:
    chart = stacked_bars("t", DAYS, {"chunks": {"2026-11-02": 30}, "snapshots":
                                     {"2026-11-02": 10, "2026-11-05": 40}}, str,
                         order=("snapshots", "chunks"))
    day2 = [s for s in chart.segments if s.title.startswith("2026-11-02")]
    assert [s.slot for s in day2] == [0, 1]  # snapshots first, at the bottom
    assert day2[0].y + day2[0].height == chart.plot_bottom
    assert abs(day2[1].y + day2[1].height - day2[0].y) < 0.01
    assert [t.label for t in chart.y_ticks] == ["0", "10", "20", "30", "40"]
    assert [legend.total for legend in chart.legend] == ["50", "30"]
    assert not chart.empty and stacked_bars("t", DAYS, {}, str).empty


@given(st.integers(min_value=0, max_value=10**15))
def test_the_top_covers_the_largest_bar(value: int) -> None:
    step = nice_step(value)
    assert 4 * step >= value and (value == 0 or 4 * step < 4 * value + 8)


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.dictionaries(st.sampled_from(DAYS), st.integers(-10, 10**12))))
def test_every_segment_is_inside_the_plot(series: dict[str, dict[str, int]]) -> None:
    chart = stacked_bars("t", DAYS, series, str)
    for s in chart.segments:
        assert s.x >= 0 and s.x + s.width <= WIDTH
        assert s.y - 0.01 >= 0 and s.y + s.height <= HEIGHT
