"""Exact cost of admission (and of authentication from the cache) per request, for A/B by
instruction counts (under cachegrind).

``python -m bench._admission_cost MIX N`` admits N requests of MIX on a SQLite database
with the app's own limiter (``open_limiter``: leased host buckets) and the bench plans' terms
(a rate limit and quotas too high ever to refuse):

* ``metadata``: ``admit(principal, "metadata")`` (rate limit only);
* ``ondemand``: ``admit(principal, "ondemand")`` (rate limit, a leased lookup unit, bytes);
* ``chunk``: ``admit(principal, "chunks", resource=..., download=True)`` (rate limit, the
  download claim this process already made, bytes);
* ``auth``: ``Accounts.cached_principal`` of an API key (the event loop's auth path);
* ``off``: ``metadata`` with metering off (the loop and the call alone: subtract it).

Admission goes through ``Billing.admit``, the API's own entry.

Run each for N and 3N under ``valgrind --tool=cachegrind``: the difference divided by 2N is
the cost per request (start-up cancels). CPU microseconds per request go to stderr.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from feedserver.accounts.models import Principal
from feedserver.accounts.service import Accounts
from feedserver.api.services import Billing
from feedserver.config import load_settings
from feedserver.metering.records import NullSink
from feedserver.metering.service import Metering
from feedserver.plans import Feed, Plan, Quotas, RateLimit
from feedserver.storage.db import SQLiteDatabase

PLAN = Plan(name="bench", feeds=["snapshots", "ondemand"],
            quotas=Quotas(snapshot_downloads=10**9, chunk_downloads=10**9, bytes=10**15,
                          ondemand_lookups=10**9),
            rate_limit=RateLimit(requests_per_second=10**6, burst=10**6))


async def admit_loop(billing: Billing, principal: Principal, mix: str, n: int) -> None:
    admit = billing.admit
    if mix == "chunk":
        for _ in range(n):
            await admit(principal, "chunks", "enwiki", resource="chunk_0@1", download=True)
    else:
        feed: Feed = "metadata" if mix == "metadata" else "ondemand"
        for _ in range(n):
            await admit(principal, feed, None)


def main(mix: str, n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="admission-cost-") as tmp:
        settings = load_settings({}, data_dir=tmp, log_level="WARNING")
        db = SQLiteDatabase(Path(tmp) / "feedserver.db")
        accounts = Accounts(db, settings, cache_seconds=3600)  # no expiry under valgrind
        accounts.create_plan(PLAN)
        accounts.create_customer("Bench", plan=PLAN.name)
        key = accounts.create_api_key("Bench")[1]
        principal = accounts.authenticate_api_key(key)
        if mix == "auth":
            cached = accounts.cached_principal
            assert cached("api_key", key) is not None
            start = time.process_time()
            for _ in range(n):
                cached("api_key", key)
        else:
            metering = Metering(db, enabled=mix != "off",
                                journal_dir=str(Path(tmp) / "journal"))
            billing = Billing(NullSink(), metering)
            feeds = "metadata" if mix == "off" else mix
            asyncio.run(admit_loop(billing, principal, feeds, 3))  # leases, claims, caches
            start = time.process_time()
            asyncio.run(admit_loop(billing, principal, feeds, n))
        print(f"{mix}: {(time.process_time() - start) / n * 1e6:.2f} us CPU per request",
              file=sys.stderr)
        db.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
