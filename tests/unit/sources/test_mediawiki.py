"""Action API client against a real loopback server answering from the shared real dumps."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedserver.config import load_settings
from feedserver.errors import UpstreamError
from feedserver.ingest.events import changes_from_json
from feedserver.ingest.revision import fill_change
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.sources.mediawiki import ActionApiClient, retry_after
from feedserver.sources.revcache import DatabaseRevisionCache, MemoryRevisionCache
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS, EVENTS
from tests.fixtures.action_api import ActionApi, Failure, load_articles, serve_action_api

UA = "feedserver-tests/1 (https://example.org/feedserver; ops@example.org)"
BASE = "https://en.wikipedia.org"


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    # A slice of a real enwiki dump: 100+ articles with their latest revision.
    return load_articles(DUMPS, [
        "gensim-4.4.0/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"])


@pytest.fixture
def api(articles: list[Article]) -> Iterator[ActionApi]:
    with serve_action_api(articles) as server:
        yield server


class Sleeps:
    """Records the waits the client asks for instead of sleeping (no wall-clock in tests)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(api: ActionApi, sleeps: Sleeps | None = None, **kw: object) -> ActionApiClient:
    return ActionApiClient(api.url, user_agent=UA, sleep=sleeps or Sleeps(),
                           **kw)  # type: ignore[arg-type]


def revids(articles: list[Article], n: int) -> list[int]:
    return [a.version.identifier for a in articles[:n] if a.version]


async def test_many_revisions_per_request_with_maxlag_and_user_agent(
        api: ActionApi, articles: list[Article]) -> None:
    wanted = revids(articles, 104)
    metrics = Metrics()
    c = client(api, metrics=metrics)
    try:
        texts = await c.fetch("enwiki", BASE, wanted)
    finally:
        await c.close()
    # 104 ids need ceil(104 / 50) = 3 requests, not 104.
    assert len(api.requests) == 3
    assert sorted(len(r.params["revids"].split("|")) for r in api.requests) == [4, 50, 50]
    assert all(r.params["maxlag"] == "5" and r.user_agent == UA for r in api.requests)
    expected = {a.version.identifier: a.article_body.wikitext for a in articles[:104]
                if a.version and a.article_body}
    assert texts == {r: t for r, t in expected.items() if t is not None}
    assert metrics.registry.get_sample_value(
        "feedserver_content_revisions_total", {"result": "fetched"}) == len(wanted)


async def test_concurrency_is_limited_per_wiki(api: ActionApi, articles: list[Article]) -> None:
    api.delay = 0.05  # answers overlap if the client sends them at once
    c = client(api, concurrency=2)
    try:
        await c.revisions("enwiki", BASE, revids(articles, 104) + list(range(1, 200)))
    finally:
        await c.close()
    assert len(api.requests) == 7
    assert api.max_in_flight <= 2


async def test_retries_429_503_and_maxlag_honouring_retry_after(
        api: ActionApi, articles: list[Article]) -> None:
    api.failures = [Failure(429, "3"), Failure(503, None), Failure(maxlag=True, retry_after="5")]
    sleeps = Sleeps()
    c = client(api, sleeps)
    try:
        found = await c.revisions("enwiki", BASE, revids(articles, 3))
    finally:
        await c.close()
    assert len(found) == 3 and len(api.requests) == 4
    # Each wait is at least what the server asked for (Retry-After), never less.
    assert sleeps.waits[0] >= 3 and sleeps.waits[2] >= 5 and len(sleeps.waits) == 3


async def test_retries_are_bounded(api: ActionApi, articles: list[Article]) -> None:
    api.failures = [Failure(503) for _ in range(10)]
    c = client(api, retries=2)
    try:
        with pytest.raises(UpstreamError, match="after 3 attempts: HTTP 503"):
            await c.revisions("enwiki", BASE, revids(articles, 1))
    finally:
        await c.close()
    assert len(api.requests) == 3


async def test_network_errors_and_silent_servers_are_caught() -> None:
    # A port nobody listens on (connection refused), then a socket that accepts connections
    # but never answers: both end in UpstreamError after bounded retries, not a hang.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/w/api.php"
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"http://127.0.0.1:{silent.getsockname()[1]}/w/api.php"
        for url in (dead, mute):
            sleeps = Sleeps()
            c = ActionApiClient(url, user_agent=UA, retries=1, timeout=0.3, sleep=sleeps)
            try:
                with pytest.raises(UpstreamError, match="after 2 attempts"):
                    await c.fetch("enwiki", BASE, [1])
            finally:
                await c.close()
            assert len(sleeps.waits) == 1


async def test_replay_is_served_from_the_cache(api: ActionApi, articles: list[Article],
                                               tmp_path: Path) -> None:
    wanted = revids(articles, 60)
    c = client(api, cache=MemoryRevisionCache(max_entries=100))
    try:
        first = await c.fetch("enwiki", BASE, wanted)
        second = await c.fetch("enwiki", BASE, wanted)
    finally:
        await c.close()
    assert first == second and len(api.requests) == 2

    # The database cache survives a restart (a new client, a new process).
    db = SQLiteDatabase(tmp_path / "cache.db")
    try:
        for _ in range(2):
            c = client(api, cache=DatabaseRevisionCache(db))
            try:
                assert await c.fetch("enwiki", BASE, wanted) == first
            finally:
                await c.close()
    finally:
        db.close()
    assert len(api.requests) == 4  # two more for the first database-cached client only


async def test_caches_are_bounded(articles: list[Article], tmp_path: Path) -> None:
    with serve_action_api(articles) as api:
        c = client(api, cache=MemoryRevisionCache(max_entries=10))
        try:
            await c.revisions("enwiki", BASE, revids(articles, 40))
            assert len(c.cache) == 10  # type: ignore[arg-type]
        finally:
            await c.close()
    db = SQLiteDatabase(tmp_path / "cache.db")
    try:
        cache = DatabaseRevisionCache(db, max_entries=5, prune_every=1)
        with serve_action_api(articles) as api:
            c = client(api, cache=cache)
            try:
                await c.revisions("enwiki", BASE, revids(articles, 12))
            finally:
                await c.close()
        assert db.fetchone("SELECT COUNT(*) FROM revision_cache") == (5,)
    finally:
        db.close()


async def test_hidden_and_deleted_revisions_become_visibility_not_errors(
        api: ActionApi, articles: list[Article]) -> None:
    hidden, deleted, plain = revids(articles, 3)
    api.hidden[hidden] = (True, True, False)  # text and editor hidden since the event
    api.deleted.add(deleted)
    c = client(api)
    try:
        found = await c.revisions("enwiki", BASE, [hidden, deleted, plain])
        again = await c.revisions("enwiki", BASE, [hidden, deleted, plain])
    finally:
        await c.close()
    assert set(found) == {hidden, plain}
    rev = found[hidden]
    assert (rev.text, rev.user, rev.sha1) == (None, None, None)
    assert (rev.text_visible, rev.editor_visible, rev.comment_visible) == (False, False, True)
    # Asked twice: the hidden one comes from the cache, the deleted one is asked again (its
    # page may be restored), and neither is an error.
    assert set(again) == {hidden, plain} and len(api.requests) == 2
    assert api.requests[1].params["revids"] == str(deleted)

    # A real page_change edit whose revision was hidden by fetch time: the article gets the
    # visibility flags and loses the text and editor the event still had.
    line = (EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
            ).read_text(encoding="utf-8").splitlines()[1]
    (change,) = changes_from_json(line)
    assert change.needs_body and change.article.version and change.article.version.editor
    fill_change(change, rev)
    assert not change.needs_body and change.article.article_body is None
    assert change.article.visibility is not None and not change.article.visibility.text
    assert change.article.version.editor is None and change.article.version.sha1 is None
    (gone,) = changes_from_json(line)
    assert not fill_change(gone, None).needs_body  # deleted page: no loop, the delete follows


async def test_continuation_and_latest_by_title(api: ActionApi, articles: list[Article]) -> None:
    api.per_answer = 7  # as when the API's result size limit cuts an answer
    c = client(api)
    try:
        found = await c.revisions("enwiki", BASE, revids(articles, 20))
        names = [articles[0].name, articles[1].name.lower(), "No such page"]
        latest = await c.latest("enwiki", BASE, names)
    finally:
        await c.close()
    assert len(found) == 20
    assert set(latest) == set(names[:2])
    assert latest[names[1]].page_id == articles[1].identifier


def test_retry_after_forms() -> None:
    assert retry_after("7") == 7 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("999999") == 300  # clamped: a hostile header cannot park us for days
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


async def test_from_settings(api: ActionApi,
                                                      articles: list[Article]) -> None:
    assert ActionApiClient.from_settings(load_settings({})) is None
    settings = load_settings({"FEEDSERVER_CONTENT_SOURCE_URL": api.url,
                              "FEEDSERVER_USER_AGENT": UA, "FEEDSERVER_CONTENT_MAXLAG": "3"})
    client = ActionApiClient.from_settings(settings)
    assert client is not None
    try:
        texts = await client.fetch("enwiki", BASE, revids(articles, 2))
    finally:
        await client.close()
    assert len(texts) == 2
    assert api.requests[0].params["maxlag"] == "3" and api.requests[0].user_agent == UA


def test_endpoint_template() -> None:
    # One setting reaches every wiki's own API: the domain comes from the event's base URL.
    c = ActionApiClient("https://{domain}/w/api.php", user_agent=UA)
    assert c.endpoint("enwiki", "https://en.wikipedia.org") == \
        "https://en.wikipedia.org/w/api.php"
    assert c.endpoint("enwiki", None) == "https://enwiki/w/api.php"
