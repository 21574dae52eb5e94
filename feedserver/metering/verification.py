"""The results of ``usage verify`` runs, kept so finance can see when the chain was last checked.

Every verification (the CLI's ``feedserver usage verify``, the portal's "verify now") appends one
row to ``usage_verifications``: when, by what, the outcome, the rows walked, the first bad row and
the chain head at the time. ``last(db)`` is what the portal shows next to the current head.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from feedserver.metering.ledger import Ledger, VerifyResult, ts_text
from feedserver.storage.db import Database

MIGRATION = (
    "CREATE TABLE usage_verifications (id {serial}, verified_at TEXT NOT NULL, "
    "source TEXT NOT NULL, ok INTEGER NOT NULL, rows_checked BIGINT NOT NULL, "
    "bad_seq BIGINT NOT NULL, problem TEXT NOT NULL, head_seq BIGINT NOT NULL, "
    "head_hash TEXT NOT NULL)",
)


class Verification(msgspec.Struct, frozen=True, kw_only=True):
    verified_at: str  # fixed-width UTC text
    source: str  # "cli", "portal:<username>"
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    problem: str = ""
    bad_seq: int = 0


def migrate(db: Database) -> None:
    db.migrate("metering-0003-verifications", MIGRATION)


def record(db: Database, result: VerifyResult, *, source: str, when: datetime) -> Verification:
    migrate(db)
    entry = Verification(verified_at=ts_text(when), source=source[:200], ok=result.ok,
                         rows=result.rows, head_seq=result.head_seq, head_hash=result.head_hash,
                         problem=result.problem, bad_seq=result.seq)
    db.execute(
        "INSERT INTO usage_verifications (verified_at, source, ok, rows_checked, bad_seq, "
        "problem, head_seq, head_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (entry.verified_at, entry.source, int(entry.ok), entry.rows, entry.bad_seq,
         entry.problem, entry.head_seq, entry.head_hash),
    )
    return entry


def verify_and_record(ledger: Ledger, *, source: str, when: datetime) -> Verification:
    """Walk the chain (``Ledger.verify``) and store the outcome with the head it ended at."""
    return record(ledger.db, ledger.verify(), source=source, when=when)


def last(db: Database) -> Verification | None:
    migrate(db)
    row = db.fetchone(
        "SELECT verified_at, source, ok, rows_checked, bad_seq, problem, head_seq, head_hash "
        "FROM usage_verifications ORDER BY id DESC LIMIT 1")
    if row is None:
        return None
    return Verification(verified_at=str(row[0]), source=str(row[1]), ok=bool(row[2]),
                        rows=int(row[3]), bad_seq=int(row[4]), problem=str(row[5]),
                        head_seq=int(row[6]), head_hash=str(row[7]))
