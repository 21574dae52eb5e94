"""Identifiers, blob keys and manifests of snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedserver.errors import InvalidIdentifier, NotFound
from feedserver.feeds.snapshots.manifest import (
    MANIFEST_DECODER,
    MANIFEST_ENCODER,
    ChunkInfo,
    Manifest,
    SourceInfo,
    chunk_key,
    index_key,
    manifest_key,
)
from feedserver.identifiers import (
    check_chunk_identifier,
    check_snapshot_identifier,
    snapshot_identifier,
)
from feedserver.models import Article, Namespace, Project, Size


@pytest.mark.parametrize("good", ["enwiki_namespace_0", "zh_min_nanwiki_namespace_14",
                                  "commonswiki_namespace_6", "elwikivoyage_namespace_2600"])
def test_good_identifiers(good: str) -> None:
    assert check_snapshot_identifier(good) == good


@pytest.mark.parametrize("bad", [
    "", "../enwiki_namespace_0", "enwiki_namespace_0/../x", "enwiki_namespace_",
    "Enwiki_namespace_0",
    "enwiki_namespace_01", "enwiki_namespace_-1", "enwiki namespace 0", "enwiki_namespace_0\n",
    "enwiki_namespace_0%2f", "x" * 300 + "_namespace_0", "enwiki_namespace_0_chunk_0",
])
def test_hostile_identifiers_rejected(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        check_snapshot_identifier(bad)
    with pytest.raises(InvalidIdentifier):
        index_key(bad)


def test_chunk_identifiers_and_keys() -> None:
    assert check_chunk_identifier("enwiki_namespace_0_chunk_12")
    for bad in ("enwiki_namespace_0_chunk_", "enwiki_namespace_0_chunk_01", "../x_chunk_0"):
        with pytest.raises(InvalidIdentifier):
            check_chunk_identifier(bad)
    assert chunk_key("enwiki_namespace_0", 3, 2) == (
        "snapshots/enwiki_namespace_0/3/enwiki_namespace_0_chunk_2.ndjson.zst")
    assert manifest_key("enwiki_namespace_0", 3) == "snapshots/enwiki_namespace_0/3/manifest.json"
    for version in (0, -1, True):
        with pytest.raises(InvalidIdentifier):
            manifest_key("enwiki_namespace_0", version)
    with pytest.raises(InvalidIdentifier):
        snapshot_identifier("EN/../wiki", 0)


def _article(i: int) -> Article:
    return Article(name=f"Page {i}", identifier=i, namespace=Namespace(identifier=0),
                   is_part_of=Project(identifier="testwiki"))


def test_manifest_round_trip_and_chunk_lookup() -> None:
    chunk = ChunkInfo(identifier="testwiki_namespace_0_chunk_0", index=0,
                      key=chunk_key("testwiki_namespace_0", 1, 0), article_count=2, size=10,
                      uncompressed_size=20, sha256="0" * 64, offset=0)
    manifest = Manifest(
        identifier="testwiki_namespace_0", version=1, date_modified=datetime.now(UTC),
        is_part_of=Project(identifier="testwiki"), namespace=Namespace(identifier=0),
        article_count=2, size=Size(value=10), uncompressed_size=20, chunks=[chunk],
        content_root_hash="1" * 64, sha256="2" * 64,
        source=SourceInfo(dumps=["x.xml"], schema_versions=["0.11"]),
    )
    again = MANIFEST_DECODER.decode(MANIFEST_ENCODER.encode(manifest))
    assert again == manifest
    assert again.chunk_identifiers() == ["testwiki_namespace_0_chunk_0"]
    assert again.chunk("0") is again.chunks[0]
    assert again.chunk("testwiki_namespace_0_chunk_0") is again.chunks[0]
    with pytest.raises(NotFound):
        again.chunk("1")
    with pytest.raises(InvalidIdentifier):
        again.chunk("../../etc/passwd")
