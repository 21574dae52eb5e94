"""Property tests of event decoding: whatever the bytes, ``changes_from_json`` either gives
changes the state store can hold under a legal identifier, or raises ``InvalidEvent`` (which
the consumer dead-letters). Never another exception, never an unstorable value."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.errors import InvalidEvent
from feedserver.feeds.events.state import unstorable
from feedserver.identifiers import MAX_NAMESPACE, PROJECT_RE, TITLE_RE
from feedserver.ingest.events import changes_from_json
from feedserver.ingest.recentchange import title_changes_from_json
from tests.conftest import EVENTS

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
TEMPLATE: dict[str, Any] = json.loads(REAL.read_text().splitlines()[0])

# Integer fields an attacker (or a broken producer) controls, as (path, key).
INT_FIELDS = [("page", "page_id"), ("page", "namespace_id"), ("revision", "rev_id"),
              ("revision", "rev_parent_id"), ("revision", "rev_size")]
anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


def _check(raw: bytes | str) -> None:
    try:
        changes = changes_from_json(raw)
    except InvalidEvent:
        return
    for change in changes:
        assert unstorable(change) is None
        assert PROJECT_RE.match(change.key.project)
        assert 0 <= change.key.namespace <= MAX_NAMESPACE
        assert TITLE_RE.match(change.article.name.replace(" ", "_"))


@settings(max_examples=300)
@given(st.sampled_from(INT_FIELDS), st.integers(min_value=-(2**80), max_value=2**80))
def test_any_integer_in_any_id_field(field: tuple[str, str], value: int) -> None:
    event = copy.deepcopy(TEMPLATE)
    event[field[0]][field[1]] = value
    _check(json.dumps(event))


@settings(max_examples=300)
@given(st.text(max_size=80), st.text(max_size=80))
def test_any_wiki_id_and_title(wiki: str, title: str) -> None:
    event = copy.deepcopy(TEMPLATE)
    event["wiki_id"] = wiki
    event["page"]["page_title"] = title
    _check(json.dumps(event))


@settings(max_examples=200)
@given(st.sampled_from(["wiki_id", "dt", "page", "revision", "meta", "page_change_kind",
                        "prior_state"]), anything)
def test_any_value_in_any_top_level_field(key: str, value: Any) -> None:
    event = copy.deepcopy(TEMPLATE)
    event[key] = value
    _check(json.dumps(event))


@given(st.binary(max_size=200))
def test_any_bytes(raw: bytes) -> None:
    _check(raw)
    with contextlib.suppress(InvalidEvent):
        title_changes_from_json(raw)
