"""The few fields every input event shares, read without decoding the whole event (pure).

The EventStreams follower uses them to drop other wikis, deduplicate by ``meta.id`` and set
aside unknown schemas before anything is appended; the consumer uses ``kind`` to pick the
mapping (``ingest.events`` for page_change, ``ingest.recentchange`` for recentchange).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from feedserver.errors import InvalidEvent
from feedserver.identifiers import ProjectId

InputKind = Literal["page_change", "recentchange"]

# Wiki database names: enwiki, commonswiki, zh_min_nanwiki, be_x_oldwiki ... (one rule for
# every edge: ``feedserver.identifiers``).
WikiId = ProjectId
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

_PREFIXES: tuple[tuple[str, InputKind], ...] = (
    ("/mediawiki/page/change/1.", "page_change"),
    ("/mediawiki/recentchange/1.", "recentchange"),
)


class EnvelopeMeta(msgspec.Struct, kw_only=True):
    id: EventId | None = None
    dt: datetime | None = None
    stream: str | None = None
    domain: str | None = None


class Envelope(msgspec.Struct, kw_only=True):
    schema: str = msgspec.field(name="$schema")
    meta: EnvelopeMeta
    wiki: WikiId | None = None  # recentchange
    wiki_id: WikiId | None = None  # page_change

    @property
    def kind(self) -> InputKind | None:
        for prefix, kind in _PREFIXES:
            if self.schema.startswith(prefix):
                return kind
        return None

    @property
    def project(self) -> str | None:
        return self.wiki if self.wiki is not None else self.wiki_id


_DECODER = msgspec.json.Decoder(Envelope)


def decode_envelope(raw: bytes | str) -> Envelope:
    """The shared fields; ``InvalidEvent`` (reason json, schema or unsupported) otherwise."""
    try:
        envelope = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"event envelope invalid: {exc}", reason="schema") from exc
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed event JSON: {exc}", reason="json") from exc
    if envelope.kind is None:
        raise InvalidEvent(f"unsupported event schema {envelope.schema[:200]!r}",
                           reason="unsupported")
    return envelope


def input_kind(raw: bytes | str) -> InputKind | None:
    """Which mapping an input record needs; None when it is not a supported event at all."""
    try:
        return decode_envelope(raw).kind
    except InvalidEvent:
        return None
