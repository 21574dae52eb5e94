"""Property tests: any text, however hostile, gives a record without markup and never raises.

Inputs are built from the pieces of wikitext syntax (braces, brackets, pipes, tags, table and
list markers, quotes, entities, our own private-use sentinel characters) so that hypothesis
explores unbalanced and interleaved constructs far more often than random text would.
"""

from __future__ import annotations

import re

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.ingest.structured import clean_text, structured_content
from feedserver.ingest.structured.scan import named_params, named_values
from feedserver.models import Article, ArticleBody, Language, Namespace, Project

LEAK = re.compile(r"\{\{|\[\[|<ref|'''|[\ue000-\ue00f]", re.I)
NOT_VALUES = {"url", "content_url", "identifier"}
PIECES = [
    "{{", "}}", "{{{", "}}}", "[[", "]]", "[", "]", "|", "||", "!!", "=", "==", "===", "\n",
    "\n\n", "*", "#", ":", ";", "----", "'''", "''", "<ref>", "</ref>", '<ref name="a">',
    '<ref name="a"/>', "<ref group=g>", "<references/>", "<references>", "</references>",
    "{|", "|}", "|-", "|+", "!", "rowspan=2", "colspan=99999", "<!--", "-->", "<nowiki>",
    "</nowiki>", "<pre>", "<gallery>", "</gallery>", "<br>", "<span>", "&amp;", "&lt;ref&gt;",
    "&#91;&#91;", "File:", "Category:", "Image:x.jpg", "thumb", "http://x.org", "Infobox",
    "cite web", "url=http://x", "title=T", "efn", "sfn", "r", "Short description", "convert",
    "#if:", "!", "PAGENAME", "\ue000", "\ue001", "\ue006", "\ue007", "\ue008", "\ue002",
    "\ue00b", "word", " ", "Ω", "αβγ", "x.png",
]
WIKITEXT = st.lists(st.sampled_from(PIECES), max_size=80).map("".join)
ARTICLE_SETTINGS = settings(max_examples=300, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow])


def _article(text: str) -> Article:
    return Article(name="P", identifier=1, namespace=Namespace(identifier=0),
                   is_part_of=Project(identifier="enwiki", url="https://en.wikipedia.org"),
                   in_language=Language(identifier="en"),
                   article_body=ArticleBody(wikitext=text))


def _values(value: object, key: str = "") -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in NOT_VALUES for s in _values(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _values(v, key)]
    return [value] if isinstance(value, str) else []


@ARTICLE_SETTINGS
@given(WIKITEXT)
def test_markup_soup_never_raises_and_never_leaks(text: str) -> None:
    result = structured_content(_article(text))
    document = msgspec.to_builtins(result.content)
    for value in _values(document):
        assert not LEAK.search(value), value
    assert not LEAK.search(result.text)
    # every citation points at a reference, whatever the input
    identifiers = {r["identifier"] for r in document.get("references", [])}
    assert set(re.findall(r'"identifier":"(cite_note-[^"]*)"',
                          msgspec.json.encode(document.get("sections", [])).decode())) <= (
        identifiers)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_unicode_text_never_raises(text: str) -> None:
    result = structured_content(_article(text))
    msgspec.json.encode(result)
    assert not LEAK.search(clean_text(text))


def test_huge_and_deep_input_is_bounded() -> None:
    # deep nesting and long runs: linear scans and bounded recursion, no RecursionError
    for text in ("{{" * 5000 + "x" + "}}" * 5000, "[[" * 5000, "{|\n" * 2000,
                 "<ref>" * 3000, "*" * 10000 + " item", "{{a|" * 3000 + "}}" * 3000,
                 '{|\n| colspan="1000" rowspan="65534" | x\n' + "|-\n| y\n" * 200 + "|}"):
        result = structured_content(_article(text))
        for value in _values(msgspec.to_builtins(result.content)):
            assert not LEAK.search(value)


@given(st.lists(st.lists(st.sampled_from(
    [*PIECES, "name", "alt", "price", " name ", "lat", "=x"]), max_size=6).map("".join),
    max_size=12))
def test_named_values_are_named_params_of_those_keys(params: list[str]) -> None:
    # A listing reads only the parameters it shows (``named_values``): the same values as
    # ``named_params`` gives for those keys, whatever the parameters hold.
    keys = frozenset({"name", "alt", "price", "lat"})
    _, named = named_params(params)
    assert named_values(params, keys) == {k: v for k, v in named.items() if k in keys}
