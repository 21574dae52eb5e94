"""Citation templates (``{{cite web}}``, ``{{cite book}}``, ``{{citation}}``…) as plain text.

The rendering follows Citation Style 1 in outline (authors (date). "Title". Work. Publisher.
pages. identifiers. Retrieved date.), which is what a reader sees; the parameters themselves
become the reference's ``metadata``.
"""

from __future__ import annotations

from collections.abc import Callable

from feedserver.ingest.structured.state import PageState

_AUTHOR_KEYS = (("last", "first"), ("author", ""), ("surname", "given"))
_WORK_KEYS = ("website", "work", "journal", "newspaper", "magazine", "periodical",
              "encyclopedia", "encyclopaedia", "dictionary", "series")
_MAX_AUTHORS = 4


def citation_kind(lowered_name: str) -> str:
    """``cite web`` -> ``web``; ``citation`` -> ``citation``."""
    kind = lowered_name[5:].strip() if lowered_name.startswith("cite ") else lowered_name
    return kind or "citation"


def render_citation(lowered_name: str, named: dict[str, str], state: PageState,
                    expand: Callable[[str], str]) -> str:
    """The citation as text (still holding links for the inline pass)."""
    kind = citation_kind(lowered_name)
    if state.cite_capture is None:
        state.cite_capture = (kind, named)

    def value(*keys: str) -> str:
        for key in keys:
            raw = named.get(key)
            if raw:
                return " ".join(expand(raw).split())
        return ""

    authors: list[str] = []
    for index in ("", "1", "2", "3", "4"):
        if index == "1" and authors:
            continue
        for last_key, first_key in _AUTHOR_KEYS:
            last = value(last_key + index)
            if last:
                first = value(first_key + index) if first_key else ""
                authors.append(f"{last}, {first}" if first else last)
                break
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
        pieces.append(title if kind == "book" and not chapter else f'"{title}"')
    for piece in (work, publisher if publisher != work else ""):
        if piece:
            pieces.append(piece)
    if pages:
        pieces.append(f"pp. {pages}")
    elif page:
        pieces.append(f"p. {page}")
    for key, label in (("isbn", "ISBN "), ("doi", "doi:"), ("issn", "ISSN "), ("pmid", "PMID ")):
        found = value(key)
        if found:
            pieces.append(label + found)
    retrieved = value("access-date", "accessdate")
    if retrieved:
        pieces.append(f"Retrieved {retrieved}")
    text = ". ".join(p.rstrip(".") for p in pieces if p)
    return text + "." if text else ""
