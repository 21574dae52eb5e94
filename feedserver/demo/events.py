"""Self-made ``mediawiki/page/change`` events for the demo wiki (no real event is copied).

``demo_events`` turns some articles of a demo snapshot into a short, plausible edit history:
edits with a new revision text (the ``page_content_change`` variant, so no content source is
needed), one page creation and one deletion, spread over the minutes before ``now``. Loaded
into the event log and consumed, they give the realtime stream, the state store and the
hourly batches something to show on a fresh machine.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from feedserver.models import Article

SCHEMA = "/mediawiki/page/change/1.2.0"
STREAM = "mediawiki.page_content_change.v1"
_NAMESPACE = uuid.UUID("3d6f1c1a-4b0e-4f57-9a51-0c2b7d7e9a10")
_EDITOR = {"user_text": "Demo editor", "user_id": 42, "is_bot": False, "is_temp": False}


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(kind: str, article: Article, rev_id: int, parent: int | None, when: datetime,
           text: str | None, comment: str) -> dict[str, Any]:
    title = article.name.replace(" ", "_")
    url = article.url or ""
    domain = url.split("/")[2] if "://" in url else "demo.wikipedia.org"
    revision: dict[str, Any] = {
        "rev_id": rev_id, "rev_dt": _iso(when), "rev_parent_id": parent, "comment": comment,
        "is_minor_edit": False, "editor": _EDITOR, "is_content_visible": True,
        "is_editor_visible": True, "is_comment_visible": True,
    }
    if text is not None:
        revision["rev_size"] = len(text.encode())
        revision["content_slots"] = {"main": {
            "slot_role": "main", "content_model": "wikitext", "content_format": "text/x-wiki",
            "content_body": text,
        }}
    return {
        "$schema": SCHEMA,
        "meta": {"stream": STREAM, "id": str(uuid.uuid5(_NAMESPACE, f"{kind}/{rev_id}")),
                 "dt": _iso(when), "domain": domain,
                 "uri": f"https://{domain}/wiki/{title}"},
        "dt": _iso(when),
        "wiki_id": article.is_part_of.identifier,
        "page_change_kind": kind,
        "changelog_kind": "delete" if kind == "delete" else "update",
        "page": {"page_id": article.identifier, "page_title": title,
                 "namespace_id": article.namespace.identifier, "is_redirect": False},
        "performer": _EDITOR,
        "revision": revision,
    }


def _rev(article: Article) -> int:
    return article.version.identifier if article.version is not None else 0


def demo_events(articles: Sequence[Article], now: datetime, edits: int = 40) -> list[bytes]:
    """``edits`` edits of ``articles`` (round robin), a creation and a deletion, as JSON lines
    in time order, the last one at ``now``."""
    if not articles:
        return []
    rev_id = max(map(_rev, articles)) + 1
    total = edits + 2
    out: list[dict[str, Any]] = []
    for i in range(edits):
        article = articles[i % len(articles)]
        text = (f"'''{article.name}''' is a demo article, edited {i + 1} times since the "
                f"snapshot.\n\n[[Category:Demo articles]]\n")
        out.append(_event("edit", article, rev_id, _rev(article),
                          now - timedelta(seconds=10 * (total - i)), text, f"demo edit {i + 1}"))
        rev_id += 1
    base = articles[0]
    new = msgspec.structs.replace(base, name=f"{base.name} (new)",
                                  identifier=max(a.identifier for a in articles) + 1)
    out.append(_event("create", new, rev_id, None, now - timedelta(seconds=10),
                      f"'''{new.name}''' is a page created by the demo.\n", "demo page"))
    gone = articles[-1]
    out.append(_event("delete", gone, _rev(gone), None, now, None, "demo deletion"))
    return [msgspec.json.encode(e) for e in out]
