"""The ``<page>`` and ``<revision>`` elements of a dump, read straight from the parser's events.

mwxml builds a ``jsonable`` Page / Revision / User / Slots / Content object per revision, parses
every timestamp with ``strptime`` and walks every element through Python generators; that was
~75% of an ingest. Here the same ``iterparse`` stream mwxml opened (``mwxml.element_iterator``:
expat, C ElementTree) is read directly: a revision is handled once its end tag has been
parsed, by looping over its complete children, and only the fields a record needs are kept.
Field semantics are mwxml's (which slot is "main", what ``deleted`` means, ``str(None)`` for an
empty ``<username/>``, titles without ``<ns>`` split on the siteinfo names), so records do not
change; unexpected tags raise mwxml's ``MalformedXML`` as mwxml does. Stricter than mwxml:
numbers must be ASCII digits within the bounds every record's reader can hold, and titles
MediaWiki's legal ones (``_number``, ``identifiers.TITLE_RE``), else ``MalformedXML``.

Memory stays flat: each revision is dropped from its page when read, each page from the root.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element

import msgspec
from mwxml.errors import MalformedXML

from feedserver.identifiers import MAX_NAMESPACE, MAX_SAFE, TITLE_RE

# (event, element) pairs of ``xml.etree.ElementTree.iterparse(events=("start", "end"))``.
Events = Iterator[tuple[str, Any]]

_PAGE_HEAD_TAGS = frozenset({"title", "ns", "id", "redirect", "restrictions"})
# Ignored by mwxml too (LiquidThreads metadata; upload-dump leftovers are errors there).
_SKIPPED_PAGE_TAGS = frozenset({"DiscussionThreading"})
_IGNORED_REVISION_TAGS = frozenset({"origin", "format"})
_CONTENT_TAGS = frozenset({"role", "origin", "model", "format", "id", "text"})


class Contributor(msgspec.Struct, frozen=True, gc=False):
    """``<contributor>``: ``text`` is the username, else the IP, as mwxml reads them."""

    id: int | None
    text: str | None


class PageHead(msgspec.Struct, frozen=True, gc=False):
    """What precedes a page's revisions; ``title`` lacks the namespace prefix without ``<ns>``."""

    id: int
    title: str
    namespace: int
    redirect: str | None


class RevisionData(msgspec.Struct, frozen=True, gc=False):
    """One revision, main slot only; ``timestamp`` in Unix seconds."""

    id: int
    timestamp: int | None
    contributor: Contributor | None
    minor: bool
    comment: str | None
    text: str | None  # None for an empty or absent <text>, as mwxml
    model: str | None
    sha1: str | None  # the revision's <sha1>
    parent_id: int | None
    text_deleted: bool
    comment_deleted: bool
    user_deleted: bool


class _LocalNames(dict[str, str]):
    """``{namespace}tag`` -> ``tag``, computed once per distinct tag."""

    def __missing__(self, tag: str) -> str:
        local = tag[tag.find("}") + 1:]
        self[tag] = local
        return local


def unix_time(text: str) -> int:
    """Seconds since the epoch of a dump timestamp (``2002-02-25T15:43:11Z``)."""
    if len(text) == 20 and text[10] == "T" and text[19] == "Z":
        try:
            return int(datetime.fromisoformat(text).timestamp())
        except ValueError:
            pass  # e.g. a leap second, which strptime accepts
    try:  # mwtypes.Timestamp's formats: short first, then long
        parsed = time.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        parsed = time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    return calendar.timegm(parsed)


def _number(text: str | None, what: str, low: int, high: int = MAX_SAFE) -> int:
    """The integer an element holds, or ``MalformedXML``: at most 20 ASCII digits (``int()``
    also takes "٣", "1_0" and " 1") within ``low .. high``, so every id a record carries fits
    a database column and a JSON reader (the event schemas' bound, ``identifiers``)."""
    if text and len(text) <= 20:  # no int() of a megabyte of digits
        digits = text[1:] if low < 0 and text[0] == "-" else text
        if digits.isascii() and digits.isdigit():
            value = int(text)
            if low <= value <= high:
                return value
    shown = "empty" if not text else repr(text[:40])
    raise MalformedXML(f"{what} is {shown}, not an integer in {low}..{high}")


def _malformed(what: str, tag: str) -> MalformedXML:
    return MalformedXML(f"Unexpected tag found when processing a <{what}>: '{tag}'")


def split_title(page_name: str, namespace_ids: dict[str, int]) -> tuple[int, str]:
    """(namespace, title) of a prefixed title, for schemas without ``<ns>`` (mwxml's rule)."""
    prefix, colon, rest = page_name.partition(":")
    if not colon or rest.startswith(" ") or prefix not in namespace_ids:
        return 0, page_name.replace("_", " ")
    return namespace_ids[prefix], rest.replace("_", " ")


class PageReader:
    """Pages of one dump in document order: ``pages()`` yields (head, revision iterator).

    A page's revisions must be consumed (or not at all) before the next page is requested;
    what is left unread is skipped without being parsed.
    """

    def __init__(self, events: Events, root: Element, first: Element | None,
                 namespace_ids: dict[str, int]) -> None:
        self._events = events
        self._root = root
        self._first = first
        self._namespace_ids = namespace_ids
        self._names = _LocalNames()

    def pages(self) -> Iterator[tuple[PageHead, Iterator[RevisionData]]]:
        item = self._first
        while item is not None:
            if self._names[item.tag] == "page":
                in_revision = self._skip_head(item)
                head = self._head(item)
                revisions = _Revisions(self, item, done=not in_revision)
                yield head, iter(revisions)
                revisions.finish()
            else:  # <logitem>: not a page, mwxml's Dump.pages drops it too
                self._skip_to_end(item)
            self._root.remove(item)
            item = self._next_item()

    def _next_item(self) -> Element | None:
        for event, element in self._events:
            if event == "end":  # only </mediawiki> can end here
                return None
            tag = self._names[element.tag]
            if tag not in ("page", "logitem"):
                raise MalformedXML(f"Expected to see <page> or <logitem>.  Instead saw <{tag}>")
            return element  # type: ignore[no-any-return]
        return None

    def _skip_head(self, page: Element) -> bool:
        """Advance to the first ``<revision>`` start (True) or the page's end (False)."""
        names = self._names
        for event, element in self._events:
            if event == "start":
                if names[element.tag] == "revision":
                    return True
            elif element is page:
                return False
        return False

    def _skip_to_end(self, element: Element) -> None:
        for event, seen in self._events:
            if event == "end" and seen is element:
                return

    def _head(self, page: Element) -> PageHead:
        names = self._names
        title: str | None = None
        namespace: int | None = None
        identifier: int | None = None
        redirect: str | None = None
        for child in page:
            tag = names[child.tag]
            if tag == "revision":
                break
            if tag == "title":
                title = child.text
            elif tag == "ns":
                namespace = _number(child.text, "<ns>", 0, MAX_NAMESPACE)
            elif tag == "id":
                identifier = _number(child.text, "page <id>", 1)
            elif tag == "redirect":
                redirect = child.get("title")
            elif tag not in _PAGE_HEAD_TAGS and tag not in _SKIPPED_PAGE_TAGS:
                raise _malformed("page", tag)
        if title is None or identifier is None:
            raise MalformedXML("<page> without <title> or <id>")
        if not TITLE_RE.match(title):  # MediaWiki never writes one: a damaged or forged dump
            raise MalformedXML(f"page {identifier}: title {title[:80]!r} has characters "
                               "MediaWiki does not allow in titles")
        if namespace is None:
            namespace, title = split_title(title, self._namespace_ids)
        else:
            title = title.replace("_", " ")
        return PageHead(id=identifier, title=title, namespace=namespace, redirect=redirect)

    def revision(self, element: Element) -> RevisionData:
        names = self._names
        identifier = parent_id = timestamp = None
        contributor: Contributor | None = None
        minor = text_deleted = comment_deleted = user_deleted = False
        comment = text = model = sha1 = text_sha1 = None
        contents: list[Element] = []
        for child in element:
            tag = names[child.tag]
            if tag == "text":
                text_deleted = child.get("deleted") is not None
                text = child.text or None
                text_sha1 = child.get("sha1")
            elif tag == "id":
                identifier = _number(child.text, "revision <id>", 1)
            elif tag == "timestamp":
                timestamp = unix_time(child.text or "")
            elif tag == "contributor":
                user_deleted = child.get("deleted") is not None
                if not user_deleted:
                    contributor = self._contributor(child)
            elif tag == "comment":
                comment_deleted = child.get("deleted") is not None
                if not comment_deleted:
                    comment = child.text
            elif tag == "parentid":
                # a negative one means none (MediaWiki's dump tests write -1), as 0 does
                parent_id = _number(child.text, "<parentid>", -(2**31))
            elif tag == "model":
                model = child.text
            elif tag == "sha1":
                sha1 = child.text
            elif tag == "minor":
                minor = True
            elif tag == "content":
                contents.append(child)
            elif tag not in _IGNORED_REVISION_TAGS:
                raise _malformed("revision", tag)
        if contents:
            # mwxml keys slots by role, a <content> main slot winning over <text>; with
            # <content> but no sha1 on <text>, <text> is not a slot at all.
            main = self._main_content(contents)
            if main is not None:
                text, model = main
            elif text_sha1 is None:
                text = model = None
        if identifier is None:
            raise MalformedXML("<revision> without <id>")
        return RevisionData(
            id=identifier, timestamp=timestamp, contributor=contributor, minor=minor,
            comment=comment, text=text, model=model, sha1=sha1, parent_id=parent_id,
            text_deleted=text_deleted, comment_deleted=comment_deleted,
            user_deleted=user_deleted)

    def _contributor(self, element: Element) -> Contributor:
        names = self._names
        identifier: int | None = None
        username: str | None = None
        ip: str | None = None
        for child in element:
            tag = names[child.tag]
            if tag == "id":
                # <id/> fails, as in mwxml; 0 or less is an anonymous editor (MediaWiki's
                # dump tests write -1)
                identifier = _number(child.text, "contributor <id>", -(2**31))
            elif tag == "username":
                username = str(child.text)  # an empty <username/> is "None", as in mwxml
            elif tag == "ip":
                ip = str(child.text)
        return Contributor(id=identifier, text=username if username is not None else ip)

    def _main_content(self, contents: list[Element]) -> tuple[str | None, str | None] | None:
        """(text, model) of the last ``<content>`` whose role is ``main``, if any."""
        names = self._names
        found: tuple[str | None, str | None] | None = None
        for content in contents:
            role = model = text = None
            for child in content:
                tag = names[child.tag]
                if tag == "role":
                    role = child.text
                elif tag == "model":
                    model = child.text
                elif tag == "text":
                    text = child.text or None
                elif tag not in _CONTENT_TAGS:
                    raise _malformed("revision", tag)
            if role == "main":
                found = (text, model)
        return found


class _Revisions:
    """The revisions of one page, read as their end tags arrive."""

    def __init__(self, reader: PageReader, page: Element, *, done: bool) -> None:
        self._reader = reader
        self._page = page
        self._done = done

    def __iter__(self) -> Iterator[RevisionData]:
        if self._done:  # a page without revisions: its end was already read
            return
        page = self._page
        revision_tag = page.tag[:-4] + "revision"  # same namespace as <page>
        read = self._reader.revision
        for event, element in self._reader._events:
            if event != "end":
                continue
            if element.tag == revision_tag:
                record = read(element)
                del page[-1]  # the revision just ended is the page's last child
                yield record
            elif element is page:
                break
        self._done = True

    def finish(self) -> None:
        """Skip, unparsed, whatever of the page was not read."""
        if not self._done:
            self._done = True
            self._reader._skip_to_end(self._page)
