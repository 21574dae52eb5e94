"""The events consumer: input topics (page_change, recentchange) -> state + article topic.

One batch at a time (that bound is the backpressure: at most ``batch_size`` source records are
in flight, and nothing is read ahead while a batch is being applied):

1. poll up to ``batch_size`` records from the input topics;
2. decode and map each (``sources.inputs.map_input``: page_change by ``ingest.events``,
   recentchange by ``ingest.recentchange`` with its pages resolved through the Action API;
   every field range-checked); an invalid one goes to the dead-letter store with its reason
   and raw bytes, and consumption moves past it;
3. complete the articles: missing revision text from the state store when it holds the same
   revision, else from the wiki's Action API (``sources.mediawiki.ActionApiClient``, many
   revisions per request; what the wiki says at fetch time wins: ``ingest.revision.fill_change``
   turns a revision hidden since its event into the visibility record); what the page's
   previous record knows (creation date, redirects, the previous revision's size:
   ``ingest.events.inherit``);
4. apply every change to the state store in ONE transaction (durable on commit). If the
   database refuses a value (``UnstorableValue``: the data's fault, not an outage), the batch
   is applied again one source record per transaction and only the records it refuses are
   dead-lettered (reason ``unstorable``): one poison event never stops the others;
5. append the resulting Article events to the article topic (acknowledged), each with a
   ``feedserver-source`` header ``topic:partition:offset:index`` naming the source record;
6. commit the group's input offsets; only now is the batch "done";
7. checkpoint, in the database, where this consumer's outputs end in each output partition.

A crash anywhere replays the batch from the last committed offsets. Step 4 is idempotent by
(revision, event time). Step 5 is made idempotent by the dedup high-water marks: at start the
consumer reads every output partition from the last checkpoint to its end and remembers, per
(output partition, source partition), the highest source ``(offset, index)`` already produced;
an output at or below it is skipped. See docs/events.md for why this is exact.

With static membership (``member`` of ``members``, ``feeds.events.membership``) the consumer reads,
dedups and commits only the input partitions it owns; its output checkpoints are its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from feedserver.config import Settings
from feedserver.errors import InvalidEvent, Unavailable, UnstorableValue
from feedserver.feeds.events.membership import membership, related_checkpoint
from feedserver.feeds.events.state import StateStore, StoredArticle, unstorable
from feedserver.ingest.events import ArticleChange, inherit, with_body, with_parent_text
from feedserver.ingest.revision import WikiRevision, fill_change
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.sources.inputs import map_input
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.storage.db import Database
from feedserver.storage.eventlog import (
    EventLog,
    LogReader,
    LogRecord,
    Outgoing,
    TopicPartition,
    partition_for,
    read,
)

log = logging.getLogger(__name__)

SOURCE_HEADER = "feedserver-source"
REASON_HEADER = "feedserver-reason"
_ENCODER = msgspec.json.Encoder()
SourceMark = tuple[int, int]  # (source offset, index of the output within that source record)

CHECKPOINT_MIGRATION = (
    "CREATE TABLE IF NOT EXISTS consumer_checkpoints (grp TEXT NOT NULL, topic TEXT NOT NULL,"
    " part INTEGER NOT NULL, pos BIGINT NOT NULL, PRIMARY KEY (grp, topic, part))",
    "CREATE TABLE IF NOT EXISTS dead_letters (topic TEXT NOT NULL, part INTEGER NOT NULL,"
    " pos BIGINT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, raw {blob} NOT NULL,"
    " timestamp_ms BIGINT NOT NULL, PRIMARY KEY (topic, part, pos))",
)


def source_header(record: LogRecord, index: int) -> bytes:
    return f"{record.topic}:{record.partition}:{record.offset}:{index}".encode()


def parse_source(value: bytes) -> tuple[TopicPartition, SourceMark] | None:
    # Kafka topic names cannot contain ":", so the split is unambiguous.
    parts = value.decode(errors="replace").split(":")
    if len(parts) != 4:
        return None
    try:
        return (parts[0], int(parts[1])), (int(parts[2]), int(parts[3]))
    except ValueError:
        return None


def article_key_bytes(change: ArticleChange) -> bytes:
    k = change.key
    return f"{k.project}/{k.namespace}/{k.identifier}".encode()


@dataclass
class BatchResult:
    consumed: int = 0
    applied: int = 0
    produced: int = 0
    skipped: int = 0
    dead_lettered: int = 0


@dataclass
class ConsumerStats:
    batches: int = 0
    totals: BatchResult = field(default_factory=BatchResult)


class EventConsumer:
    def __init__(
        self,
        event_log: EventLog,
        db: Database,
        *,
        topics: Sequence[str],
        group: str,
        article_topic: str,
        article_partitions: int,
        dead_letter_topic: str,
        dead_letters_in_db: bool,
        content: ActionApiClient | None = None,
        metrics: Metrics | None = None,
        batch_size: int = 500,
        poll_timeout: float = 1.0,
        member: int = 0,
        members: int = 1,
    ) -> None:
        self.membership = membership(member, members)
        self.log = event_log
        self.db = db
        self.state = StateStore(db)
        db.migrate("feeds.consumer.1", CHECKPOINT_MIGRATION)
        self.topics = list(topics)
        self.group = group
        self.article_topic = article_topic
        self.article_partitions = article_partitions
        self.dead_letter_topic = dead_letter_topic
        self.dead_letters_in_db = dead_letters_in_db
        self.content = content
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.stats = ConsumerStats()
        self._reader: LogReader | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._marks: dict[tuple[str, int, str, int], SourceMark] = {}
        self._out_ends: dict[tuple[str, int], int] = {}
        # Per output partition, per source partition: (first output position, last source
        # offset) of outputs found at start whose source records are not committed yet. The
        # checkpoint must stay at or below them until the replay commits past them.
        self._pending: dict[tuple[str, int], dict[TopicPartition, tuple[int, int]]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, event_log: EventLog, db: Database, *,
                      content: ActionApiClient | None = None, metrics: Metrics | None = None,
                      batch_size: int = 500, member: int = 0, members: int = 1
                      ) -> EventConsumer:
        return cls(event_log, db, topics=settings.event_topics, group=settings.consumer_group,
                   article_topic=settings.article_topic,
                   article_partitions=settings.article_partitions,
                   dead_letter_topic=settings.dead_letter_topic,
                   dead_letters_in_db=settings.events_backend == "embedded",
                   content=content, metrics=metrics, batch_size=batch_size,
                   member=member, members=members)

    # --- start: positions and dedup marks -------------------------------------------------

    def _outputs(self) -> list[str]:
        return [self.article_topic] + ([] if self.dead_letters_in_db else [self.dead_letter_topic])

    async def start(self) -> None:
        """(Re)start from the committed offsets; learn what was already produced."""
        await self.stop()
        await self.log.create_topic(self.article_topic, self.article_partitions)
        # An existing topic keeps its partition count (a changed setting must not send keys
        # to partitions that do not exist, or move a page to another partition).
        self.article_partitions = await self.log.partitions(self.article_topic)
        if not self.dead_letters_in_db:
            await self.log.create_topic(self.dead_letter_topic, 1)
        positions: dict[TopicPartition, int] = {}
        for topic in self.topics:
            await self.log.create_topic(topic, 1)  # no-op when it exists
            committed = await self.log.committed(self.group, topic)
            for p in await self.log.end_offsets(topic):
                if self.membership.owns(p):
                    positions[(topic, p)] = committed.get(p, 0)
        self._positions = positions
        await self._load_marks()
        # Before producing anything: a member's row must exist whenever it has outputs, since
        # members without a row of their own start from the lowest related row.
        await self._checkpoint()
        self._reader = self.log.reader(positions)

    async def _scan_starts(self) -> dict[tuple[str, int], int]:
        """Per output partition, where the dedup scan starts: this member's own checkpoint;
        without one (first start of this layout), the lowest checkpoint of any member of any
        layout of the group, which is at or below every output not yet committed."""
        rows = await asyncio.to_thread(
            self.db.fetchall, "SELECT grp, topic, part, pos FROM consumer_checkpoints")
        own = self.membership.checkpoint_group(self.group)
        mine: dict[tuple[str, int], int] = {}
        lowest: dict[tuple[str, int], int] = {}
        for grp, topic, part, pos in rows:
            tp = (str(topic), int(part))
            if grp == own:
                mine[tp] = int(pos)
            elif related_checkpoint(self.group, str(grp)):
                lowest[tp] = min(int(pos), lowest.get(tp, int(pos)))
        return lowest | mine

    async def _load_marks(self) -> None:
        checkpoint = await self._scan_starts()
        self._marks = {}
        self._out_ends = {}
        self._pending = {}
        for topic in self._outputs():
            ends = await self.log.end_offsets(topic)
            start = {(topic, p): min(checkpoint.get((topic, p), 0), end)
                     for p, end in ends.items()}
            self._out_ends.update({tp: off for tp, off in start.items()})
            async for record in read(self.log, start, follow=False, poll_timeout=2.0):
                self._out_ends[(topic, record.partition)] = record.offset + 1
                header = record.header(SOURCE_HEADER)
                parsed = parse_source(header) if header else None
                if parsed is None:
                    continue
                src, mark = parsed
                if not self.membership.owns(src[1]):
                    continue  # another member's: it dedups its own partitions
                slot = (topic, record.partition, *src)
                if mark > self._marks.get(slot, (-1, -1)):
                    self._marks[slot] = mark
                if src in self._positions and mark[0] >= self._positions[src]:
                    pending = self._pending.setdefault((topic, record.partition), {})
                    first = pending.get(src, (record.offset, 0))[0]
                    pending[src] = (first, mark[0])

    async def stop(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            await reader.close()

    # --- one batch ------------------------------------------------------------------------

    async def run_batch(self, max_records: int | None = None) -> BatchResult:
        if self._reader is None:
            await self.start()
        assert self._reader is not None
        limit = self.batch_size if max_records is None else min(self.batch_size, max_records)
        records = await self._reader.poll(max_records=limit, timeout=self.poll_timeout)
        result = BatchResult(consumed=len(records))
        if not records:
            return result
        if self.metrics:
            for record in records:
                self.metrics.events_consumed.labels(record.topic).inc()
        mapped = await map_input(records, client=self.content, state=self.state)
        if mapped.unresolved and self.metrics:
            self.metrics.events_unresolved.inc(mapped.unresolved)
        changes, invalid = _storable(mapped.changes, mapped.invalid)
        await self._complete([c for _, _, c in changes])
        result.applied, refused = await asyncio.to_thread(self._apply, changes)
        if refused:
            invalid.extend(refused.values())
            changes = [c for c in changes if id(c[0]) not in refused]
        result.produced, result.skipped = await self._produce(changes)
        result.dead_lettered = await self._dead_letter(invalid)
        # Only now, with state durable and outputs acknowledged, the input offsets move.
        done: dict[TopicPartition, int] = {}
        for record in records:
            tp = (record.topic, record.partition)
            done[tp] = max(done.get(tp, 0), record.offset + 1)
        await self.log.commit(self.group, done)
        self._positions.update(done)
        await self._checkpoint()
        self.stats.batches += 1
        totals = self.stats.totals
        for name in ("consumed", "applied", "produced", "skipped", "dead_lettered"):
            setattr(totals, name, getattr(totals, name) + getattr(result, name))
        return result

    def _apply(self, changes: list[tuple[LogRecord, int, ArticleChange]]
               ) -> tuple[int, dict[int, tuple[LogRecord, InvalidEvent]]]:
        """Apply in one transaction; if the database refuses a value, again one source record
        per transaction. Returns how many changed the state and the refused records (by
        ``id``). Outages (``StorageError``) propagate: the whole batch is retried."""
        try:
            return self.state.apply_many([c for _, _, c in changes]), {}
        except UnstorableValue as exc:
            log.warning("batch refused by the database (%s): applying record by record",
                        exc.detail)
        groups: dict[int, tuple[LogRecord, list[ArticleChange]]] = {}
        for record, _, change in changes:
            groups.setdefault(id(record), (record, []))[1].append(change)
        applied = 0
        refused: dict[int, tuple[LogRecord, InvalidEvent]] = {}
        for key, (record, group) in groups.items():
            try:
                applied += self.state.apply_many(group)
            except UnstorableValue as exc:
                refused[key] = (record, InvalidEvent(exc.detail, reason="unstorable"))
        return applied, refused

    async def _complete(self, changes: Sequence[ArticleChange]) -> None:
        """Make each change's article as complete as a dump's record of its revision: the
        text (from the state when it holds that revision, else the content source), what the
        page's previous record knows (``inherit``: the state, or an earlier change of this
        batch) and, failing that, the previous revision's size from its fetched text."""
        keys = {(c.key.project, c.key.namespace, c.key.identifier) for c in changes}

        def stored_state() -> dict[tuple[str, int, int], StoredArticle]:
            out = {}
            for key in keys:
                stored = self.state.get_stored(*key)
                if stored is not None:
                    out[key] = stored
            return out

        stored = await asyncio.to_thread(stored_state)
        wanted: dict[tuple[str, str | None], set[int]] = {}
        made: set[tuple[str, int]] = set()  # revisions this batch brings itself
        for change in changes:
            k = change.key
            before = stored.get((k.project, k.namespace, k.identifier))
            base = change.article.is_part_of.url
            body = before.article.article_body if before else None
            if change.needs_body:
                if before and before.revision == change.revision and body and body.wikitext:
                    with_body(change.article, body.wikitext)
                    change.needs_body = False
                else:
                    wanted.setdefault((k.project, base), set()).add(change.revision)
            parent = change.article.previous_version
            if (parent is not None and not parent.number_of_characters
                    and (k.project, parent.identifier) not in made
                    and (before is None or before.revision != parent.identifier)):
                wanted.setdefault((k.project, base), set()).add(parent.identifier)
            made.add((k.project, change.revision))
        fetched: dict[tuple[str, int], WikiRevision] = {}
        if self.content is not None:
            for (project, base), revisions in wanted.items():
                found = await self.content.revisions(project, base, revisions)
                fetched.update(((project, rev), answer) for rev, answer in found.items())
        latest: dict[tuple[str, int, int], Article] = {
            key: s.article for key, s in stored.items() if not s.deleted}
        for change in changes:
            k = change.key
            key = (k.project, k.namespace, k.identifier)
            if change.needs_body and self.content is not None:
                # What the wiki says now is final, even "hidden since" or "no such revision":
                # never an error, never asked again.
                fill_change(change, fetched.get((k.project, change.revision)))
            inherit(change.article, latest.get(key))
            parent = change.article.previous_version
            parent_rev = fetched.get((k.project, parent.identifier)) if parent else None
            if parent_rev is not None and parent_rev.text is not None:
                with_parent_text(change.article, parent_rev.text)
            if change.type != "delete":
                latest[key] = change.article

    def _is_done(self, out_topic: str, part: int, record: LogRecord, index: int) -> bool:
        mark = self._marks.get((out_topic, part, record.topic, record.partition))
        return mark is not None and (record.offset, index) <= mark

    def _remember(self, out_topic: str, positions: list[tuple[int, int]],
                  sources: list[tuple[LogRecord, int]]) -> None:
        for (part, off), (record, index) in zip(positions, sources, strict=True):
            self._marks[(out_topic, part, record.topic, record.partition)] = (record.offset, index)
            self._out_ends[(out_topic, part)] = max(self._out_ends.get((out_topic, part), 0),
                                                    off + 1)

    async def _produce(self, changes: list[tuple[LogRecord, int, ArticleChange]]
                       ) -> tuple[int, int]:
        outgoing: list[Outgoing] = []
        sources: list[tuple[LogRecord, int]] = []
        skipped = 0
        for record, index, change in changes:
            key = article_key_bytes(change)
            part = partition_for(key, self.article_partitions)
            if self._is_done(self.article_topic, part, record, index):
                skipped += 1
                continue
            outgoing.append(Outgoing(key=key, value=_ENCODER.encode(change.article),
                                     partition=part,
                                     headers=((SOURCE_HEADER, source_header(record, index)),)))
            sources.append((record, index))
        if outgoing:
            positions = await self.log.append(self.article_topic, outgoing)
            self._remember(self.article_topic, positions, sources)
            if self.metrics:
                self.metrics.articles_produced.inc(len(outgoing))
        return len(outgoing), skipped

    async def _dead_letter(self, invalid: list[tuple[LogRecord, InvalidEvent]]) -> int:
        if not invalid:
            return 0
        for _, exc in invalid:
            log.warning("dead-lettered event: %s", exc.detail)
            if self.metrics:
                reason = str(exc.extra.get("reason", "other"))
                self.metrics.events_dead_lettered.labels(reason).inc()
        if self.dead_letters_in_db:
            rows = [(r.topic, r.partition, r.offset, str(e.extra.get("reason", "other")),
                     e.detail, r.value, r.timestamp_ms) for r, e in invalid]
            await asyncio.to_thread(
                self.db.executemany,
                "INSERT INTO dead_letters (topic, part, pos, reason, detail, raw, timestamp_ms) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, part, pos) DO NOTHING", rows)
            return len(invalid)
        outgoing, sources = [], []
        for record, exc in invalid:
            if self._is_done(self.dead_letter_topic, 0, record, 0):
                continue
            outgoing.append(Outgoing(key=record.key, value=record.value, partition=0, headers=(
                (SOURCE_HEADER, source_header(record, 0)),
                (REASON_HEADER, exc.detail.encode()),
            )))
            sources.append((record, 0))
        if outgoing:
            self._remember(self.dead_letter_topic,
                           await self.log.append(self.dead_letter_topic, outgoing), sources)
        return len(invalid)

    async def _checkpoint(self) -> None:
        grp = self.membership.checkpoint_group(self.group)
        rows = []
        for (topic, part), end in self._out_ends.items():
            pending = self._pending.get((topic, part), {})
            for src, (_, last) in list(pending.items()):
                if self._positions.get(src, 0) > last:
                    del pending[src]
            rows.append((grp, topic, part, min([end, *(f for f, _ in pending.values())])))
        await asyncio.to_thread(
            self.db.executemany,
            "INSERT INTO consumer_checkpoints (grp, topic, part, pos) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, part) DO UPDATE SET pos = excluded.pos", rows)

    async def update_lag(self) -> dict[str, int]:
        lag: dict[str, int] = {}
        for topic in self.topics:
            ends = await self.log.end_offsets(topic)
            lag[topic] = sum(max(0, end - self._positions.get((topic, p), 0))
                             for p, end in ends.items() if self.membership.owns(p))
            if self.metrics:
                self.metrics.consumer_lag.labels(topic).set(lag[topic])
        return lag

    # --- loop -----------------------------------------------------------------------------

    async def run(self, *, once: bool = False, max_events: int | None = None,
                  stop: asyncio.Event | None = None, retry_delay: float = 1.0,
                  max_retry_delay: float = 30.0,
                  max_failures: int | None = None) -> ConsumerStats:
        """Consume until ``stop`` is set; with ``once``, until caught up; with ``max_events``,
        until that many source records were handled. Outages (``Unavailable``: the storage,
        the Action API) restart from the committed offsets after a growing delay; after
        ``max_failures`` failures in a row the error is raised. Any other error (a
        configuration error such as recentchange input without an Action API) is raised at
        once: retrying cannot mend it."""
        delay = retry_delay
        failures = 0
        try:
            while stop is None or not stop.is_set():
                remaining = None
                if max_events is not None:
                    remaining = max_events - self.stats.totals.consumed
                    if remaining <= 0:
                        break
                try:
                    result = await self.run_batch(remaining)
                    await self.update_lag()
                except Unavailable as exc:
                    failures += 1
                    if max_failures is not None and failures >= max_failures:
                        raise
                    log.error("consumer batch failed, restarting from committed offsets: %s",
                              exc.detail)
                    await self.stop()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, max_retry_delay)
                    continue
                delay, failures = retry_delay, 0
                if once and result.consumed == 0:
                    break
        finally:
            await self.stop()
        return self.stats


def _storable(changes: list[tuple[LogRecord, int, ArticleChange]],
              invalid: list[tuple[LogRecord, InvalidEvent]]
              ) -> tuple[list[tuple[LogRecord, int, ArticleChange]],
                         list[tuple[LogRecord, InvalidEvent]]]:
    """Set aside every source record with a change the database could not hold (reason
    ``unstorable``), all of its changes with it, before anything is applied."""
    refused: dict[int, tuple[LogRecord, InvalidEvent]] = {}
    for record, _, change in changes:
        problem = unstorable(change)
        if problem is not None and id(record) not in refused:
            refused[id(record)] = (record, InvalidEvent(problem, reason="unstorable"))
    if not refused:
        return changes, invalid
    return ([c for c in changes if id(c[0]) not in refused],
            [*invalid, *refused.values()])
