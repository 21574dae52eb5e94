"""read_dump on small hand-written dumps: revision choice, deletion, odd and bad input."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from feedserver.errors import DumpError
from feedserver.ingest.dump import read_dump
from feedserver.models import Article

HEAD = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""


def revision(rev_id: int, timestamp: str, *, parent: int | None = None, text: str = "Body.",
             user: str = "<contributor><username>Ann</username><id>7</id></contributor>",
             comment: str = "<comment>edit</comment>", text_attrs: str = "") -> str:
    parent_tag = f"<parentid>{parent}</parentid>" if parent else ""
    return (f"<revision><id>{rev_id}</id>{parent_tag}<timestamp>{timestamp}</timestamp>{user}"
            f"{comment}<model>wikitext</model><format>text/x-wiki</format>"
            f'<text bytes="{len(text)}"{text_attrs}>{text}</text><sha1>abc</sha1></revision>')


def dump(tmp_path: Path, *revisions: str, title: str = "Some page") -> Path:
    path = tmp_path / "dump.xml"
    page = f"<page><title>{title}</title><ns>0</ns><id>42</id>{''.join(revisions)}</page>"
    path.write_text(HEAD + page + "</mediawiki>", encoding="utf-8")
    return path


def only(path: Path) -> Article:
    (record,) = list(read_dump(path)[1])
    assert isinstance(record, Article)
    return record


def test_latest_is_highest_timestamp_then_highest_id(tmp_path: Path) -> None:
    path = dump(
        tmp_path,
        revision(3, "2020-01-03T00:00:00Z", parent=1, text="third"),
        revision(1, "2020-01-01T00:00:00Z", text="first"),
        revision(2, "2020-01-03T00:00:00Z", parent=1, text="tie, lower id"),
    )
    article = only(path)
    assert article.version is not None and article.version.identifier == 3
    assert article.date_created is not None and article.date_created.day == 1
    assert article.previous_version is not None
    assert article.previous_version.identifier == 1
    assert article.previous_version.number_of_characters == len("first")


def test_revision_deleted_parts_never_leak(tmp_path: Path) -> None:
    latest = revision(
        2, "2021-05-05T00:00:00Z", parent=1,
        text="SECRET-TEXT [[Category:SECRET-CAT]] {{SECRET-TEMPLATE}}",
        text_attrs=' deleted="deleted"',
        user=('<contributor deleted="deleted"><username>SECRET-USER</username><id>9</id>'
              "</contributor>"),
        comment='<comment deleted="deleted">SECRET-COMMENT</comment>',
    )
    article = only(dump(tmp_path, revision(1, "2021-01-01T00:00:00Z"), latest))
    blob = msgspec.json.encode(article)
    assert b"SECRET" not in blob
    assert article.visibility is not None
    assert (article.visibility.text, article.visibility.editor, article.visibility.comment) == (
        False, False, False)
    assert article.article_body is None and article.version is not None
    assert article.version.editor is None and article.version.comment is None
    assert article.version.size is None and article.abstract is None
    assert b'"visibility":{"text":false,"editor":false,"comment":false}' in blob


def test_only_the_hidden_part_is_dropped(tmp_path: Path) -> None:
    latest = revision(5, "2021-05-05T00:00:00Z",
                      comment='<comment deleted="deleted">SECRET-COMMENT</comment>')
    article = only(dump(tmp_path, latest))
    assert b"SECRET" not in msgspec.json.encode(article)
    assert article.visibility is not None and not article.visibility.comment
    assert article.visibility.text and article.visibility.editor
    assert article.article_body is not None and article.article_body.wikitext == "Body."


def test_ip_editors_and_empty_text(tmp_path: Path) -> None:
    ip = "<contributor><ip>192.0.2.1</ip></contributor>"
    article = only(dump(tmp_path, revision(1, "2021-01-01T00:00:00Z", text="", user=ip)))
    assert article.version is not None and article.version.editor is not None
    assert article.version.editor.is_anonymous and article.version.editor.name == "192.0.2.1"
    assert article.article_body is not None and not article.article_body.wikitext
    assert article.version.number_of_characters == 0 and article.abstract is None


def test_wiki_override_and_derived_identity(tmp_path: Path) -> None:
    path = dump(tmp_path, revision(1, "2021-01-01T00:00:00Z"), title="Ça va?")
    info, stream = read_dump(path, wiki="mywiki")
    (article,) = list(stream)
    assert info.wiki == "mywiki" and info.source == "dump.xml"
    assert isinstance(article, Article) and article.is_part_of.identifier == "mywiki"
    assert read_dump(path)[0].wiki == "enwiki"
    assert article.url == "https://en.wikipedia.org/wiki/%C3%87a_va%3F"


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        (b"", "dump.xml"),
        (b"this is not xml at all", "malformed XML"),
        (b"<html><body>hello</body></html>", "not a MediaWiki dump"),
        (b"BZh91AY&SYgarbage-garbage-garbage", "dump.xml"),
        (b"\x1f\x8b\x08\x00garbage", "dump.xml"),
    ],
)
def test_not_a_dump(tmp_path: Path, content: bytes, cause: str) -> None:
    path = tmp_path / "dump.xml"
    path.write_bytes(content)
    with pytest.raises(DumpError, match=cause) as caught:
        list(read_dump(path)[1])
    assert "\n" not in str(caught.value) and "dump.xml" in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match=r"nope\.xml"):
        read_dump(tmp_path / "nope.xml")


def _descriptors_on(path: Path) -> int:
    """How many of this process's file descriptors point at ``path`` (Linux ``/proc``)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    target, count = str(path.resolve()), 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == target
        except OSError:  # closed while listing (the listing's own descriptor)
            continue
    return count


def test_closing_the_iterator_early_releases_the_file(tmp_path: Path) -> None:
    path = dump(tmp_path, revision(1, "2021-01-01T00:00:00Z"))
    _, stream = read_dump(path)
    # Open after reading <siteinfo>: the check below can tell open from closed.
    assert _descriptors_on(path) == 1
    stream.close()
    assert _descriptors_on(path) == 0
