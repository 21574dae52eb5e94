"""One chunk lookup for every chunked feed: by index or identifier, never another's chunk."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from feedserver.api.chunks import find_chunk
from feedserver.errors import InvalidIdentifier, NotFound, SnapshotNotFound
from feedserver.feeds.snapshots.manifest import ChunkInfo
from feedserver.feeds.snapshots.manifest import find_chunk as lookup


def chunk(identifier: str, index: int) -> ChunkInfo:
    return ChunkInfo(identifier=f"{identifier}_chunk_{index}", index=index, key=f"k/{index}",
                     article_count=1, size=1, uncompressed_size=1, sha256="0", offset=index)


@dataclass
class Chunks:
    identifier: str
    chunks: list[ChunkInfo] = field(default_factory=list)

    def chunk(self, ref: str) -> ChunkInfo:
        found = lookup(self.chunks, ref)
        if found is None:
            raise NotFound(f"chunk {ref!r} not found")
        return found


def test_by_index_or_identifier_and_never_anothers() -> None:
    m = Chunks("enwiki_namespace_0", [chunk("enwiki_namespace_0", 0),
                                      chunk("enwiki_namespace_0", 1),
                                      # a manifest listing a foreign chunk must not serve it
                                      chunk("dewiki_namespace_0", 2)])
    assert find_chunk(m, "1", SnapshotNotFound).index == 1
    assert find_chunk(m, "enwiki_namespace_0_chunk_0", SnapshotNotFound).index == 0
    with pytest.raises(SnapshotNotFound):
        find_chunk(m, "dewiki_namespace_0_chunk_2", SnapshotNotFound)
    with pytest.raises(NotFound):
        find_chunk(m, "7", SnapshotNotFound)
    for bad in ("../0", "enwiki_namespace_0_chunk_01", "12345678", "-1"):
        with pytest.raises(InvalidIdentifier):
            find_chunk(m, bad, SnapshotNotFound)
