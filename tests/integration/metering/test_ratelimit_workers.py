"""Issue 11, item 6: one rate limit per customer, however many server processes serve it.

``feedserver serve --workers 2`` runs two uvicorn worker processes. Each used to keep its own
GCRA bucket on SQLite, so a burst of 10 admitted about 20. The plan here refills one request
per 1,000 seconds, so the bound does not depend on how long the test takes: exactly ``burst``
requests may pass, on SQLite and on PostgreSQL alike.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedserver.plans import Plan, RateLimit
from tests.fixtures.serve_proc import ServerProcess, customer_env

pytestmark = pytest.mark.integration

BURST = 10
REQUESTS = 60
PLAN = Plan(name="burst-10", feeds=["snapshots"],
            rate_limit=RateLimit(requests_per_second=0.001, burst=BURST))


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    yield customer_env(request, tmp_path, PLAN)


async def _burst(url: str, key: str) -> Counter[int]:
    """REQUESTS concurrent requests, each on a NEW connection so both workers get some."""
    statuses: Counter[int] = Counter()
    limits = httpx.Limits(max_keepalive_connections=0)

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            r = await client.get("/v2/snapshots", headers={"Authorization": f"Bearer {key}"})
            statuses[r.status_code] += 1
            if r.status_code == 429:
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith("/rate-limited")

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(REQUESTS))), 120)
    return statuses


async def test_two_workers_share_one_bucket(world: tuple[dict[str, str], str]) -> None:
    env, key = world
    server = ServerProcess(env, workers=2).start()
    try:
        statuses = await _burst(server.url, key)
    finally:
        server.stop()
    assert statuses == {200: BURST, 429: REQUESTS - BURST}
