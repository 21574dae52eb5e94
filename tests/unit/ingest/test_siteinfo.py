"""Wiki identity from siteinfo values."""

from __future__ import annotations

import pytest

from feedserver.ingest.siteinfo import (
    derive_info,
    host_from_wiki,
    language_of,
    page_url,
    wiki_from_host,
)


@pytest.mark.parametrize(
    ("host", "wiki"),
    [
        ("en.wikipedia.org", "enwiki"),
        ("el.wikivoyage.org", "elwikivoyage"),
        ("commons.wikimedia.org", "commonswiki"),
        ("simple.wikipedia.org", "simplewiki"),
        ("zh-min-nan.wikipedia.org", "zh_min_nanwiki"),
        ("localhost", None),
    ],
)
def test_wiki_from_host_and_back(host: str, wiki: str | None) -> None:
    assert wiki_from_host(host) == wiki
    if wiki is not None:
        assert host_from_wiki(wiki) == host


def test_derive_info_prefers_dbname_and_canonical_https() -> None:
    info = derive_info(dbname="elwikivoyage", base="http://localhost/elwv/index.php/Main",
                       site_name="Βικιταξίδια", xml_lang="el", namespaces={0: ""},
                       schema_version="0.11", source="x.xml")
    assert (info.wiki, info.base_url, info.language) == (
        "elwikivoyage", "https://el.wikivoyage.org", "el")
    old = derive_info(dbname=None, base="http://simple.wikipedia.org/wiki/Main_Page",
                      site_name="Wikipedia", xml_lang="en", namespaces={},
                      schema_version="0.3", source="y.xml")
    assert (old.wiki, old.base_url, old.language) == (
        "simplewiki", "https://simple.wikipedia.org", "simple")
    private = derive_info(dbname=None, base="http://wiki.example.org:8080/index.php/Main",
                          site_name="My Wiki", xml_lang="de", namespaces={},
                          schema_version="0.10", source="z.xml")
    assert private.base_url == "http://wiki.example.org:8080" and private.language == "de"


def test_page_url_quotes_like_mediawiki() -> None:
    assert page_url("https://en.wikipedia.org", "AC/DC (band)") == (
        "https://en.wikipedia.org/wiki/AC/DC_(band)")
    assert page_url("https://x.org", "100% & more?") == "https://x.org/wiki/100%25_%26_more%3F"


@pytest.mark.parametrize(("wiki", "language"), [
    ("enwiki", "en"), ("simplewiki", "simple"), ("elwikivoyage", "el"),
    ("zh_min_nanwiki", "zh-min-nan"), ("commonswiki", "en"), ("testwikidatawiki", "en"),
    ("not a dbname", None),
])
def test_language_of_a_project(wiki: str, language: str | None) -> None:
    """The language a dump of the wiki would name: on-demand selects projects by it and
    events (which carry no siteinfo) fill ``in_language`` with it."""
    assert language_of(wiki) == language
    if language is not None:
        assert derive_info(dbname=wiki, base=None, site_name=None, xml_lang=None,
                           namespaces={}, schema_version="0.11", source="x").language == language
