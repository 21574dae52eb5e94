"""``feedserver events ...``: load raw events into the input topic, follow EventStreams into
it, run the consumer.

The event log is the embedded one (in the database) unless
``FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS`` is set, then Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import msgspec

from feedserver.cli.command import bind
from feedserver.config import Settings
from feedserver.errors import BadRequest
from feedserver.feeds.batches.build import seal_periodically
from feedserver.feeds.events.consumer import ConsumerStats, EventConsumer
from feedserver.feeds.events.membership import Membership, member_from_hostname, membership
from feedserver.feeds.scratch import scratch_root, sweep
from feedserver.metrics import Metrics
from feedserver.sources.eventstreams import StreamStats, check_since
from feedserver.sources.follow import follow
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.storage.blobs import open_blob_store
from feedserver.storage.db import connect
from feedserver.storage.eventlog import Outgoing, now_ms, open_event_log

log = logging.getLogger(__name__)

LOAD_BATCH = 500


def register(sub: Any) -> None:
    events = sub.add_parser("events", help="live change events: load, follow, consume")
    cmds = events.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")

    load = cmds.add_parser("load", help="append raw page_change events (JSON lines) to a topic")
    load.add_argument("file", type=Path, help="JSON-lines file, one event per line ('-': stdin)")
    load.add_argument("--topic", help="input topic (default: the first of FEEDSERVER_EVENT_TOPICS)")
    load.add_argument("--partitions", type=int, default=1,
                      help="partitions when the topic is created (default 1)")
    bind(load, cmd_load)

    follower = cmds.add_parser(
        "follow", help="follow Wikimedia EventStreams into the input topic "
                       "(FEEDSERVER_EVENTSTREAMS_TOPIC), exactly once, until stopped")
    follower.add_argument("--stream", action="append",
                          help="stream to read (repeat for several; default: "
                               "FEEDSERVER_EVENTSTREAMS_STREAMS)")
    follower.add_argument("--url", help="EventStreams base URL (default: "
                                        "FEEDSERVER_EVENTSTREAMS_URL)")
    follower.add_argument("--wiki", action="append",
                          help="keep only this wiki's events (repeat; default: "
                               "FEEDSERVER_EVENTSTREAMS_WIKIS, empty = all)")
    follower.add_argument("--since", help="ISO-8601 time or epoch milliseconds to start from "
                                          "on the very first run (afterwards the stored "
                                          "position wins)")
    follower.add_argument("--batch-size", type=int, default=500,
                          help="events per durable append (default 500)")
    follower.add_argument("--metrics-port", type=int,
                          help="serve Prometheus /metrics on this port")
    bind(follower, cmd_follow)

    consume = cmds.add_parser("consume", help="consume input topics into state + article topic")
    consume.add_argument("--once", action="store_true", help="stop when caught up")
    consume.add_argument("--max-events", type=int, help="stop after this many source events")
    consume.add_argument("--batch-size", type=int, default=500, help="records per batch")
    consume.add_argument("--metrics-port", type=int,
                         help="serve Prometheus /metrics on this port")
    consume.add_argument("--no-seal-batches", action="store_true",
                         help="do not build hourly batches (when a cron runs "
                              "'feedserver batches build' instead)")
    consume.add_argument("--members", default="1",
                         help="consumer processes sharing the group (static membership; "
                              "default 1). Member I owns the input partitions p with "
                              "p %% N == I. Every process MUST run with the same N")
    consume.add_argument("--member", default="0",
                         help="this process's index 0..N-1, or 'auto': the trailing "
                              "-<ordinal> of the host name (a StatefulSet pod)")
    bind(consume, cmd_consume)


def _lines(path: Path) -> list[bytes]:
    raw = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    return [line.strip() for line in raw.splitlines() if line.strip()]


class _KeyPage(msgspec.Struct):
    page_id: int


class _KeyFields(msgspec.Struct):
    wiki_id: str
    page: _KeyPage


_KEY_DECODER = msgspec.json.Decoder(_KeyFields)


def _key(line: bytes) -> bytes | None:
    """Wikimedia keys page_change by wiki and page, so one page's events stay in order on one
    partition; unreadable lines get no key."""
    try:
        fields = _KEY_DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return f"{fields.wiki_id}/{fields.page.page_id}".encode()


def cmd_load(settings: Settings, *, file: Path, topic: str | None = None,
             partitions: int = 1) -> int:
    topic = topic or settings.event_topics[0]
    if partitions < 1:
        raise BadRequest("--partitions must be at least 1")
    lines = _lines(file)
    count = asyncio.run(_load(settings, topic, partitions, lines))
    print(f"appended {count} events to {topic} ({settings.events_backend})")
    return 0


async def _load(settings: Settings, topic: str, partitions: int, lines: list[bytes]) -> int:
    db = connect(settings.database)
    event_log = open_event_log(settings, db)
    try:
        await event_log.create_topic(topic, partitions)
        for i in range(0, len(lines), LOAD_BATCH):
            # Appended as they are: validation is the consumer's job, so bad lines reach the
            # dead-letter store.
            await event_log.append(topic, [Outgoing(key=_key(line), value=line,
                                                    timestamp_ms=now_ms())
                                           for line in lines[i:i + LOAD_BATCH]])
        return len(lines)
    finally:
        await event_log.close()
        db.close()


def cmd_follow(settings: Settings, *, stream: list[str] | None = None, url: str | None = None,
               wiki: list[str] | None = None, since: str | None = None,
               batch_size: int = 500, metrics_port: int | None = None) -> int:
    # Checked before anything starts: a follower whose topic no consumer reads would store
    # events nobody turns into articles.
    topic = settings.eventstreams_topic
    if topic not in settings.event_topics:
        raise BadRequest(
            f"FEEDSERVER_EVENTSTREAMS_TOPIC {topic!r} is not among FEEDSERVER_EVENT_TOPICS "
            f"({','.join(settings.event_topics)}): the consumer would never read what this "
            f"follower stores; add it there (the consumer reads the same settings)")
    if batch_size < 1:
        raise BadRequest("--batch-size must be at least 1")
    if since is not None:
        check_since(since)
    if not settings.content_source_url:
        log.warning("FEEDSERVER_CONTENT_SOURCE_URL is not set: the consumer needs the wikis' "
                    "Action API to turn what this follower stores into articles")
    stats = asyncio.run(_follow(settings, streams=stream or settings.eventstreams_streams,
                                url=url or settings.eventstreams_url,
                                wikis=wiki or settings.eventstreams_wikis, since=since,
                                batch_size=batch_size, metrics_port=metrics_port))
    print(f"followed EventStreams: {stats.received} events received, {stats.duplicates} "
          f"duplicates, {stats.other_wiki} of other wikis, {stats.dead_lettered} "
          f"dead-lettered, {stats.reconnects} reconnects")
    return 0


async def _follow(settings: Settings, *, streams: list[str], url: str, wikis: list[str],
                  since: str | None, batch_size: int, metrics_port: int | None
                  ) -> StreamStats:
    metrics = _metrics(settings, metrics_port)
    db = connect(settings.database)
    event_log = open_event_log(settings, db)
    try:
        return await follow(event_log, db, url=url, streams=streams,
                            topic=settings.eventstreams_topic, user_agent=settings.user_agent,
                            wikis=wikis, since=since, dead_letter_topic=settings.dead_letter_topic,
                            metrics=metrics, batch_size=batch_size,
                            timeout=settings.eventstreams_timeout, stop=_stop_on_signals())
    finally:
        await event_log.close()
        db.close()


def _metrics(settings: Settings, port: int | None) -> Metrics:
    metrics = Metrics()
    if port:
        from prometheus_client import start_http_server

        start_http_server(port, addr=settings.host, registry=metrics.registry)
    return metrics


def _stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set: the loops end at their next safe point."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def _membership(members: str, member: str) -> Membership:
    try:
        count = int(members)
    except ValueError:
        raise BadRequest(f"--members must be an integer, got {members!r}") from None
    if member == "auto":
        index = member_from_hostname(socket.gethostname())
    else:
        try:
            index = int(member)
        except ValueError:
            raise BadRequest(f"--member must be an integer or 'auto', got {member!r}"
                             ) from None
    return membership(index, count)


def _seals(*, bounded: bool, no_seal_batches: bool, member: Membership) -> bool:
    """Whether this process seals hourly batches: only an unbounded run, and then only
    member 0 (sealing reads the whole article topic, once is enough)."""
    return not bounded and not no_seal_batches and member.member == 0


def cmd_consume(settings: Settings, *, once: bool = False, max_events: int | None = None,
                batch_size: int = 500, metrics_port: int | None = None,
                no_seal_batches: bool = False, members: str = "1", member: str = "0") -> int:
    # Validated before anything starts: a bad value must not leave a half-started process.
    owner = _membership(members, member)
    seal = _seals(bounded=once or max_events is not None, no_seal_batches=no_seal_batches,
                  member=owner)
    sweep(scratch_root(settings.data_path))  # scratch of builds killed earlier
    stats = asyncio.run(_consume(settings, owner, once=once, max_events=max_events,
                                 batch_size=batch_size, metrics_port=metrics_port, seal=seal))
    t = stats.totals
    print(f"consumed {t.consumed} events: {t.applied} state changes, {t.produced} articles "
          f"produced ({t.skipped} already produced), {t.dead_lettered} dead-lettered")
    return 0


async def _consume(settings: Settings, member: Membership, *, once: bool,
                   max_events: int | None, batch_size: int, metrics_port: int | None,
                   seal: bool) -> ConsumerStats:
    metrics = _metrics(settings, metrics_port)
    db = connect(settings.database)
    event_log = open_event_log(settings, db)
    # The wiki's Action API: text the events do not carry, and the pages recentchange names.
    content = ActionApiClient.from_settings(settings, metrics=metrics)
    consumer = EventConsumer.from_settings(settings, event_log, db, content=content,
                                           metrics=metrics, batch_size=batch_size,
                                           member=member.member, members=member.members)
    stop = _stop_on_signals()
    bounded = once or max_events is not None
    sealer = None
    if seal:
        # Seal completed hours into batch files as they end: no cron needed when embedded.
        sealer = asyncio.create_task(seal_periodically(
            event_log, open_blob_store(settings), settings, stop))
    try:
        return await consumer.run(once=once, max_events=max_events, stop=stop,
                                  max_failures=3 if bounded else None)
    finally:
        if sealer is not None:  # a publish in flight is atomic: cancelling loses nothing
            sealer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sealer
        if content is not None:
            await content.close()
        await event_log.close()
        db.close()
