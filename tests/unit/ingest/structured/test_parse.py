"""Behaviour of each construct on small hand-written wikitext (not article prose)."""

from __future__ import annotations

from feedserver.ingest.structured import (
    Part,
    StructuredResult,
    clean_text,
    structured_content,
)
from feedserver.ingest.structured.images import upload_url
from feedserver.models import Article, ArticleBody, Language, Namespace, Project


def build(wikitext: str, *, wiki: str = "enwiki", language: str = "en",
          infobox_names: tuple[str, ...] | None = None) -> StructuredResult:
    article = Article(name="Test page", identifier=1, namespace=Namespace(identifier=0),
                      is_part_of=Project(identifier=wiki, url="https://en.wikipedia.org"),
                      in_language=Language(identifier=language),
                      article_body=ArticleBody(wikitext=wikitext))
    return structured_content(article, infobox_names=infobox_names)


def tree(parts: list[Part] | None) -> list[object]:
    return [(p.type, p.name, p.value, tree(p.has_parts)) if p.has_parts else
            (p.type, p.name, p.value) for p in parts or ()]


def test_sections_nest_by_level_and_the_lead_is_the_abstract() -> None:
    result = build("Lead text.\n== A ==\nOne.\n=== A1 ===\nTwo.\n== B ==\nThree.")
    assert tree(result.content.sections) == [
        ("section", "Abstract", None, [("paragraph", None, "Lead text.")]),
        ("section", "A", None, [("paragraph", None, "One."),
                                ("section", "A1", None, [("paragraph", None, "Two.")])]),
        ("section", "B", None, [("paragraph", None, "Three.")]),
    ]
    assert result.text == "Lead text.\n\nA\n\nOne.\n\nA1\n\nTwo.\n\nB\n\nThree."
    assert not result.degraded


def test_lines_join_into_paragraphs_and_blank_lines_split_them() -> None:
    result = build("First line\nsame paragraph.\n\nSecond paragraph.")
    assert [p.value for p in result.content.sections[0].has_parts] == [
        "First line same paragraph.", "Second paragraph."]


def test_links_keep_their_text_and_url() -> None:
    result = build("See [[Main Page|the main page]], [[apple]]s and [https://example.org site].")
    paragraph = result.content.sections[0].has_parts[0]
    assert paragraph.value == "See the main page, apples and site."
    assert [(link.url, link.text) for link in paragraph.links] == [
        ("https://en.wikipedia.org/wiki/Main_Page", "the main page"),
        ("https://en.wikipedia.org/wiki/Apple", "apples"),
        ("https://example.org", "site"),
    ]


def test_nested_lists() -> None:
    result = build("* one\n** one.a\n** one.b\n* two\n# numbered")
    lists = result.content.sections[0].has_parts
    assert tree(lists) == [
        ("list", None, None, [
            ("list_item", None, "one", [("list", None, None, [
                ("list_item", None, "one.a"), ("list_item", None, "one.b")])]),
            ("list_item", None, "two"),
            ("list_item", None, "numbered"),
        ]),
    ]
    assert result.text == "one\none.a\none.b\ntwo\nnumbered"


def test_templates_leave_only_what_they_show() -> None:
    result = build("{{Use dmy dates}}A {{convert|5|km}} walk, {{lang|fr|très}} {{nowrap|nice}}."
                   "{{Navbox|list=[[X]]}}")
    assert result.content.sections[0].has_parts[0].value == "A 5 km walk, très nice."


def test_short_description_and_infobox() -> None:
    result = build("{{Short description|A [[test]] page}}\n{{Infobox settlement\n| name = Town\n"
                   "| population = 1,000<ref>Census.</ref>\n| image = Town hall.jpg\n"
                   "| leader = [[Jane Doe]]\n| empty =\n}}\nText.")
    content = result.content
    assert content.description == "A test page"
    [infobox] = content.infoboxes
    assert infobox.name == "Infobox settlement"
    [section] = infobox.has_parts
    fields = {p.name: p for p in section.has_parts}
    assert list(fields) == ["name", "population", "image", "leader"]
    assert fields["population"].value == "1,000"
    assert fields["population"].citations[0].identifier == "cite_note-1"
    assert fields["leader"].links[0].url == "https://en.wikipedia.org/wiki/Jane_Doe"
    assert fields["image"].type == "image"
    assert content.image is not None
    assert content.image.content_url == upload_url("Town_hall.jpg")


def test_infobox_names_are_a_parameter_per_wiki() -> None:
    text = "{{Quickbar\n| population = 5\n}}\nText."
    assert build(text, wiki="elwikivoyage").content.infoboxes is not None
    assert build(text, wiki="enwiki").content.infoboxes is None
    assert build(text, wiki="enwiki", infobox_names=("Quickbar",)).content.infoboxes


def test_named_refs_groups_and_cite_templates() -> None:
    result = build(
        'A.<ref name="a">{{cite web |url=https://example.org/x |title=X |last=Doe |first=J '
        '|date=2020 |website=Example}}</ref> B.<ref name="a" /> C.<ref group="note">A note.'
        '</ref> D.<ref>Plain.</ref>\n<references />')
    paragraph = result.content.sections[0].has_parts[0]
    assert paragraph.value == "A. B. C. D."
    assert [(c.identifier, c.group, c.text) for c in paragraph.citations] == [
        ("cite_note-a-1", None, "[1]"), ("cite_note-a-1", None, "[1]"),
        ("cite_note-2", "note", "[note 1]"), ("cite_note-3", None, "[2]")]
    first = result.content.references[0]
    assert first.type == "web"
    assert first.metadata == {"url": "https://example.org/x", "title": "X", "last": "Doe",
                              "first": "J", "date": "2020", "website": "Example"}
    assert first.text.value == 'Doe, J (2020). "X". Example.'
    assert first.text.links[0].url == "https://example.org/x"
    assert [r.type for r in result.content.references] == ["web", "text", "text"]


def test_list_defined_refs_fill_named_uses() -> None:
    result = build('Fact.<ref name="x" />\n<references>\n<ref name="x">Defined below.</ref>\n'
                   "</references>")
    [reference] = result.content.references
    assert reference.identifier == "cite_note-x-1"
    assert reference.text.value == "Defined below."


def test_footnote_templates_are_references() -> None:
    result = build("Claim.{{efn|An aside.}} Other.{{sfn|Smith|2001|p=5}}")
    assert [(r.group, r.text.value) for r in result.content.references] == [
        ("lower-alpha", "An aside."), (None, "Smith 2001, p. 5.")]
    citations = result.content.sections[0].has_parts[0].citations
    assert [c.text for c in citations] == ["[a]", "[1]"]


def test_tables_expand_spans_and_keep_nested_tables() -> None:
    result = build('{| class="wikitable"\n|+ Caption\n! H1 !! H2 !! H3\n|-\n'
                   '| rowspan="2" | a || colspan="2" | b\n|-\n| c || d\n|-\n|\n{|\n| inner\n|}\n'
                   "| e || f\n|}")
    tables = {t.identifier: t for t in result.content.tables}
    outer = tables["table-2"]
    assert [[c.value for c in row] for row in outer.headers] == [["H1", "H2", "H3"]]
    assert [[c.value for c in row] for row in outer.rows] == [
        ["a", "b", "b"], ["a", "c", "d"], [None, "e", "f"]]
    assert outer.rows[2][0].nested_table is tables["table-1"]
    assert outer.confidence_score == 1.0
    [part] = result.content.sections[0].has_parts
    assert part.type == "table" and part.name == "Caption"
    assert part.table_references[0].identifier == "table-2"


def test_images_from_thumbnails_and_galleries() -> None:
    result = build("[[File:Sciuridae.jpg|thumb|A [[squirrel]]]]\nText.\n"
                   "<gallery>\nFile:Flag of Montreal.svg|Flag\n</gallery>")
    parts = result.content.sections[0].has_parts
    assert [(p.type, p.value) for p in parts] == [
        ("image", "A squirrel"), ("paragraph", "Text."), ("image", "Flag")]
    assert parts[0].images[0].content_url == (
        "https://upload.wikimedia.org/wikipedia/commons/6/68/Sciuridae.jpg")
    assert result.content.image.content_url == parts[0].images[0].content_url


def test_upload_urls_match_real_wme_image_urls() -> None:
    # URLs as they appear in WME's own responses (the SDK's data): MD5 path, rawurlencode.
    assert upload_url("Flag_of_Montreal.svg") == (
        "https://upload.wikimedia.org/wikipedia/commons/d/dc/Flag_of_Montreal.svg")
    assert upload_url("Old_Port_of_Montreal_(French-_Vieux-Port_de_Montréal).jpg") == (
        "https://upload.wikimedia.org/wikipedia/commons/e/e6/"
        "Old_Port_of_Montreal_%28French-_Vieux-Port_de_Montr%C3%A9al%29.jpg")


def test_greek_wikivoyage_prefixes_and_heading_templates() -> None:
    result = build("[[Αρχείο:Χάρτης.png|μικρογραφία|Χάρτης]]\n=== {{Αεροπορικώς}} ===\n"
                   "Κείμενο [[Αθήνα|της Αθήνας]].[[Κατηγορία:Πόλεις]]",
                   wiki="elwikivoyage", language="el")
    sections = result.content.sections
    assert sections[0].has_parts[0].type == "image"
    assert sections[1].name == "Αεροπορικώς"
    assert sections[1].has_parts[0].value == "Κείμενο της Αθήνας."


def test_broken_wikitext_is_data() -> None:
    result = build("Intro {{unclosed\n== Still a heading ==\nText [[unclosed link\n{|\n| cell")
    assert result.degraded
    assert {"unbalanced_templates", "unclosed_table"} <= set(result.problems)
    assert [s.name for s in result.content.sections][-1] == "Still a heading"


def test_clean_text_alone() -> None:
    text = clean_text("'''Bold''' start.<ref>x</ref>\n{{Infobox|a=b}}\n== H ==\n* item\n"
                      '{| class="wikitable"\n| cell\n|}')
    assert text == "Bold start.\n\nH\n\nitem"


def test_sentinels_in_the_page_are_removed_whatever_the_string_kind() -> None:
    # The page may not forge the parser's private-use sentinels; the check that looks for
    # them works on the UTF-16 bytes, so try every sentinel in ASCII-with-one, Greek (2-byte)
    # and astral (4-byte, surrogate pairs) strings, beside characters whose UTF-16 holds the
    # same E0 byte (U+00E0, U+03E0, U+E0E0) and must stay.
    for code in range(0xE000, 0xE010):
        for prose in ("plain", "ελληνικά", "emoji \U0001F600"):
            page = f"{prose} à Ϡ \ue0e0 {chr(code)}[[Link]] end"
            assert clean_text(page) == f"{prose} à Ϡ \ue0e0 Link end"


def test_a_wikilink_seen_before_resolves_the_same_and_fragments_name_their_own_page() -> None:
    # Wikilinks are resolved once per wiki and remembered (build speed); a link into the page
    # itself ("[[#History]]") must still name the page it is on, not the first page that
    # used it, and category links must still vanish the second time.
    def links(title: str, wikitext: str) -> list[tuple[str, str | None]]:
        article = Article(name=title, identifier=1, namespace=Namespace(identifier=0),
                          is_part_of=Project(identifier="enwiki",
                                             url="https://en.wikipedia.org"),
                          in_language=Language(identifier="en"),
                          article_body=ArticleBody(wikitext=wikitext))
        part = structured_content(article).content.sections[0].has_parts[0]
        return [(link.url, link.text) for link in part.links or ()]

    text = "See [[Main Page|home]], [[#History]] and [[apple]]s.[[Category:Fruit]]"
    expected = {
        title: [("https://en.wikipedia.org/wiki/Main_Page", "home"),
                (f"https://en.wikipedia.org/wiki/{title}#History", "#History"),
                ("https://en.wikipedia.org/wiki/Apple", "apples")]
        for title in ("First", "Second")}
    assert links("First", text) == expected["First"]
    assert links("Second", text) == expected["Second"]


def test_listings_show_their_name_and_shown_fields_the_last_one_winning() -> None:
    # A listing keeps only the parameters it shows; as for any template, a parameter given
    # twice takes its last value and names are read without their spaces.
    result = build("{{see| name = Old | name=Museum |lat=1|url=https://x.org| alt = The M "
                   "|hours=9-5|content=Nice.}}", wiki="enwikivoyage")
    assert result.content.sections[0].has_parts[0].value == "Museum, (The M), 9-5, Nice."
