"""The SDK's realtime call ``stream_articles(req, cbk)`` (a POST with a JSON body, NDJSON back)
over the Articles the real page_change events became: ``since``, ``parts`` with ``offsets``,
``offsets`` to resume, ``since_per_partition``. Each parsed Article must equal the one sent
for that (partition, offset), and that must be the article topic's record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from feedserver.config import load_settings
from feedserver.feeds.realtime.hub import partitions_of_parts
from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import api_client, served_stream, stream
from tests.integration.wme_sdk.server import WMEServer, article_records

pytestmark = pytest.mark.integration

Position = tuple[int, int]


@pytest.fixture(scope="module")
def records(wme_server: WMEServer) -> dict[Position, dict[str, Any]]:
    """(partition, offset) -> the Article as the topic holds it (position stamped in, as the
    stream sends it)."""
    out = {}
    for record in article_records(wme_server):
        article = json.loads(record.value)
        article["event"].update(partition=record.partition, offset=record.offset)
        out[(record.partition, record.offset)] = article
    assert len(out) >= 10, "the real events should give at least 10 Articles"
    return out


@pytest.fixture()
def client(wme_server: WMEServer, token: str, sdk_path: Path) -> Iterator[Any]:
    c = api_client(wme_server, token)
    try:
        yield c
    finally:
        c.http_client.close()


def _position(article: Any) -> Position:
    return article.event.partition, article.event.offset


def _check(got: list[Any], records: dict[Position, dict[str, Any]],
           sent: list[dict[str, Any]]) -> set[Position]:
    by_position = {(a["event"]["partition"], a["event"]["offset"]): a for a in sent}
    positions = [_position(a) for a in got]
    assert len(set(positions)) == len(positions), "an Article came twice"
    for article in got:
        pos = _position(article)
        assert by_position[pos] == records[pos]  # sent = the topic's record
        assert_parsed(article, by_position[pos])  # parsed = sent
    return set(positions)


def test_since(client: Any, wme_server: WMEServer, token: str,
               records: dict[Position, dict[str, Any]]) -> None:
    from modules.api.api_client import Request

    req = Request(since=wme_server.events_from - timedelta(seconds=1))
    got = stream(client, req, len(records))
    sent = served_stream(wme_server, token, req.to_json(), len(records))
    assert _check(got, records, sent) == set(records)


def test_parts_with_offsets(client: Any, wme_server: WMEServer, token: str,
                            records: dict[Position, dict[str, Any]]) -> None:
    """One part (five of WME's fifty partitions) from offset 0: exactly its Articles."""
    from modules.api.api_client import Request

    partitions = load_settings(wme_server.env).article_partitions
    counts = {part: [pos for pos in records if pos[0] in partitions_of_parts([part], partitions)]
              for part in range(10)}
    part = max(counts, key=lambda k: len(counts[k]))
    chosen = partitions_of_parts([part], partitions)
    req = Request(parts=[part], offsets={p: 0 for p in chosen})
    got = stream(client, req, len(counts[part]))
    sent = served_stream(wme_server, token, req.to_json(), len(counts[part]))
    assert _check(got, records, sent) == set(counts[part])


def test_offsets_resume_after_the_last_seen(client: Any, wme_server: WMEServer, token: str,
                                            records: dict[Position, dict[str, Any]]) -> None:
    """Offsets are inclusive (WME): resuming with last + 1 gives what followed it."""
    from modules.api.api_client import Request

    busiest = max({p for p, _ in records}, key=lambda p: sum(q == p for q, _ in records))
    offsets = sorted(o for p, o in records if p == busiest)
    assert len(offsets) >= 2
    want = {(busiest, o) for o in offsets[1:]}
    req = Request(parts=list(range(10)), offsets={busiest: offsets[0] + 1})
    got = stream(client, req, len(want))
    sent = served_stream(wme_server, token, req.to_json(), len(want))
    assert _check(got, records, sent) == want


def test_since_per_partition(client: Any, wme_server: WMEServer, token: str,
                             records: dict[Position, dict[str, Any]]) -> None:
    """A time for one partition; every other partition starts at its tail (nothing)."""
    from modules.api.api_client import Request

    partition = min(p for p, _ in records)
    want = {pos for pos in records if pos[0] == partition}
    req = Request(since_per_partition={partition: wme_server.events_from})
    got = stream(client, req, len(want))
    sent = served_stream(wme_server, token, req.to_json(), len(want))
    assert _check(got, records, sent) == want


def test_body_keys_wme_ignores(client: Any, wme_server: WMEServer,
                               records: dict[Position, dict[str, Any]]) -> None:
    """The SDK's Request has ``limit``; WME's stream ignores it, so must we (not a 422)."""
    from modules.api.api_client import Request

    req = Request(limit=3, since=wme_server.events_from)
    got = stream(client, req, len(records))
    assert {_position(a) for a in got} == set(records)
