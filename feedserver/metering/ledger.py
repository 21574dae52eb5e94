"""The usage ledger: an append-only, hash-chained table in the shared database.

Row ``n`` stores ``prev_hash`` (row ``n-1``'s hash) and ``row_hash = SHA-256(prev_hash + "\\n" +
canonical(row))`` where ``canonical`` is the JSON array of every column, ``seq`` included. A
one-row ``usage_chain_head`` holds the last seq, hash and row count and is updated in the same
transaction, so ``verify()`` detects an edited row (its hash), a removed or reordered row (the
next row's ``prev_hash`` or a gap in ``seq``) and a removed tail (the head).

Appends are serialised on the head row: SQLite's ``BEGIN IMMEDIATE`` and PostgreSQL's
``SELECT ... FOR UPDATE``, so several writer processes still build ONE linear chain. Appends are
idempotent: a ``usage_id`` already present is skipped. The same transaction adds committed
``bytes`` to the monthly quota counters (``feedserver.metering.quotas``), so counters and ledger
cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from feedserver.metering.records import UsageRecord, merge
from feedserver.storage.db import Database

GENESIS = "0" * 64
COLUMNS = (
    "seq", "usage_id", "ts", "customer_id", "api_key_id", "user_name", "feed", "project",
    "meter", "quantity", "request_id", "resource", "download_id",
)
_COLS = ", ".join(COLUMNS)

MIGRATION = (
    "CREATE TABLE usage_ledger (seq BIGINT PRIMARY KEY, usage_id TEXT NOT NULL UNIQUE, "
    "ts TEXT NOT NULL, customer_id TEXT NOT NULL, api_key_id TEXT NOT NULL, "
    "user_name TEXT NOT NULL, feed TEXT NOT NULL, project TEXT NOT NULL, meter TEXT NOT NULL, "
    "quantity BIGINT NOT NULL, request_id TEXT NOT NULL, resource TEXT NOT NULL, "
    "download_id TEXT NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL)",
    "CREATE INDEX usage_ledger_ts ON usage_ledger (ts, customer_id)",
    "CREATE TABLE usage_chain_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, "
    "row_hash TEXT NOT NULL, row_count BIGINT NOT NULL)",
    f"INSERT INTO usage_chain_head (id, seq, row_hash, row_count) VALUES (1, 0, '{GENESIS}', 0)",
    "CREATE TABLE quota_usage (customer_id TEXT NOT NULL, month TEXT NOT NULL, "
    "meter TEXT NOT NULL, used BIGINT NOT NULL, PRIMARY KEY (customer_id, month, meter))",
    "CREATE TABLE quota_claims (customer_id TEXT NOT NULL, month TEXT NOT NULL, "
    "meter TEXT NOT NULL, claim_key TEXT NOT NULL, "
    "PRIMARY KEY (customer_id, month, meter, claim_key))",
    "CREATE TABLE rate_limit_state (bucket TEXT PRIMARY KEY, tat {real} NOT NULL)",
)

_encoder = msgspec.json.Encoder()
_NO_OFFSET = timedelta(0)
_IN_CHUNK = 400  # keeps ``IN (...)`` under SQLite's parameter limit


def ts_text(ts: datetime) -> str:
    """Fixed-width UTC text: sorts like time, so month ranges are plain string ranges."""
    if ts.utcoffset() != _NO_OFFSET:
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # fast path


def row_hash(prev_hash: str, row: Sequence[Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _encoder.encode(list(row))).hexdigest()


def _row(seq: int, rec: UsageRecord) -> tuple[Any, ...]:
    return (
        seq, rec.usage_id, ts_text(rec.ts), rec.customer_id, rec.api_key_id, rec.user,
        rec.feed, rec.project, rec.meter, rec.quantity, rec.request_id, rec.resource,
        rec.download_id,
    )


def migrate(db: Database) -> None:
    db.migrate("metering-0001-ledger", MIGRATION)


class VerifyResult(msgspec.Struct, kw_only=True):
    ok: bool
    rows: int
    problem: str = ""
    seq: int = 0


class Ledger:
    def __init__(self, db: Database) -> None:
        self.db = db
        migrate(db)
        self._lock_head = (
            "SELECT seq, row_hash, row_count FROM usage_chain_head WHERE id = 1"
            + (" FOR UPDATE" if db.dialect == "postgresql" else "")
        )

    def append(self, records: Sequence[UsageRecord]) -> int:
        """Append the records not yet in the ledger; returns how many were new."""
        unique = {rec.usage_id: rec for rec in merge(records)}
        if not unique:
            return 0
        with self.db.transaction() as cur:
            head = cur.execute(self._lock_head).fetchone()
            assert head is not None, "usage_chain_head row missing"
            seq, prev, count = int(head[0]), str(head[1]), int(head[2])
            ids = list(unique)
            for i in range(0, len(ids), _IN_CHUNK):
                part = ids[i : i + _IN_CHUNK]
                marks = ", ".join("?" * len(part))
                for (found,) in cur.execute(
                    f"SELECT usage_id FROM usage_ledger WHERE usage_id IN ({marks})", part
                ).fetchall():
                    unique.pop(found, None)
            new = sorted(unique.values(), key=lambda r: (r.ts, r.usage_id))
            insert = (
                f"INSERT INTO usage_ledger ({_COLS}, prev_hash, row_hash) "
                f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})"
            )
            bytes_by_month: dict[tuple[str, str], int] = {}
            rows = []
            for rec in new:
                seq += 1
                row = _row(seq, rec)
                digest = row_hash(prev, row)
                rows.append((*row, prev, digest))
                prev = digest
                if rec.meter == "bytes" and rec.quantity:
                    key = (rec.customer_id, row[2][:7])
                    bytes_by_month[key] = bytes_by_month.get(key, 0) + rec.quantity
            cur.executemany(insert, rows)
            for (customer, month), used in bytes_by_month.items():
                cur.execute(
                    "INSERT INTO quota_usage (customer_id, month, meter, used) "
                    "VALUES (?, ?, 'bytes', ?) ON CONFLICT (customer_id, month, meter) "
                    "DO UPDATE SET used = quota_usage.used + excluded.used",
                    (customer, month, used),
                )
            cur.execute(
                "UPDATE usage_chain_head SET seq = ?, row_hash = ?, row_count = ? WHERE id = 1",
                (seq, prev, count + len(new)),
            )
        return len(new)

    def count(self) -> int:
        row = self.db.fetchone("SELECT COUNT(*) FROM usage_ledger")
        return int(row[0]) if row else 0

    def rows(self, *, page: int = 1000) -> Iterator[tuple[Any, ...]]:
        """Every row in chain order, keyset-paged so memory stays bounded."""
        after = 0
        while True:
            batch = self.db.fetchall(
                f"SELECT {_COLS}, prev_hash, row_hash FROM usage_ledger WHERE seq > ? "
                f"ORDER BY seq LIMIT {int(page)}",
                (after,),
            )
            yield from batch
            if len(batch) < page:
                return
            after = int(batch[-1][0])

    def verify(self) -> VerifyResult:
        """Walk the chain; report the first edited, removed or reordered row."""
        prev, expected, n = GENESIS, 1, 0
        for row in self.rows():
            seq = int(row[0])
            body, stored_prev, stored_hash = row[: len(COLUMNS)], row[-2], row[-1]
            body = (*body[:9], int(body[9]), *body[10:])
            if seq != expected:
                return VerifyResult(ok=False, rows=n, seq=expected, problem=(
                    f"row seq {expected} is missing (next row is seq {seq}): removed"))
            if stored_prev != prev:
                return VerifyResult(ok=False, rows=n, seq=seq, problem=(
                    f"row seq {seq}: prev_hash does not match row {seq - 1}: "
                    "a row was removed, inserted or reordered"))
            if row_hash(prev, body) != stored_hash:
                return VerifyResult(ok=False, rows=n, seq=seq, problem=(
                    f"row seq {seq} (usage_id {body[1]}): contents do not match its hash: "
                    "edited"))
            prev, expected, n = stored_hash, expected + 1, n + 1
        head = self.db.fetchone("SELECT seq, row_hash, row_count FROM usage_chain_head")
        if head is None or (int(head[0]), str(head[1]), int(head[2])) != (n, prev, n):
            where = f"seq {head[0]}, {head[2]} rows" if head else "no head row"
            return VerifyResult(ok=False, rows=n, seq=n + 1, problem=(
                f"chain ends at seq {n} but the head records {where}: rows removed at the end"))
        return VerifyResult(ok=True, rows=n)
