"""A batch row's evidence, read back: the usage records of every response its rows sum.

With ``ledger_granularity = "batch"`` a ledger row sums a group of a batch's responses and
names the batch's evidence in its ``request_id`` (``batch_rows``). Finance reads the responses
behind a row here (``feedserver usage evidence``, the portal's batch page): the lines are
checked against the SHA-256 the rows name, then expanded exactly as the per-response ledger
would have booked them (``decode_line``: the same ids, meters and quantities).
"""

from __future__ import annotations

import hashlib

import zstandard

from feedserver.errors import IntegrityError, NotFound
from feedserver.metering.batch_rows import EVIDENCE_PREFIX, evidence_data, evidence_digest
from feedserver.metering.journal import decode_line
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import UsageRecord


def batch_records(ledger: Ledger, name: str) -> tuple[str, list[UsageRecord]]:
    """The digest of the batch ``name`` names (a batch row's usage id, its ``request_id``
    ``batch:<sha256>`` or the SHA-256) and the records of its responses, in the order they
    were delivered. Raises ``NotFound`` (no such batch, or a row of a single response) and
    ``IntegrityError`` (evidence that no longer matches its digest, or is not readable)."""
    row = ledger.get(name)
    digest = name.removeprefix(EVIDENCE_PREFIX) if row is None \
        else evidence_digest(row.request_id)
    blob = ledger.evidence(digest) if digest else None
    if blob is None:
        raise NotFound(f"no batch evidence for {name[:100]!r}"
                       + (" (a row of a single response)" if row is not None else ""))
    try:
        data = evidence_data(blob)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"batch evidence {digest[:100]}: not readable ({exc})") from exc
    if hashlib.sha256(data).hexdigest() != digest:
        raise IntegrityError(f"batch evidence {digest[:100]}: its lines do not match their "
                             "SHA-256: edited")
    return digest, [rec for line in data.splitlines() for rec in decode_line(line)]
