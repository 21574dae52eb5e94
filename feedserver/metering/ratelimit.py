"""Request rate limits: GCRA (a token bucket stored as one "theoretical arrival time").

With rate ``r`` (requests per second, emission interval ``T = 1/r``) and ``burst`` ``b``, a
request at ``now`` is allowed when ``max(tat, now) + T - now <= b*T``; the bucket then stores the
new ``tat``. One number per bucket, so the shared-database variant is ONE atomic conditional
``UPDATE ... RETURNING`` per request, correct across any number of server processes.

``DatabaseRateLimiter`` keeps it in the database (``rate_limit_state``), shared by every
process: it is what the server uses, on SQLite too (``serve --workers N`` is N processes on one
file). It relies on the processes' clocks agreeing (one host, or NTP). ``LocalRateLimiter``
keeps the same state in process memory: exact for ONE process only (N processes would each
allow the full rate), so it is for tests and embedding, never chosen by ``Metering``.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

import msgspec

from feedserver.plans import RateLimit
from feedserver.storage.db import Database


class RateDecision(msgspec.Struct, frozen=True):
    allowed: bool
    remaining: int
    reset: float  # seconds until the bucket is full again
    retry_after: float  # seconds until a request would be allowed (0 when allowed)


def decide(tat: float, now: float, policy: RateLimit) -> tuple[RateDecision, float]:
    """Pure GCRA step: the decision and the tat to store (unchanged when denied)."""
    interval = 1.0 / policy.requests_per_second
    capacity = max(1, policy.burst) * interval
    new_tat = max(tat, now) + interval
    ahead = new_tat - now
    if ahead <= capacity + 1e-9:
        remaining = math.floor((capacity - ahead) / interval + 1e-9)
        return RateDecision(True, remaining, ahead, 0.0), new_tat
    return RateDecision(False, 0, max(tat, now) - now, ahead - capacity), tat


class RateLimiter(Protocol):
    shared: bool  # state in the database: the call blocks on I/O

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision: ...


class LocalRateLimiter:
    shared = False

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        with self._lock:
            decision, tat = decide(self._tat.get(bucket, now), now, policy)
            self._tat[bucket] = tat
            return decision


class DatabaseRateLimiter:
    shared = True

    def __init__(self, db: Database) -> None:
        self.db = db
        greatest = "GREATEST" if db.dialect == "postgresql" else "MAX"
        # allowed iff max(tat, now) + T - now <= b*T; written as one conditional update
        self._update = (
            f"UPDATE rate_limit_state SET tat = {greatest}(tat, ?) + ? "
            f"WHERE bucket = ? AND {greatest}(tat, ?) + ? - ? <= ? RETURNING tat"
        )

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        interval = 1.0 / policy.requests_per_second
        capacity = max(1, policy.burst) * interval
        for _ in range(5):
            with self.db.transaction() as cur:
                row = cur.execute(
                    self._update,
                    (now, interval, bucket, now, interval, now, capacity + 1e-9),
                ).fetchone()
                if row is not None:
                    ahead = float(row[0]) - now
                    remaining = math.floor((capacity - ahead) / interval + 1e-9)
                    return RateDecision(True, max(0, remaining), ahead, 0.0)
                current = cur.execute(
                    "SELECT tat FROM rate_limit_state WHERE bucket = ?", (bucket,)
                ).fetchone()
                if current is not None:
                    decision = decide(float(current[0]), now, policy)[0]
                    if not decision.allowed:
                        return decision
                    # The row was created by another replica after our UPDATE looked: an
                    # "allowed" here was never recorded, so take the conditional update again.
                    continue
                cur.execute(
                    "INSERT INTO rate_limit_state (bucket, tat) VALUES (?, ?) "
                    "ON CONFLICT (bucket) DO NOTHING",
                    (bucket, now),
                )
        # Not reached in practice (each round either records, denies, or creates the row);
        # never allow what was not recorded.
        return RateDecision(False, 0, interval, interval)  # pragma: no cover
