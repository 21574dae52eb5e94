"""One lock per key (``step_locks``): what the rate limiter's and the quota leases' steps are
taken under."""

from __future__ import annotations

from feedserver.metering.step_locks import StepLocks


def test_one_lock_per_key() -> None:
    # A key's steps wait for each other (the same lock each time); another key's do not.
    locks: StepLocks[str] = StepLocks()
    assert locks("rate:acme") is locks("rate:acme")
    assert locks("rate:acme") is not locks("rate:other")
