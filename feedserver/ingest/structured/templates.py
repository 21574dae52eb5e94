"""Template expansion without the templates: what each transclusion leaves in the text.

We have no template bodies, so most templates (navigation boxes, maintenance tags, icons)
leave nothing. A few leave what they would show, or a part of the record:
- infoboxes (per wiki, ``WikiProfile.is_infobox``) are taken out whole with their parameters;
- ``{{Short description|…}}`` gives the record's description;
- citation templates (``{{cite …}}``, ``{{citation}}``) render a plain citation (``cite.py``);
- footnote templates (``sfn``, ``efn``, ``refn``, ``r``, ``#tag:ref``) become citations;
- text templates (``lang``, ``nowrap``, ``convert``, Wikivoyage listings…) leave their text;
- magic words for markup characters (``{{!}}``, ``{{=}}``) leave those characters.
Citation sentinels inside a dropped template are kept, so no reference loses its citation.
"""

from __future__ import annotations

import re

from feedserver.ingest.structured.cite import render_citation
from feedserver.ingest.structured.inline import plain
from feedserver.ingest.structured.references import use_ref
from feedserver.ingest.structured.scan import (
    CITE,
    MAX_DEPTH,
    brace_spans,
    named_params,
    named_values,
    normalize_name,
    split_params,
)
from feedserver.ingest.structured.state import InfoboxRef, PageState

_CITES = re.compile(r"\ue000\d+\ue001")
_MAGIC = {"!": "|", "=": "=", "!!": "||", "(!": "{|", "!)": "|}", "!-": "|-", "'": "'",
          "snd": " \u2013 ", "spaced ndash": " \u2013 ", "ndash": "\u2013",
          "mdash": "\u2014", "nbsp": " ", "\u00b7": " \u00b7 ", "dot": " \u00b7 ",
          "middot": "\u00b7", "-": "", "clear": ""}
_MAGIC_LENGTH = max(map(len, _MAGIC))
# Templates that show one positional parameter (1-based), or the last one with -1.
_TEXT_PARAM = {"lang": 2, "nowrap": 1, "nobr": 1, "nobreak": 1, "small": 1, "smaller": 1,
               "big": 1, "larger": 1, "resize": -1, "abbr": 1, "transl": -1, "nihongo": 1,
               "ill": 1, "interlanguage link": 1, "visible anchor": 1, "vanchor": 1,
               "ipa": 1, "lang-rtl": 2, "sic": -1, "nowiki": 1, "keep together": 1,
               "font color": -1, "color": 2, "sup": 1, "sub": 1, "script": 2, "音": 1,
               "math": 1, "mvar": 1, "var": 1, "em": 1, "strong": 1, "samp": 1, "code": 1,
               "kbd": 1, "tooltip": 1, "term": 1, "defn": 1, "ubl": 0, "unbulleted list": 0,
               "hlist": 0, "plainlist": 1, "flatlist": 1, "bulleted list": 0,
               "marker": 0, "quote": 1, "blockquote": 1, "cquote": 1, "quote box": 0}
_TEXT_NAMED = {"marker": "name", "quote box": "quote", "quote": "text", "blockquote": "text"}
_LISTINGS = frozenset({"see", "do", "buy", "eat", "drink", "sleep", "listing", "go", "around",
                       "vcard"})
_LISTING_FIELDS = ("alt", "address", "directions", "phone", "hours", "price", "content")
_LISTING_KEYS = frozenset({"name", *_LISTING_FIELDS})
_FOOTNOTES = {"efn": "lower-alpha", "efn-la": "lower-alpha", "efn-ua": "upper-alpha",
              "efn-lr": "lower-roman", "efn-ur": "upper-roman", "efn-lg": "lower-greek",
              "notetag": "note", "refn": "", "#tag:ref": ""}
_SFN = frozenset({"sfn", "sfnp", "sfnm", "harvnb ref"})
_FUNCTION_TEXT = frozenset({"lc", "uc", "lcfirst", "ucfirst", "formatnum", "#tag:nowiki"})
_KIND_CACHE = 20_000
_PAGE_NAMES = frozenset({"pagename", "pagenamee", "fullpagename", "fullpagenamee",
                         "basepagename", "subpagename", "rootpagename", "articlepagename"})
_INFOBOX_MARK = "\n<infobox>\n"  # returned by identity only, never put in the text
_CONVERT_JOINERS = frozenset({"to", "-", "\u2013", "and", "or", "by", "x", "\u00d7", "+", "to(-)",
                              "and(-)"})


def expand(text: str, state: PageState, depth: int = 0) -> str:
    """``text`` with every top-level template replaced by what it leaves behind."""
    if "{{" not in text:
        return text
    if depth > MAX_DEPTH:
        state.problems.add("template_depth")
        return _kept_cites(text)
    spans, unmatched = brace_spans(text)
    if unmatched:
        state.problems.add("unbalanced_templates")
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end, kind in spans:
        out.append(text[last:start])
        inner = text[start + kind:end - kind]
        if kind == 3:  # {{{param|default}}}: the default, as on the template's own page
            _, bar, default = inner.partition("|")
            out.append(expand(default, state, depth + 1) if bar else "")
        else:
            # {{-}}, {{!}}, {{nbsp}} as written (a third of Wikivoyage's templates): what
            # _template gives them, without classifying them again (a long body is no magic
            # word: not worth hashing)
            shown = _MAGIC.get(inner) if len(inner) <= _MAGIC_LENGTH else None
            out.append(_template(inner, state, depth) if shown is None else shown)
        last = end
    out.append(text[last:])
    return "".join(out)


def _kept_cites(raw: str) -> str:
    return "".join(_CITES.findall(raw)) if CITE in raw else ""


def _kind(head: str, state: PageState) -> tuple[str, str]:
    """(what the template leaves, its lower-case name); cached per wiki by raw name, since
    the same few thousand names recur on every page."""
    kinds = state.profile.template_kinds
    found = kinds.get(head)
    if found is None:
        found = _classify(head, state)
        if len(kinds) > _KIND_CACHE:
            kinds.clear()
        kinds[head] = found
    return found


def _classify(head: str, state: PageState) -> tuple[str, str]:
    function, colon, first_arg = head.partition(":")
    if colon and "{{" not in function:
        key = function.strip().lower()
        if key in _FUNCTION_TEXT:
            return "function", key
        if key == "#tag" and first_arg.strip().lower() == "ref":
            return "footnote", "#tag:ref"
        if key.startswith("#") or key in ("defaultsort", "displaytitle", "subst", "safesubst"):
            return "drop", key
    name = normalize_name(head)
    lowered = name.lower()
    if lowered in _MAGIC:
        return "magic", lowered
    if lowered in _PAGE_NAMES:
        return "pagename", lowered
    if state.profile.is_infobox(name):
        return "infobox", name
    if lowered == "short description":
        return "description", lowered
    if lowered.startswith("cite ") or lowered in ("citation", "cite"):
        return "cite", lowered
    if lowered in _FOOTNOTES:
        return "footnote", lowered
    if lowered in _SFN:
        return "sfn", lowered
    if lowered in ("r", "rp", "convert", "cvt"):
        return lowered.replace("cvt", "convert"), lowered
    if lowered in _LISTINGS:
        return "listing", lowered
    if lowered.startswith("lang-"):
        return "lang", lowered
    if lowered in _TEXT_PARAM:
        return "text", lowered
    return "drop", lowered


def _template(body: str, state: PageState, depth: int) -> str:
    shown = _shown(body, state, depth)
    if shown is _INFOBOX_MARK:
        return "\n"  # its citations stay with its fields
    if CITE in body:  # citations in parameters the template does not show stay in the text
        missing = [c for c in _CITES.findall(body) if c not in shown]
        if missing:
            shown += "".join(missing)
    return shown


def _shown(body: str, state: PageState, depth: int) -> str:
    bar = body.find("|")
    head = body if bar < 0 else body[:bar]
    if "{{" in head or "[[" in head:
        head = split_params(body)[0]
    kind, key = _kind(head, state)
    if kind == "drop":
        return ""
    if kind == "magic":
        return _MAGIC[key]
    if kind == "pagename":  # the page's own title (articles have no namespace prefix)
        return state.title
    if kind == "function":
        return expand(head.partition(":")[2], state, depth + 1)
    params = split_params(body)[1:]
    if kind == "infobox":
        state.infoboxes.append(InfoboxRef(name=key, params=list(named_params(params)[1].items())))
        return _INFOBOX_MARK
    if kind == "description":
        if params and state.description is None:
            state.description = params[0].strip()
        return ""
    if kind == "cite":
        return render_citation(key, named_params(params)[1], state, lambda v: plain(
            v, state, lambda raw: expand(raw, state, depth + 1)))
    if kind == "footnote":  # {{#tag:ref|content|name=…}} splits like {{efn|content}}
        return _footnote(key, params, state, depth)
    if kind == "sfn":
        return _sfn(params, state)
    if kind == "rp":
        return ""
    if kind == "r":
        return "".join(use_ref(state, "", p.strip(), None)
                       for p in named_params(params)[0] if p.strip())
    if kind == "convert":
        return _convert(params, state, depth)
    if kind == "listing":
        return _listing(params, state, depth)
    if kind == "lang":
        positional = named_params(params)[0]
        return expand(positional[-1], state, depth + 1) if positional else ""
    return _text_param(key, params, state, depth)


def _text_param(lowered: str, params: list[str], state: PageState, depth: int) -> str:
    positional, named = named_params(params)
    field = _TEXT_NAMED.get(lowered)
    if field and named.get(field):
        return expand(named[field], state, depth + 1)
    index = _TEXT_PARAM[lowered]
    if index == 0:  # every positional parameter, as list lines
        return ", ".join(expand(p, state, depth + 1).strip() for p in positional if p.strip())
    if not positional:
        return ""
    chosen = positional[-1] if index < 0 else (
        positional[index - 1] if len(positional) >= index else positional[-1])
    return expand(chosen, state, depth + 1)


def _footnote(lowered: str, params: list[str], state: PageState, depth: int) -> str:
    positional, named = named_params(params)
    content = named.get("1") or named.get("text") or (positional[0] if positional else "")
    group = named.get("group", _FOOTNOTES[lowered])
    name = named.get("name") or None
    return use_ref(state, group, name, content.strip() or None)


def _sfn(params: list[str], state: PageState) -> str:
    positional, named = named_params(params)
    authors = [p.strip() for p in positional if p.strip()]
    year = authors.pop() if len(authors) > 1 else ""
    text = " & ".join(authors[:4]) + (f" {year}" if year else "")
    for key, prefix in (("p", "p. "), ("page", "p. "), ("pp", "pp. "), ("pages", "pp. "),
                        ("loc", "")):
        if named.get(key):
            text += f", {prefix}{named[key]}"
            break
    text = text.strip() + "."
    return use_ref(state, "", f"FOOTNOTE{''.join(text.split())}", text)


def _convert(params: list[str], state: PageState, depth: int) -> str:
    positional = [p.strip() for p in named_params(params)[0]]
    if not positional:
        return ""
    if len(positional) >= 4 and positional[1] in _CONVERT_JOINERS:
        shown = f"{positional[0]} {positional[1]} {positional[2]} {positional[3]}"
    else:
        shown = " ".join(positional[:2])
    return expand(shown, state, depth + 1)


def _listing(params: list[str], state: PageState, depth: int) -> str:
    # Speed: a listing has ~17 named parameters (lat, long, url, email, wikidata...) and
    # shows 8; only those are kept.
    named = named_values(params, _LISTING_KEYS)
    name = named.get("name", "")
    pieces = [name] if name else []
    for key in _LISTING_FIELDS:
        value = named.get(key, "").strip()
        if value:
            pieces.append(f"({value})" if key == "alt" else value)
    return expand(", ".join(pieces), state, depth + 1)
