"""Hostile SSE frames: whatever a server sends in ``event``, ``id`` and ``data``, the follower's
frame check accepts, skips or dead-letters it, and never raises (property-based)."""

from __future__ import annotations

import json

from httpx_sse import ServerSentEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.sources.eventstreams import (
    DeadLetter,
    EventStreamsClient,
    StreamStats,
    valid_position,
)
from tests.conftest import EVENTS
from tests.fixtures.recentchange import from_page_change, real_page_changes

UA = "feedserver-tests/1 (ops@example.org)"
POSITION = '[{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":5}]'
REAL = [json.dumps(from_page_change(e, rcid=1)) for e in real_page_changes(EVENTS)]

_TEXT = st.text(max_size=300)
_DATA = st.one_of(_TEXT, st.sampled_from(REAL),
                  st.sampled_from(REAL).map(lambda s: s[: len(s) // 2]))
_ID = st.one_of(_TEXT, st.just(POSITION), st.just("[]"), st.just('[{"topic": 1}]'))
_EVENT = st.one_of(st.just("message"), st.just(""), _TEXT)


LETTERS: list[DeadLetter] = []


async def _sink(letter: DeadLetter) -> None:
    LETTERS.append(letter)


# One client for all examples (making an HTTP client per example is what would be slow); its
# counters and dedup memory are reset per example.
CLIENT = EventStreamsClient("http://127.0.0.1:1", ["mediawiki.recentchange"], user_agent=UA,
                            wikis=["testwikidatawiki"], dead_letter=_sink)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(st.tuples(_EVENT, _DATA, _ID), max_size=8))
async def test_any_frame_is_accepted_skipped_or_dead_lettered(
        frames: list[tuple[str, str, str]]) -> None:
    LETTERS.clear()
    CLIENT.stats = StreamStats()
    CLIENT._seen.clear()
    CLIENT._seen_set.clear()
    accepted = 0
    # _frame is the whole per-frame decision; called directly because hypothesis wants
    # thousands of frames, which a socket per example would make slow, not more real.
    for event, data, position in frames:
        item = await CLIENT._frame(ServerSentEvent(event=event, data=data, id=position))
        if item is None:
            continue
        assert valid_position(item.position)
        if item.event is not None:
            accepted += 1
            assert item.event.project == "testwikidatawiki"
    stats = CLIENT.stats
    assert len(LETTERS) == stats.dead_lettered
    assert all(letter.reason in ("frame", "json", "schema", "unsupported") for letter in LETTERS)
    assert accepted <= len(frames) - stats.dead_lettered - stats.other_wiki
