"""Stacked bar charts as plain geometry (pure): the template draws them as inline SVG.

No chart library and no script: ``stacked_bars`` turns ``{series: {day: value}}`` into
rectangles, axis ticks and a legend in a fixed 640 x 260 viewBox that scales with its card.
Series keep their colour slot from ``order`` (feeds in a fixed order), so a feed has the same
colour on every chart. Negative values (a day whose corrections exceed it) are drawn as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import msgspec

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 28
SLOTS = 8  # colour classes s0..s7 in the stylesheet


class Segment(msgspec.Struct, frozen=True, kw_only=True):
    x: float
    y: float
    width: float
    height: float
    slot: int
    title: str


class Tick(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    label: str


class LegendItem(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    slot: int
    total: str


class Chart(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    segments: list[Segment]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    legend: list[LegendItem]
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not self.segments


def nice_step(value: int) -> int:
    """A round whole number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten) of at
    least ``value / 4``: four equal steps from 0 that reach ``value``."""
    quarter = -(-max(1, value) // 4)
    power = 1
    while True:
        for tenths in (10, 15, 20, 25, 30, 40, 50, 60, 80):
            if tenths * power % 10 == 0 and tenths * power // 10 >= quarter:
                return tenths * power // 10
        power *= 10


def stacked_bars(title: str, days: Sequence[str], series: Mapping[str, Mapping[str, int]],
                 fmt: Callable[[int], str], *, order: Sequence[str] = ()) -> Chart:
    """One bar per day (``days`` in order), stacked by series."""
    names = [s for s in order if s in series] + sorted(s for s in series if s not in order)
    slot_of = {name: (list(order).index(name) if name in order else len(order) + i) % SLOTS
               for i, name in enumerate(names)}
    totals = [sum(max(0, series[s].get(day, 0)) for s in names) for day in days]
    top = 4 * nice_step(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot_w = plot_w / max(1, len(days))
    bar_w = max(1.0, slot_w * 0.72)
    segments: list[Segment] = []
    for i, day in enumerate(days):
        base = 0
        x = LEFT + i * slot_w + (slot_w - bar_w) / 2
        for name in names:
            value = max(0, series[name].get(day, 0))
            if not value:
                continue
            y0 = TOP + plot_h * (1 - (base + value) / top)
            height = plot_h * value / top
            segments.append(Segment(x=round(x, 2), y=round(y0, 2), width=round(bar_w, 2),
                                    height=round(max(height, 0.5), 2), slot=slot_of[name],
                                    title=f"{day} \u00b7 {name}: {fmt(value)}"))
            base += value
    step = max(1, len(days) // 8) if len(days) > 10 else 1
    x_ticks = [Tick(at=round(LEFT + (i + 0.5) * slot_w, 2), label=str(int(day[8:10])))
               for i, day in enumerate(days) if i % step == 0]
    y_ticks = ([Tick(at=round(TOP + plot_h * (1 - k / 4), 2), label=fmt(top * k // 4))
                for k in range(5)] if segments else [Tick(at=TOP + plot_h, label=fmt(0))])
    legend = [LegendItem(name=name, slot=slot_of[name],
                         total=fmt(sum(series[name].get(d, 0) for d in days))) for name in names]
    return Chart(title=title, segments=segments, x_ticks=x_ticks, y_ticks=y_ticks,
                 legend=legend)
