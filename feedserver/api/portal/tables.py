"""The portal's tables: one typed model drawn as HTML and downloaded as CSV or JSON.

A ``Column`` is one column on screen and one or more in a download (``keys``): the customers
table shows a feed's bytes with its requests beneath, and downloads both as numbers. A ``Cell``
carries the formatted ``text`` (what people read) and the raw ``values`` (what a spreadsheet
gets: integers, decimal strings, ids), so a download never has to parse what the page shows.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Literal

import msgspec

Raw = str | int | Decimal | None
Align = Literal["left", "right"]


class Column(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    keys: tuple[str, ...]
    align: Align = "left"


class Cell(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    values: tuple[Raw, ...] = ()
    sub: str = ""  # a second, muted line
    href: str = ""
    title: str = ""  # full value of a shortened text
    tone: str = ""  # "", "bad" (negative changes), "muted", "ok"


class Table(msgspec.Struct, frozen=True, kw_only=True):
    name: str  # download name: <name>.csv / <name>.json
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    footer: list[Cell] = msgspec.field(default_factory=list)
    download: str = ""  # the download URL without the extension ("" = none)
    empty: str = "Nothing this month."
    note: str = ""

    @property
    def keys(self) -> list[str]:
        return [key for column in self.columns for key in column.keys]

    def records(self) -> list[dict[str, Raw]]:
        keys = self.keys
        out = []
        for row in self.rows:
            values = [value for cell in row for value in cell.values]
            out.append(dict(zip(keys, values, strict=True)))
        return out


def cell(text: str, *values: Raw, **extra: str) -> Cell:
    return Cell(text=text, values=values, **extra)


def to_csv(table: Table) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(table.keys)
    for record in table.records():
        w.writerow(["" if v is None else v for v in record.values()])
    return out.getvalue()


def to_json(table: Table) -> bytes:
    return msgspec.json.encode(table.records())
