"""Login throttling: 60 wrong passwords then the right one; per username and per address,
exponential backoff (429 + Retry-After), shared by processes through the database (SQLite and
PostgreSQL), and a cap on concurrent argon2 verifications. Time is an injected clock: nothing
here waits or measures wall-clock time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.passwords import Passwords
from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings, load_settings
from feedserver.errors import RateLimited, Unauthorized
from feedserver.storage.db import Database, SQLiteDatabase
from tests.unit.accounts.conftest import Clock

PASSWORD = "correct horse battery"


class CountingPasswords(Passwords):
    """Real (cheap) argon2 that counts verifications: a blocked login must cost none."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, **kw)
        self.verified = 0

    def verify(self, stored: str | None, password: str) -> bool:
        self.verified += 1
        return super().verify(stored, password)


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path), token_secret="t-" + "x" * 40,
                         metering_enabled=False, **kw)


def _accounts(db: Database, settings: Settings, clock: Clock,
              passwords: Passwords | None = None) -> Accounts:
    accounts = Accounts(db, settings, clock=clock, passwords=passwords or CountingPasswords())
    if not accounts.list_customers():
        accounts.create_customer("acme", "free")
        accounts.create_user("alice", PASSWORD, "acme")
    return accounts


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def http(tmp_path: Path, clock: Clock) -> Iterator[tuple[TestClient[Any], CountingPasswords]]:
    settings = _settings(tmp_path)
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    passwords = CountingPasswords()
    accounts = _accounts(db, settings, clock, passwords)
    app = build_app(settings, db=db, accounts=accounts, registry=CollectorRegistry())
    with TestClient(app) as client:
        yield client, passwords


def _login(client: TestClient[Any], password: str, username: str = "alice") -> Any:
    return client.post("/v1/login", json={"username": username, "password": password})


def test_sixty_wrong_passwords_then_the_right_one(
        http: tuple[TestClient[Any], CountingPasswords], clock: Clock) -> None:
    client, passwords = http
    answers = [_login(client, f"wrong password {i}") for i in range(60)]
    statuses = [a.status_code for a in answers]
    # 5 free failures, the 6th starts a 1 s block; everything after is refused at the door.
    assert statuses == [401] * 6 + [429] * 54
    assert all(a.headers["retry-after"] == "1" for a in answers[6:])
    assert answers[6].headers["content-type"].startswith("application/problem+json")
    # Refused logins cost no argon2 work: only the 6 counted failures were verified.
    assert passwords.verified == 6
    # The right password while blocked: refused too, without checking it (no oracle).
    blocked = _login(client, PASSWORD)
    assert blocked.status_code == 429 and passwords.verified == 6
    clock.advance(int(blocked.headers["retry-after"]))
    ok = _login(client, PASSWORD)
    assert ok.status_code == 200 and ok.json()["access_token"]
    # Success clears the username's count: one slip is not punished again.
    assert _login(client, "one typo").status_code == 401


def test_backoff_doubles_for_a_client_that_honours_retry_after(tmp_path: Path,
                                                               clock: Clock) -> None:
    accounts = _accounts(SQLiteDatabase(tmp_path / "a.db"),
                         _settings(tmp_path, login_max_delay=60), clock)
    waits: list[int] = []
    for i in range(60):
        try:
            accounts.login("alice", f"wrong {i}", client="192.0.2.1")
        except Unauthorized:
            continue  # counted; the next attempt says whether a block started
        except RateLimited as exc:
            retry = int(str(exc.extra["retry_after"]))
            waits.append(retry)
            clock.advance(retry)  # the client waits exactly as told
    assert waits[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert set(waits[6:]) == {60}  # capped at login_max_delay


def test_per_address_throttle_spans_usernames(tmp_path: Path, clock: Clock) -> None:
    accounts = _accounts(SQLiteDatabase(tmp_path / "a.db"), _settings(tmp_path), clock)
    # 20 usernames, one failure each: no username is blocked, but the address has 20.
    for i in range(20):
        with pytest.raises(Unauthorized):
            accounts.login(f"user{i}", "guess", client="198.51.100.7")
    with pytest.raises(Unauthorized):
        accounts.login("user20", "guess", client="198.51.100.7")  # the 21st: blocks the address
    with pytest.raises(RateLimited):
        accounts.login("alice", PASSWORD, client="198.51.100.7")
    # Another address is not affected, and alice's own count is clean.
    assert accounts.login("alice", PASSWORD, client="203.0.113.9").access_token


def test_throttle_is_shared_by_processes_through_the_database(database: Database,
                                                              clock: Clock,
                                                              tmp_path: Path) -> None:
    # Two Accounts on one database stand for two API processes (workers or pods).
    settings = _settings(tmp_path)
    first = _accounts(database, settings, clock)
    second = _accounts(database, settings, clock)
    for i in range(6):
        with pytest.raises(Unauthorized):
            (first if i % 2 else second).login("alice", f"wrong {i}", client="192.0.2.5")
    with pytest.raises(RateLimited):
        first.login("alice", PASSWORD, client="192.0.2.66")
    with pytest.raises(RateLimited):
        second.login("alice", PASSWORD, client="192.0.2.77")
    clock.advance(1)
    assert second.login("alice", PASSWORD, client="192.0.2.77").access_token


def test_concurrent_password_checks_are_capped(tmp_path: Path, clock: Clock) -> None:
    passwords = CountingPasswords(max_concurrent=1)
    accounts = _accounts(SQLiteDatabase(tmp_path / "a.db"), _settings(tmp_path), clock,
                         passwords)
    with passwords.slot():  # another login of this process is hashing right now
        with pytest.raises(RateLimited) as refused:
            accounts.login("alice", PASSWORD, client="192.0.2.1")
        assert refused.value.extra["retry_after"] == 1
    # Refused for load, not for a wrong password: nothing was counted against alice.
    assert accounts.throttle.db.fetchall("SELECT * FROM login_failures") == []
    assert accounts.login("alice", PASSWORD, client="192.0.2.1").access_token
