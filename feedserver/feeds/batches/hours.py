"""Hourly batches: which hour a record belongs to, and when an hour is complete (pure).

An hour is a UTC ``datetime`` at a whole hour; it covers ``[start, start + 1 h)`` in record
timestamps of the article topic (the time each Article event entered our feed, not the time
of the wiki edit). Why record time and not the edit's ``dt``:

* record timestamps only move forward per partition (within the producer's clock skew), so
  "every partition's reader has passed the hour" is decidable and an hour can be sealed;
  edit times can arrive arbitrarily late (replays, backfills, a lagging consumer), and an
  hour keyed on them could never be declared complete;
* the realtime feed's ``since`` is in the same time (``offsets_for_times``), so "realtime
  from T" and "the batches from T's hour on" line up.

An hour is complete when it is over by ``grace`` AND every partition's reader has passed it:
it saw a record stamped at or after ``end + grace``, or it reached the end of its partition
as captured after ``end + grace`` (any record appended later gets a later stamp, up to the
grace that covers producer clock skew and in-flight appends).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta

from feedserver.errors import InvalidParameter

HOUR_MS = 3_600_000
DEFAULT_GRACE_MS = 60_000
_HOUR_ARG = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2})\Z")
_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
_HH = re.compile(r"^[0-9]{2}\Z")


def hour_of(timestamp_ms: int) -> datetime:
    """The hour a record stamped ``timestamp_ms`` belongs to."""
    return datetime.fromtimestamp((timestamp_ms // HOUR_MS) * HOUR_MS / 1000, tz=UTC)


def start_ms(hour: datetime) -> int:
    return int(hour.timestamp() * 1000)


def end_ms(hour: datetime) -> int:
    return start_ms(hour) + HOUR_MS


def _make(y: str, m: str, d: str, h: str, raw: str) -> datetime:
    try:
        day = date(int(y), int(m), int(d))
    except ValueError:
        raise InvalidParameter(f"invalid date {raw[:40]!r}") from None
    hour = int(h)
    if hour > 23:
        raise InvalidParameter(f"invalid hour {h!r}: must be 00 to 23")
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def parse_hour_arg(raw: str) -> datetime:
    """``YYYY-MM-DDTHH`` (UTC) as used by ``feedserver batches build --hour``."""
    m = _HOUR_ARG.match(raw)
    if not m:
        raise InvalidParameter(f"invalid hour {raw[:40]!r}: expected YYYY-MM-DDTHH (UTC)")
    y, mo, d, h = m.groups()
    return _make(y, mo, d, h, raw)


def parse_date_hour(raw_date: str, raw_hour: str) -> datetime:
    """The API's ``{date}/{hour}``: ``YYYY-MM-DD`` and ``00``..``23``."""
    m = _DATE.match(raw_date)
    if not m:
        raise InvalidParameter(f"invalid date {raw_date[:40]!r}: expected YYYY-MM-DD")
    if not _HH.match(raw_hour):
        raise InvalidParameter(f"invalid hour {raw_hour[:40]!r}: expected 00 to 23")
    y, mo, d = m.groups()
    return _make(y, mo, d, raw_hour, raw_date)


def date_text(hour: datetime) -> str:
    return hour.strftime("%Y-%m-%d")


def hour_text(hour: datetime) -> str:
    return hour.strftime("%H")


def label(hour: datetime) -> str:
    """``YYYY-MM-DDTHH``, the CLI form."""
    return hour.strftime("%Y-%m-%dT%H")


def is_over(hour: datetime, now_ms: int, grace_ms: int = DEFAULT_GRACE_MS) -> bool:
    return now_ms >= end_ms(hour) + grace_ms


def partition_passed(hour: datetime, *, last_timestamp_ms: int | None, at_end: bool,
                     captured_ms: int, grace_ms: int = DEFAULT_GRACE_MS) -> bool:
    """Has one partition's reader passed ``hour``? ``last_timestamp_ms`` is the stamp of the
    last record it read (None: none), ``at_end`` whether it reached the end offsets captured
    at ``captured_ms``."""
    limit = end_ms(hour) + grace_ms
    if last_timestamp_ms is not None and last_timestamp_ms >= limit:
        return True
    return at_end and captured_ms >= limit


def hour_complete(hour: datetime, passed: Mapping[int, bool], now_ms: int,
                  grace_ms: int = DEFAULT_GRACE_MS) -> bool:
    """Complete: over by ``grace`` and every partition's reader passed it (``passed`` maps
    each partition to ``partition_passed``; no partitions means nothing can be late)."""
    return is_over(hour, now_ms, grace_ms) and all(passed.values())


def retention_cutoff(now_ms: int, retention_hours: int) -> datetime:
    """The oldest hour kept: hours starting before it are deleted."""
    return hour_of(now_ms) - timedelta(hours=max(1, retention_hours))


def pending_hours(now_ms: int, retention_hours: int, built: Iterable[datetime], *,
                  earliest: datetime | None, grace_ms: int = DEFAULT_GRACE_MS
                  ) -> list[datetime]:
    """Hours to build, oldest first: within retention, not before ``earliest`` (the hour of
    the oldest record still in the log; None = an empty log, nothing to build), over by
    ``grace`` and not built yet."""
    if earliest is None:
        return []
    done = set(built)
    hour = max(retention_cutoff(now_ms, retention_hours), earliest)
    out = []
    while is_over(hour, now_ms, grace_ms):
        if hour not in done:
            out.append(hour)
        hour += timedelta(hours=1)
    return out
