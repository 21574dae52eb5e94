"""Accounts on a real PostgreSQL shared by several "processes" (Accounts instances)."""

from __future__ import annotations

import threading

import pytest

from feedserver.accounts.passwords import Passwords
from feedserver.accounts.service import Accounts
from feedserver.config import load_settings
from feedserver.errors import RateLimited, Unauthorized
from feedserver.storage.db.postgres import PostgresDatabase

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_workers_share_secret_cap_and_revocation(fresh_postgres_url: str) -> None:
    clock = Clock()
    passwords = Passwords(time_cost=1, memory_cost=8)
    settings = load_settings(env={}, refresh_token_max_uses=5)
    dbs = [PostgresDatabase(fresh_postgres_url, max_size=4) for _ in range(2)]
    try:
        # Two API workers start at once against an empty database.
        workers: list[Accounts] = []
        errors: list[BaseException] = []

        def start(i: int) -> None:
            try:
                workers.append(Accounts(dbs[i], settings, clock=clock, passwords=passwords))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors and len(workers) == 2
        one, two = workers
        one.create_customer("Acme")
        one.create_user("alice", PASSWORD, "Acme")
        pair = one.login("alice", PASSWORD)
        assert pair.refresh_token is not None
        # The generated signing secret was agreed through the database.
        assert two.authenticate_bearer(pair.access_token).user == "alice"

        # Concurrent refreshes never exceed the cap.
        outcomes: list[str] = []
        lock = threading.Lock()

        def refresh(worker: Accounts) -> None:
            try:
                worker.refresh("alice", str(pair.refresh_token))
                result = "ok"
            except RateLimited:
                result = "limited"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=refresh, args=(w,)) for w in (one, two) * 5]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(outcomes) == ["limited"] * 5 + ["ok"] * 5

        # Revoked through one worker: the other stops accepting once its cache entry lapses.
        one.revoke(pair.refresh_token)
        with pytest.raises(Unauthorized):
            one.authenticate_bearer(pair.access_token)
        clock.now += 3
        with pytest.raises(Unauthorized):
            two.authenticate_bearer(pair.access_token)
    finally:
        for db in dbs:
            db.close()
