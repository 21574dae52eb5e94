"""Login throttling: exponential backoff per username and per client address, shared by every
API process through the database.

A password guess costs the server one argon2 verification (~0.3 s of a core), so an unthrottled
``/v1/login`` is both a guessing oracle and a CPU denial of service. Each failed login counts
against the username AND the client address. After ``free`` failures in a row a subject is
blocked for ``base * 2**(n - free - 1)`` seconds (n = failures so far), at most ``max_delay``;
while blocked, a login for it is answered 429 with ``Retry-After`` WITHOUT checking the password
(no argon2 work, and no answer that tells a right password from a wrong one). Attempts refused
while blocked are not counted, so a client that honours ``Retry-After`` waits 1, 2, 4, ... s.

A successful login clears its username's count; the address keeps its count (one valid account
must not let an address reset its budget for guessing others). Counts are forgotten
``forget_after`` seconds after a subject's last failure. The rows live in ``login_failures``
(SQLite or PostgreSQL), updated in one transaction per failure, so N API processes (``serve
--workers N``, several pods) see one count.

Trade-off: a per-username block can be triggered by anyone who knows the username (a lock-out
of that user for at most ``max_delay``); API keys are unaffected, and the per-address block
stops a single source from keeping it up cheaply.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import msgspec

from feedserver.errors import RateLimited
from feedserver.storage.db import Database

Clock = Callable[[], float]
TABLE = "login_failures"
MIGRATION = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (scope TEXT NOT NULL, subject TEXT NOT NULL,"
    " failures INTEGER NOT NULL, last_failure {real} NOT NULL,"
    " blocked_until {real} NOT NULL, PRIMARY KEY (scope, subject))",
)
_COUNT = (
    f"INSERT INTO {TABLE} (scope, subject, failures, last_failure, blocked_until) "
    "VALUES (?, ?, 1, ?, 0) ON CONFLICT (scope, subject) DO UPDATE SET "
    f"failures = CASE WHEN ? - {TABLE}.last_failure > ? THEN 1 ELSE {TABLE}.failures + 1 END, "
    "last_failure = excluded.last_failure"
)
MAX_SUBJECT = 255  # usernames are at most 255 characters; addresses far less


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    """``free`` failures, then ``base * 2**k`` seconds blocked, at most ``max_delay``."""

    free: int = 5
    base: float = 1.0
    max_delay: float = 900.0

    def delay(self, failures: int) -> float:
        if failures <= self.free:
            return 0.0
        return min(self.max_delay, self.base * 2.0 ** min(failures - self.free - 1, 40))


class LoginThrottle:
    """Synchronous (like ``Database``): call from a worker thread in async code."""

    def __init__(self, db: Database, *, clock: Clock = time.time,
                 username: Backoff | None = None, address: Backoff | None = None,
                 forget_after: float = 24 * 3600.0) -> None:
        self.db = db
        self.clock = clock
        self.rules = {"username": username or Backoff(),
                      "address": address or Backoff(free=20)}
        self.forget_after = forget_after
        db.migrate("accounts.login_throttle.1", MIGRATION)

    @staticmethod
    def _subjects(username: str, address: str | None) -> list[tuple[str, str]]:
        out = [("username", username[:MAX_SUBJECT])]
        if address:
            out.append(("address", address[:MAX_SUBJECT]))
        return out

    def check(self, username: str, address: str | None) -> None:
        """Raise ``RateLimited`` (with ``retry_after``) while either subject is blocked."""
        now = self.clock()
        wait = 0.0
        for scope, subject in self._subjects(username, address):
            row = self.db.fetchone(
                f"SELECT blocked_until FROM {TABLE} WHERE scope = ? AND subject = ?",
                (scope, subject))
            if row is not None:
                wait = max(wait, float(row[0]) - now)
        if wait > 0:
            raise RateLimited(
                f"too many failed logins: retry in {math.ceil(wait)} s",
                retry_after=math.ceil(wait))

    def failed(self, username: str, address: str | None) -> float:
        """Count one failure against both subjects; returns the longest block it started."""
        now = self.clock()
        longest = 0.0
        for scope, subject in self._subjects(username, address):
            with self.db.transaction() as cur:
                cur.execute(_COUNT, (scope, subject, now, now, self.forget_after))
                row = cur.execute(
                    f"SELECT failures FROM {TABLE} WHERE scope = ? AND subject = ?",
                    (scope, subject)).fetchone()
                failures = int(row[0]) if row is not None else 0  # the upsert just wrote it
                delay = self.rules[scope].delay(failures)
                if delay > 0:
                    cur.execute(f"UPDATE {TABLE} SET blocked_until = ? "
                                "WHERE scope = ? AND subject = ?", (now + delay, scope, subject))
            longest = max(longest, delay)
        return longest

    def succeeded(self, username: str) -> None:
        self.db.execute(f"DELETE FROM {TABLE} WHERE scope = 'username' AND subject = ?",
                        (username[:MAX_SUBJECT],))
