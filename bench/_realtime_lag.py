"""``bench.realtime`` memory phase: the server's RSS while slow subscribers lag.

A server whose hub ring holds ``LAG_RING`` records (``FEEDSERVER_REALTIME_MAX_SUBSCRIBER_LAG``;
the ring's other bound, ``FEEDSERVER_REALTIME_BUFFER_BYTES``, stays at its default) streams
``LAG_RECORDS`` records at ``LAG_RATE``/s to ``LAG_LIVE`` subscribers that keep up and
``LAG_SLOW`` that never read (a small receive window: the server's writes back up at once).
The slow ones fall further behind with every record until the ring drops a tick they have
not taken, and the hub cuts them (``slow``, with their resume offsets).

The server's RSS is sampled every ``SAMPLE_SECONDS``: before the records (every subscriber
connected, idle), once the ring is full (twice ``LAG_RING`` records produced: from then on the
hub holds a constant number of records, whoever lags, and the slow subscribers are past it),
and its maximum over the rest of the production, while the slow ones lag further and are cut
and the live ones keep up.

Few live subscribers on purpose: a live stream remembers a 14-byte billing mark per frame it
delivered, up to 32k frames (metering's bill-each-event-once, ``Edges``), so 50 live streams
grow the server by about 0.7 MB/s at 1,000 records/s until each holds its 450 KB, with or
without slow subscribers (measured: +16 MB without any slow one and +19 MB with 50, over 26 s
after the ring filled). That growth is per live stream and bounded; this phase is about the
slow ones. Target: flat, i.e. the growth after the
ring filled stays under ``FLAT_MB`` (allocator noise), whatever the slow subscribers do; the
growth up to then is the ring itself (its records and their rendering) plus a socket's worth
of buffered bytes per slow subscriber, printed beside it.
"""

from __future__ import annotations

import asyncio
import json
import time

from bench._realtime_procs import ROOT, Clients, producer_args, rss_bytes

LAG_RING = 2000  # records the hub keeps (the server's max subscriber lag)
LAG_RECORDS = 10_000
LAG_RATE = 1000
LAG_LIVE = 10  # few: a live stream's billing marks grow its memory by design (see above)
LAG_SLOW = 50
SAMPLE_SECONDS = 0.1
FLAT_MB = 8.0
DRAIN_TIMEOUT = 20.0


class Lagged:
    """The phase's outcome (MB, counts)."""

    def __init__(self, before: float, full: float, peak: float, delivered: int, expected: int,
                 cut: int) -> None:
        self.before, self.full, self.peak = before, full, peak
        self.delivered, self.expected, self.cut = delivered, expected, cut

    @property
    def growth_after_full(self) -> float:
        return self.peak - self.full


async def lag_memory(port: int, key: str, target: str, topic: str, server_pid: int) -> Lagged:
    mb = 2**20
    async with Clients(port, key, LAG_LIVE + LAG_SLOW, DRAIN_TIMEOUT, slow=LAG_SLOW) as clients:
        await asyncio.sleep(0.5)  # every stream has its slot and subscription
        before = rss_bytes(server_pid)
        samples: list[tuple[float, int]] = []
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *producer_args(target, topic, 0, LAG_RECORDS, LAG_RATE),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        try:
            done = asyncio.ensure_future(proc.communicate())
            while not done.done():
                samples.append((time.monotonic() - start, rss_bytes(server_pid)))
                await asyncio.wait([done], timeout=SAMPLE_SECONDS)
            out, _ = await asyncio.wait_for(done, 3 * LAG_RECORDS / LAG_RATE + 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        produced = json.loads(out)
        sent, run = int(produced["sent"]), float(produced["seconds"])
        results = await clients.finish(sent)
    # The ring is full (and the slow ones are past it) once twice its records were produced.
    full_at = min(run / 2, 2 * LAG_RING / (sent / run))
    full = next(r for t, r in samples if t >= full_at)
    peak = max(r for t, r in samples if t >= full_at)
    delivered = sum(sum(r.received) for r in results)
    cut = sum(r.cut for r in results)
    lagged = Lagged(before / mb, full / mb, peak / mb, delivered, sent * LAG_LIVE, cut)
    print(f"memory while slow subscribers lag: {LAG_LIVE} live + {LAG_SLOW} never reading, "
          f"{sent} records at {sent / run:,.0f}/s, hub ring {LAG_RING} records: server RSS "
          f"{lagged.before:.0f} MB before, {lagged.full:.0f} MB with the ring full "
          f"(+{lagged.full - lagged.before:.1f} MB: the ring and the slow sockets' buffers), "
          f"at most {lagged.peak:.0f} MB after (+{lagged.growth_after_full:.1f} MB; "
          f"target < {FLAT_MB:g} MB); live delivered {delivered:,} of {sent * LAG_LIVE:,}; "
          f"slow cut {cut} of {LAG_SLOW}", flush=True)
    return lagged
