"""What a wiki says about one revision when asked at fetch time, and how that fills a change.

``WikiRevision`` is the typed answer of the Action API client (``sources.mediawiki``) for one
revision: its page (id, namespace, title), its metadata and, when visible, its text. The
visibility flags are the wiki's state *at fetch time*: a revision deleted or suppressed after
its event was emitted comes back with ``text_visible`` False and no text. ``fill_change`` turns
that into the right visibility record instead of an error or a refetch loop (pure).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from feedserver.ingest.events import ArticleChange, with_body
from feedserver.models import Visibility


class WikiRevision(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    page_id: int
    namespace: int
    title: str
    revision: int
    parent: int | None = None
    timestamp: datetime | None = None
    user: str | None = None
    user_id: int | None = None
    comment: str | None = None
    minor: bool = False
    size: int | None = None
    sha1: str | None = None
    content_model: str | None = None
    text: str | None = None
    text_visible: bool = True
    editor_visible: bool = True
    comment_visible: bool = True
    suppressed: bool = False

    @property
    def hidden(self) -> bool:
        return not (self.text_visible and self.editor_visible and self.comment_visible)

    @property
    def visibility(self) -> Visibility:
        return Visibility(text=self.text_visible, editor=self.editor_visible,
                          comment=self.comment_visible)


def hide(article_visibility: Visibility | None, fetched: Visibility) -> Visibility:
    """Visible only if both the event and the wiki (now) say visible: nothing hidden leaks."""
    if article_visibility is None:
        return fetched
    return Visibility(text=article_visibility.text and fetched.text,
                      editor=article_visibility.editor and fetched.editor,
                      comment=article_visibility.comment and fetched.comment)


def fill_change(change: ArticleChange, fetched: WikiRevision | None) -> ArticleChange:
    """Complete a change that ``needs_body`` from what the wiki answered (mutates, returns it).

    - visible text: attached (categories, templates, abstract derived from it);
    - revision hidden since the event (revision deletion, suppression): the article gets the
      hidden flags and loses the hidden text, editor or comment; never refetched;
    - revision unknown to the wiki (its page was deleted since; the delete event follows in the
      stream): the article stays without text. Either way ``needs_body`` becomes False.
    """
    change.needs_body = False
    if fetched is None:
        return change
    article = change.article
    if fetched.hidden:
        article.visibility = hide(article.visibility, fetched.visibility)
        version = article.version
        if version is not None:
            if not fetched.editor_visible:
                version.editor = None
            if not fetched.comment_visible:
                version.comment = None
            if not fetched.text_visible:
                version.sha1 = None
                version.size = None
        if not fetched.text_visible:
            article.article_body = None
            article.categories = article.templates = None
            article.abstract = None
            return change
    if fetched.text is not None:
        with_body(article, fetched.text)
    return change
