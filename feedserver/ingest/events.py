"""Event-platform ``mediawiki/page/change`` 1.x events -> ``ArticleChange`` records (pure).

Only the fields the feeds need are decoded; unknown fields are ignored so newer 1.x schema
versions keep decoding. The mapping follows Wikimedia Enterprise:

- create / edit / undelete -> ``update``; delete -> ``delete``;
- move -> ``update`` for the new title, then ``delete`` for the old title;
- visibility_change -> ``visibility-change`` carrying ``visibility{text, editor, comment}``.

Every field the feeds use is range-checked while decoding (msgspec ``Meta`` bounds from
``feedserver.identifiers``): ids and sizes within the schema's ``0 .. 2**53 - 1``, a project id
that is a wiki database name, a namespace ``0 .. 999999``, a legal title. An event that breaks
one is an ``InvalidEvent`` (dead-lettered by the consumer), never a value the database cannot
hold or a page the API would serve under a hostile name.

Hidden content never leaks: when the event says a revision's text, editor or comment is not
visible, the body (and everything derived from it), editor or comment is left out.

An event says less than a dump about the page (no history, no siteinfo): ``inherit`` completes
an article from the page's previous record (creation date, redirects, namespace name, the
previous revision's size and time) and ``with_parent_text`` from the previous revision's text,
so that an article built from an event plus fetched content equals the dump's record of the
same revision.

Event identifiers are UUID5 of the source event id and the output kind, so replaying the same
source event yields the same ``event.identifier`` (consumers deduplicate on it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Literal

import msgspec

from feedserver.errors import InvalidEvent
from feedserver.identifiers import Count, Int32, NamespaceId, PageId, ProjectId, RevId, Title
from feedserver.ingest.siteinfo import language_of, page_url, wiki_from_host
from feedserver.ingest.wikitext import WikitextAnalyzer
from feedserver.models import (
    CC_BY_SA_4,
    Article,
    ArticleBody,
    ArticleKey,
    Editor,
    Event,
    EventType,
    Language,
    Namespace,
    PreviousVersion,
    Project,
    Size,
    Version,
    Visibility,
)

PageChangeKind = Literal["create", "edit", "move", "delete", "undelete", "visibility_change"]
Role = Literal["primary", "moved_from"]

# Fixed namespace for event identifiers: never change it, or replays get new ids.
EVENT_ID_NAMESPACE = uuid.UUID("8f1b2c4e-5d6a-4b7c-9e8f-0a1b2c3d4e5f")


# --- source schema (subset of mediawiki/page/change 1.x) -------------------------------------


class _Src(msgspec.Struct, kw_only=True):
    """Base of decoded source fragments."""


class EventMeta(_Src):
    stream: str
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    dt: datetime | None = None
    domain: str | None = None
    uri: str | None = None


class EventUser(_Src):
    user_id: Count | None = None
    user_text: str | None = None
    is_bot: bool = False
    is_temp: bool = False
    groups: list[str] | None = None
    edit_count: Count | None = None
    registration_dt: datetime | None = None


class ContentSlot(_Src):
    content_model: str | None = None
    content_body: str | None = None
    content_sha1: str | None = None
    content_size: Count | None = None


class EventRevision(_Src):
    rev_id: RevId
    rev_dt: datetime
    rev_parent_id: Count | None = None
    rev_sha1: str | None = None
    rev_size: Count | None = None
    comment: str | None = None
    is_minor_edit: bool = False
    is_comment_visible: bool = True
    is_editor_visible: bool = True
    is_content_visible: bool = True
    editor: EventUser | None = None
    content_slots: dict[str, ContentSlot] | None = None


class PageLink(_Src):
    page_title: str
    page_id: Count | None = None
    namespace_id: Int32 | None = None
    is_redirect: bool = False


class EventPage(_Src):
    page_id: PageId
    page_title: Title
    # Optional in the schema, but it is part of every article key: required here.
    namespace_id: NamespaceId
    is_redirect: bool = False
    redirect_page_link: PageLink | None = None


class PriorPage(_Src):
    page_title: Title | None = None
    namespace_id: NamespaceId | None = None


class PriorRevision(_Src):
    rev_id: RevId | None = None
    rev_dt: datetime | None = None
    is_comment_visible: bool | None = None
    is_editor_visible: bool | None = None
    is_content_visible: bool | None = None


class PriorState(_Src):
    page: PriorPage | None = None
    revision: PriorRevision | None = None


class PageChange(_Src):
    schema: str = msgspec.field(name="$schema")
    meta: EventMeta
    dt: datetime
    wiki_id: ProjectId
    page_change_kind: PageChangeKind
    page: EventPage
    revision: EventRevision
    prior_state: PriorState | None = None


_DECODER = msgspec.json.Decoder(PageChange)


# --- output ----------------------------------------------------------------------------------


class ArticleChange(msgspec.Struct, kw_only=True):
    """One article-level change derived from a source event.

    ``revision`` and ``changed_us`` (event time, µs since epoch) order changes of one key: the
    state store applies a change only if ``(revision, changed_us)`` is greater than what it has.
    ``needs_body`` says the text is visible but the event did not carry it.
    """

    key: ArticleKey
    article: Article
    source_kind: PageChangeKind
    role: Role = "primary"
    revision: int
    changed_us: int
    needs_body: bool = False

    @property
    def type(self) -> EventType:
        assert self.article.event is not None
        return self.article.event.type


def to_us(dt: datetime) -> int:
    """Microseconds since the epoch (naive datetimes are UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond


def decode_page_change(raw: bytes | str) -> PageChange:
    """Decode and validate one event; ``InvalidEvent`` with the reason otherwise."""
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"page_change schema violation: {exc}", reason="schema") from exc
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed event JSON: {exc}", reason="json") from exc
    if not event.schema.startswith("/mediawiki/page/change/1."):
        raise InvalidEvent(f"unsupported event schema {event.schema!r}", reason="unsupported")
    return event


def changes_from_json(raw: bytes | str) -> list[ArticleChange]:
    return map_page_change(decode_page_change(raw))


def map_page_change(event: PageChange) -> list[ArticleChange]:
    """The article changes one source event stands for (two for a move)."""
    kind = event.page_change_kind
    if kind == "delete":
        return [_change(event, "delete")]
    if kind == "visibility_change":
        return [_change(event, "visibility-change")]
    out = [_change(event, "update")]
    if kind == "move":
        prior = event.prior_state.page if event.prior_state else None
        if prior is None or not prior.page_title:
            raise InvalidEvent("move event without prior_state.page.page_title", reason="schema")
        namespace = event.page.namespace_id if prior.namespace_id is None else prior.namespace_id
        out.append(_change(event, "delete", title=prior.page_title, namespace=namespace,
                           role="moved_from"))
    return out


def _event_id(event: PageChange, kind: EventType, role: Role) -> str:
    source = event.meta.id or (
        f"{event.wiki_id}:{event.page.page_id}:{event.revision.rev_id}:"
        f"{event.page_change_kind}:{to_us(event.dt)}"
    )
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{source}:{kind}:{role}"))


def _base_url(event: PageChange) -> str | None:
    domain = event.meta.domain
    # Schema examples carry a bare placeholder ("examplewiki"), not a host name.
    return f"https://{domain}" if domain and "." in domain else None


def _language(event: PageChange) -> Language | None:
    """The wiki's language as a dump of it says (``en`` for Commons and Wikidata)."""
    domain = event.meta.domain or ""
    wiki = event.wiki_id if "." not in domain else (wiki_from_host(domain) or event.wiki_id)
    language = language_of(wiki)
    return None if language is None else Language(identifier=language)


def _page_url(base: str | None, title: str) -> str | None:
    if base is None:
        return None
    return page_url(base, title)


def _change(
    event: PageChange,
    kind: EventType,
    *,
    title: str | None = None,
    namespace: int | None = None,
    role: Role = "primary",
) -> ArticleChange:
    rev = event.revision
    page = event.page
    name = (title or page.page_title).replace("_", " ")
    ns = page.namespace_id if namespace is None else namespace
    base = _base_url(event)
    url = event.meta.uri if role == "primary" and event.meta.uri else _page_url(base, name)
    hidden = not (rev.is_content_visible and rev.is_editor_visible and rev.is_comment_visible)
    article = Article(
        name=name,
        identifier=page.page_id,
        url=url,
        namespace=Namespace(identifier=ns),
        in_language=_language(event),
        is_part_of=Project(identifier=event.wiki_id, url=base),
        date_created=rev.rev_dt if event.page_change_kind == "create" else None,
        date_modified=rev.rev_dt if kind != "delete" else event.dt,
        license=[CC_BY_SA_4],
        version=_version(rev),
        visibility=(
            Visibility(text=rev.is_content_visible, editor=rev.is_editor_visible,
                       comment=rev.is_comment_visible)
            if hidden or kind == "visibility-change" else None
        ),
        event=Event(
            identifier=_event_id(event, kind, role),
            type=kind,
            date_created=event.dt,
            date_published=event.meta.dt or event.dt,
        ),
    )
    prior_rev = event.prior_state.revision if event.prior_state else None
    if prior_rev is not None and prior_rev.rev_dt is not None:
        article.date_previously_modified = prior_rev.rev_dt
    parent = rev.rev_parent_id or (prior_rev.rev_id if prior_rev else None)
    if parent:
        article.previous_version = PreviousVersion(identifier=parent)
    needs_body = False
    if kind != "delete" and rev.is_content_visible:
        main = (rev.content_slots or {}).get("main")
        if main is not None and main.content_body is not None:
            with_body(article, main.content_body, base)
        else:
            needs_body = main is not None
    return ArticleChange(
        key=ArticleKey(event.wiki_id, ns, page.page_id),
        article=article,
        source_kind=event.page_change_kind,
        role=role,
        revision=rev.rev_id,
        changed_us=to_us(event.dt),
        needs_body=needs_body,
    )


def _version(rev: EventRevision) -> Version:
    version = Version(identifier=rev.rev_id, is_minor_edit=rev.is_minor_edit)
    if rev.is_comment_visible and rev.comment is not None:
        version.comment = rev.comment
    if rev.is_editor_visible and rev.editor is not None:
        version.editor = _editor(rev.editor)
    main = (rev.content_slots or {}).get("main")
    if main is not None:  # the model is not hidden with the text (a dump names it too)
        version.content_model = main.content_model
    if rev.is_content_visible:
        version.sha1 = rev.rev_sha1
        if rev.rev_size is not None:
            version.size = Size(value=rev.rev_size)
    return version


def _editor(user: EventUser) -> Editor:
    return Editor(
        identifier=user.user_id or None,
        name=user.user_text,
        # Anonymous (IP) editors have no user id; temporary accounts do.
        is_anonymous=not user.user_id and not user.is_temp,
        is_bot=user.is_bot,
        edit_count=user.edit_count,
        groups=user.groups,
        date_started=user.registration_dt,
    )


def with_body(article: Article, wikitext: str, base_url: str | None = None) -> Article:
    """Attach a (visible) wikitext body and what derives from it: categories, templates,
    abstract (wikitext content model only), character count. Mutates and returns ``article``."""
    article.article_body = ArticleBody(wikitext=wikitext)
    if article.version is not None:
        article.version.number_of_characters = len(wikitext)
        model = article.version.content_model
        if model not in (None, "wikitext"):
            return article
    base = base_url or (article.is_part_of.url if article.is_part_of else None)
    categories, templates, abstract = _analyzer(base or "").analyze(wikitext)
    article.categories = categories or None
    article.templates = templates or None
    article.abstract = abstract
    return article


@lru_cache(maxsize=64)
def _analyzer(base_url: str) -> WikitextAnalyzer:
    # Events carry no siteinfo: canonical (English) namespace names are recognised everywhere.
    return WikitextAnalyzer({}, base_url)


def inherit(article: Article, previous: Article | None) -> Article:
    """Fill what an event cannot know from ``previous``, the page's record before it (its last
    state, or the article an earlier event of the same batch made): creation date, redirects,
    language, namespace name and, when ``previous`` is the parent revision, its size and time.
    Only empty fields are filled; mutates and returns ``article``."""
    if previous is None:
        return article
    if article.date_created is None:
        article.date_created = previous.date_created
    if article.redirects is None:
        article.redirects = previous.redirects
    if article.in_language is None:
        article.in_language = previous.in_language
    ns = article.namespace
    if ns.name is None and previous.namespace.identifier == ns.identifier:
        article.namespace = previous.namespace
    parent = article.previous_version
    before = previous.version
    if parent is not None and before is not None and before.identifier == parent.identifier:
        if not parent.number_of_characters:
            parent.number_of_characters = before.number_of_characters
        if article.date_previously_modified is None:
            article.date_previously_modified = previous.date_modified
    return article


def with_parent_text(article: Article, parent_text: str) -> Article:
    """The previous revision's size from its text (when ``inherit`` had no record of it)."""
    parent = article.previous_version
    if parent is not None and not parent.number_of_characters:
        parent.number_of_characters = len(parent_text)
    return article
