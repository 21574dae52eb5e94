"""EventStreams ``mediawiki/recentchange`` 1.x events -> the change model (pure).

recentchange names a page by its title, never by its page id, while every article key holds the
page id. So the mapping has two pure steps with one lookup between them:

1. ``map_recentchange(event)`` -> ``TitleChange``s: what happened to which title, and how to
   find the page (``lookup``): by the revision the event names, by the title's latest
   revision, or in the state store (a deleted page is gone from the wiki);
2. ``article_changes(change, revision)`` -> ``ArticleChange``s, the same records page_change
   gives, once the wiki (``sources.mediawiki``) or the state store said which page it is.

The mapping (as for page_change, after Wikimedia Enterprise):

- ``edit`` / ``new`` -> ``update`` of that revision;
- log ``delete/delete`` (and ``delete_redir*``, ``suppress/delete``) -> ``delete``;
- log ``delete/restore`` -> ``update`` of the restored page's latest revision (undelete);
- log ``move/move``, ``move/move_redir`` -> ``update`` of the new title, then ``delete`` of the
  old title (role ``moved_from``; same page id);
- log ``delete/revision``, ``suppress/revision`` -> one ``visibility-change`` per revision id,
  with the hidden fields from the log entry's ``nfield`` bits;
- log ``upload/*``, ``import/*`` -> ``update`` of the title's latest revision (they add a
  revision without an edit event);
- ``categorize``, ``external`` and every other log action -> nothing.

Fields are range-checked at decode (msgspec ``Meta``, the shared rules of
``feedserver.identifiers``): ids and sizes must fit the schema's bounds (2**53 - 1), the wiki is
a database name, titles are legal MediaWiki titles, namespaces an int32, so nothing downstream
(SQLite's int64) can overflow. An event that becomes an article change must also name a content
namespace (``0 .. 999999``, the snapshot-identifier rule); log entries of other namespaces
(``Special:``) are still decoded, and ignored or dead-lettered by the mapping.
Each event is identified by ``meta.id`` (the dedup key); the output event identifiers are
UUID5 of it, so a replay yields the same identifiers.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from feedserver.errors import InvalidEvent
from feedserver.identifiers import (
    MAX_NAMESPACE,
    MAX_SAFE,
    Int32,
    ProjectId,
    Title,
    ascii_index,
)
from feedserver.ingest.envelope import EventId
from feedserver.ingest.events import (
    EVENT_ID_NAMESPACE,
    ArticleChange,
    PageChangeKind,
    Role,
    to_us,
    with_body,
)
from feedserver.ingest.revision import WikiRevision, hide
from feedserver.ingest.siteinfo import page_url
from feedserver.models import (
    CC_BY_SA_4,
    Article,
    ArticleKey,
    Editor,
    Event,
    EventType,
    Namespace,
    PreviousVersion,
    Project,
    Size,
    Version,
    Visibility,
)

RevId = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE)]
Length = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE)]
Timestamp = Annotated[int, msgspec.Meta(ge=-MAX_SAFE, le=MAX_SAFE)]
NamespaceId = Int32  # log entries may name a virtual namespace; changes need 0..MAX_NAMESPACE
ShortText = Annotated[str, msgspec.Meta(max_length=64)]
Lookup = Literal["revision", "latest", "stored"]

# Revision-deletion bits of ``nfield`` (MediaWiki RevisionRecord::DELETED_*).
DELETED_TEXT, DELETED_COMMENT, DELETED_USER = 1, 2, 4
# rc_type numbers, for feeds that send the number instead of the name.
_RC_TYPES = {0: "edit", 1: "new", 3: "log", 5: "external", 6: "categorize"}
_LogAction = Literal["delete", "undelete", "move", "visibility", "refresh"]
_LOG_ACTIONS: dict[tuple[str, str], _LogAction] = {
    ("delete", "delete"): "delete",
    ("delete", "delete_redir"): "delete",
    ("delete", "delete_redir2"): "delete",
    ("suppress", "delete"): "delete",
    ("delete", "restore"): "undelete",
    ("move", "move"): "move",
    ("move", "move_redir"): "move",
    ("delete", "revision"): "visibility",
    ("suppress", "revision"): "visibility",
    ("upload", "upload"): "refresh",
    ("upload", "overwrite"): "refresh",
    ("upload", "revert"): "refresh",
    ("import", "upload"): "refresh",
    ("import", "interwiki"): "refresh",
}
MAX_REVISION_IDS = 5_000  # revision ids one revision-deletion log entry may name


# --- source schema (subset of mediawiki/recentchange 1.x) -----------------------------------


class _Src(msgspec.Struct, kw_only=True):
    """Base of decoded source fragments."""


class RcMeta(_Src):
    dt: datetime
    stream: str
    id: EventId | None = None
    domain: str | None = None
    uri: str | None = None


class RcRevision(_Src):
    new: RevId | None = None
    old: RevId | None = None


class RcLength(_Src):
    new: Length | None = None
    old: Length | None = None


class LogParams(_Src):
    target: Title | None = None
    type: ShortText | None = None
    ids: Annotated[list[RevId | Annotated[str, msgspec.Meta(max_length=20)]],
                   msgspec.Meta(max_length=MAX_REVISION_IDS)] | None = None
    ofield: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None
    nfield: Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None


class RecentChange(_Src):
    schema: str = msgspec.field(name="$schema")
    meta: RcMeta
    type: ShortText | Annotated[int, msgspec.Meta(ge=0, le=255)] | None = None
    id: Length | None = None  # rcid
    wiki: ProjectId | None = None
    namespace: NamespaceId | None = None
    title: Title | None = None
    timestamp: Timestamp | None = None
    user: str | None = None
    bot: bool = False
    minor: bool = False
    comment: str | None = None
    length: RcLength | None = None
    revision: RcRevision | None = None
    server_url: str | None = None
    server_name: str | None = None
    log_type: ShortText | None = None
    log_action: ShortText | None = None
    log_params: msgspec.Raw = msgspec.Raw()

    @property
    def rc_type(self) -> str | None:
        return _RC_TYPES.get(self.type) if isinstance(self.type, int) else self.type


_DECODER = msgspec.json.Decoder(RecentChange)
_PARAMS = msgspec.json.Decoder(LogParams)


# --- output of step 1 ------------------------------------------------------------------------


class TitleChange(msgspec.Struct, frozen=True, kw_only=True):
    """One change of a page known by title. ``lookup`` says how to find the page id:
    ``revision`` (ask the wiki for ``revision``), ``latest`` (ask for the latest revision of
    ``title``), ``stored`` (the state store's live page of that ``namespace`` and ``title``)."""

    event_id: str
    project: str
    base_url: str | None
    title: str
    namespace: int | None  # None for a move target: the new namespace comes from the wiki
    kind: EventType
    source_kind: PageChangeKind
    lookup: Lookup
    revision: int | None = None
    parent: int | None = None
    moved_from: str | None = None
    moved_from_namespace: int | None = None
    visibility: Visibility | None = None
    bot: bool = False
    changed_us: int
    dt: datetime


def decode_recentchange(raw: bytes | str) -> RecentChange:
    try:
        event = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"recentchange schema violation: {exc}", reason="schema") from exc
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"malformed event JSON: {exc}", reason="json") from exc
    if not event.schema.startswith("/mediawiki/recentchange/1."):
        raise InvalidEvent(f"unsupported event schema {event.schema[:200]!r}",
                           reason="unsupported")
    return event


def title_changes_from_json(raw: bytes | str) -> list[TitleChange]:
    return map_recentchange(decode_recentchange(raw))


def map_recentchange(event: RecentChange) -> list[TitleChange]:
    """The title changes one event stands for (none for what the feeds ignore)."""
    rc_type = event.rc_type
    action: _LogAction | None = None
    if rc_type == "log":
        action = _LOG_ACTIONS.get((event.log_type or "", event.log_action or ""))
        if action is None:
            return []
    elif rc_type not in ("edit", "new"):
        return []  # categorize, external, unknown numbers: not article changes
    if event.wiki is None or event.title is None or event.namespace is None:
        raise InvalidEvent("recentchange without wiki, title or namespace", reason="schema")
    if not 0 <= event.namespace <= MAX_NAMESPACE:
        raise InvalidEvent(f"namespace {event.namespace} is not a content namespace",
                           reason="schema")
    if action is None:
        rev = event.revision.new if event.revision else None
        if rev is None:
            raise InvalidEvent("edit without revision.new", reason="schema")
        parent = event.revision.old if event.revision else None
        kind: PageChangeKind = "create" if rc_type == "new" else "edit"
        return [_title_change(event, "update", kind, "revision", revision=rev, parent=parent)]
    if action == "delete":
        return [_title_change(event, "delete", "delete", "stored")]
    if action in ("undelete", "refresh"):
        return [_title_change(event, "update", "undelete" if action == "undelete" else "edit",
                              "latest")]
    params = _log_params(event)
    if action == "move":
        if params.target is None:
            raise InvalidEvent("move without log_params.target", reason="schema")
        return [_title_change(event, "update", "move", "latest", title=params.target,
                              keep_namespace=False, moved_from=_name(event.title),
                              moved_from_namespace=event.namespace)]
    return _visibility_changes(event, params)


def _log_params(event: RecentChange) -> LogParams:
    raw = bytes(event.log_params)
    if not raw.startswith(b"{"):
        return LogParams()  # absent, a list or a string: none of the named parameters
    try:
        return _PARAMS.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidEvent(f"recentchange log_params invalid: {exc}", reason="schema") from exc


def _visibility_changes(event: RecentChange, params: LogParams) -> list[TitleChange]:
    if params.type not in (None, "revision") or params.nfield is None or not params.ids:
        return []  # archived or file revisions, log entries: not live articles
    bits = params.nfield
    visibility = Visibility(text=not bits & DELETED_TEXT, editor=not bits & DELETED_USER,
                            comment=not bits & DELETED_COMMENT)
    out: list[TitleChange] = []
    for raw_id in dict.fromkeys(params.ids):
        rev = raw_id if isinstance(raw_id, int) else _rev_id(raw_id)
        out.append(_title_change(event, "visibility-change", "visibility_change", "revision",
                                 revision=rev, visibility=visibility, suffix=f"/{rev}"))
    return out


def _rev_id(text: str) -> int:
    value = ascii_index(text)  # str.isdigit() would let "²" through to int()
    if value is None or not 1 <= value <= MAX_SAFE:
        raise InvalidEvent(f"revision id {text[:20]!r} out of range", reason="schema")
    return value


def _name(title: str) -> str:
    return title.replace("_", " ")


def _base_url(event: RecentChange) -> str | None:
    if event.server_url and event.server_url.startswith(("https://", "http://")):
        return event.server_url.rstrip("/")
    host = event.server_name or event.meta.domain
    return f"https://{host}" if host and "." in host else None


def _title_change(event: RecentChange, kind: EventType, source_kind: PageChangeKind,
                  lookup: Lookup, *, title: str | None = None, keep_namespace: bool = True,
                  revision: int | None = None, parent: int | None = None,
                  moved_from: str | None = None, moved_from_namespace: int | None = None,
                  visibility: Visibility | None = None, suffix: str = "") -> TitleChange:
    assert event.wiki is not None and event.title is not None
    source = event.meta.id or (
        f"rc:{event.wiki}:{event.id}" if event.id is not None
        else f"rc:{event.wiki}:{event.title}:{to_us(event.meta.dt)}:{event.rc_type}")
    return TitleChange(
        event_id=source + suffix, project=event.wiki, base_url=_base_url(event),
        title=_name(title or event.title),
        namespace=event.namespace if keep_namespace else None, kind=kind,
        source_kind=source_kind, lookup=lookup, revision=revision, parent=parent,
        moved_from=moved_from, moved_from_namespace=moved_from_namespace,
        visibility=visibility, bot=event.bot, changed_us=to_us(event.meta.dt), dt=event.meta.dt)


# --- step 2: with the page known ---------------------------------------------------------------


def article_changes(change: TitleChange, page: WikiRevision) -> list[ArticleChange]:
    """The article changes of ``change`` once ``page`` (the revision the wiki or the state store
    named) is known; two for a move, like page_change."""
    out = [_article_change(change, page, change.kind, "primary", page.title, page.namespace)]
    if change.moved_from is not None:
        namespace = (page.namespace if change.moved_from_namespace is None
                     else change.moved_from_namespace)
        out.append(_article_change(change, page, "delete", "moved_from", change.moved_from,
                                   namespace))
    return out


def _article_change(change: TitleChange, page: WikiRevision, kind: EventType, role: Role,
                    name: str, namespace: int) -> ArticleChange:
    base = change.base_url
    visibility = page.visibility if page.hidden else None
    if kind == "visibility-change":
        visibility = hide(change.visibility, page.visibility)
    shown = visibility or Visibility()
    version = Version(identifier=page.revision, is_minor_edit=page.minor)
    if shown.comment and page.comment is not None:
        version.comment = page.comment
    if shown.editor and (page.user is not None or page.user_id):
        version.editor = Editor(identifier=page.user_id or None, name=page.user,
                                is_anonymous=not page.user_id,
                                is_bot=change.bot and change.lookup == "revision")
    if shown.text:
        version.sha1 = page.sha1
        version.content_model = page.content_model
        if page.size is not None:
            version.size = Size(value=page.size)
    article = Article(
        name=_name(name),
        identifier=page.page_id,
        url=page_url(base, _name(name)) if base else None,
        namespace=Namespace(identifier=namespace),
        is_part_of=Project(identifier=change.project, url=base),
        date_modified=change.dt if kind == "delete" else (page.timestamp or change.dt),
        license=[CC_BY_SA_4],
        version=version,
        visibility=visibility,
        event=Event(
            identifier=str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{change.event_id}:{kind}:{role}")),
            type=kind, date_created=change.dt, date_published=change.dt,
        ),
    )
    parent = page.parent or change.parent
    if parent:
        article.previous_version = PreviousVersion(identifier=parent)
    if kind != "delete" and shown.text and page.text is not None:
        with_body(article, page.text, base)
    return ArticleChange(key=ArticleKey(change.project, namespace, page.page_id),
                         article=article, source_kind=change.source_kind, role=role,
                         revision=page.revision, changed_us=change.changed_us)
