"""Wikitext helpers on small hand-written strings."""

from __future__ import annotations

import random
import re

import pytest

from feedserver.ingest.wikitext import (
    WikitextAnalyzer,
    lead_section,
    needs_parser,
    normalize_title,
    normalize_whitespace,
)
from feedserver.models import Link

EN = WikitextAnalyzer({0: "", 6: "File", 10: "Template", 14: "Category"}, "https://en.wikipedia.org")
EL = WikitextAnalyzer({0: "", 6: "Αρχείο", 10: "Πρότυπο", 14: "Κατηγορία"},
                      "https://el.wikivoyage.org")


def names(links: list[Link]) -> list[str]:
    return [link.name for link in links]


def test_lead_section_stops_at_first_heading() -> None:
    assert lead_section("Intro text.\n== History ==\nMore") == "Intro text.\n"
    assert lead_section("No headings at all") == "No headings at all"


def test_normalize_title() -> None:
    assert normalize_title("  infobox__person ") == "Infobox person"


def test_categories_dedupe_keep_order_and_sort_keys() -> None:
    text = "[[Category:B c|key]] [[category:a]] [[Category:B_c]] [[:Category:Linked]]"
    assert names(EN.categories(text)) == ["Category:B c", "Category:A"]
    assert EN.categories("[[Category:X y]]")[0].url == "https://en.wikipedia.org/wiki/Category:X_y"


def test_categories_use_localized_prefix_and_accept_english_alias() -> None:
    text = "[[Κατηγορία:Πόλεις]] [[Category:Ελλάδα]]"
    assert names(EL.categories(text)) == ["Κατηγορία:Πόλεις", "Κατηγορία:Ελλάδα"]


def test_templates_skip_magic_words_parser_functions_and_parameters() -> None:
    text = ("{{Infobox person|name={{{1}}}}} {{DEFAULTSORT:X}} {{#if:a|b}} {{PAGENAME}} "
            "{{formatnum:{{Inflation|US|1}}}} {{subst:Welcome}} {{infobox_person}} "
            "{{Template:Cite web|url=x}} {{:Main Page}} {{User:Me/box}}")
    assert names(EN.templates(text)) == [
        "Template:Infobox person", "Template:Inflation", "Template:Welcome",
        "Template:Cite web", "Main Page", "User:Me/box",
    ]


def test_templates_localized_and_comments_nowiki_ignored() -> None:
    text = "{{Πρότυπο:Geo|1}} {{pagebanner}} <!-- {{Hidden}} --> <nowiki>{{Raw}}</nowiki>"
    cleaned = EL.clean(text)
    assert names(EL.templates(cleaned)) == ["Πρότυπο:Geo", "Πρότυπο:Pagebanner"]


def test_abstract_drops_templates_refs_files_categories() -> None:
    text = (
        "{{Infobox|a={{b}}}}\n'''Pear''' ({{IPA|x}}) is a [[tree|plant]]<ref>cite</ref> "
        "of the [[genus]].[[File:Pear.jpg|thumb|A [[pear]]]]\n\n"
        "{| class=wikitable\n| cell\n|}\n[[Category:Fruit]] [[de:Birne]]\n== Uses ==\nEaten."
    )
    assert EN.abstract(EN.clean(text)) == "Pear is a plant of the genus."


@pytest.mark.parametrize("text", ["", "{{Only template}}", "== Heading ==\nBody", "[[Category:X]]"])
def test_abstract_none_when_lead_is_empty(text: str) -> None:
    assert EN.abstract(text) is None


def test_normalize_whitespace() -> None:
    assert normalize_whitespace("a \t b\n\n\n c  ,d ()") == "a b\nc,d"


def test_normalize_whitespace_matches_per_line_regex_definition() -> None:
    spaces = re.compile(r"[ \t\xa0]+")

    def reference(text: str) -> str:
        lines = (spaces.sub(" ", line).strip() for line in text.splitlines())
        joined = "\n".join(line for line in lines if line)
        if "(" in joined:
            joined = re.sub(r"\([ ;,]+", "(", re.sub(r" ?\([ ;,]*\)", "", joined))
        return re.sub(r" +([,.;:!?)])", r"\1", joined)

    rng = random.Random(5)
    alphabet = [" ", "\t", "\xa0", "\n", "\r", "\u2028", ".", ",", ")", "(", ";", "a", "!"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        assert normalize_whitespace(text) == reference(text), repr(text)


def test_needs_parser_matches_regex_definition() -> None:
    pattern = re.compile(r"[<>&{}]|^(?:[*#:;=]|----)", re.M)
    rng = random.Random(3)
    alphabet = ["a", " ", "\n", "\r", "*", "#", ":", ";", "=", "-", "<", ">", "&", "{", "}"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert needs_parser(text) == bool(pattern.search(text)), repr(text)
