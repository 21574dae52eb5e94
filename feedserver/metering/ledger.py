"""The usage ledger: an append-only, hash-chained table in the shared database.

Row ``n`` stores ``prev_hash`` (row ``n-1``'s hash) and ``row_hash = SHA-256(prev_hash + "\\n" +
canonical(row))`` where ``canonical`` is the JSON array of the row's columns, ``seq`` included
(``feedserver.metering.entries``). A one-row ``usage_chain_head`` holds the last seq, hash and
row count and is updated in the same transaction, so ``verify()`` detects an edited row (its
hash), a removed or reordered row (the next row's ``prev_hash`` or a gap in ``seq``) and a
removed tail (the head).

Appends are serialised on the head row: SQLite's ``BEGIN IMMEDIATE`` and PostgreSQL's
``SELECT ... FOR UPDATE``, so several writer processes still build ONE linear chain. Appends are
idempotent: a ``usage_id`` already present is skipped. The same transaction adds committed
``bytes`` to the monthly quota counters (``feedserver.metering.quotas``), so counters and ledger
cannot drift apart.

Records are booked in the month of their timestamp while that month is open; one that arrives
after its month closed is booked now, as a ``late`` row (``feedserver.metering.periods``).
Corrections (``feedserver.metering.corrections``) are appended through ``append_entries``,
whose builder runs under the head lock, so it sees every earlier correction.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from feedserver.errors import Conflict
from feedserver.metering.batch_rows import BatchRows, Evidence, response_keys
from feedserver.metering.entries import (
    COLUMNS,
    SELECT,
    LedgerRow,
    booked_late,
    canonical,
    from_db,
    record_body,
)
from feedserver.metering.periods import Periods
from feedserver.metering.records import RESPONSE_ID_VERSION, UsageRecord, merge
from feedserver.metering.response_usage import nanos
from feedserver.metering.sealing import Batch, row_hash
from feedserver.storage.db import Cursor, Database

GENESIS = "0" * 64
__all__ = ["COLUMNS", "CORRECTED", "GENESIS", "NEVER_CLOSES", "ChainHead", "Ledger", "VerifyResult",
           "row_hash", "ts_text"]

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
# Correcting entries: rows of kind usage keep the defaults (and their hashes, see entries).
CORRECTIONS_MIGRATION = (
    "ALTER TABLE usage_ledger ADD COLUMN kind TEXT NOT NULL DEFAULT 'usage'",
    "ALTER TABLE usage_ledger ADD COLUMN corrects TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE usage_ledger ADD COLUMN reason TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE usage_ledger ADD COLUMN actor TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE usage_ledger ADD COLUMN original_ts TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX usage_ledger_corrects ON usage_ledger (corrects)",
)
# Only correcting rows name an original: usage rows (nearly all) leave ``corrects`` empty, so
# the index covers the others only (one index entry less per usage row: measured ~0.8 SQLite
# page writes and ~20% of the append's CPU per response). Queries by ``corrects`` say
# ``corrects <> ''`` so both databases can use it.
CORRECTED = "corrects <> ''"
CORRECTS_PARTIAL_MIGRATION = (
    "DROP INDEX usage_ledger_corrects",
    f"CREATE INDEX usage_ledger_corrects ON usage_ledger (corrects) WHERE {CORRECTED}",
)

_NO_OFFSET = timedelta(0)
_encode_json = msgspec.json.Encoder().encode
_QUOTED_WIDTH = len('"2026-01-01T00:00:00.000000Z"')
_IN_CHUNK = 400  # keeps ``IN (...)`` under SQLite's parameter limit
NEVER_CLOSES = Periods(None)
_TIME_ORDER = operator.attrgetter("ts", "usage_id")


def ts_text(ts: datetime) -> str:
    """Fixed-width UTC text: sorts like time, so month ranges are plain string ranges."""
    if ts.tzinfo is UTC:  # every record's (the ledger writer runs this per response)
        # msgspec's RFC 3339 text of a UTC time is this text quoted, unless the microsecond
        # is 0 (then it has no fraction): ~2.5 k instructions against ~15.5 k for isoformat.
        quoted = _encode_json(ts)
        if len(quoted) == _QUOTED_WIDTH:
            return quoted[1:-1].decode()
        return ts.isoformat(timespec="microseconds")[:-6] + "Z"
    if ts.utcoffset() != _NO_OFFSET:
        ts = ts.astimezone(UTC)
    return ts.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"  # fast path


# A batch's evidence (``batch_rows``): its lines, compressed, named by their SHA-256.
EVIDENCE_MIGRATION = (
    "CREATE TABLE usage_evidence (digest TEXT PRIMARY KEY, first_ns BIGINT NOT NULL, "
    "last_ns BIGINT NOT NULL, lines {blob} NOT NULL)",
    "CREATE INDEX usage_evidence_last ON usage_evidence (last_ns)",
)


# The rate limit's buckets on PostgreSQL: not written to the WAL, so a lease step's commit
# waits for no WAL flush (the step's statement 1.4-1.5 -> 0.8-0.9 ms in the metering bench's
# cluster, and requests wait behind each step). A crash of the database (or a failover:
# standbys do not get unlogged tables) empties the table, and every bucket starts full again:
# each customer may burst once more. Rate limits only; quotas and the ledger stay durable
# (docs/metering.md, "Quotas and rate limits").
RATE_LIMIT_UNLOGGED = "ALTER TABLE rate_limit_state SET UNLOGGED"


def migrate(db: Database) -> None:
    db.migrate("metering-0001-ledger", MIGRATION)
    db.migrate("metering-0002-corrections", CORRECTIONS_MIGRATION)
    db.migrate("metering-0003-corrects-partial", CORRECTS_PARTIAL_MIGRATION)
    db.migrate("metering-0004-evidence", EVIDENCE_MIGRATION)
    db.migrate("metering-0005-rate-limit-unlogged",
               (RATE_LIMIT_UNLOGGED,) if db.dialect == "postgresql" else ())


class VerifyResult(msgspec.Struct, kw_only=True):
    ok: bool
    rows: int
    problem: str = ""
    seq: int = 0
    head_seq: int = 0  # the chain head the walk checked against
    head_hash: str = ""


class ChainHead(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    row_hash: str
    rows: int


EntryBuilder = Callable[[Cursor], Sequence[LedgerRow]]


class Ledger:
    def __init__(self, db: Database, *, periods: Periods = NEVER_CLOSES) -> None:
        self.db = db
        self.periods = periods
        migrate(db)
        self._lock_head = (
            "SELECT seq, row_hash, row_count FROM usage_chain_head WHERE id = 1"
            + (" FOR UPDATE" if db.dialect == "postgresql" else "")
        )

    def append(self, records: Sequence[UsageRecord]) -> int:
        """Append the records not yet in the ledger; returns how many were new. A response's
        records that a batch booked already (its evidence holds the response: a journal
        replay after the batch committed) are not new either."""
        return self._append(records, None)

    def append_batch(self, batch: BatchRows) -> int:
        """Book a batch's group rows (``batch_rows``) and keep its evidence, in one
        transaction; returns how many rows were new (none when it was booked already)."""
        return self._append(batch.records, batch.evidence)

    def _append(self, records: Sequence[UsageRecord], evidence: Evidence | None) -> int:
        unique = merge(records)
        if not unique:
            return 0
        unique.sort(key=_TIME_ORDER)
        now = self.periods.now()
        booked_now = ts_text(now)
        # Each record becomes its canonical body straight away (``sealing``): no row object.
        bodies: dict[str, list[Any]] = {}
        last: datetime | None = None
        ts = month = ""
        is_open = True
        for rec in unique:
            if rec.ts is not last:  # sorted: the records of one response (one ts) are adjacent
                last = rec.ts
                ts = ts_text(last)
                if ts[:7] != month:
                    month = ts[:7]
                    is_open = self.periods.is_open(month, now)
            body = record_body(rec, ts)
            if not is_open:  # booked now, as a late row (its kind and columns hashed too)
                booked_late(body, booked_now)
            bodies[rec.usage_id] = body
        # A response's usage ids are new unless its records are replayed or redelivered;
        # a download id recurs with every Range request of the download that day. So only
        # ids that are not a response's (not time-ordered) are looked up first.
        # Records of responses (journal replays) may have been booked by a batch: from the
        # earliest of them on, the evidence says which (``batch_rows``).
        replayed = None
        if evidence is None:
            earliest = next((rec.ts for rec in unique  # sorted by time
                             if rec.usage_id[14:15] == RESPONSE_ID_VERSION), None)
            replayed = None if earliest is None else nanos(earliest)
        try:
            return self._seal(bodies, [i for i in bodies if i[14:15] != RESPONSE_ID_VERSION],
                              evidence, replayed)
        except Conflict:
            # A response's id is stored already (a journal replay, a redelivered message):
            # the transaction rolled back; seal the batch again without every id present.
            return self._seal(bodies, list(bodies), evidence, replayed)

    def _seal(self, bodies: dict[str, list[Any]], lookup: list[str],
              evidence: Evidence | None = None, replayed: int | None = None) -> int:
        """One transaction: the bodies sealed after the head and inserted, skipping those of
        the ids in ``lookup`` that are present and, from ``replayed`` (Unix ns) on, those of
        the responses a batch's evidence holds; ``evidence`` kept with them. An id present
        but not looked up makes the unique ``usage_id`` index refuse the batch (Conflict;
        nothing of it is kept)."""
        with self.db.transaction() as cur:
            batch, count = self._head(cur)
            for found in _existing(cur, lookup):
                del bodies[found]
            if replayed is not None:
                _drop_booked(cur, bodies, replayed)
            if evidence is not None:
                cur.execute("INSERT INTO usage_evidence (digest, first_ns, last_ns, lines) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT (digest) DO NOTHING",
                            (evidence.digest, evidence.first_ns, evidence.last_ns,
                             evidence.lines))
            batch.extend(bodies.values())
            batch.write(cur, count)
        return batch.rows

    def append_entries(self, build: EntryBuilder) -> list[LedgerRow]:
        """Append what ``build`` returns, ``build`` running inside the transaction that holds
        the chain head (so what it reads cannot change before the rows are written). Rows
        whose ``usage_id`` is already present are skipped. Returns the rows appended."""
        with self.db.transaction() as cur:
            batch, count = self._head(cur)
            entries = {row.usage_id: row for row in build(cur)}
            for found in _existing(cur, list(entries)):
                del entries[found]
            sealed = []
            for entry in entries.values():
                seq, prev, digest = batch.add(canonical(entry, 0))
                sealed.append(msgspec.structs.replace(entry, seq=seq, prev_hash=prev,
                                                      row_hash=digest))
            batch.write(cur, count)
        return sealed

    def _head(self, cur: Cursor) -> tuple[Batch, int]:
        """Lock the chain head; a batch to seal after it, and its row count."""
        head = cur.execute(self._lock_head).fetchone()
        assert head is not None, "usage_chain_head row missing"
        return Batch(int(head[0]), str(head[1])), int(head[2])

    def count(self) -> int:
        row = self.db.fetchone("SELECT COUNT(*) FROM usage_ledger")
        return int(row[0]) if row else 0

    def head(self) -> ChainHead:
        row = self.db.fetchone("SELECT seq, row_hash, row_count FROM usage_chain_head")
        if row is None:
            return ChainHead(seq=0, row_hash=GENESIS, rows=0)
        return ChainHead(seq=int(row[0]), row_hash=str(row[1]), rows=int(row[2]))

    def get(self, usage_id: str) -> LedgerRow | None:
        row = self.db.fetchone(f"SELECT {SELECT} FROM usage_ledger WHERE usage_id = ?",
                               (usage_id,))
        return None if row is None else from_db(row)

    def evidence(self, digest: str) -> bytes | None:
        """The compressed lines of the batch whose SHA-256 is ``digest`` (``batch_rows``),
        or None."""
        row = self.db.fetchone("SELECT lines FROM usage_evidence WHERE digest = ?", (digest,))
        return None if row is None else bytes(row[0])

    def rows(self, *, page: int = 1000) -> Iterator[LedgerRow]:
        """Every row in chain order, keyset-paged so memory stays bounded."""
        after = 0
        while True:
            batch = self.db.fetchall(
                f"SELECT {SELECT} FROM usage_ledger WHERE seq > ? ORDER BY seq LIMIT {int(page)}",
                (after,),
            )
            for values in batch:
                yield from_db(values)
            if len(batch) < page:
                return
            after = int(batch[-1][0])

    def verify(self) -> VerifyResult:
        """Walk the chain up to the head as it is now (rows appended meanwhile are left for the
        next run); report the first edited, removed or reordered row."""
        head = self.head()
        prev, expected, n = GENESIS, 1, 0

        def bad(seq: int, problem: str) -> VerifyResult:
            return VerifyResult(ok=False, rows=n, seq=seq, problem=problem, head_seq=head.seq,
                                head_hash=head.row_hash)

        for row in self.rows():
            seq = row.seq
            if seq > head.seq and n == head.seq:
                break  # appended after the walk began
            if seq != expected:
                return bad(expected, f"row seq {expected} is missing (next row is seq {seq}): "
                                     "removed")
            if row.prev_hash != prev:
                return bad(seq, f"row seq {seq}: prev_hash does not match row {seq - 1}: "
                                "a row was removed, inserted or reordered")
            if row_hash(prev, canonical(row)) != row.row_hash:
                return bad(seq, f"row seq {seq} (usage_id {row.usage_id}): contents do not "
                                "match its hash: edited")
            prev, expected, n = row.row_hash, expected + 1, n + 1
        if (head.seq, head.row_hash, head.rows) != (n, prev, n):
            return bad(n + 1, f"chain ends at seq {n} but the head records seq {head.seq}, "
                              f"{head.rows} rows: rows removed at the end")
        return VerifyResult(ok=True, rows=n, head_seq=head.seq, head_hash=head.row_hash)


def _drop_booked(cur: Cursor, bodies: dict[str, list[Any]], since_ns: int) -> None:
    """Drop the bodies of responses that a batch booked already: those whose response key
    (a response's usage id but its meter digit) is in the evidence of a batch that ended at
    or after ``since_ns``, the earliest replayed response's time. No later bound: a
    checkpoint can be replayed from a segment the journal kept while the later segment with
    its final line, booked in some batch since, was released and deleted."""
    blobs = [bytes(r[0]) for r in cur.execute(
        "SELECT lines FROM usage_evidence WHERE last_ns >= ?", (since_ns,)).fetchall()]
    if not blobs:
        return
    booked = response_keys(blobs)
    for usage_id in [i for i in bodies if i[14:15] == RESPONSE_ID_VERSION]:
        if usage_id[:-1] in booked:
            del bodies[usage_id]


def _existing(cur: Cursor, ids: list[str]) -> list[str]:
    found: list[str] = []
    for i in range(0, len(ids), _IN_CHUNK):
        part = ids[i : i + _IN_CHUNK]
        marks = ", ".join("?" * len(part))
        found += [str(r[0]) for r in cur.execute(
            f"SELECT usage_id FROM usage_ledger WHERE usage_id IN ({marks})", part).fetchall()]
    return found
