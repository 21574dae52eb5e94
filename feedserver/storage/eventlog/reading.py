"""Reading helpers over any ``EventLog``: where to start, and a bounded or following read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

from feedserver.storage.eventlog.base import EventLog, LogRecord, TopicPartition


async def start_positions(
    log: EventLog,
    topic: str,
    *,
    offsets: Mapping[int, int] | None = None,
    since_ms: int | None = None,
    partitions: Sequence[int] | None = None,
) -> dict[TopicPartition, int]:
    """Where to start reading ``topic``: explicit offsets (inclusive), a time, or the tail."""
    ends = await log.end_offsets(topic)
    chosen = sorted(ends) if partitions is None else [p for p in partitions if p in ends]
    by_time = await log.offsets_for_times(topic, since_ms) if since_ms is not None else {}
    positions: dict[TopicPartition, int] = {}
    for p in chosen:
        if offsets is not None and p in offsets:
            positions[(topic, p)] = max(0, min(offsets[p], ends[p]))
        elif since_ms is not None:
            positions[(topic, p)] = by_time[p]
        else:
            positions[(topic, p)] = ends[p]
    return positions


async def read(
    log: EventLog,
    positions: Mapping[TopicPartition, int],
    *,
    follow: bool = True,
    poll_timeout: float = 1.0,
    batch: int = 500,
) -> AsyncIterator[LogRecord]:
    """Records from ``positions`` on. With ``follow`` False, stop at the end offsets seen at the
    start (bounded read); otherwise wait for new records forever."""
    stop: dict[TopicPartition, int] = {}
    if not follow:
        for topic in {t for t, _ in positions}:
            for p, end in (await log.end_offsets(topic)).items():
                if (topic, p) in positions and positions[(topic, p)] < end:
                    stop[(topic, p)] = end
        if not stop:
            return
    reader = log.reader({tp: off for tp, off in positions.items() if follow or tp in stop})
    try:
        while True:
            for record in await reader.poll(max_records=batch, timeout=poll_timeout):
                tp = (record.topic, record.partition)
                if not follow:
                    if tp not in stop or record.offset >= stop[tp]:
                        continue
                    if record.offset == stop[tp] - 1:
                        del stop[tp]
                yield record
            if not follow and not stop:
                return
    finally:
        await reader.close()
