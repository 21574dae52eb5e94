"""Low-level wikitext scanning: comments and raw blocks, balanced braces, template parameters.

Everything here is linear in the input (regex passes plus one loop over brace runs), so a
hostile page costs no more than a long one. Sentinels: the parser marks what it has taken out
of the text (citations, links, images, tables) with private-use characters followed by an index,
and finds them again per paragraph; ``SENTINELS`` are removed from the input first, so the
page itself can never forge one.
"""

from __future__ import annotations

import re

# Private-use sentinels: <open> index <close> (link: <open> index <mid> text <close>).
CITE, CITE_END = "\ue000", "\ue001"
TABLE, TABLE_END = "\ue002", "\ue003"
IMAGE, IMAGE_END = "\ue004", "\ue005"
LINK, LINK_MID, LINK_END = "\ue006", "\ue007", "\ue008"
GALLERY, GALLERY_END = "\ue009", "\ue00a"
HEADING = "\ue00b"  # starts a line that was a heading before inline markup was removed
SENTINELS = re.compile("[\ue000-\ue00f]")

# Blocks dropped with their content: not prose (formulas, scores, maps, template data) or
# hidden on the page itself (includeonly).
_DROPPED = ("math", "chem", "ce", "score", "timeline", "graph", "templatedata", "mapframe",
            "maplink", "hiero", "includeonly", "indicator", "categorytree", "inputbox",
            "imagemap", "phonos", "charinsert", "references-dummy")
# Blocks whose content is literal text, not markup.
_LITERAL = ("nowiki", "pre", "syntaxhighlight", "source")
# (the content as runs without "<" and "<" not closing the block: a lazy ``(.*?)`` would try
# the closing tag after every character)
_RAW = re.compile(r"<(" + "|".join(_DROPPED + _LITERAL) + r")\b[^>]*?"
                  r"(?:/>|>((?:[^<]++|<(?!/\1\s*>))*+)(?:</\1\s*>|\Z))", re.I)
_LITERAL_SET = frozenset(_LITERAL)
# Literal text keeps its characters as entities, decoded only once the value is final.
_ESCAPES = str.maketrans({c: f"&#{ord(c)};" for c in "&<>[]{}|'=*#:;!~_-"})
_BRACES = re.compile(r"\{\{+|\}\}+")
MAX_DEPTH = 12  # template expansion nesting; deeper content is dropped (and counted)


def escape_literal(text: str) -> str:
    return text.translate(_ESCAPES)


def strip_raw(text: str) -> str:
    """Comments removed, dropped blocks removed, literal blocks turned into inert text."""
    # Speed: in UTF-16-LE every sentinel (U+E000-U+E00F) has the byte E0, which ordinary
    # text rarely holds (U+00E0, U+03E0...: then the regex runs and finds nothing). Encoding
    # plus one memchr cost half of sixteen one-character searches (those for U+E000 and U+E003
    # go char by char in a Greek page), and those a third of the regex character class.
    if not text.isascii() and b"\xe0" in text.encode("utf-16-le", "surrogatepass"):
        text = SENTINELS.sub("", text)
    if "<!--" in text:
        text = _strip_comments(text)
    if "<" in text:
        text = _RAW.sub(_raw_block, text)
    return text


def _strip_comments(text: str) -> str:
    r"""Comments (``<!--`` to the first ``-->`` or the end) removed, by ``str.find``: the
    regex ``<!--.*?(?:-->|\Z)`` tries its end after every character of every comment."""
    out: list[str] = []
    find = text.find
    last = 0
    start = find("<!--")
    while start >= 0:
        out.append(text[last:start])
        end = find("-->", start + 4)
        if end < 0:
            return "".join(out)
        last = end + 3
        start = find("<!--", last)
    out.append(text[last:])
    return "".join(out)


def _raw_block(match: re.Match[str]) -> str:
    if match.group(1).lower() in _LITERAL_SET and match.group(2):
        return escape_literal(match.group(2))
    return ""


def brace_spans(text: str) -> tuple[list[tuple[int, int, int]], bool]:
    """Top-level ``{{…}}`` (kind 2) and ``{{{…}}}`` (kind 3) spans as (start, end, kind), and
    whether some braces stayed unmatched. Runs of braces pair up as MediaWiki's preprocessor
    does: a closing run closes the nearest open run, three braces at a time when both have
    three, else two."""
    if "{{{" not in text and "}}}" not in text:
        simple = _simple_spans(text)
        if simple is not None:
            return simple, False
    stack: list[list[int]] = []  # [start of the run, braces of it still open]
    spans: list[tuple[int, int, int]] = []
    unmatched = False
    for match in _BRACES.finditer(text):
        run = match.group()
        if run[0] == "{":
            stack.append([match.start(), len(run)])
            continue
        left = len(run)
        pos = match.start()
        while left >= 2 and stack:
            top = stack[-1]
            take = 3 if top[1] >= 3 and left >= 3 else 2
            if top[1] < 2:
                stack.pop()
                continue
            top[1] -= take
            spans.append((top[0] + top[1], pos + take, take))
            pos += take
            left -= take
            if top[1] < 2:
                unmatched = unmatched or top[1] == 1
                stack.pop()
        unmatched = unmatched or left > 0
    if any(count >= 2 for _, count in stack):
        unmatched = True
    return _outermost(spans), unmatched


def _simple_spans(text: str) -> list[tuple[int, int, int]] | None:
    """The common case, every run exactly two braces and all of them matched: one stack of
    positions, no sorting. None sends the text to the general algorithm.

    Speed: ``str.find`` for each kind of pair (a fast substring search); a regex for either
    pair has no literal first character and tests every character of the page."""
    spans: list[tuple[int, int, int]] = []
    depth = 0
    start = 0
    find = text.find
    opening = find("{{")
    closing = find("}}")
    while closing >= 0:
        if 0 <= opening < closing:
            if depth == 0:
                start = opening
            depth += 1
            opening = find("{{", opening + 2)
        elif depth == 0:
            return None  # a stray "}}"
        else:
            depth -= 1
            if depth == 0:
                spans.append((start, closing + 2, 2))
            closing = find("}}", closing + 2)
    return None if depth or opening >= 0 else spans


def _outermost(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    spans.sort(key=lambda s: (s[0], -s[1]))
    top: list[tuple[int, int, int]] = []
    end = -1
    for span in spans:
        if span[0] >= end:
            top.append(span)
            end = span[1]
    return top


_SPLIT = re.compile(r"\{\{|\}\}|\[\[|\]\]|\|")


def split_params(body: str) -> list[str]:
    """A template body ``name|a|k=v`` split on the pipes outside nested templates and links."""
    if "{{" not in body and "[[" not in body:
        return body.split("|")
    parts: list[str] = []
    depth = 0
    start = 0
    for match in _SPLIT.finditer(body):
        token = match.group()
        if token in ("{{", "[["):
            depth += 1
        elif token in ("}}", "]]"):
            depth = max(0, depth - 1)
        elif depth == 0:
            parts.append(body[start:match.start()])
            start = match.end()
    parts.append(body[start:])
    return parts


def named_params(params: list[str]) -> tuple[list[str], dict[str, str]]:
    """(positional values, named values) of a split template body without its name."""
    positional: list[str] = []
    named: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        if eq and "{{" not in key and "[[" not in key and "<" not in key:
            named[key.strip()] = value.strip()
        else:
            positional.append(param)
    return positional, named


def named_values(params: list[str], keys: frozenset[str]) -> dict[str, str]:
    """The named values of ``named_params`` whose key is one of ``keys`` (stripped, the last
    one wins), without building the others: for a template that shows a few of its many
    parameters (a key holding "{{", "[[" or "<" is never one of ``keys``)."""
    named: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        if eq and (key := key.strip()) in keys:
            named[key] = value.strip()
    return named


def normalize_name(raw: str) -> str:
    """``  infobox_settlement `` -> ``Infobox settlement``."""
    name = " ".join(raw.replace("_", " ").split())
    return name[:1].upper() + name[1:]
