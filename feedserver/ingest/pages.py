"""One dump page (``pagexml`` head + revisions) -> one Article (latest revision) or Redirect.

Pure: takes the page records of ``pagexml``, knows nothing of files. Revision-deleted parts
(text, editor, comment) never reach the record; ``visibility`` says what was hidden.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from feedserver.ingest.pagexml import PageHead, RevisionData
from feedserver.ingest.siteinfo import DumpInfo, page_url
from feedserver.ingest.wikitext import WikitextAnalyzer
from feedserver.models import (
    CC_BY_SA_4,
    Article,
    ArticleBody,
    Editor,
    Language,
    Namespace,
    PreviousVersion,
    Project,
    Redirect,
    Size,
    Version,
    Visibility,
)

# Schemas before 0.7 have no <parentid>, so "no parent" does not mean "first revision" there.
_PARENTID_SINCE = (0, 7)
# mwxml turns an empty <username/> into the string "None"; with id -1 that is how the 0.10
# dumper wrote a suppressed editor (the 0.11 dumper writes <contributor deleted="deleted"/>).
_EMPTY_USERNAMES = frozenset({"", "None"})


def _schema_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def _utf8_length(text: str) -> int:
    # isascii() is O(1) in CPython (a flag of the string): no copy for ASCII text.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _datetime(unix: int | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, tz=UTC)


def infer_model(model: str | None, namespace: int, name: str) -> str:
    """Content model for schemas that predate ``<model>`` (as MediaWiki's defaults decide)."""
    if model:
        return model
    if namespace == 828:
        return "Scribunto"
    if namespace in (2, 8):
        for suffix, implied in ((".css", "css"), (".js", "javascript"), (".json", "json")):
            if name.endswith(suffix):
                return implied
    return "wikitext"


class PageConverter:
    """Converts the pages of one dump; holds the per-dump constants and compiled patterns."""

    def __init__(self, info: DumpInfo) -> None:
        self.info = info
        self.analyzer = WikitextAnalyzer(info.namespaces, info.base_url)
        self.project = Project(identifier=info.wiki, url=info.base_url)
        self.language = Language(identifier=info.language)
        self.parentids_trusted = _schema_tuple(info.schema_version) >= _PARENTID_SINCE
        self._namespaces: dict[int, Namespace] = {}

    def namespace(self, key: int) -> Namespace:
        found = self._namespaces.get(key)
        if found is None:
            found = Namespace(identifier=key, name=self.info.namespaces.get(key) or None)
            self._namespaces[key] = found
        return found

    def full_name(self, title: str, namespace: int) -> str:
        """Title with its namespace prefix: mwxml drops the prefix when there is no ``<ns>``."""
        prefix = self.info.namespaces.get(namespace)
        if namespace and prefix and not title.startswith(prefix + ":"):
            return f"{prefix}:{title}"
        return title

    def convert(self, page: PageHead, revisions: Iterable[RevisionData]
                ) -> Article | Redirect | None:
        """The record for a page, or None for a page without revisions.

        ``revisions`` is not read for a redirect."""
        namespace = page.namespace
        name = self.full_name(page.title, namespace)
        if page.redirect is not None:
            return Redirect(name=name, namespace=namespace, target=page.redirect,
                            url=page_url(self.info.base_url, name))
        return self._article(page, revisions, name, namespace)

    def _article(self, page: PageHead, revisions: Iterable[RevisionData], name: str,
                 namespace: int) -> Article | None:
        best: RevisionData | None = None
        best_key: tuple[int, int] = (-1, -1)
        seen: dict[int, tuple[int, int]] = {}  # revision id -> (characters, unix time)
        first: int | None = None  # unix time of the earliest revision without a parent
        count = 0
        saw_parent = False
        # Only the best-so-far revision is kept: memory stays flat on history dumps.
        for revision in revisions:
            count += 1
            timestamp = revision.timestamp
            unix = timestamp if timestamp is not None else 0
            key = (unix, revision.id or 0)
            # A revision's time is known even when its text is hidden (its size is not).
            visible = revision.text is not None or not revision.text_deleted
            seen[revision.id] = (len(revision.text or "") if visible else 0, unix)
            parent = revision.parent_id
            if parent is not None:
                saw_parent = True
            if (parent is None or parent <= 0) and timestamp is not None and (
                    first is None or unix < first):
                first = unix
            if key > best_key:
                best, best_key = revision, key
        if best is None:
            return None
        created = None
        if saw_parent or self.parentids_trusted or count > 1:
            created = first
        return self._record(page, name, namespace, best, best_key[0], seen, created)

    def _record(self, page: PageHead, name: str, namespace: int, revision: RevisionData,
                modified: int, seen: dict[int, tuple[int, int]], created: int | None) -> Article:
        text_hidden = revision.text_deleted
        comment_hidden = revision.comment_deleted
        user = revision.contributor
        user_hidden = revision.user_deleted or (
            user is not None and (user.id is not None and user.id <= 0)
            and user.text in _EMPTY_USERNAMES)
        model = infer_model(revision.model, namespace, name)
        text: str | None = None if text_hidden else (revision.text or "")

        editor = None
        if user is not None and not user_hidden:
            anonymous = user.id is None or user.id <= 0
            editor = Editor(identifier=None if anonymous else user.id, name=user.text,
                            is_anonymous=anonymous)
        version = Version(
            identifier=revision.id,
            comment=None if comment_hidden else revision.comment,
            is_minor_edit=revision.minor,
            editor=editor,
            size=None if text is None else Size(value=_utf8_length(text)),
            number_of_characters=0 if text is None else len(text),
            content_model=model,
            sha1=revision.sha1,
        )
        previous = None
        previously_modified = None
        if revision.parent_id is not None and revision.parent_id > 0:
            known = seen.get(revision.parent_id)
            previous = PreviousVersion(identifier=revision.parent_id,
                                       number_of_characters=known[0] if known else 0)
            previously_modified = _datetime(known[1]) if known else None

        categories = templates = None
        abstract = None
        if text and model == "wikitext":
            categories, templates, abstract = self.analyzer.analyze(text)
        visibility = None
        if text_hidden or comment_hidden or user_hidden:
            visibility = Visibility(text=not text_hidden, editor=not user_hidden,
                                    comment=not comment_hidden)
        return Article(
            name=name,
            identifier=page.id,
            abstract=abstract,
            date_created=_datetime(created),
            date_modified=_datetime(modified) if revision.timestamp is not None else None,
            date_previously_modified=previously_modified,
            url=page_url(self.info.base_url, name),
            namespace=self.namespace(namespace),
            in_language=self.language,
            is_part_of=self.project,
            categories=categories or None,
            templates=templates or None,
            article_body=None if text is None else ArticleBody(wikitext=text),
            license=[CC_BY_SA_4],
            version=version,
            previous_version=previous,
            visibility=visibility,
        )
