"""Which representation of a download to serve: WME's tar.gz or our native zstd NDJSON.

A snapshot, chunk or batch has up to two representations of the same records:

* ``tar.gz`` (``application/gzip``): WME's archive, laid out from the stored parts
  (``formats.wme_layout``); present when the version was built with ``wme_archives``;
* ``zstd`` (``application/zstd``): the zstd NDJSON chunk files back to back; always there.

On the WME paths tar.gz is the default, because a WME client (the official SDKs read every
download as tar.gz) must work unchanged. A client picks the other one with ``?format=zstd``
(or ``tar.gz``; a format the resource lacks is a 406) or with ``Accept`` (``application/zstd``;
quality values honoured, ``*/*`` and no ``Accept`` mean the default; an ``Accept`` naming
nothing we have also gets the default, as RFC 9110 §12.5.1 allows). Each representation has
its own ETag (its SHA-256), so ``If-Range`` and ``If-None-Match`` never mix them up, and
responses say ``Vary: Accept``. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final, Literal

import msgspec
from litestar.params import QueryParameter

from feedserver.api.ranges import Part
from feedserver.errors import NotAcceptable
from feedserver.feeds.snapshots.manifest import ChunkInfo, Representation, wme_archive
from feedserver.formats.checksums import Checksums
from feedserver.formats.wme_layout import Segment, chunk_archive, snapshot_archive

Format = Literal["tar.gz", "zstd"]
FormatParam = Annotated[Format | None, QueryParameter(
    name="format",
    description="Representation of the download: ``tar.gz`` (WME's archive, the default "
                "when built) or ``zstd`` (zstd NDJSON, the native format). Overrides "
                "``Accept``.")]
MEDIA_TYPES: Final[dict[Format, tuple[str, ...]]] = {
    "tar.gz": ("application/gzip", "application/x-gzip", "application/x-tar+gzip"),
    "zstd": ("application/zstd",),
}
VARY = "Accept"


class Download(msgspec.Struct, frozen=True, kw_only=True):
    """One representation of a download: where its bytes come from and its checksums."""

    format: Format
    parts: list[Part]
    checksums: Checksums
    filename: str

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format][0]


def _accepted(accept: str) -> dict[str, float]:
    """Media ranges of an ``Accept`` header and their quality (malformed items ignored)."""
    out: dict[str, float] = {}
    for item in accept.split(",")[:64]:
        media, *params = (p.strip() for p in item.split(";"))
        if "/" not in media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        out.setdefault(media.lower(), q)
    return out


def _quality(ranges: dict[str, float], fmt: Format) -> float:
    """The quality ``Accept`` gives ``fmt``: a media type of it named exactly, else the most
    specific wildcard that matches (RFC 9110 §12.5.1); 0 when nothing matches."""
    names = MEDIA_TYPES[fmt]
    for key in (*names, names[0].split("/")[0] + "/*", "*/*"):
        if key in ranges:
            return ranges[key]
    return 0.0


def negotiate(downloads: Sequence[Download], accept: str | None, fmt: Format | None
              ) -> Download:
    """The representation to serve; ``downloads`` lists them in the server's order of
    preference (the default first)."""
    if fmt is not None:
        for download in downloads:
            if download.format == fmt:
                return download
        raise NotAcceptable(f"format {fmt!r} is not built for this resource; available: "
                            + ", ".join(d.format for d in downloads), format=fmt)
    if accept:
        ranges = _accepted(accept)
        scored = [(_quality(ranges, d.format), -i, d) for i, d in enumerate(downloads)]
        q, _, best = max(scored, key=lambda t: (t[0], t[1]))
        if q > 0:
            return best
    return downloads[0]


def _parts(segments: Sequence[Segment], keys: Sequence[str]) -> list[Part]:
    return [Part(key="", offset=s.offset, size=s.size, data=s.data) if s.part < 0 else
            Part(key=keys[s.part], offset=s.offset, size=s.size) for s in segments]


def zstd_download(chunks: Sequence[ChunkInfo], checksums: Checksums, filename: str
                  ) -> Download:
    base = chunks[0].offset if chunks else 0
    return Download(format="zstd", parts=[Part(c.key, c.offset - base, c.size) for c in chunks],
                    checksums=checksums, filename=filename)


def archive_downloads(identifier: str, chunks: Sequence[ChunkInfo],
                      representations: Sequence[Representation], *, zstd: Download,
                      filename: str) -> list[Download]:
    """``<identifier>.tar.gz`` (when built) and then the zstd download, of a whole snapshot
    version or batch."""
    wme = wme_archive(representations)
    files = [c.wme for c in chunks]
    if wme is None or not chunks or any(f is None for f in files):
        return [zstd]
    parts = [f.part for f in files if f is not None]
    keys = [f.key for f in files if f is not None]
    archive = Download(format="tar.gz", parts=_parts(snapshot_archive(identifier, parts), keys),
                       checksums=wme.archive, filename=filename)
    return [archive, zstd]


def chunk_downloads(chunk: ChunkInfo, *, zstd: Download) -> list[Download]:
    """``chunk_<k>.tar.gz`` (when built) and then the chunk's zstd file."""
    if chunk.wme is None:
        return [zstd]
    archive = Download(format="tar.gz",
                       parts=_parts(chunk_archive(chunk.index, chunk.wme.part), [chunk.wme.key]),
                       checksums=chunk.wme.archive, filename=f"chunk_{chunk.index}.tar.gz")
    return [archive, zstd]
