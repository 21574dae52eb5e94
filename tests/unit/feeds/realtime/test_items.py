"""``to_item``'s fast path (routing decode + splice of the log position) gives the same bytes,
routing fields and dict as the full decode / stamp / re-encode path, on real articles built
by the consumer's mapping, and falls back to the full path whenever the layout is unexpected."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from feedserver.feeds.realtime.items import StreamItem, to_item
from feedserver.ingest.events import changes_from_json
from feedserver.models import Article, ArticleBody
from feedserver.storage.eventlog import LogRecord
from tests.conftest import EVENTS

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
EXAMPLE = EVENTS / "schema_examples" / "mediawiki.page_change.v1__schema-1.3.0-examples.jsonl"
ENCODER = msgspec.json.Encoder()  # as the consumer encodes articles
# Text that looks like the structure the splice looks for, inside strings.
TRICKY = 'a "event":{"partition":1} b } } \\ \u00e9 \U0001f600 \n {"identifier":"x"}}'


def real_articles() -> list[Article]:
    lines = [line for line in REAL.read_bytes().splitlines() if line.strip()]
    lines.append(EXAMPLE.read_bytes().strip())
    return [c.article for line in lines for c in changes_from_json(line)]


def record(value: bytes, partition: int = 3, offset: int = 41) -> LogRecord:
    return LogRecord(topic="articles", partition=partition, offset=offset, timestamp_ms=5,
                     key=None, value=value)


def full_path(rec: LogRecord) -> tuple[bytes, dict[str, Any]] | None:
    """The reference: what ``to_item`` did for every record before the fast path."""
    try:
        data = msgspec.json.decode(rec.value)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, dict):
        return None
    event = data.get("event")
    if not isinstance(event, dict):
        event = data["event"] = {}
    event["partition"] = rec.partition
    event["offset"] = rec.offset
    return msgspec.json.encode(data), data


def routing(data: dict[str, Any]) -> tuple[Any, Any]:
    part_of, ns = data.get("is_part_of"), data.get("namespace")
    return (part_of.get("identifier") if isinstance(part_of, dict) else None,
            ns.get("identifier") if isinstance(ns, dict) else None)


def assert_same_as_full_path(rec: LogRecord, *, fast: bool) -> StreamItem:
    item = to_item(rec)
    expected = full_path(rec)
    assert expected is not None
    raw, data = expected
    assert item.valid
    assert (item._data is None) == fast  # the fast path decodes no dict up front
    assert item.raw == raw
    assert (item.project, item.namespace) == routing(data)
    assert (item.partition, item.offset, item.timestamp_ms) == (rec.partition, rec.offset, 5)
    assert item.data == data
    assert list(item.data) == list(data) and list(item.data["event"]) == list(data["event"])
    assert item.data is item.data  # memoised on the shared item
    return item


def test_real_articles_fast_path_is_byte_identical() -> None:
    articles = real_articles()
    assert len(articles) >= 14
    kinds = set()
    for n, article in enumerate(articles):
        assert article.event is not None
        kinds.add(article.event.type)
        value = ENCODER.encode(article)
        for partition, offset in ((0, 0), (n % 10, 10**12 + n)):
            assert_same_as_full_path(record(value, partition, offset), fast=True)
    assert kinds >= {"update", "delete"}


def test_real_articles_with_bodies_and_fields_after_event() -> None:
    for article in real_articles()[:6]:
        article.article_body = ArticleBody(wikitext=TRICKY, html=f"<p>{TRICKY}</p>")
        article.name = TRICKY
        assert_same_as_full_path(record(ENCODER.encode(article)), fast=True)
        # The realtime benchmark stamps one more top-level field after ``event``.
        data = msgspec.json.decode(ENCODER.encode(article))
        data["bench_sent_ns"] = 1_700_000_000_000_000_000
        assert_same_as_full_path(record(ENCODER.encode(data)), fast=True)


def test_empty_event_object_is_stamped() -> None:
    value = b'{"name":"A","is_part_of":{"identifier":"enwiki"},"event":{}}'
    item = assert_same_as_full_path(record(value), fast=True)
    assert item.raw.endswith(b'"event":{"partition":3,"offset":41}}')


def _real() -> dict[str, Any]:
    data: dict[str, Any] = msgspec.json.decode(ENCODER.encode(real_articles()[0]))
    return data


def _with(**changes: Any) -> bytes:
    data = _real()
    for key, value in changes.items():
        if value is ...:
            del data[key]
        else:
            data[key] = value
    return ENCODER.encode(data)


def _event(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = _real()["event"]
    event.update(extra)
    return event


@pytest.mark.parametrize("value", [
    pytest.param(_with(event=...), id="no-event"),
    pytest.param(_with(event=None), id="event-null"),
    pytest.param(_with(event="update"), id="event-not-object"),
    pytest.param(_with(event=[1, 2]), id="event-list"),
    pytest.param(_with(event=_event(partition=7)), id="event-has-partition"),
    pytest.param(_with(event=_event(offset=7)), id="event-has-offset"),
    pytest.param(_with(event=_event(partition=None, offset=None)), id="event-has-both"),
    pytest.param(_with(extra={"event": {"identifier": "x"}}), id="nested-event-key"),
    pytest.param(_with(is_part_of={"identifier": 5}), id="project-not-string"),
    pytest.param(_with(namespace={"identifier": "0"}), id="namespace-not-int"),
    pytest.param(_with(namespace=0), id="namespace-not-object"),
])
def test_unexpected_layouts_take_the_full_path(value: bytes) -> None:
    assert_same_as_full_path(record(value), fast=False)


def test_missing_routing_fields_stay_on_the_fast_path() -> None:
    item = assert_same_as_full_path(record(_with(is_part_of=..., namespace=...)), fast=True)
    assert (item.project, item.namespace) == (None, None)  # never entitled, as before


def test_event_bytes_elsewhere_stay_on_the_fast_path() -> None:
    # Only a key named "event" could mislead the splice; identical bytes under another key not.
    item = assert_same_as_full_path(record(_with(extra=_event())), fast=True)
    assert item.raw.count(b'"partition":3,"offset":41') == 1


def test_duplicate_event_key_takes_the_full_path() -> None:
    base = _with(event=...)
    event = ENCODER.encode(_event())
    duplicate = base[:-1] + b',"event":{"identifier":"old","type":"update"},"event":' + event + b"}"
    assert_same_as_full_path(record(duplicate), fast=False)
    later = base[:-1] + b',"event":' + event + b',"extra":{"event":{}}}'
    assert_same_as_full_path(record(later), fast=False)


def test_other_producers_formatting_keeps_the_same_json_value() -> None:
    # Our consumer encodes with msgspec (compact, canonical): that is what the splice relies on
    # for identical bytes. Another producer's spacing / escapes are kept as they are; the JSON
    # value is the full path's.
    base = _with(event=...)
    event = ENCODER.encode(_event())
    values = [
        _with().replace(b'{"name":', b'{ "name" :', 1) + b"\n",
        base[:-1] + b',"event":' + event.replace(b'":"', b'": "') + b"}",
        base[:-1] + b',"event":' + event[:-1] + b',"note":"\\u00e9"}}',
        base[:-1] + b',"event":' + event[:-1] + b',"identifier":"again"}}',
        base[:-1] + b',"event":{ }}',
        base[:-1] + b',"event":{\n}\n}',
    ]
    for value in values:
        item = to_item(record(value))
        expected = full_path(record(value))
        assert expected is not None and item._data is None
        assert msgspec.json.decode(item.raw) == expected[1]
        assert (item.project, item.namespace) == routing(expected[1])


@pytest.mark.parametrize("value", [b"{not json", b"", b'{"event":{}', b"[1,2]", b'"text"', b"null"])
def test_undecodable_records_are_never_sent(value: bytes) -> None:
    item = to_item(record(value))
    assert not item.valid and item.data is None and item.raw == b""
    assert (item.partition, item.offset) == (3, 41)
