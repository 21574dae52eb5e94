"""MediaWiki XML dump -> DumpInfo + a lazy stream of Article / Redirect records.

This is the adapter around mwxml: its exceptions (and expat's, bz2's, gzip's) are translated
into ``DumpError`` here, both while reading ``<siteinfo>`` and later while iterating, since a
truncated file only fails when the reader reaches the cut.
"""

from __future__ import annotations

import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import ParseError

import mwxml
from mwxml.element_iterator import ElementIterator, EventPointer
from mwxml.iteration.site_info import SiteInfo

from feedserver.errors import DumpError
from feedserver.ingest.dumpfile import describe, open_dump
from feedserver.ingest.multistream import DumpSlice
from feedserver.ingest.pages import PageConverter
from feedserver.ingest.pagexml import PageReader
from feedserver.ingest.siteinfo import DumpInfo, derive_info
from feedserver.models import Article, Redirect

__all__ = ["DumpInfo", "DumpRecords", "open_dump", "read_dump"]

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# What a bad file can raise inside mwxml / expat / the decompressors.
_READ_ERRORS = (ParseError, mwxml.errors.MalformedXML, AssertionError, OSError, EOFError,
                ValueError, zlib.error, StopIteration)


def _fail(path: Path, exc: BaseException) -> DumpError:
    cause = describe(exc)
    if isinstance(exc, StopIteration):
        cause = "file is empty"
    elif isinstance(exc, ParseError):
        cause = f"malformed XML ({cause})"
    elif isinstance(exc, AssertionError):
        cause = f"not a MediaWiki dump ({cause or 'unexpected structure'})"
    return DumpError(f"cannot read dump {path.name}: {cause}", source=str(path))


def read_dump(
    path: Path,
    *,
    wiki: str | None = None,
    namespaces: set[int] | None = None,
    part: DumpSlice | None = None,
) -> tuple[DumpInfo, DumpRecords]:
    """Read ``<siteinfo>`` now; return it with a lazy iterator over the pages' records.

    ``wiki`` overrides the project id derived from the dump; ``namespaces`` keeps only pages
    in those namespaces. The iterator yields one Article per non-redirect page (its latest
    revision) and one Redirect per redirect page; it closes the file when exhausted or closed.
    ``part`` reads one slice of a multistream bz2 dump (``multistream.split_multistream``).
    Raises DumpError (now or while iterating) for anything that is not a readable dump.
    """
    stream = open_dump(path, part=part)
    try:
        info, reader = _open(stream, path, wiki)
    except _READ_ERRORS as exc:
        stream.close()
        raise _fail(path, exc) from exc
    except BaseException:
        stream.close()
        raise
    return info, DumpRecords(_records(stream, path, info, reader, namespaces), stream)


class DumpRecords(Iterator[Article | Redirect]):
    """The records of one dump. ``close()`` releases the file at any point, even before the
    first record (closing a generator that never started would not run its ``finally``)."""

    def __init__(self, records: Generator[Article | Redirect], stream: BinaryIO) -> None:
        self._records = records
        self._stream = stream

    def __next__(self) -> Article | Redirect:
        return next(self._records)

    def close(self) -> None:
        self._records.close()
        self._stream.close()


def _open(stream: BinaryIO, path: Path, wiki: str | None) -> tuple[DumpInfo, PageReader]:
    pointer = EventPointer.from_file(stream)
    _, root = next(pointer)
    element = ElementIterator(root, pointer)
    if element.tag != "mediawiki":
        raise AssertionError(f"root element is <{element.tag}>, expected <mediawiki>")
    # mwxml reads <siteinfo>; the pages are read from the same event stream by PageReader.
    site = None
    first = None
    for sub in element:
        if sub.tag == "siteinfo":
            site = SiteInfo.from_element(sub)
        elif sub.tag in ("page", "logitem"):
            first = sub.element
            break
        else:
            raise mwxml.errors.MalformedXML(
                f"Unexpected tag found when processing a <mediawiki>: '{sub.tag}'")
    if site is None:
        raise mwxml.errors.MalformedXML("<siteinfo> tag not found when processing a <mediawiki>")
    names = {int(ns.id): ns.name or "" for ns in site.namespaces or ()}
    info = derive_info(
        dbname=site.dbname,
        base=site.base,
        site_name=site.name,
        xml_lang=root.attrib.get(_XML_LANG),
        namespaces=names,
        schema_version=root.attrib.get("version", ""),
        source=path.name,
        wiki=wiki,
    )
    ids = {ns.name: int(ns.id) for ns in site.namespaces or () if ns.name is not None}
    return info, PageReader(pointer.etree_events, root, first, ids)


def _records(stream: BinaryIO, path: Path, info: DumpInfo, reader: PageReader,
             namespaces: set[int] | None) -> Generator[Article | Redirect]:
    converter = PageConverter(info)
    try:
        for head, revisions in reader.pages():
            if namespaces is not None and head.namespace not in namespaces:
                continue
            record = converter.convert(head, revisions)
            if record is not None:
                yield record
    except _READ_ERRORS as exc:
        raise _fail(path, exc) from exc
    finally:
        stream.close()
