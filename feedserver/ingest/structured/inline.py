"""Inline markup -> plain text with sentinels, and sentinels -> a part's value, links,
citations and images.

``markup`` runs over a whole page (or a fragment: a cell, an infobox value, a reference) once
templates, refs and tables are gone: external links, wikilinks (file links become images,
category and interlanguage links vanish), bold/italic quotes, HTML tags, behaviour switches.
``finish`` turns one block's text into its final value: links, citations and images taken
out of the sentinels, entities decoded, whitespace collapsed, and any markup left (from broken
wikitext) removed and counted as ``markup_leak``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import msgspec

from feedserver.ingest.structured.images import image
from feedserver.ingest.structured.profile import TEXT_CACHE
from feedserver.ingest.structured.records import Citation, Image, PartLink
from feedserver.ingest.structured.scan import (
    CITE,
    IMAGE,
    IMAGE_END,
    LINK,
    LINK_END,
    LINK_MID,
    SENTINELS,
)
from feedserver.ingest.structured.state import ImageRef, PageState

_EXTERNAL = re.compile(
    r"\[((?:https?:|ftps?:|mailto:|news:|ircs?:|gopher:|sftp:|ssh:|svn:|git:|tel:|telnet:|//)"
    r"[^\s\[\]<>\"]+)(?:[ \t\xa0]+([^\]\n]*))?\]", re.I)
_INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(?:-[a-z]{1,8})*$")
_QUOTES = re.compile(r"''+")  # (not '{2,}: a literal prefix makes the search fast)
_BREAK = re.compile(r"<(?:br\s*/?|/br)>", re.I)
_TAGS = re.compile(
    r"</?(?:span|div|small|big|sup|sub|b|i|u|s|em|strong|abbr|center|font|cite|blockquote|q|"
    r"poem|p|tt|kbd|var|samp|del|ins|mark|bdi|bdo|ruby|rt|rp|dfn|time|data|wbr|hr|li|ul|ol|dl|"
    r"dt|dd|table|tr|td|th|caption|strike|section|onlyinclude|noinclude|templatestyles|code|"
    r"gallery|ref|references|nowiki|h[1-6]|a|img|meta|link|translate|tvar|languages|"
    r"graph|div\d*)\b[^>]*>", re.I)
_SWITCH = re.compile(r"__[A-ZÀ-Ÿ_]+__")
_LINK = re.compile("\ue006(\\d+)\ue007([^\ue006\ue008]*)\ue008")
_LINK_OPEN = re.compile("\ue006\\d+\ue007")
_CITE = re.compile("\ue000(\\d+)\ue001")
_IMAGE = re.compile("\ue004(\\d+)\ue005")
_LEAK = re.compile(r"\{\{|\}\}|\[\[|\]\]|''|<\s*/?\s*ref|[\ue000-\ue00f]", re.I)
_LINK_TEXT_SUSPECT = re.compile("[&{}\\[\\]'<(\ue000-\ue00f]| [,.;:!?)]")
MARKUP_CHARS = re.compile(r"[\[\]{}<>&'\ue000-\ue00f]")
_STRUCTURE_CHARS = re.compile(r"[\[\]{}<>\ue000-\ue00f]")
_REF_TAG = re.compile(r"<\s*/?\s*ref", re.I)
_EMPTY_PARENS = re.compile(r" ?\([ ;,]*\)")
_ANY_EMPTY_PARENS = re.compile(r"\([ ;,]*\)")  # starts with a literal: a fast search
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,.;:!?)])")
_ANY_SPACE_BEFORE_PUNCT = re.compile(r" [,.;:!?)]")
_PX = re.compile(r"^(?:(\d+)\s*)?(?:x\s*\d+\s*)?px$")
_IMAGE_OPTIONS = frozenset({
    "thumb", "thumbnail", "frame", "framed", "frameless", "left", "right", "center", "centre",
    "none", "border", "baseline", "middle", "sub", "super", "top", "text-top", "bottom",
    "text-bottom", "upright", "mini", "miniatur", "μικρογραφία", "vignette", "gauche", "droite",
    "links", "rechts", "αριστερά", "δεξιά", "κέντρο"})
_BLOCK_OPTIONS = frozenset({"thumb", "thumbnail", "frame", "framed", "frameless", "left",
                            "right", "center", "centre", "mini", "miniatur", "μικρογραφία",
                            "vignette", "gauche", "droite", "links", "rechts", "αριστερά",
                            "δεξιά", "κέντρο"})
_OPTION_PREFIXES = ("alt=", "link=", "page=", "class=", "lang=", "upright=", "thumb=",
                    "thumbnail=", "start=", "end=", "loop", "muted", "title=")
_LINK_PASSES = 4  # innermost links first: a file caption may hold links


class Rendered(msgspec.Struct):
    """One block's final value and what it links to (a Struct: built in C, once per block)."""

    value: str
    links: list[PartLink] | None = None
    citations: list[Citation] | None = None
    images: list[Image] | None = None


def markup(text: str, state: PageState) -> str:
    """Inline markup of ``text`` replaced by plain text and sentinels."""
    if "[" in text:
        if "[" in text.replace("[[", ""):
            text = _EXTERNAL.sub(lambda m: _external(m, state), text)
        if "[[" in text:
            wikilink = _wikilink_pattern(state)
            for _ in range(_LINK_PASSES):
                text, count = wikilink.subn(lambda m: _wikilink(m, state), text)
                if not count or "[[" not in text:
                    break
    if "''" in text:
        text = _QUOTES.sub("", text)
    if "<" in text:
        text = _TAGS.sub("", _BREAK.sub(" ", text))
    if "__" in text:
        text = _SWITCH.sub("", text)
    return text


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _wikilink_pattern(state: PageState) -> re.Pattern[str]:
    trail = state.profile.link_trail
    found = _PATTERNS.get(trail)
    if found is None:
        found = _PATTERNS[trail] = re.compile(r"\[\[([^\[\]]*)\]\](" + trail + ")")
    return found


def link(state: PageState, url: str, text: str) -> str:
    """``text`` marked as a link to ``url`` (found again by ``finish``)."""
    state.links.append(url)
    return f"{LINK}{len(state.links) - 1}{LINK_MID}{text}{LINK_END}"


def _external(match: re.Match[str], state: PageState) -> str:
    return link(state, match.group(1), match.group(2) or "")


def _wikilink(match: re.Match[str], state: PageState) -> str:
    inner, trail = match.group(1), match.group(2)
    cache = state.profile.wikilinks
    known = cache.get(inner)
    if known is not None:
        url, text = known
        return link(state, url, text + trail) if url else trail
    target, pipe, label = inner.partition("|")
    title = target.strip()
    colon_first = title.startswith(":")
    if colon_first:
        title = title[1:].strip()
    if not title or "\n" in title:
        return label + trail if pipe else ""
    prefix, colon, rest = title.partition(":")
    if colon and not colon_first:
        key = prefix.strip().casefold()
        if key in state.profile.file_prefixes:
            return _file(rest, label if pipe else "", state) + trail
        if key in state.profile.category_prefixes or _INTERLANGUAGE.match(prefix.strip()):
            if len(cache) < TEXT_CACHE:
                cache[inner] = ("", "")
            return trail
    if not pipe:
        text = target.strip().lstrip(":")
    elif label.strip():
        text = label
    else:  # the pipe trick: [[Paris, Texas|]] shows "Paris"
        text = re.sub(r"\s*\(.*\)\s*$", "", rest if colon else title).split(",")[0]
    if title.startswith("#"):  # a link into this page: its url names the page
        return link(state, state.profile.page_url(state.title + title), text + trail)
    url = state.profile.page_url(title)
    if len(cache) < TEXT_CACHE:
        cache[inner] = (url, text)
    return link(state, url, text + trail)


def _file(name: str, options: str, state: PageState) -> str:
    caption, alt, width, block = "", None, None, False
    for option in options.split("|") if options else ():
        key = option.strip()
        lowered = key.lower()
        if lowered in _BLOCK_OPTIONS:
            block = True
        if lowered in _IMAGE_OPTIONS:
            continue
        px = _PX.match(lowered)
        if px:
            width = int(px.group(1)) if px.group(1) and len(px.group(1)) < 6 else width
            continue
        if lowered.startswith("alt="):
            alt = key[4:].strip()
            continue
        if lowered.startswith(_OPTION_PREFIXES):
            continue
        caption = option
    state.images.append(ImageRef(file=name, caption=caption, alt=alt, width=width,
                                 block=block))
    return f"{IMAGE}{len(state.images) - 1}{IMAGE_END}"


def finish(raw: str, state: PageState, *, with_images: bool = True) -> Rendered:
    """One block's final value and what it links to."""
    links: list[PartLink] | None = None
    citations: list[Citation] | None = None
    images: list[Image] | None = None
    if IMAGE in raw:
        if with_images:
            images = [img for img in (image_record(state.images[int(i)], state)
                                      for i in _IMAGE.findall(raw)) if img is not None]
        raw = _IMAGE.sub("", raw)
    if CITE in raw:
        citations = [state.citations[int(i)] for i in _CITE.findall(raw)]
        raw = _CITE.sub("", raw)
    if LINK in raw:
        links = []
        for _ in range(_LINK_PASSES):  # more than one pass: a link inside a link's text
            links += [PartLink(url=state.links[int(index)], text=_link_text(text, state) or None)
                      for index, text in _LINK.findall(raw)]
            # literal replacements (no per-match callback); the closing marks by str.replace:
            # an alternation with them has no literal first character, a slow search
            raw = _LINK_OPEN.sub("", raw).replace(LINK_END, "")
            if LINK not in raw:
                break
    return Rendered(clean(raw, state), links or None, citations or None, images or None)


def text_of(raw: str, state: PageState) -> str:
    """``finish(markup(raw), with_images=False).value``: the plain value of a short fragment
    (a heading); without markup or sentinels that is ``clean(raw)``, remembered per wiki."""
    cache = state.profile.heading_texts
    value = cache.get(raw)
    if value is not None:
        return value
    if ("[" in raw or "''" in raw or "<" in raw or "__" in raw or CITE in raw or LINK in raw
            or IMAGE in raw):
        return finish(markup(raw, state), state, with_images=False).value
    leaked = "markup_leak" in state.problems
    value = clean(raw, state)
    # nothing but the value came of it: reusable
    if not leaked and "markup_leak" not in state.problems and len(cache) < TEXT_CACHE:
        cache[raw] = value
    return value


def _link_text(raw: str, state: PageState) -> str:
    cache = state.profile.link_texts
    value = cache.get(raw)
    if value is not None:
        return value
    if _LINK_TEXT_SUSPECT.search(raw) is None:  # most link texts: words and spaces only
        value = " ".join(raw.split())
        if len(cache) < TEXT_CACHE:
            cache[raw] = value
        return value
    if CITE in raw or IMAGE in raw or LINK in raw:
        raw = _strip_sentinels(raw)
    return clean(raw, state)


def plain(raw: str, state: PageState, expand: Callable[[str], str]) -> str:
    """A template parameter's plain text; most (dates, URLs, names) need no parser at all."""
    if not MARKUP_CHARS.search(raw):
        return " ".join(raw.split())
    if not _STRUCTURE_CHARS.search(raw):  # entities and quotes only
        return clean(_QUOTES.sub("", raw), state)
    return finish(markup(expand(raw), state), state, with_images=False).value


def clean(raw: str, state: PageState) -> str:
    """Final text: entities decoded, whitespace collapsed, leftover markup removed."""
    if "&" in raw:
        raw = html.unescape(raw)
    # Speed: a printable string holds no whitespace but " " (every other whitespace character
    # is a control or a separator) and no sentinel (private use): once stripped, it needs no
    # split and join (one new string per word) unless it has two spaces in a row.
    raw = raw.strip()
    printable = raw.isprintable()
    value = raw if printable and "  " not in raw else " ".join(raw.split())
    if "(" in value and _ANY_EMPTY_PARENS.search(value):
        value = _EMPTY_PARENS.sub("", value)
    if _ANY_SPACE_BEFORE_PUNCT.search(value):
        value = _SPACE_BEFORE_PUNCT.sub("", value)
    # Speed: one-character tests first (memchr); a two-character "in" or a regex character
    # class costs several instructions per character of every value.
    if ((("{" in value or "}" in value or "[" in value or "]" in value or "'" in value)
         and ("{{" in value or "}}" in value or "[[" in value or "]]" in value or "''" in value))
            or ("<" in value and _REF_TAG.search(value))
            or (not printable and not value.isascii() and not value.isprintable()
                and SENTINELS.search(value))):
        state.problems.add("markup_leak")
        value = " ".join(_LEAK.sub(" ", SENTINELS.sub("", value)).split())
    return value


def image_record(ref: ImageRef, state: PageState) -> Image | None:
    caption = clean(_strip_sentinels(markup(ref.caption, state)), state) if ref.caption else None
    alt = clean(_strip_sentinels(markup(ref.alt, state)), state) if ref.alt else None
    return image(ref.file, caption=caption, alt=alt, width=ref.width)


def caption_of(ref: ImageRef, state: PageState) -> Rendered:
    return finish(markup(ref.caption, state), state, with_images=False)


def _strip_sentinels(raw: str) -> str:
    if LINK in raw:
        for _ in range(_LINK_PASSES):
            raw, count = _LINK.subn(r"\2", raw)
            if not count:
                break
    return SENTINELS.sub("", _CITE.sub("", _IMAGE.sub("", raw)))
