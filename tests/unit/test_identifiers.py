"""The shared identifier rules (``feedserver.identifiers``): one rule for events, snapshot ids,
plans and path segments; what passes is safe in a blob key, a BIGINT column and a page."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.errors import InvalidIdentifier
from feedserver.feeds.snapshots.manifest import find_chunk
from feedserver.identifiers import (
    MAX_NAMESPACE,
    PROJECT_RE,
    NamespaceId,
    ProjectId,
    Title,
    ascii_index,
    check_project,
    check_snapshot_identifier,
    check_title,
    parse_snapshot_identifier,
    snapshot_identifier,
)

HOSTILE_PROJECTS = ["", "../../Bad Wiki<script>", "EN", "en wiki", "en.wiki", "1wiki",
                    "enwiki\n", "a" * 64, "enwiki/..", "énwiki"]


@pytest.mark.parametrize("project", HOSTILE_PROJECTS)
def test_hostile_projects_are_refused_everywhere(project: str) -> None:
    with pytest.raises(InvalidIdentifier):
        check_project(project)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(project, ProjectId)
    with pytest.raises(InvalidIdentifier):
        check_snapshot_identifier(f"{project}_namespace_0")


@pytest.mark.parametrize("title", ["", " x", "x ", "a<b", "a|b", "[[x]]", "{{x}}", "a#b",
                                   "a\x00b", "a\nb", "x" * 256])
def test_illegal_titles(title: str) -> None:
    with pytest.raises(InvalidIdentifier):
        check_title(title)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(title, Title)


@pytest.mark.parametrize("namespace", [-5, -1, MAX_NAMESPACE + 1, 2**63])
def test_namespaces_out_of_range(namespace: int) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(namespace, NamespaceId)


def test_one_snapshot_rule_for_accounts_and_manifests() -> None:
    # accounts/models.py used to accept "0wiki_namespace_007" and 9-digit namespaces that the
    # manifest rule refused; both now call the same function.
    for bad in ["0wiki_namespace_0", "enwiki_namespace_007", "enwiki_namespace_1234567",
                "enwiki_namespace_-1"]:
        with pytest.raises(InvalidIdentifier):
            parse_snapshot_identifier(bad)
        with pytest.raises(InvalidIdentifier):
            check_snapshot_identifier(bad)
    assert parse_snapshot_identifier("zh_min_nanwiki_namespace_14") == ("zh_min_nanwiki", 14)


@given(st.from_regex(PROJECT_RE, fullmatch=True),
       st.integers(min_value=0, max_value=MAX_NAMESPACE))
def test_snapshot_identifier_round_trips(project: str, namespace: int) -> None:
    assert parse_snapshot_identifier(snapshot_identifier(project, namespace)) == (
        project, namespace)


@given(st.text(max_size=30))
def test_ascii_index_accepts_only_ascii_digits(text: str) -> None:
    value = ascii_index(text)
    if value is None:
        assert not (text.isascii() and text.isdigit() and len(text) <= 18)
    else:
        assert str(value) == text.lstrip("0") or (value == 0 and set(text) == {"0"})


@pytest.mark.parametrize("ref", ["²", "٣", "1²", "+1", " 1"])
def test_find_chunk_refuses_unicode_digits(ref: str) -> None:
    # "²".isdigit() is True and int("²") raises: that was a 500 on chunk lookups.
    with pytest.raises(InvalidIdentifier):
        find_chunk([], ref)
