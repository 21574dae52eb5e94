"""Metering overhead: API request throughput with metering on vs off, measured in the same run.

The real app (``build_app``) on SQLite and a filesystem blob store holding a snapshot built
from the enwiki sample dump; an API key on a plan with quotas and a rate limit high enough
never to refuse. Two request mixes, each run ``REQUESTS`` times on 8 concurrent in-process
clients calling the app as ASGI in one event loop (``AsgiClient``: no sockets, no test-client
thread, no HTTP client library's request and response objects, so the figure is the server's
own work and as little of the clients' as possible):

* ``metadata``: ``GET /v2/snapshots/{id}`` (admission: rate limit only; usage: one record);
* ``chunk``: ``GET .../chunks/{chunk}/download`` (admission: rate limit + download quota claim
  in the database; usage: requests, bytes and download records through the journal).

Each sample is ``REQUESTS`` requests through a freshly built app (garbage of the previous
sample's app collected before it starts). Two arms: metering off, and on as configured by
default (the ledger's rows per batch); ``python -m bench.metering --granularity`` adds a
third, on with a row per response's meter (``ledger_granularity = "response"``,
docs/metering.md "Rows per batch"). They take turns in ``PAIRS`` rounds, each
round's order rotated and every other one reversed so no arm always follows another; one
shorter warm-up round first is discarded (first-use costs: imports, caches, the ledger's
first pages). A metered arm's overhead in a round is against that round's unmetered sample.
The figure checked against the 5% target is the median of the paired overheads
(1 - on/off of each pair), printed with the sign test's 95% interval of that median
(``bench._stats``: how far the figure can be trusted on a noisy machine) and the spread
(lowest and highest pair); best-of is printed beside it. As information, per arm: CPU
seconds per request of this process (event loop and ledger writer threads, the in-process
clients too) and of the processes the app started (the ledger appender process,
``ledger_appender = "process"``), and the CPU the rest of the
machine used meanwhile (``others``, in cores: other work on a shared machine slows the arms
unevenly, the one with a writer thread more). Then where the metered arm's extra CPU ran:
the event loop's thread (its own CPU clock, the in-process clients' share the same in both
arms; with the kernel's part, which a worker thread waiting for the GIL raises), the
process's other threads and the app's child processes, each metered minus unmetered. On 2
cores with one kept busy (``--busy``) all three are the requests' time; quiet, the last two
mostly run beside the event loop. At the section's start it prints what is left running in
this process from earlier sections (threads, child processes, tracked objects).

Then the distributed case (issue 17: "PostgreSQL instead of SQLite for the ledger and
limits"): both mixes again with PostgreSQL for accounts, rate limits, quotas and the ledger
(a throw-away cluster, ``bench._postgres``, durable settings on), when PostgreSQL is
installed. The database server's CPU per request is printed per arm (``db``): a server the
bench did not start is not in its CPU figures, and on a 2-core machine the server runs on
the same cores as the app, so this says how much of the overhead is the database's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import MutableMapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from litestar.types import ASGIApp
from prometheus_client import CollectorRegistry

from bench import _cpu, _postgres
from bench._stats import median_interval
from bench._targets import check
from feedserver.accounts.admin import AccountAdmin
from feedserver.api.app import build_app
from feedserver.config import load_settings
from feedserver.plans import Plan, Prices, Quotas, RateLimit
from feedserver.storage.db import Database, SQLiteDatabase
from feedserver.storage.db.postgres import PostgresDatabase

ROOT = Path(__file__).resolve().parents[1]
DUMP = (ROOT.parent / "shared/data/dumps/gensim-4.4.0"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
SNAPSHOT = "enwiki_namespace_0"
NAMES = {"metadata": "metadata requests", "chunk": "chunk downloads"}
# per sample: ~0.7-1 s of metadata GETs on this machine (1,000 until the clients called the
# transport directly, which halved a request's time; 800 before that)
REQUESTS = 2000
WARMUP = 200  # per arm of the discarded warm-up pair
CONCURRENCY = 8
# 18 pairs (12 until the eighteenth round, with a third arm; 6 until the meter-lean round):
# single pairs on this shared machine spread over 50-100 points, and a median's error falls
# with the square root of the pairs. 18 pairs of two arms are as many samples, and as much
# time, as 12 rounds of three were (docs/metering.md, "How far the median can be trusted").
PAIRS = 18
_TICK = os.sysconf("SC_CLK_TCK")
PLAN = Plan(name="bench", feeds=["snapshots"],
            quotas=Quotas(chunk_downloads=10**9, bytes=10**15),
            rate_limit=RateLimit(requests_per_second=10**6, burst=10**6),
            prices=Prices(per_gb_egress=Decimal("0.09")))


def prepare(data_dir: Path) -> str:
    env = {**os.environ, "FEEDSERVER_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "feedserver", "snapshot", "build", "--dump", str(DUMP),
                    "--namespace", "0", "--chunk-size", "150000", "--no-progress"],
                   env=env, cwd=ROOT, check=True, capture_output=True, timeout=600)
    return seed(SQLiteDatabase(data_dir / "feedserver.db"))


def seed(db: Database) -> str:
    """The bench's plan, customer and API key in ``db`` (closed after); the key."""
    try:
        admin = AccountAdmin(db)
        admin.create_plan(PLAN)
        admin.create_customer("Bench", plan=PLAN.name)
        return admin.create_api_key("Bench")[1]
    finally:
        db.close()


class Sample(msgspec.Struct, frozen=True):
    """One arm's sample: requests per second, this process's CPU seconds per request (the
    app's own processes counted), the database server's (PostgreSQL; 0 on SQLite), and the
    cores the rest of the machine kept busy meanwhile. ``cpu`` split by where it ran: the
    event loop's thread (``loop``, the in-process clients too; ``loop_kernel`` its system
    time), this process's other threads (``threads``: worker-thread hops, a download's file
    reads) and the processes the app started (``children``: the ledger appender)."""

    rate: float
    cpu: float
    db: float
    others: float
    iowait: float
    loop: float
    loop_kernel: float
    threads: float
    children: float


class Arm(msgspec.Struct):
    """The samples of one arm (metering off, or on)."""

    samples: list[Sample] = msgspec.field(default_factory=list)

    def best(self) -> float:
        return max(s.rate for s in self.samples)

    def cpu(self) -> float:
        return statistics.fmean(s.cpu for s in self.samples)

    def db(self) -> float:
        return statistics.fmean(s.db for s in self.samples)

    def others(self) -> float:
        return statistics.fmean(s.others for s in self.samples)

    def split(self) -> tuple[float, float, float, float]:
        """Mean CPU seconds per request of the event loop's thread, of its kernel part, of
        the other threads and of the app's child processes."""
        return (statistics.fmean(s.loop for s in self.samples),
                statistics.fmean(s.loop_kernel for s in self.samples),
                statistics.fmean(s.threads for s in self.samples),
                statistics.fmean(s.children for s in self.samples))

    def iowait(self) -> float:
        return statistics.fmean(s.iowait for s in self.samples)


def _machine() -> tuple[float, float]:
    """CPU seconds all cores of the machine spent busy, and waiting for I/O with nothing to
    run (``/proc/stat``), so far."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / _TICK, iowait / _TICK


def _dirty() -> str:
    """Page cache waiting to be written to disk (``/proc/meminfo``): what earlier work left
    for the kernel to write back while the samples fsync."""
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    kib = sum(int(info[k].split()[0]) for k in ("Dirty", "Writeback"))
    return f"{kib / 1024:.0f} MB dirty"


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _started_since(before: set[int]) -> list[int]:
    """This process's descendants that were not there in ``before``: what the app started
    (the ledger appender process), not the spinner of ``--busy`` or earlier sections' pools."""
    return [pid for pid in _cpu.descendants(_cpu.stats(), os.getpid()) if pid not in before]


def _loop_cpu() -> tuple[float, float]:
    """CPU seconds of the calling thread (the event loop's) so far, and the kernel's part."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds of the processes ``pids`` so far, all their threads (the kernel's
    per-process CPU clock: nanoseconds, where ``/proc/PID/stat`` counts 10 ms ticks)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone: it did no work in the samples
            total += time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the process
    return total


def _db_cpu(database_url: str | None) -> float:
    return 0.0 if database_url is None else _postgres.server_cpu(database_url)


async def throughput(data_dir: Path, key: str, path: str, *, metering: bool,
                     database_url: str | None, requests: int = REQUESTS,
                     granularity: str | None = None) -> Sample:
    """``granularity``: the ledger's (``ledger_granularity``), None for the default."""
    overrides = {} if granularity is None else {"ledger_granularity": granularity}
    settings = load_settings({}, data_dir=str(data_dir), metering_enabled=metering,
                             log_level="WARNING", database_url=database_url, **overrides)
    before = set(_cpu.descendants(_cpu.stats(), os.getpid()))
    app = build_app(settings, registry=CollectorRegistry())
    # The clients call the app as ASGI (``AsgiClient``): an ``httpx.AsyncClient`` around
    # httpx's ASGI transport cost ~260 us per request in this same event loop, and the
    # transport's own request and response objects ~150 k instructions more, ~10 k of them
    # parsing a metered response's two RateLimit headers: client work counted as the server's
    # (docs/metering.md, "The bench's own client").
    client = AsgiClient(app, path, [(b"host", b"bench"),
                                    (b"authorization", f"Bearer {key}".encode())])

    async def get() -> None:
        status, body = await client.get()
        assert status == 200, body[:500]

    async with app.lifespan():
        await get()
        per_client = requests // CONCURRENCY

        async def loop() -> None:
            for _ in range(per_client):
                await get()

        # The app's own processes count: metering's ledger appender works for these requests.
        children = _started_since(before)
        machine, db = _machine(), _db_cpu(database_url)
        own, kids, (loop_cpu, loop_kernel) = _own_cpu(), _cpu_of(children), _loop_cpu()
        start = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
        loop_cpu, loop_kernel = (b - a for a, b in zip((loop_cpu, loop_kernel), _loop_cpu(),
                                                        strict=True))
        own, kids = _own_cpu() - own, _cpu_of(children) - kids
        db = _db_cpu(database_url) - db
        busy, iowait = (b - a for a, b in zip(machine, _machine(), strict=True))
    done = per_client * CONCURRENCY
    cpu = own + kids
    return Sample(rate=done / elapsed, cpu=cpu / done, db=db / done,
                  others=max(busy - cpu - db, 0.0) / elapsed, iowait=iowait / elapsed,
                  loop=loop_cpu / done, loop_kernel=loop_kernel / done,
                  threads=max(own - loop_cpu, 0.0) / done, children=kids / done)


class AsgiClient:
    """GET requests straight into an ASGI app: the request's scope and messages as an ASGI
    server hands them over, the status and the body's bytes back (nothing parsed)."""

    def __init__(self, app: ASGIApp, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                      "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
                      "raw_path": path.encode(), "query_string": b"", "root_path": "",
                      "headers": headers, "client": ("127.0.0.1", 50000),
                      "server": ("bench", 80)}

    async def get(self) -> tuple[int, bytes]:
        status = 0
        body: list[bytes] = []
        done = asyncio.Event()
        requested = False

        async def receive() -> dict[str, object]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()  # the client stays until the whole response arrived
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        await self.app(dict(self.scope), receive, send)  # a scope per request: the app adds to it
        done.set()
        return status, b"".join(body)


def sample(data_dir: Path, key: str, path: str, *, arm: str, database_url: str | None,
           requests: int = REQUESTS) -> Sample:
    gc.collect()  # the previous sample's app is not collected during this one
    return asyncio.run(throughput(data_dir, key, path, metering=arm != "off",
                                  database_url=database_url, requests=requests,
                                  granularity="response" if arm == "response" else None))


def leftovers() -> str:
    """What runs in this process besides the section: threads, live child processes (from
    earlier sections of a whole run), objects the garbage collector tracks."""
    stats = _cpu.stats()
    kids = _cpu.descendants(stats, os.getpid())
    names = sorted({t.name.split("-")[0].split("_")[0] for t in threading.enumerate()})
    return (f"{threading.active_count()} threads ({', '.join(names)}), {len(kids)} child "
            f"processes, "
            f"{len(gc.get_objects()) / 1e6:.2f} M tracked objects; {_dirty()}")


# The arms: metering off; on, as configured by default (rows per batch); with
# ``--granularity`` also on with a row per response's meter (``ledger_granularity =
# "response"``, docs/metering.md "Rows per batch").
ARMS: tuple[str, ...] = ("off", "on")
GRANULARITY_ARMS: tuple[str, ...] = (*ARMS, "response")


def measure(data_dir: Path, key: str, path: str, database_url: str | None, *,
            arms: tuple[str, ...] = ARMS) -> tuple[dict[str, Arm], dict[str, list[float]]]:
    """The warm-up round (discarded), then ``PAIRS`` rounds of ``arms``, each round's order
    rotated so no arm always follows another: the arms' samples, and per metered arm the
    overhead 1 - rate/off-rate of each round."""
    for arm in arms:
        sample(data_dir, key, path, arm=arm, database_url=database_url, requests=WARMUP)
    samples = {arm: Arm() for arm in arms}
    overheads: dict[str, list[float]] = {arm: [] for arm in arms if arm != "off"}
    for i in range(PAIRS):
        order = arms[i % len(arms):] + arms[:i % len(arms)]
        if i % 2:
            order = order[::-1]
        taken = {arm: sample(data_dir, key, path, arm=arm, database_url=database_url)
                 for arm in order}
        for arm, value in taken.items():
            samples[arm].samples.append(value)
            if arm != "off":
                overheads[arm].append(1 - value.rate / taken["off"].rate)
    return samples, overheads


MIXES = {
    "metadata": f"/v2/snapshots/{SNAPSHOT}",
    "chunk": f"/v2/snapshots/{SNAPSHOT}/chunks/{SNAPSHOT}_chunk_0/download",
}


def section(data_dir: Path, key: str, database_url: str | None, *,
            granularity: bool = False) -> None:
    """Both mixes, metering off against on (and, ``granularity``, on with a row per
    response's meter), with SQLite (``database_url`` None) or PostgreSQL; checks the default
    arm against the target."""
    database = "sqlite" if database_url is None else "postgresql"
    tag = "" if database_url is None else "[postgresql] "
    for name, path in MIXES.items():
        started = time.perf_counter()
        arms, overheads = measure(data_dir, key, path, database_url,
                                  arms=GRANULARITY_ARMS if granularity else ARMS)
        off, on = arms["off"], arms["on"]
        best_off, best_on = off.best(), on.best()
        paired = statistics.median(overheads["on"])
        low, high = median_interval(overheads["on"])
        print(f"{tag}{name:>9}: metering off {best_off:7.0f} req/s, on {best_on:7.0f} req/s "
              f"(best of {PAIRS}); overhead {paired:+6.1%} median of {PAIRS} pairs "
              f"(95% interval {low:+.1%} to {high:+.1%}; pairs {min(overheads['on']):+.1%} "
              f"to {max(overheads['on']):+.1%}), {1 - best_on / best_off:+6.1%} best-of",
              flush=True)
        db = ("" if database_url is None else
              f" database server {off.db() * 1e6:4.0f} / {on.db() * 1e6:4.0f} us;")
        print(f"{'':>9}  CPU per request off {off.cpu() * 1e6:5.0f} us, on "
              f"{on.cpu() * 1e6:5.0f} us ({on.cpu() / off.cpu() - 1:+.1%});{db}"
              f" others {off.others():.2f} / {on.others():.2f} cores busy, iowait "
              f"{off.iowait():.2f} / {on.iowait():.2f} cores; "
              f"{REQUESTS} requests per sample, {time.perf_counter() - started:.0f} s, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        print(_where(off, on), flush=True)
        if granularity:
            _per_response(arms, overheads, database_url)
        # The median of the paired overheads is the figure checked: best-of swings with load.
        check(f"metering overhead on {NAMES[name]}", paired * 100, 5.0,
              higher_is_better=False, unit="%", database=database)


def _per_response(arms: dict[str, Arm], overheads: dict[str, list[float]],
                  database_url: str | None) -> None:
    """The arm with a row per response's meter, against the same rounds' unmetered one."""
    off, rows = arms["off"], arms["response"]
    per_response = statistics.median(overheads["response"])
    print(f"{'':>9}  a row per response's meter (ledger_granularity = response): overhead "
          f"{per_response:+6.1%} median of {PAIRS} rounds (rounds "
          f"{min(overheads['response']):+.1%} to {max(overheads['response']):+.1%}); CPU "
          f"per request {rows.cpu() * 1e6:5.0f} us ({rows.cpu() / off.cpu() - 1:+.1%})"
          + ("" if database_url is None else
             f"; database server {rows.db() * 1e6:4.0f} us"), flush=True)
    print(_where(off, rows), flush=True)


def _where(off: Arm, on: Arm) -> str:
    """Where a metered arm's extra CPU ran, each part on minus off (a chunk download's worker
    threads read its file in both arms)."""
    (loop_off, kernel_off, threads_off, children_off), \
        (loop_on, kernel_on, threads_on, children_on) = off.split(), on.split()
    return (f"{'':>9}  where metering's CPU ran, per request: event loop "
            f"{(loop_on - loop_off) * 1e6:+4.0f} us ({loop_off * 1e6:.0f} -> "
            f"{loop_on * 1e6:.0f}; of it kernel {kernel_off * 1e6:.0f} -> "
            f"{kernel_on * 1e6:.0f}), other threads {(threads_on - threads_off) * 1e6:+4.0f} "
            f"us ({threads_off * 1e6:.0f} -> {threads_on * 1e6:.0f}), appender process "
            f"{(children_on - children_off) * 1e6:+4.0f} us")


def run(*, granularity: bool = False) -> None:
    """The section on SQLite, then on PostgreSQL when installed; ``granularity``: with the
    arm that books a row per response's meter too."""
    with tempfile.TemporaryDirectory(prefix="bench-metering-") as tmp:
        data_dir = Path(tmp)
        key = prepare(data_dir)
        print(f"at the start: {leftovers()}; load average {os.getloadavg()[0]:.2f}", flush=True)
        section(data_dir, key, None, granularity=granularity)
        if not _postgres.available():
            print("postgresql: not installed (make system-deps); distributed pass skipped")
            return
        with _postgres.cluster() as url:
            section(data_dir, seed(PostgresDatabase(url, max_size=2)), url,
                    granularity=granularity)


if __name__ == "__main__":
    run(granularity="--granularity" in sys.argv[1:])
