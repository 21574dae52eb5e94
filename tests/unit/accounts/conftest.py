"""Accounts fixtures: an ``Accounts`` on each backend with an injected clock and cheap argon2."""

from __future__ import annotations

import pytest

from feedserver.accounts.passwords import Passwords
from feedserver.accounts.service import Accounts
from feedserver.config import load_settings
from feedserver.storage.db import Database

START = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cheap_passwords() -> Passwords:
    # Real argon2id, minimal cost: the tests check behaviour, not the work factor.
    return Passwords(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def accounts(database: Database, clock: Clock, cheap_passwords: Passwords) -> Accounts:
    settings = load_settings(env={}, token_secret="test-secret-" + "x" * 32,
                             refresh_token_max_uses=3)
    return Accounts(database, settings, clock=clock, passwords=cheap_passwords)
