"""Poison events: one bad event among 200 good ones never stops the consumer.

Each poison event is dead-lettered ALONE with its reason; the 200 valid events of the same
batch are applied and produced; the committed offsets reach the end; a second run has nothing
left to do. Runs on the embedded event log; the consumer's code path is the same on Kafka
(only ``_dead_letter`` differs: a dead-letter topic instead of the table, covered by
``tests/integration/test_kafka_consumer.py::test_dead_letters_go_to_the_topic``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from feedserver.config import Settings
from feedserver.errors import UnstorableValue
from feedserver.feeds.events.consumer import EventConsumer
from feedserver.feeds.events.state import StateStore
from feedserver.ingest.events import ArticleChange
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing
from tests.conftest import EVENTS
from tests.unit.feeds.events.conftest import INPUT

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
VALID = 200

Mutation = Callable[[dict[str, Any]], None]
# (name, mutation, dead-letter reason). Each was accepted by the consumer before: the first two
# crashed the whole batch with OverflowError in SQLite; the others were applied and served.
POISON: list[tuple[str, Mutation, str]] = [
    ("page_id 2**70", lambda e: e["page"].update(page_id=2**70), "schema"),
    ("rev_id 2**63", lambda e: e["revision"].update(rev_id=2**63), "schema"),
    ("rev_size 2**64", lambda e: e["revision"].update(rev_size=2**64), "schema"),
    ("hostile wiki_id", lambda e: e.update(wiki_id="../../Bad Wiki<script>"), "schema"),
    ("empty wiki_id", lambda e: e.update(wiki_id=""), "schema"),
    ("namespace -5", lambda e: e["page"].update(namespace_id=-5), "schema"),
    ("title with markup", lambda e: e["page"].update(page_title="<script>x</script>"), "schema"),
    ("title with a control character", lambda e: e["page"].update(page_title="A\x00B"),
     "schema"),
    ("prior namespace 2**40",
     lambda e: e.update(page_change_kind="move",
                        prior_state={"page": {"page_title": "Old", "namespace_id": 2**40}}),
     "schema"),
]


def _template() -> dict[str, Any]:
    for line in REAL.read_text().splitlines():
        event: dict[str, Any] = json.loads(line)
        if event["page_change_kind"] == "edit":
            return event
    raise AssertionError("no edit event in the sample")


def _valid(i: int, template: dict[str, Any]) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event["meta"]["id"] = f"valid-{i}"
    event["page"].update(page_id=1000 + i, page_title=f"Page_{i}")
    event["revision"]["rev_id"] = 5000 + i
    return event


def _stream() -> tuple[list[bytes], dict[str, str]]:
    """200 valid events with the poison ones spread between them; the expected reasons."""
    template = _template()
    events = [_valid(i, template) for i in range(VALID)]
    reasons: dict[str, str] = {}
    for k, (_name, mutate, reason) in enumerate(POISON):
        bad = _valid(10_000 + k, template)
        bad["meta"]["id"] = f"poison-{k}"
        mutate(bad)
        events.insert(7 + k * 20, bad)
        reasons[f"poison-{k}"] = reason
    return [json.dumps(e).encode() for e in events], reasons


@pytest.fixture
async def event_log(db: SQLiteDatabase) -> AsyncIterator[EmbeddedEventLog]:
    log = EmbeddedEventLog(db, poll_interval=0.05)
    await log.create_topic(INPUT, 1)
    yield log
    await log.close()


async def _consume(settings: Settings, log: EmbeddedEventLog, db: SQLiteDatabase,
                   ) -> EventConsumer:
    consumer = EventConsumer.from_settings(settings, log, db, batch_size=500)
    consumer.poll_timeout = 0.1
    return consumer


async def test_poison_events_are_dead_lettered_alone(
        settings: Settings, event_log: EmbeddedEventLog, db: SQLiteDatabase) -> None:
    values, reasons = _stream()
    await event_log.append(INPUT, [Outgoing(key=None, value=v) for v in values])
    consumer = await _consume(settings, event_log, db)
    # max_failures=1: a batch that fails is raised instead of retried forever, so the old
    # behaviour (OverflowError, offset never moves) fails this test instead of hanging it.
    stats = await consumer.run(once=True, max_failures=1)

    assert stats.totals.consumed == VALID + len(POISON)
    assert stats.totals.dead_lettered == len(POISON)
    assert stats.totals.applied == VALID and stats.totals.produced == VALID
    # Every poison event is in the dead-letter store, alone, with its reason and raw bytes.
    dead = {json.loads(bytes(raw))["meta"]["id"]: (reason, detail)
            for reason, detail, raw in db.fetchall("SELECT reason, detail, raw FROM dead_letters")}
    assert {k: v[0] for k, v in dead.items()} == reasons
    assert all(detail for _, detail in dead.values())
    # The valid ones are in the state store; nothing hostile is.
    projects = db.fetchall("SELECT DISTINCT project FROM article_state")
    assert projects == [(_template()["wiki_id"],)]
    assert db.fetchone("SELECT count(*) FROM article_state") == (VALID,)
    assert db.fetchone("SELECT min(namespace), max(page_id) FROM article_state") == (
        _template()["page"]["namespace_id"], 1000 + VALID - 1)
    # The offset moved past everything, so the consumer goes on with what comes next.
    assert await event_log.committed(settings.consumer_group, INPUT) == \
        await event_log.end_offsets(INPUT)
    later = _valid(VALID + 1, _template())
    await event_log.append(INPUT, [Outgoing(key=None, value=json.dumps(later).encode())])
    again = await (await _consume(settings, event_log, db)).run(once=True, max_failures=1)
    assert again.totals.consumed == 1 and again.totals.applied == 1


class _RefusingState(StateStore):
    """Stands in for a database that refuses one value the decoder let through (no natural
    one is left once decode checks the bounds): page ``refused`` is refused like SQLite or
    PostgreSQL refuse an out-of-range integer, with ``UnstorableValue``."""

    refused = 1000 + 13

    def apply_many(self, changes: Sequence[ArticleChange]) -> int:
        if any(c.key.identifier == self.refused for c in changes):
            raise UnstorableValue("value rejected by the database: integer out of range")
        return super().apply_many(changes)


async def test_a_change_the_database_refuses_is_dead_lettered_alone(
        settings: Settings, event_log: EmbeddedEventLog, db: SQLiteDatabase) -> None:
    template = _template()
    values = [json.dumps(_valid(i, template)).encode() for i in range(VALID)]
    await event_log.append(INPUT, [Outgoing(key=None, value=v) for v in values])
    consumer = await _consume(settings, event_log, db)
    consumer.state = _RefusingState(db)
    stats = await consumer.run(once=True, max_failures=1)

    assert stats.totals.applied == VALID - 1 and stats.totals.dead_lettered == 1
    assert stats.totals.produced == VALID - 1
    (reason, raw), = db.fetchall("SELECT reason, raw FROM dead_letters")
    assert reason == "unstorable" and json.loads(bytes(raw))["meta"]["id"] == "valid-13"
    assert db.fetchone("SELECT count(*) FROM article_state") == (VALID - 1,)
    assert await event_log.committed(settings.consumer_group, INPUT) == \
        await event_log.end_offsets(INPUT)
