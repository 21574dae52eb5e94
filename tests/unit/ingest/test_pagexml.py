"""pagexml reads pages and revisions as mwxml does, field for field, with flat memory."""

from __future__ import annotations

import calendar
import time
import tracemalloc
from pathlib import Path

import mwxml
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.errors import DumpError
from feedserver.identifiers import MAX_NAMESPACE, MAX_SAFE
from feedserver.ingest.dump import read_dump
from feedserver.ingest.dumpfile import open_dump
from feedserver.ingest.pagexml import PageReader, split_title, unix_time
from feedserver.models import Article
from tests.conftest import DUMPS
from tests.unit.ingest.test_dump import HEAD, dump, only, revision

READABLE = sorted(p for p in DUMPS.rglob("*") if p.is_file() and "table-markup" not in p.name)


def _reader(path: Path) -> PageReader:
    from feedserver.ingest.dump import _open  # the adapter's own setup, siteinfo included

    stream = open_dump(path)
    return _open(stream, path, None)[1]


@pytest.mark.parametrize("path", READABLE, ids=lambda p: p.name)
def test_agrees_with_mwxml_on_every_shared_dump(path: Path) -> None:
    with open_dump(path) as fh:
        expected = []
        for page in mwxml.Dump.from_file(fh).pages:
            revisions = []
            for rev in page:
                user = rev.user
                revisions.append((
                    rev.id, rev.timestamp.unix() if rev.timestamp else None,
                    None if user is None else (user.id, user.text), bool(rev.minor),
                    rev.comment, rev.text, rev.model, rev.slots.sha1, rev.parent_id,
                    bool(rev.deleted.text), bool(rev.deleted.comment), bool(rev.deleted.user)))
            expected.append(((page.id, page.title, page.namespace, page.redirect), revisions))
    got = []
    for head, revs in _reader(path).pages():
        got.append(((head.id, head.title, head.namespace, head.redirect), [
            (r.id, r.timestamp, None if r.contributor is None else
             (r.contributor.id, r.contributor.text), r.minor, r.comment, r.text, r.model, r.sha1,
             r.parent_id, r.text_deleted, r.comment_deleted, r.user_deleted) for r in revs]))
    assert got == expected
    assert any(revisions for _, revisions in got)


def _slots(main_text: str, text_attrs: str) -> str:
    return (f'<revision><id>5</id><timestamp>2020-01-01T00:00:00Z</timestamp>'
            f"<contributor><username>Ann</username><id>7</id></contributor>"
            f'<model>wikitext</model><text bytes="3"{text_attrs}>Old</text><sha1>s</sha1>'
            f"<content><role>mediainfo</role><model>wikibase-mediainfo</model>"
            f"<text>{{}}</text></content>{main_text}</revision>")


def test_main_slot_rules_follow_mwxml(tmp_path: Path) -> None:
    # <text sha1=..> is the main slot ...
    assert only(dump(tmp_path, _slots("", ' sha1="x"'))).article_body.wikitext == "Old"  # type: ignore[union-attr]
    # ... unless a <content> says it is main; without sha1 on <text>, only <content> counts.
    main = "<content><role>main</role><model>css</model><text>a{}</text></content>"
    record = only(dump(tmp_path, _slots(main, ' sha1="x"')))
    assert record.article_body is not None and record.article_body.wikitext == "a{}"
    assert record.version is not None and record.version.content_model == "css"
    record = only(dump(tmp_path, _slots("", "")))
    assert record.article_body is not None and record.article_body.wikitext == ""


@pytest.mark.parametrize(
    ("revision_xml", "cause"),
    [
        ("<revision><id>1</id><bogus/></revision>", "Unexpected tag"),
        ("<revision><timestamp>2020-01-01T00:00:00Z</timestamp></revision>", "without <id>"),
        ("<revision><id>1</id><timestamp>yesterday</timestamp></revision>", "yesterday"),
    ],
)
def test_bad_revisions_are_dump_errors(tmp_path: Path, revision_xml: str, cause: str) -> None:
    with pytest.raises(DumpError, match=cause):
        list(read_dump(dump(tmp_path, revision_xml))[1])


def test_unexpected_page_and_top_level_tags(tmp_path: Path) -> None:
    path = tmp_path / "dump.xml"
    path.write_text(HEAD + "<page><title>A</title><ns>0</ns><id>1</id><odd/></page>"
                    "</mediawiki>", encoding="utf-8")
    with pytest.raises(DumpError, match="Unexpected tag"):
        list(read_dump(path)[1])
    path.write_text(HEAD + "<page><title>A</title><ns>0</ns><id>1</id></page><odd/>"
                    "</mediawiki>", encoding="utf-8")
    with pytest.raises(DumpError, match="Instead saw <odd>"):
        list(read_dump(path)[1])


def _page(*, ns: str = "0", page_id: str = "1", old: str = "", new: str = "") -> str:
    """A page "A" with one revision (``revision``'s), ``old`` replaced by ``new`` in it."""
    rev = revision(2, "2020-01-01T00:00:00Z")
    return (f"<page><title>A</title><ns>{ns}</ns><id>{page_id}</id>"
            f"{rev.replace(old, new) if old else rev}</page>")


# Where each number of a page sits in the XML, and the values a record may carry there. An
# id outside them would reach SQLite's 64-bit columns (an OverflowError mid-build) or a JSON
# reader's 2**53 as it is; "٣", "1_0" and " 1" are what int() accepts and MediaWiki never writes.
_NUMBERS = {
    "page": (lambda v: _page(page_id=v), 1, MAX_SAFE),
    "ns": (lambda v: _page(ns=v), 0, MAX_NAMESPACE),
    "revision": (lambda v: _page(old="<id>2</id>", new=f"<id>{v}</id>"), 1, MAX_SAFE),
    # negative parents and editors are MediaWiki's own "none" (its dump tests write -1)
    "parent": (lambda v: _page(old="<timestamp>", new=f"<parentid>{v}</parentid><timestamp>"),
               -(2**31), MAX_SAFE),
    "editor": (lambda v: _page(old="<id>7</id>", new=f"<id>{v}</id>"), -(2**31), MAX_SAFE),
}
_texts = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "-", "٣", "\uff11", "1_0", " 1", "1 ", "+1", "0x1", "1e3", "²", "--1",
                     "0" * 30 + "1", "9" * 100_000]),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=4),
)


@given(field=st.sampled_from(sorted(_NUMBERS)), text=_texts)
@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_numbers_are_ascii_and_in_range_or_a_dump_error(tmp_path: Path, field: str,
                                                        text: str) -> None:
    page, low, high = _NUMBERS[field]
    path = tmp_path / "dump.xml"
    path.write_text(HEAD + page(text) + "</mediawiki>", encoding="utf-8")
    valid = len(text) <= 20 and text.lstrip("-").isascii() and text.lstrip("-").isdigit() \
        and text.count("-") <= 1 and low <= int(text) <= high
    if not valid:
        with pytest.raises(DumpError, match="not an integer in") as err:
            list(read_dump(path)[1])
        assert "\n" not in str(err.value)  # the CLI prints it as its one line
        return
    (record,) = list(read_dump(path)[1])
    assert isinstance(record, Article) and record.version is not None
    value = int(text)
    if field == "page":
        assert record.identifier == value
    elif field == "ns":
        assert record.namespace.identifier == value
    elif field == "revision":
        assert record.version.identifier == value
    elif field == "parent":
        assert (record.previous_version.identifier if record.previous_version else 0) \
            == max(value, 0)
    else:
        editor = record.version.editor
        assert editor is not None and editor.identifier == (value if value > 0 else None)


@pytest.mark.parametrize("title", ["A<b>", "x|y", "a{{b}}", "tab\there", " lead", "trail ",
                                   "del\x7f"])
def test_titles_mediawiki_never_writes_are_dump_errors(tmp_path: Path, title: str) -> None:
    # They would be served as names (a snapshot's records, the on-demand path refuses them).
    path = tmp_path / "dump.xml"
    page = _page().replace("<title>A</title>", f"<title>{title.replace('<', '&lt;')}</title>")
    path.write_text(HEAD + page + "</mediawiki>", encoding="utf-8")
    with pytest.raises(DumpError, match="does not allow in titles"):
        list(read_dump(path)[1])


@pytest.mark.parametrize("text", ["2002-02-25T15:43:11Z", "20020225154311",
                                  "2016-12-31T23:59:60Z", "1999-01-01T00:00:00Z"])
def test_unix_time_matches_strptime(text: str) -> None:
    fmt = "%Y-%m-%dT%H:%M:%SZ" if "T" in text else "%Y%m%d%H%M%S"
    assert unix_time(text) == calendar.timegm(time.strptime(text, fmt))


def test_split_title_without_ns() -> None:
    ids = {"Talk": 1, "User": 2}
    assert split_title("Talk:Some_page", ids) == (1, "Some page")
    assert split_title("Talk: spaced", ids) == (0, "Talk: spaced")
    assert split_title("Nope:x", ids) == (0, "Nope:x")
    assert split_title("Plain_title", ids) == (0, "Plain title")


def test_memory_stays_flat_over_pages_and_history(tmp_path: Path) -> None:
    body = "x" * 2000
    revisions = "".join(revision(i, f"2020-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                                 text=body) for i in range(1, 1501))
    pages = "".join(f"<page><title>P{n}</title><ns>0</ns><id>{n}</id>"
                    f"{revision(10_000 + n, '2020-01-01T00:00:00Z', text=body)}</page>"
                    for n in range(2, 1502))  # page ids start at 1; 1 is the history page
    path = tmp_path / "dump.xml"
    path.write_text(HEAD + "<page><title>H</title><ns>0</ns><id>1</id>" + revisions + "</page>"
                    + pages + "</mediawiki>", encoding="utf-8")
    assert path.stat().st_size > 5_000_000
    tracemalloc.start()
    try:
        count = sum(1 for record in read_dump(path)[1] if isinstance(record, Article))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 1501
    assert peak < 1_500_000  # far below the 6 MB of text: nothing read is kept
