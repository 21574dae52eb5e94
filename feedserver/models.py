"""Records shared by every feed, named after the Wikimedia Enterprise data dictionary.

Empty and zero fields are omitted on the wire (``omit_defaults``), as WME does ("omitempty"),
so a missing ``false`` means false. Where WME always writes a field, so do we: ``Visibility``
carries all three flags (WME's Go struct has no "omitempty" there, and WME's clients read
``{}`` as "no visibility"), and ``Size`` always names its ``unit_text``. New fields are only
ever appended with a default, so old readers keep decoding new records (msgspec schema
evolution).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class Record(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Base of every wire record: omit empty fields, keyword-only construction."""


class Namespace(Record):
    identifier: int
    name: str | None = None
    alternate_name: str | None = None
    description: str | None = None


class Language(Record):
    identifier: str
    name: str | None = None
    alternate_name: str | None = None
    direction: Literal["ltr", "rtl"] | None = None


class Project(Record):
    """A wiki (``enwiki``); ``is_part_of`` on an article."""

    identifier: str
    url: str | None = None
    name: str | None = None
    code: str | None = None
    in_language: Language | None = None


class Link(Record):
    """A category, template or redirect: its full name (with prefix) and URL."""

    name: str
    url: str | None = None


class License(Record):
    identifier: str
    name: str | None = None
    url: str | None = None


class Size(msgspec.Struct, kw_only=True):
    """Always both fields: a size without its unit is ambiguous (WME writes B or MB)."""

    # int | float so a decoded record re-encodes to the same bytes (hashes stay stable).
    value: int | float
    unit_text: str = "B"


class Editor(Record):
    identifier: int | None = None
    name: str | None = None
    is_anonymous: bool = False
    is_bot: bool = False
    edit_count: int | None = None
    groups: list[str] | None = None
    date_started: datetime | None = None


class Version(Record):
    """The current revision of an article."""

    identifier: int
    comment: str | None = None
    tags: list[str] | None = None
    is_minor_edit: bool = False
    editor: Editor | None = None
    size: Size | None = None
    number_of_characters: int = 0
    content_model: str | None = None
    sha1: str | None = None


class PreviousVersion(Record):
    identifier: int
    number_of_characters: int = 0


class ArticleBody(Record):
    html: str | None = None
    wikitext: str | None = None


class Visibility(msgspec.Struct, kw_only=True):
    """True means visible. Present when something was hidden or on visibility-change events;
    then always with all three flags (never omitted as defaults)."""

    text: bool = True
    editor: bool = True
    comment: bool = True


EventType = Literal["update", "delete", "visibility-change"]


class Event(Record):
    identifier: str
    type: EventType
    date_created: datetime | None = None
    date_published: datetime | None = None
    partition: int | None = None
    offset: int | None = None


class Article(Record, kw_only=True):  # kw_only per class: msgspec does not inherit it
    name: str
    identifier: int
    abstract: str | None = None
    date_created: datetime | None = None
    date_modified: datetime | None = None
    date_previously_modified: datetime | None = None
    url: str | None = None
    namespace: Namespace
    in_language: Language | None = None
    is_part_of: Project
    categories: list[Link] | None = None
    templates: list[Link] | None = None
    redirects: list[Link] | None = None
    article_body: ArticleBody | None = None
    license: list[License] | None = None
    version: Version | None = None
    previous_version: PreviousVersion | None = None
    visibility: Visibility | None = None
    event: Event | None = None


class Redirect(Record):
    """A redirect page seen in a dump: not a record of its own, it joins its target's
    ``redirects[]`` (as WME does)."""

    name: str
    namespace: int
    target: str
    url: str | None = None


class ArticleKey(msgspec.Struct, frozen=True, order=True):
    """Identity of an article across feeds: project, namespace, page id."""

    project: str
    namespace: int
    identifier: int


class _Entry(msgspec.Struct, kw_only=True, omit_defaults=True, tag_field="op"):
    """One line of a diff between two snapshot versions (``op`` tells which kind)."""

    key: ArticleKey


class DiffAdd(_Entry, tag="add", kw_only=True):
    """A page present in version N and not in the base."""

    article: Article


class DiffUpdate(_Entry, tag="update", kw_only=True):
    """A page in both versions whose record changed (any byte of its line)."""

    article: Article
    previous_revision: int | None = None


class DiffDelete(_Entry, tag="delete", kw_only=True):
    """A page in the base and not in version N (deleted, or moved to another namespace)."""

    name: str
    previous_revision: int | None = None


DiffEntry = DiffAdd | DiffUpdate | DiffDelete


def article_key(article: Article) -> ArticleKey:
    project = article.is_part_of.identifier
    return ArticleKey(project, article.namespace.identifier, article.identifier)


CC_BY_SA_4 = License(
    identifier="CC-BY-SA-4.0",
    name="Creative Commons Attribution Share Alike 4.0 International",
    url="https://creativecommons.org/licenses/by-sa/4.0/",
)
