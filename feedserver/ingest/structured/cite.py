"""Citation templates (``{{cite web}}``, ``{{cite book}}``, ``{{citation}}``…) as plain text.

The rendering follows Citation Style 1 in outline (authors (date). "Title". Work. Publisher.
pages. identifiers. Retrieved date.), which is what a reader sees; the parameters themselves
become the reference's ``metadata``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from feedserver.ingest.structured.inline import MARKUP_CHARS, link
from feedserver.ingest.structured.state import PageState

_WORK_KEYS = ("website", "work", "journal", "newspaper", "magazine", "periodical",
              "encyclopedia", "encyclopaedia", "dictionary", "series")
_MAX_AUTHORS = 4
# (index, last, author, surname, first, given) parameter names of the authors we render
_AUTHOR_KEYS = tuple((index, f"last{index}", f"author{index}", f"surname{index}",
                      f"first{index}", f"given{index}") for index in ("", "1", "2", "3", "4"))
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
    values: dict[str, str] = {}
    for key, raw in named.items():
        if key and raw:
            # most parameters (dates, names, URLs) hold no markup: plain()'s own first test,
            # without the call
            text = " ".join(raw.split()) if MARKUP_CHARS.search(raw) is None else plain(raw)
            if text:
                values[key] = text
    if state.cite_capture is None:
        state.cite_capture = (kind, values)
    get = values.get  # every value is a non-empty string: "a or b" takes the first given

    authors: list[str] = []
    for index, last_key, author_key, surname_key, first_key, given_key in _AUTHOR_KEYS:
        if index == "1" and authors:
            continue
        last = get(last_key) or get(author_key) or get(surname_key)
        if last:
            first = get(first_key) or get(given_key)
            authors.append(f"{last}, {first}" if first else last)
    if not authors:
        joined = get("authors") or get("vauthors") or get("people")
        authors = [joined] if joined else []
    date = get("date") or get("year") or ""
    title = get("title") or get("script-title") or get("trans-title") or ""
    chapter = get("chapter") or get("contribution") or get("entry") or ""
    work = ""
    for key in _WORK_KEYS:
        work = get(key) or ""
        if work:
            break
    publisher = get("publisher") or get("institution") or ""
    pages = get("pages") or ""
    page = get("page") or get("at") or ""
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
    retrieved = get("access-date") or get("accessdate")
    if retrieved:
        pieces.append(f"Retrieved {retrieved}")
    text = ". ".join(p.rstrip(".") for p in pieces if p)
    return text + "." if text else ""
