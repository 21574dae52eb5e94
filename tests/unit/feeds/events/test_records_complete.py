"""An Article built from an event plus fetched content equals the dump's record of the same
revision (WME serves one record whatever path it took), on the real history dumps.

For every revision k >= 2 of every page: the state holds the dump's record of revisions
1..k-1 (as after a snapshot was loaded, or the previous event); revision k arrives as a
``mediawiki.page_change`` event carrying what MediaWiki's event carries (ids, times, editor,
comment, sizes, visibility flags; no text), its text comes from the wiki's Action API (a
loopback server answering, in the API's shape, what the dump says of revisions 1..k); the
consumer must then store exactly the record the dump gives for revisions 1..k. A second pass
starts from an empty state: only what the page's history alone can tell (creation date,
namespace name) may be missing then.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from feedserver.config import load_settings
from feedserver.feeds.events.consumer import EventConsumer
from feedserver.feeds.events.state import StateStore
from feedserver.ingest.dump import _open
from feedserver.ingest.dumpfile import open_dump
from feedserver.ingest.pages import PageConverter, infer_model
from feedserver.ingest.pagexml import PageHead, RevisionData
from feedserver.ingest.siteinfo import DumpInfo, host_from_wiki
from feedserver.models import Article
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing
from tests.conftest import DUMPS
from tests.fixtures.action_api import ActionApi, serve_action_api

HISTORY = [
    DUMPS / "pywikibot" / "pair-0.10.xml",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.xml",
    DUMPS / "analytics-refinery-source" / "MediawikiDumperOutputTest.Simplewiki.Sample.xml",
]
TOPIC = "mediawiki.page_change.v1"
Case = tuple[DumpInfo, PageHead, list[RevisionData]]


def _pages(path: Path) -> tuple[DumpInfo, list[tuple[PageHead, list[RevisionData]]]]:
    stream = open_dump(path)
    try:
        info, reader = _open(stream, path, None)
        return info, [(head, list(revisions)) for head, revisions in reader.pages()]
    finally:
        stream.close()


def _cases() -> Iterator[Any]:
    for path in HISTORY:
        info, pages = _pages(path)
        for head, revisions in pages:
            for k in range(2, len(revisions) + 1):
                yield pytest.param(info, head, revisions[:k], id=f"{path.stem}-{head.id}-{k}")


def _time(unix: int | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _user(rev: RevisionData) -> dict[str, Any] | None:
    user = rev.contributor
    if user is None:
        return None
    anonymous = user.id is None or user.id <= 0
    return {"user_text": user.text, **({} if anonymous else {"user_id": user.id}),
            "is_bot": False, "is_temp": False}


def _editor_hidden(rev: RevisionData) -> bool:
    user = rev.contributor
    return rev.user_deleted or (user is not None and user.id is not None and user.id <= 0
                                and user.text in ("", "None"))


def page_change(info: DumpInfo, head: PageHead, rev: RevisionData,
                parent: RevisionData | None) -> bytes:
    """The ``mediawiki/page/change`` 1.x event MediaWiki emits for ``rev``: what the dump says
    of the revision, in the event's shape, without the text (as real page_change events)."""
    name = PageConverter(info).full_name(head.title, head.namespace)
    text = None if rev.text_deleted else (rev.text or "")
    revision: dict[str, Any] = {
        "rev_id": rev.id, "rev_dt": _time(rev.timestamp), "is_minor_edit": rev.minor,
        "is_content_visible": not rev.text_deleted,
        "is_editor_visible": not _editor_hidden(rev),
        "is_comment_visible": not rev.comment_deleted,
        "content_slots": {"main": {"slot_role": "main", "content_model": infer_model(
            rev.model, head.namespace, name)}},
    }
    if rev.parent_id:
        revision["rev_parent_id"] = rev.parent_id
    if rev.sha1:
        revision["rev_sha1"] = rev.sha1
    if text is not None:
        revision["rev_size"] = len(text.encode())
    if rev.comment is not None and not rev.comment_deleted:
        revision["comment"] = rev.comment
    if not _editor_hidden(rev) and _user(rev) is not None:
        revision["editor"] = _user(rev)
    event: dict[str, Any] = {
        "$schema": "/mediawiki/page/change/1.2.0",
        "meta": {"stream": TOPIC, "id": f"{info.wiki}-{rev.id}",
                 "domain": host_from_wiki(info.wiki), "dt": _time(rev.timestamp)},
        "dt": _time(rev.timestamp), "wiki_id": info.wiki,
        "page_change_kind": "edit" if parent is not None else "create",
        "page": {"page_id": head.id, "page_title": name.replace(" ", "_"),
                 "namespace_id": head.namespace, "is_redirect": False},
        "revision": revision,
    }
    if parent is not None:
        event["prior_state"] = {"revision": {"rev_id": parent.id,
                                             "rev_dt": _time(parent.timestamp)}}
    return msgspec.json.encode(event)


@pytest.fixture(scope="module")
def api() -> Iterator[ActionApi]:
    # One server for the module (each case sets what it answers): starting and stopping one per
    # case would cost more than the cases.
    with serve_action_api([]) as server:
        yield server


async def _consume(tmp_path: Path, api: ActionApi, info: DumpInfo, head: PageHead,
                   revisions: list[RevisionData], seed: Article | None) -> Article:
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    log = EmbeddedEventLog(db, poll_interval=0.05)
    try:
        state = StateStore(db)
        if seed is not None:
            state.load_articles([seed])
        rev, parent = revisions[-1], revisions[-2]
        await log.create_topic(TOPIC, 1)
        await log.append(TOPIC, [Outgoing(key=b"k", value=page_change(info, head, rev, parent))])
        settings = load_settings(env={}, data_dir=str(tmp_path), event_topics=[TOPIC],
                                 article_partitions=1)
        # The Action API answers what the wiki would: every revision of the page so far, with
        # what revision deletion hid left out.
        api.by_revision.clear()
        for i in range(1, len(revisions) + 1):
            api.add(_record(info, head, revisions[:i]))
        api.hidden = {r.id: (r.text_deleted, _editor_hidden(r), r.comment_deleted)
                      for r in revisions}
        client = ActionApiClient(api.url, user_agent="feedserver-tests/1 (ops@example.org)")
        try:
            consumer = EventConsumer.from_settings(settings, log, db, content=client)
            consumer.poll_timeout = 0.1
            await consumer.run(once=True)
        finally:
            await client.close()
        stored = state.get_stored(info.wiki, head.namespace, head.id)
        assert stored is not None and stored.revision == rev.id
        return msgspec.structs.replace(stored.article, event=None)
    finally:
        await log.close()
        db.close()


def _record(info: DumpInfo, head: PageHead, revisions: list[RevisionData]) -> Article:
    record = PageConverter(info).convert(head, revisions)
    assert isinstance(record, Article)
    return record


@pytest.mark.parametrize(("info", "head", "revisions"), list(_cases()))
async def test_event_after_state_equals_dump_record(tmp_path: Path, api: ActionApi,
                                                    info: DumpInfo,
                                                    head: PageHead,
                                                    revisions: list[RevisionData]) -> None:
    seed = _record(info, head, revisions[:-1])
    got = await _consume(tmp_path, api, info, head, revisions, seed)
    assert got == _record(info, head, revisions)


@pytest.mark.parametrize(("info", "head", "revisions"), list(_cases()))
async def test_event_alone_has_what_the_revision_tells(tmp_path: Path, api: ActionApi,
                                                       info: DumpInfo,
                                                       head: PageHead,
                                                       revisions: list[RevisionData]) -> None:
    """Nothing known of the page: the previous revision's size comes from its fetched text;
    only the creation date and the namespace's localised name need the page's history."""
    got = await _consume(tmp_path, api, info, head, revisions, None)
    want = _record(info, head, revisions)
    assert msgspec.structs.replace(got, namespace=want.namespace,
                                   date_created=want.date_created) == want
