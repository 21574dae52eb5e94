"""Input records of either kind -> article changes: the consumer's mapping step in one call.

``map_input`` takes one polled batch of input records (page_change from Kafka, or what
``events follow`` stored: recentchange and/or page_change), picks the mapping by ``$schema``,
resolves recentchange titles to pages (``sources.resolve``) and returns the changes with the
``(record, index)`` the consumer's dedup marks need, plus the invalid records to dead-letter.

Indexes are stable under replay: a page_change record's outputs are numbered as before; the
outputs of a recentchange record are ``2 * j + k`` (its j-th title change, k = 0 for the primary
change, 1 for a move's old title), so a title change that does not resolve on a replay leaves
the other outputs' indexes unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from feedserver.errors import InvalidEvent, InvalidParameter
from feedserver.ingest.envelope import decode_envelope
from feedserver.ingest.events import ArticleChange, changes_from_json
from feedserver.ingest.recentchange import TitleChange, title_changes_from_json
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.sources.resolve import ArticlesByName, resolve
from feedserver.storage.eventlog import LogRecord


class MappedInput(msgspec.Struct):
    changes: list[tuple[LogRecord, int, ArticleChange]]
    invalid: list[tuple[LogRecord, InvalidEvent]]
    unresolved: int = 0


async def map_input(records: Sequence[LogRecord], *, client: ActionApiClient | None,
                    state: ArticlesByName | None) -> MappedInput:
    out = MappedInput(changes=[], invalid=[])
    pending: list[tuple[LogRecord, int, TitleChange]] = []
    slots: list[tuple[LogRecord, list[tuple[int, ArticleChange]]]] = []
    for record in records:
        outputs: list[tuple[int, ArticleChange]] = []
        try:
            # The shared envelope first: garbage and unknown schemas get the same reason
            # (json, schema, unsupported) whichever kind they pretend to be.
            if decode_envelope(record.value).kind == "recentchange":
                for j, title_change in enumerate(title_changes_from_json(record.value)):
                    pending.append((record, j, title_change))
            else:
                outputs.extend(enumerate(changes_from_json(record.value)))
        except InvalidEvent as exc:
            out.invalid.append((record, exc))
            continue
        slots.append((record, outputs))
    if pending:
        if client is None:
            raise InvalidParameter("recentchange input needs an Action API "
                                   "(FEEDSERVER_CONTENT_SOURCE_URL)", parameter="content")
        resolved = await resolve([c for _, _, c in pending], client, state)
        out.unresolved = resolved.unresolved
        by_record: dict[int, list[tuple[int, ArticleChange]]] = {}
        for (record, j, _), changes in zip(pending, resolved.changes, strict=True):
            by_record.setdefault(id(record), []).extend(
                (2 * j + k, change) for k, change in enumerate(changes))
        slots = [(record, outputs or by_record.get(id(record), [])) for record, outputs in slots]
    for record, outputs in slots:
        out.changes.extend((record, index, change) for index, change in outputs)
    return out
