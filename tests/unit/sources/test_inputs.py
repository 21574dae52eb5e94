"""One batch of mixed input records (real page_change lines, recentchange events of real dump
revisions, garbage) -> article changes with stable (record, index), via a loopback Action API."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from feedserver.errors import InvalidParameter
from feedserver.models import Article
from feedserver.sources.inputs import map_input
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.storage.eventlog import LogRecord
from tests.conftest import DUMPS, EVENTS
from tests.fixtures.action_api import ActionApi, load_articles, serve_action_api
from tests.fixtures.recentchange import edit_of, log_event, real_page_changes

UA = "feedserver-tests/1 (ops@example.org)"


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return load_articles(DUMPS, ["pywikibot/pair-0.10.xml", "pywikibot/article-pear-0.10.xml"])


@pytest.fixture
def api(articles: list[Article]) -> Iterator[ActionApi]:
    with serve_action_api(articles) as server:
        yield server


def record(offset: int, value: object) -> LogRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return LogRecord(topic="in", partition=0, offset=offset, timestamp_ms=0, key=None, value=raw)


async def test_mixed_batch(api: ActionApi, articles: list[Article]) -> None:
    pear = next(a for a in articles if a.name == "Pear")
    assert pear.version is not None
    move = next(pc for pc in real_page_changes(EVENTS) if pc["page_change_kind"] == "move")
    records = [
        record(0, move),  # page_change: two outputs, indexes 0 and 1
        record(1, edit_of(pear)),
        record(2, b"{not json"),
        record(3, log_event(title="Pear", namespace=0, log_type="delete", rcid=9,
                            log_action="revision",
                            params={"type": "revision", "ids": [999, pear.version.identifier],
                                    "nfield": 2})),
        record(4, {"$schema": "/mediawiki/recentchange/1.0.1", "type": "categorize",
                   "meta": {"dt": "2024-01-01T00:00:00Z", "stream": "mediawiki.recentchange"}}),
    ]
    client = ActionApiClient(api.url, user_agent=UA)
    try:
        mapped = await map_input(records, client=client, state=None)
    finally:
        await client.close()
    got = [(r.offset, i, c.type) for r, i, c in mapped.changes]
    # Revision 999 does not exist: its title change (j=0) is unresolved, yet the next one keeps
    # index 2 * 1 + 0 = 2.
    assert got == [(0, 0, "update"), (0, 1, "delete"), (1, 0, "update"),
                   (3, 2, "visibility-change")]
    assert [(r.offset, e.extra["reason"]) for r, e in mapped.invalid] == [(2, "json")]
    assert mapped.unresolved == 1
    pear_change = mapped.changes[2][2]
    assert pear_change.key.identifier == pear.identifier and pear_change.article.article_body


async def test_recentchange_without_an_action_api_is_a_configuration_error() -> None:
    with pytest.raises(InvalidParameter, match="CONTENT_SOURCE_URL"):
        await map_input([record(0, log_event(title="Pear", namespace=0, log_type="delete",
                                             log_action="restore"))], client=None, state=None)
