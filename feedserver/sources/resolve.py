"""Find the pages recentchange events name by title: title changes -> article changes.

The I/O between the two pure steps of ``ingest.recentchange``. For one batch of
``TitleChange``s, per wiki:

- ``revision`` lookups (edits, new pages, revision visibility changes) are asked of the Action
  API in requests of 50 revision ids; a visibility change first drops the cached answer;
- ``latest`` lookups (undelete, move target, uploads, imports) ask for the titles' latest
  revisions, 50 titles per request;
- ``stored`` lookups (deletes: the page is gone from the wiki) take the page this batch
  resolved earlier under that title, else the live page of that title in the state store.

A change whose page cannot be found (deleted again since, never seen) maps to nothing and is
counted in ``unresolved``; its event was still consumed (the wiki has moved on past it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

import msgspec

from feedserver.ingest.events import ArticleChange
from feedserver.ingest.recentchange import TitleChange, article_changes
from feedserver.ingest.revision import WikiRevision
from feedserver.models import Article
from feedserver.sources.mediawiki import ActionApiClient

PageKey = tuple[str, int | None, str]  # (project, namespace, title)


class ArticlesByName(Protocol):
    """What resolving needs of the state store (``feeds.events.state.StateStore``): the live
    pages of a title (sources sit below the feeds, so they name the seam, not the store)."""

    def find_by_name(self, name: str, projects: Sequence[str] | None = None, *,
                     limit: int = 100) -> list[Article]: ...


class Resolved(msgspec.Struct):
    """``changes[i]``: the article changes of the i-th title change (empty if unresolved)."""

    changes: list[list[ArticleChange]]
    unresolved: int = 0


async def resolve(changes: Sequence[TitleChange], client: ActionApiClient,
                  state: ArticlesByName | None) -> Resolved:
    by_revision: dict[tuple[str, int], WikiRevision] = {}
    by_title: dict[tuple[str, str], WikiRevision] = {}
    wikis: dict[tuple[str, str | None], list[TitleChange]] = {}
    for change in changes:
        wikis.setdefault((change.project, change.base_url), []).append(change)
    for (project, base), group in wikis.items():
        hidden = [c.revision for c in group
                  if c.kind == "visibility-change" and c.revision is not None]
        if hidden:
            await client.forget(project, hidden)
        revisions = [c.revision for c in group if c.lookup == "revision" and c.revision]
        if revisions:
            found = await client.revisions(project, base, revisions)
            by_revision.update(((project, r), rev) for r, rev in found.items())
        titles = [c.title for c in group if c.lookup == "latest"]
        if titles:
            latest = await client.latest(project, base, titles)
            by_title.update(((project, t), rev) for t, rev in latest.items())
    stored = await _stored(state, [c for c in changes if c.lookup == "stored"])
    out: list[list[ArticleChange]] = []
    unresolved = 0
    seen: dict[PageKey, WikiRevision] = {}  # pages this batch resolved, by current title
    for change in changes:
        page: WikiRevision | None
        if change.lookup == "revision":
            page = by_revision.get((change.project, change.revision or 0))
        elif change.lookup == "latest":
            page = by_title.get((change.project, change.title))
        else:
            key = (change.project, change.namespace, change.title)
            page = seen.get(key) or stored.get(key)
        if page is None:
            out.append([])
            unresolved += 1
            continue
        mapped = article_changes(change, page)
        out.append(mapped)
        for article_change in mapped:
            key = (change.project, article_change.key.namespace, article_change.article.name)
            if article_change.type == "delete":
                seen.pop(key, None)
            else:
                seen[key] = page
    return Resolved(changes=out, unresolved=unresolved)


async def _stored(state: ArticlesByName | None,
                  deletes: list[TitleChange]) -> dict[PageKey, WikiRevision]:
    if state is None or not deletes:
        return {}

    def lookup() -> dict[PageKey, WikiRevision]:
        found: dict[PageKey, WikiRevision] = {}
        for change in deletes:
            for article in state.find_by_name(change.title, [change.project], limit=10):
                if article.namespace.identifier != change.namespace:
                    continue
                found[(change.project, change.namespace, change.title)] = WikiRevision(
                    project=change.project, page_id=article.identifier,
                    namespace=article.namespace.identifier, title=article.name,
                    revision=article.version.identifier if article.version else 0,
                    timestamp=article.date_modified)
        return found

    return await asyncio.to_thread(lookup)
