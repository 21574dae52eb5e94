"""``<ref>`` tags -> citation sentinels in the text and reference list entries.

Numbering follows the Cite extension: an entry is numbered when first used (named refs reuse
their entry), ``[N]`` counts per group, and the entry's identifier is the ``cite_note`` anchor
MediaWiki gives it (``cite_note-NAME-N`` for named refs, ``cite_note-N`` otherwise).
List-defined refs (inside ``<references>…</references>``) fill the content of the named
entries used in the text; those never used are appended at the end.
"""

from __future__ import annotations

import re

from feedserver.ingest.structured.records import Citation
from feedserver.ingest.structured.scan import CITE, CITE_END
from feedserver.ingest.structured.state import PageState, RefEntry

# Contents up to the first closing tag are matched as runs without "<" and single "<" not
# opening that tag (possessive: no backtracking), the same span as a lazy ``(.*?)``, which
# would try the closing tag after every character.
_REFERENCES = re.compile(
    r"<references\b([^>]*?)(?:/>|>((?:[^<]++|<(?!/references\s*>))*+)(?:</references\s*>|\Z))",
    re.I)
_REF = re.compile(r"<ref(?=[\s>/])([^>]*?)(?:/>|>((?:[^<]++|<(?!/ref\s*>))*+)</ref\s*>)", re.I)
_OPEN_REF = re.compile(r"</?ref(?:\s[^>]*)?>", re.I)
_ATTR = re.compile(r"""(name|group)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'/>]+))""", re.I)
_ALPHA = "abcdefghijklmnopqrstuvwxyz"
_GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
_ROMAN = ((1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
          (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"))


def _attrs(raw: str) -> tuple[str, str | None]:
    group, name = "", None
    for key, dq, sq, bare in _ATTR.findall(raw):
        value = (dq or sq or bare).strip()
        if key.lower() == "group":
            group = value
        else:
            name = value or None
    return group, name


def _letters(n: int, alphabet: str) -> str:
    out = ""
    while n > 0:
        n, rest = divmod(n - 1, len(alphabet))
        out = alphabet[rest] + out
    return out


def label_text(group: str, label: int) -> str:
    """The marker the reader sees: ``[3]``, ``[c]`` for ``lower-alpha``, ``[note 3]``."""
    if not group:
        return f"[{label}]"
    if group == "lower-alpha":
        return f"[{_letters(label, _ALPHA)}]"
    if group == "upper-alpha":
        return f"[{_letters(label, _ALPHA).upper()}]"
    if group == "lower-greek":
        return f"[{_letters(label, _GREEK)}]"
    if group in ("lower-roman", "upper-roman"):
        roman, n = "", min(label, 3999)
        for value, digits in _ROMAN:
            while n >= value:
                roman, n = roman + digits, n - value
        return f"[{roman.upper() if group == 'upper-roman' else roman}]"
    return f"[{group} {label}]"


def identifier(entry: RefEntry) -> str:
    if entry.name:
        return f"cite_note-{'_'.join(entry.name.split())}-{entry.number}"
    return f"cite_note-{entry.number}"


def _entry(state: PageState, group: str, name: str | None, content: str | None) -> RefEntry:
    key = (group, name) if name else None
    entry = state.refs_by_name.get(key) if key else None
    if entry is None:
        label = state.group_counts[group] = state.group_counts.get(group, 0) + 1
        entry = RefEntry(number=len(state.refs) + 1, label=label, group=group, name=name,
                         content=content)
        state.refs.append(entry)
        if key:
            state.refs_by_name[key] = entry
    elif content and not entry.content:
        entry.content = content
    return entry


def use_ref(state: PageState, group: str, name: str | None, content: str | None) -> str:
    """Register one use of a reference; return the sentinel that marks it in the text."""
    entry = _entry(state, group, name, content)
    state.citations.append(Citation(identifier=identifier(entry), group=group or None,
                                    text=label_text(group, entry.label)))
    return f"{CITE}{len(state.citations) - 1}{CITE_END}"


def take_refs(text: str, state: PageState) -> str:
    """Every ``<ref>`` becomes a citation sentinel; ``<references>`` blocks disappear after
    lending their list-defined refs to the entries."""
    if "<" not in text:
        return text
    lists: list[tuple[str, str]] = []

    def cut_list(match: re.Match[str]) -> str:
        lists.append((_attrs(match.group(1))[0], match.group(2) or ""))
        return ""

    if "<references" in text or "<REFERENCES" in text:
        text = _REFERENCES.sub(cut_list, text)

    def one_ref(match: re.Match[str]) -> str:
        group, name = _attrs(match.group(1))
        content = match.group(2)
        return use_ref(state, group, name, content.strip() if content else None)

    text = _REF.sub(one_ref, text)
    for default_group, body in lists:
        for match in _REF.finditer(body):
            group, name = _attrs(match.group(1))
            content = match.group(2)
            if content and content.strip():
                _entry(state, group or default_group, name, content.strip())
    if "<ref" in text or "</ref" in text or "<REF" in text:
        text, count = _OPEN_REF.subn("", text)
        if count:
            state.problems.add("unclosed_ref")
    return text
