"""Citation templates (``{{cite web}}``, ``{{cite book}}``, ``{{citation}}``…) as plain text.

The rendering follows Citation Style 1 in outline (authors (date). "Title". Work. Publisher.
pages. identifiers. Retrieved date.), which is what a reader sees; the parameters themselves
become the reference's ``metadata``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from feedserver.ingest.structured.inline import link
from feedserver.ingest.structured.state import PageState

_WORK_KEYS = ("website", "work", "journal", "newspaper", "magazine", "periodical",
              "encyclopedia", "encyclopaedia", "dictionary", "series")
_MAX_AUTHORS = 4
_URL = re.compile(r"^(?:https?:|ftp:|//)[^\s\[\]<>\"]+$", re.I)


def citation_kind(lowered_name: str) -> str:
    """``cite web`` -> ``web``; ``citation`` -> ``citation``."""
    kind = lowered_name[5:].strip() if lowered_name.startswith("cite ") else lowered_name
    return kind or "citation"


def render_citation(lowered_name: str, named: dict[str, str], state: PageState,
                    plain: Callable[[str], str]) -> str:
    """The citation as text. Every parameter is made plain once (``plain``); those values
    are the reference's metadata, and the title links to ``url`` when there is one."""
    kind = citation_kind(lowered_name)
    values = {key: text for key, text in ((k, plain(v)) for k, v in named.items() if k and v)
              if text}
    if state.cite_capture is None:
        state.cite_capture = (kind, values)
    get = values.get

    def value(*keys: str) -> str:
        for key in keys:
            found = get(key)
            if found:
                return found
        return ""

    authors: list[str] = []
    for index in ("", "1", "2", "3", "4"):
        if index == "1" and authors:
            continue
        last = get("last" + index) or get("author" + index) or get("surname" + index)
        if last:
            first = get("first" + index) or get("given" + index)
            authors.append(f"{last}, {first}" if first else last)
    if not authors:
        joined = value("authors", "vauthors", "people")
        authors = [joined] if joined else []
    date = value("date", "year")
    title = value("title", "script-title", "trans-title")
    chapter = value("chapter", "contribution", "entry")
    work = value(*_WORK_KEYS)
    publisher = value("publisher", "institution")
    pages = value("pages")
    page = value("page", "at")
    pieces: list[str] = []
    head = "; ".join(authors[:_MAX_AUTHORS])
    if head or date:
        pieces.append(f"{head} ({date})".strip() if head and date else head or date)
    if chapter:
        pieces.append(f'"{chapter}"')
    if title:
        shown = title if kind == "book" and not chapter else f'"{title}"'
        url = get("url")
        pieces.append(link(state, url, shown) if url and _URL.match(url) else shown)
    for piece in (work, publisher if publisher != work else ""):
        if piece:
            pieces.append(piece)
    if pages:
        pieces.append(f"pp. {pages}")
    elif page:
        pieces.append(f"p. {page}")
    for key, label in (("isbn", "ISBN "), ("doi", "doi:"), ("issn", "ISSN "), ("pmid", "PMID ")):
        found = get(key)
        if found:
            pieces.append(label + found)
    retrieved = value("access-date", "accessdate")
    if retrieved:
        pieces.append(f"Retrieved {retrieved}")
    text = ". ".join(p.rstrip(".") for p in pieces if p)
    return text + "." if text else ""
