"""On-demand's state cache on a real PostgreSQL: the trigger notifies every changed title, and
a server's cached lookups follow changes written by ANOTHER process.

The servers run with ``ondemand_cache_seconds`` at an hour, so only the notifications can
explain a lookup seeing a change within the test's bounded wait (docs/api.md, "On-demand on
PostgreSQL")."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio.to_thread
import httpx
import pytest

from feedserver.accounts.admin import AccountAdmin
from feedserver.feeds.events.state import CHANNEL, StateStore
from feedserver.feeds.events.state_cache import StateCache, follow
from feedserver.models import Article, Namespace, Project, Version
from feedserver.plans import Plan
from feedserver.storage.db import Database
from feedserver.storage.db.postgres import PostgresDatabase
from tests.fixtures.serve_proc import ServerProcess, server_env

pytestmark = pytest.mark.integration

WAIT = 20.0  # seconds: far below the cache's hour, far above a notification's delay
PLAN = Plan(name="lookups", feeds=["ondemand"])


def page(name: str, page_id: int, revision: int) -> Article:
    return Article(name=name, identifier=page_id, namespace=Namespace(identifier=0),
                   is_part_of=Project(identifier="enwiki"), version=Version(identifier=revision),
                   date_modified=datetime(2024, 1, 1, tzinfo=UTC))


def pg(db: Database) -> PostgresDatabase:
    assert isinstance(db, PostgresDatabase)
    return db


async def test_each_change_notifies_the_names_it_touched(postgres_database: Database) -> None:
    db = pg(postgres_database)
    store = StateStore(db)
    store.load_articles([page("Earth", 1, 1)])

    async def write(*articles: Article) -> None:
        await anyio.to_thread.run_sync(store.load_articles, list(articles))

    async def execute(sql: str) -> None:
        await anyio.to_thread.run_sync(db.execute, sql)

    async with db.listen(CHANNEL, keepalive=5.0) as names:
        notes = aiter(names)

        async def received(count: int) -> list[str]:
            with anyio.fail_after(WAIT):
                return [await anext(notes) for _ in range(count)]

        await write(page("Mars", 2, 1))  # a new row
        assert await received(1) == ["Mars"]
        await write(page("Earth", 1, 2))  # a newer revision, same title
        assert await received(1) == ["Earth"]
        # A replay changes nothing and says nothing: the next note is the next change's.
        await write(page("Earth", 1, 2))
        await write(page("Venus", 3, 1))
        assert await received(1) == ["Venus"]
        await write(page("Terra", 1, 3))  # a move: the old title and the new one
        assert await received(2) == ["Earth", "Terra"]
        await execute("DELETE FROM article_state WHERE page_id = 2")
        assert await received(1) == ["Mars"]
        await execute("TRUNCATE article_state")
        assert await received(1) == [""]


@pytest.fixture
def served(fresh_postgres_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, str,
                                                                      StateStore]]:
    """Two API worker processes on one PostgreSQL, a customer's key, and the state store as a
    writer in THIS process (the role of the events consumer)."""
    db = PostgresDatabase(fresh_postgres_url, max_size=2)
    try:
        admin = AccountAdmin(db)
        admin.create_plan(PLAN)
        admin.create_customer("Acme", plan=PLAN.name)
        key = admin.create_api_key("Acme")[1]
        store = StateStore(db)
        store.load_articles([page("Earth", 1, 1)])
        env = server_env(tmp_path, database_url=fresh_postgres_url,
                         token_secret="cache-secret-0123456789abcdef0123",
                         ondemand_cache_seconds="3600")
        server = ServerProcess(env, workers=2).start()
        try:
            yield server, key, store
        finally:
            server.stop()
    finally:
        db.close()


def revisions(server: ServerProcess, key: str, name: str, count: int = 12) -> list[int | None]:
    """The revision each of ``count`` lookups found (None: 404), each on a new connection so
    that both workers answer some."""
    found: list[int | None] = []
    for _ in range(count):
        r = httpx.get(f"{server.url}/v2/articles/{name}", timeout=30,
                      headers={"Authorization": f"Bearer {key}"})
        if r.status_code == 404:
            found.append(None)
            continue
        assert r.status_code == 200, r.text
        (one,) = r.json()
        found.append(one["version"]["identifier"])
    return found


def eventually(server: ServerProcess, key: str, name: str, expected: int | None) -> None:
    deadline = time.monotonic() + WAIT
    while (seen := revisions(server, key, name)) != [expected] * len(seen):
        assert time.monotonic() < deadline, f"{name}: still {seen}, expected {expected}"
        time.sleep(0.05)


def test_cached_lookups_follow_another_process_writes(
        served: tuple[ServerProcess, str, StateStore]) -> None:
    server, key, store = served
    eventually(server, key, "Earth", 1)
    assert revisions(server, key, "Earth") == [1] * 12  # cached by now in both workers
    store.load_articles([page("Earth", 1, 2)])
    eventually(server, key, "Earth", 2)
    store.load_articles([page("Terra", 1, 3)])  # moved: the old title is gone
    eventually(server, key, "Earth", None)
    eventually(server, key, "Terra", 3)


async def test_a_lost_listener_empties_the_cache_until_listening_again(
        postgres_database: Database) -> None:
    db = pg(postgres_database)
    StateStore(db)  # the table and its trigger
    cache = StateCache(100_000, 3600.0)
    task = asyncio.create_task(follow(cache, db, keepalive=1.0, retry=0.1))
    try:
        async def until(condition: Callable[[], bool]) -> None:
            with anyio.fail_after(WAIT):
                while not condition():
                    await asyncio.sleep(0.01)

        await until(lambda: cache.live)
        cache.put("Earth", None, [page("Earth", 1, 1)], 1000, cache.ticket())
        # The server ends the listener's session (a restart, a failover, a network cut):
        # whatever was notified meanwhile is unknown, so the cache must forget everything.
        await anyio.to_thread.run_sync(db.execute, (
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"))
        await until(lambda: cache.get("Earth", None) is None)
        await until(lambda: cache.live)  # listening again on a new connection
        ticket = cache.ticket()
        cache.put("Earth", None, [], 1000, ticket)
        await anyio.to_thread.run_sync(StateStore(db).load_articles, [page("Earth", 1, 2)])
        await until(lambda: cache.get("Earth", None) is None)  # the new session notifies
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
