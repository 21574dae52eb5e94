"""What the chunked feeds (snapshots, diffs) share: finding one chunk of a manifest, the chunk
list and one chunk's metadata as metered answers.

A chunk is named by its index (ASCII digits) or its identifier, and a chunk identifier names
its snapshot: one of another snapshot is refused, so no request reaches another's chunks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import msgspec
from litestar import Request, Response

from feedserver.accounts.models import Principal
from feedserver.api.metered import Metered
from feedserver.api.query import Query, project, select
from feedserver.errors import FeedError
from feedserver.feeds.snapshots.manifest import ChunkInfo
from feedserver.identifiers import check_chunk_identifier
from feedserver.plans import Feed

_CHUNK_INDEX = re.compile(r"^[0-9]{1,7}$")


class Chunked(Protocol):
    """A manifest made of chunks (a snapshot version's or a diff's)."""

    @property
    def identifier(self) -> str: ...
    @property
    def chunks(self) -> list[ChunkInfo]: ...
    def chunk(self, ref: str) -> ChunkInfo: ...


M = TypeVar("M", bound=Chunked)


def find_chunk(manifest: Chunked, chunk_id: str, missing: Callable[[str], FeedError]
               ) -> ChunkInfo:
    """The chunk ``chunk_id`` names; ``InvalidIdentifier`` for a malformed one, ``NotFound``
    for none, ``missing(chunk_id)`` for a chunk of another manifest."""
    if not _CHUNK_INDEX.match(chunk_id):
        check_chunk_identifier(chunk_id)  # only ASCII digits or a well-formed identifier
    chunk = manifest.chunk(chunk_id)
    if not chunk.identifier.startswith(manifest.identifier + "_chunk_"):
        raise missing(chunk_id)
    return chunk


async def list_chunks(request: Request[Any, Any, Any], principal: Principal, metered: Metered,
                      feed: Feed, wiki: str, manifest: M, query: Query,
                      view: Callable[[M, ChunkInfo], object]) -> Response[bytes]:
    """The chunks' metadata (``fields``, ``filters``, ``limit``), metered."""
    items = select([view(manifest, c) for c in manifest.chunks], query)
    return await metered.metadata(request, principal, feed, wiki, items, many=True)


async def get_chunk(request: Request[Any, Any, Any], principal: Principal, metered: Metered,
                    feed: Feed, wiki: str, manifest: M, query: Query, chunk_id: str,
                    view: Callable[[M, ChunkInfo], object],
                    missing: Callable[[str], FeedError]) -> Response[bytes]:
    """One chunk's metadata (``fields``), metered."""
    chunk = find_chunk(manifest, chunk_id, missing)
    item = project(msgspec.to_builtins(view(manifest, chunk)), query.fields)
    return await metered.metadata(request, principal, feed, wiki, item, many=False)
