"""Request rate limits: GCRA (a token bucket stored as one "theoretical arrival time").

With rate ``r`` (requests per second, emission interval ``T = 1/r``) and ``burst`` ``b``, a
request at ``now`` is allowed when ``max(tat, now) + T - now <= b*T``; the bucket then stores the
new ``tat``. One number per bucket, so the shared-database variant is ONE atomic conditional
``UPDATE ... RETURNING`` per request, correct across any number of server processes.

Which limiter a server uses (``metering.service.open_limiter``), all sharing ONE bucket per
customer between every process that serves it:

* SQLite (one host: ``serve --workers N`` is N processes on one file): ``HostRateLimiter``
  (``hostbuckets.py``), the bucket in a memory-mapped file next to the database; a few
  microseconds on the event loop, no database.
* PostgreSQL (any number of hosts): ``LeasedRateLimiter`` over ``DatabaseRateLimiter``: the
  bucket is a row (``rate_limit_state``), updated with one atomic conditional ``UPDATE``; each
  process takes up to ``lease_tokens(policy)`` tokens per update (as many as it spends in
  ``LEASE_SECONDS``) and spends them within ``LEASE_SECONDS``, so the database sees about one
  update per process per ``LEASE_SECONDS``, not one per request.

Both rely on the processes' clocks agreeing (one host, or NTP). ``LocalRateLimiter`` keeps the
state in process memory: exact for ONE process only, so it is for tests and embedding.

``try_hit`` decides without blocking I/O, or returns None when only ``hit`` (which may wait on
the database: call it off the event loop) can decide.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Protocol

import msgspec

from feedserver.metering.step_locks import StepLocks
from feedserver.plans import RateLimit
from feedserver.storage.db import Database


class RateDecision(msgspec.Struct, frozen=True):
    allowed: bool
    remaining: int
    reset: float  # seconds until the bucket is full again
    retry_after: float  # seconds until a request would be allowed (0 when allowed)


def decide(tat: float, now: float, policy: RateLimit,
           tokens: int = 1) -> tuple[RateDecision, float]:
    """Pure GCRA step for ``tokens`` requests at once: the decision and the tat to store
    (unchanged when denied)."""
    interval = 1.0 / policy.requests_per_second
    capacity = max(1, policy.burst) * interval
    new_tat = max(tat, now) + tokens * interval
    ahead = new_tat - now
    if ahead <= capacity + 1e-9:
        remaining = math.floor((capacity - ahead) / interval + 1e-9)
        return RateDecision(True, max(0, remaining), ahead, 0.0), new_tat
    return RateDecision(False, 0, max(tat, now) - now, ahead - capacity), tat


def take_tokens(tat: float, now: float, policy: RateLimit,
                tokens: int) -> tuple[int, RateDecision, float]:
    """GCRA for ``tokens`` requests at once when the bucket holds them, else for one: how
    many were taken (0 when denied), the decision for the first (``remaining`` counts what
    the bucket holds after the take) and the tat to store."""
    if tokens > 1:
        decision, new_tat = decide(tat, now, policy, tokens)
        if decision.allowed:
            return tokens, decision, new_tat
    decision, new_tat = decide(tat, now, policy)
    return int(decision.allowed), decision, new_tat


class RateLimiter(Protocol):
    def spend(self, bucket: str, now: float) -> tuple[int, float] | None:
        """A request allowed from memory, as the bucket's (remaining, reset) after it; None
        when that takes more (a step of the shared bucket, a refusal): ``try_hit``. The
        cheapest answer, for admission's common case (``Admitter.at_once``)."""

    def try_hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision | None:
        """The decision when it needs no blocking I/O (event loop), else None."""

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        """The decision; may block on the database (call it in a worker thread)."""


class LocalRateLimiter:
    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        with self._lock:
            decision, tat = decide(self._tat.get(bucket, now), now, policy)
            self._tat[bucket] = tat
            return decision

    def try_hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        return self.hit(bucket, policy, now)

    def spend(self, bucket: str, now: float) -> None:
        del bucket, now  # the policy is needed: ``try_hit``


class DatabaseRateLimiter:
    def __init__(self, db: Database) -> None:
        self.db = db
        greatest = "GREATEST" if db.dialect == "postgresql" else "MAX"
        # allowed iff max(tat, now) + T - now <= b*T; written as one conditional update
        self._update = (
            f"UPDATE rate_limit_state SET tat = {greatest}(tat, ?) + ? "
            f"WHERE bucket = ? AND {greatest}(tat, ?) + ? - ? <= ? RETURNING tat"
        )

    def try_hit(self, bucket: str, policy: RateLimit, now: float) -> None:
        del bucket, policy, now  # always a database round trip

    def spend(self, bucket: str, now: float) -> None:
        del bucket, now  # always a database round trip

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        return self.take(bucket, policy, now, 1)[1]

    def take(self, bucket: str, policy: RateLimit, now: float,
             tokens: int) -> tuple[int, RateDecision]:
        """Take ``tokens`` requests' worth at once when the bucket holds them, else one, in one
        transaction; returns how many were taken (0 when denied) and the decision for the
        first. ``remaining`` counts what the bucket holds after the take."""
        interval = 1.0 / policy.requests_per_second
        capacity = max(1, policy.burst) * interval
        # The common case, the bucket's row exists and holds the lease: the conditional update
        # alone, one statement (on PostgreSQL one round trip, without BEGIN/COMMIT; it is atomic
        # by itself). Anything else takes the transaction below.
        taken = max(1, tokens)
        cost = taken * interval
        row = self.db.fetchone(self._update, (now, cost, bucket, now, cost, now, capacity + 1e-9))
        if row is not None:
            ahead = float(row[0]) - now
            remaining = math.floor((capacity - ahead) / interval + 1e-9)
            return taken, RateDecision(True, max(0, remaining), ahead, 0.0)
        for _ in range(5):
            with self.db.transaction() as cur:
                for n in dict.fromkeys((max(1, tokens), 1)):
                    cost = n * interval
                    row = cur.execute(
                        self._update,
                        (now, cost, bucket, now, cost, now, capacity + 1e-9),
                    ).fetchone()
                    if row is not None:
                        ahead = float(row[0]) - now
                        remaining = math.floor((capacity - ahead) / interval + 1e-9)
                        return n, RateDecision(True, max(0, remaining), ahead, 0.0)
                current = cur.execute(
                    "SELECT tat FROM rate_limit_state WHERE bucket = ?", (bucket,)
                ).fetchone()
                if current is not None:
                    decision = decide(float(current[0]), now, policy)[0]
                    if not decision.allowed:
                        return 0, decision
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
        return 0, RateDecision(False, 0, interval, interval)  # pragma: no cover


# A leased token is spent within this long of its lease or dropped, so in any window a
# process admits at most one lease (``lease_tokens``: ``requests_per_second * LEASE_SECONDS``
# at most, a quarter of the burst and ``MAX_LEASE``) more than one exact bucket would (none
# more for plans slower than 20 requests/s: their lease is one token).
LEASE_SECONDS = 0.05
# The largest lease, and the first one a bucket takes: the next follow what the process
# spends in a lease's time (``_Lease.next_size``), so a busy process steps the shared bucket
# about once per LEASE_SECONDS, not once per FIRST_LEASE requests.
MAX_LEASE = 4096
FIRST_LEASE = 64


def lease_tokens(policy: RateLimit) -> int:
    """The most tokens one step of the shared bucket leases: what the plan's rate allows in
    ``LEASE_SECONDS``, at least 1, at most ``MAX_LEASE`` and a quarter of the burst."""
    fair = math.floor(policy.requests_per_second * LEASE_SECONDS)
    return max(1, min(fair, MAX_LEASE, max(1, policy.burst) // 4))


class _Lease:
    """Tokens taken from the shared bucket and not yet spent: ``next(left)`` spends one and
    answers how many are left after it (atomic under the GIL: no lock to spend)."""

    __slots__ = ("left", "remaining", "reset", "size", "tokens", "until")

    def __init__(self, tokens: int, until: float, remaining: int, reset: float,
                 size: int) -> None:
        self.left: Iterator[int] = iter(range(tokens - 1, -1, -1))
        self.tokens = tokens  # how many it held when taken
        self.until = until
        self.remaining = remaining  # the bucket's own count after the lease was taken
        self.reset = reset  # seconds to full, as of the lease
        self.size = size  # tokens its step asked for (the first went to the request)

    def next_size(self, now: float, most: int) -> int:
        """The tokens the step after this lease asks for: twice as many when it ran dry
        within its time, what it spent and a quarter more when it expired with tokens left
        (an unspent token is one the other processes could not have had)."""
        unspent = sum(1 for _ in self.left)  # the lease is over: the rest are dropped
        if now < self.until and not unspent:
            return min(most, max(self.size, 1) * 2)
        spent = self.tokens - unspent
        return max(1, min(most, spent + spent // 4))


class TokenBucket(Protocol):
    """A shared bucket that can hand out several requests' worth in one step."""

    def take(self, bucket: str, policy: RateLimit, now: float,
             tokens: int) -> tuple[int, RateDecision]:
        """Take ``tokens`` when the bucket holds them, else one; returns how many were taken
        (0 when denied) and the decision for the first (``remaining``: what the bucket holds
        after the take)."""


class LeasedRateLimiter:
    """A shared bucket spent in leases: one step of the shared bucket per lease per process.
    ``source`` is the database (PostgreSQL deployments, many hosts: a step is a database
    update, so ``try_hit`` without a lease answers None and admission hops to a thread) or
    the host's memory-mapped buckets (``blocking=False``: a step is a ``flock`` of a local
    file, taken on the event loop; leasing keeps that system call, which hands the GIL to any
    waiting thread, off most requests).

    A bucket is stepped by one thread at a time (its lock): the requests that found the lease
    spent while a step was under way wait for that step and spend the lease it took, instead
    of each stepping the database and dropping the lease before theirs."""

    def __init__(self, source: TokenBucket, *, blocking: bool = True) -> None:
        self.source = source
        self.blocking = blocking
        self._leases: dict[str, _Lease] = {}
        self._step: StepLocks[str] = StepLocks()  # one per bucket: its steps in turn
        self._lock = threading.Lock()  # guards the leases' growth

    def try_hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision | None:
        decided = self._spend(bucket, now)
        if decided is not None:
            return decided
        return None if self.blocking else self._take(bucket, policy, now)

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        decided = self._spend(bucket, now)
        if decided is not None:
            return decided
        return self._take(bucket, policy, now)

    def spend(self, bucket: str, now: float) -> tuple[int, float] | None:
        """A token of the bucket's lease, if it holds one still in its time: the bucket's
        (remaining, reset) as of the lease, less the lease's tokens spent."""
        lease = self._leases.get(bucket)
        if lease is not None and now < lease.until:
            left = next(lease.left, None)
            if left is not None:
                return lease.remaining + left, lease.reset
        return None

    def _spend(self, bucket: str, now: float) -> RateDecision | None:
        spent = self.spend(bucket, now)
        return None if spent is None else RateDecision(True, spent[0], spent[1], 0.0)

    def _take(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        with self._step(bucket):
            # Another thread's step may have leased while this one waited: spend from it.
            decided = self._spend(bucket, now)
            if decided is not None:
                return decided
            most = lease_tokens(policy)
            last = self._leases.get(bucket)
            size = min(most, FIRST_LEASE) if last is None else last.next_size(now, most)
            taken, decision = self.source.take(bucket, policy, now, size)
            if taken > 1:
                self._keep(bucket, _Lease(taken - 1, now + LEASE_SECONDS, decision.remaining,
                                          decision.reset, size))
                return RateDecision(True, decision.remaining + taken - 1, decision.reset, 0.0)
            if taken == 1 and last is not None:
                # The bucket had room for this request only: the next step starts small.
                self._keep(bucket, _Lease(0, now + LEASE_SECONDS, decision.remaining,
                                          decision.reset, 1))
            return decision

    def _keep(self, bucket: str, lease: _Lease) -> None:
        with self._lock:
            if len(self._leases) >= 100_000:
                self._leases.clear()
            self._leases[bucket] = lease
