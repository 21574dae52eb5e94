"""The WME tar.gz representation of a snapshot version, built from its sealed chunks.

After sealing, each sealed zstd chunk k is decompressed once more and deflated into one stored
gzip *part* (``formats.wme_tar.write_part``): the data of tar entry ``chunk_<k>.ndjson`` and of
entry ``<id>_<k>.ndjson`` alike, so ``chunk_<k>.tar.gz`` and ``<id>.tar.gz`` are both laid out
from the same parts (``formats.wme_layout``) and nothing is compressed or stored twice. The
checksums of every download (MD5 = WME's ``version``, SHA-256, size) are taken on the way, so
metadata and ``HEAD`` never read a part. With a process pool the parts are written in parallel
and then hashed in chunk order (reading compressed bytes only).

Chunks are the WME entries one to one, so a chunk must stay below WME's 100 MB entry limit:
``check_chunk_size`` refuses a ``chunk_size`` that could pass it. ``verify_parts`` re-reads every
part: its checksums, its NDJSON against the zstd chunk's, and the archives' checksums.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import msgspec
import zstandard
from zlib_ng import zlib_ng

from feedserver.config import Settings
from feedserver.errors import IntegrityError, InvalidParameter
from feedserver.feeds.snapshots.manifest import (
    PREFIX,
    Manifest,
    Prefix,
    WmeArchive,
    WmeChunkFiles,
    wme_archive,
    wme_part_key,
    wme_part_name,
)
from feedserver.feeds.snapshots.sealing import SealedSnapshot
from feedserver.formats.checksums import Digester, file_blocks
from feedserver.formats.gzip_pieces import DEFLATE_VERSION, HEADER
from feedserver.formats.wme_layout import SnapshotArchiveBuilder, WmeChunk
from feedserver.formats.wme_tar import (
    ENTRY_LIMIT,
    TarGzPart,
    archive_tail,
    chunk_entry_name,
    entry_header,
    padded,
    snapshot_entry_name,
    write_part,
)
from feedserver.storage.blobs import BlobStore

log = logging.getLogger(__name__)

_READ = 1 << 20
# zlib-ng's stub declares ``error`` as an instance; it is the module's exception class.
_INFLATE_ERROR: type[Exception] = zlib_ng.error  # type: ignore[assignment]
# A chunk rolls once it reaches ``chunk_size``, so it can pass it by one record (and the
# redirects sealing attaches). MediaWiki caps a page at 2 MiB of wikitext; this leaves room
# for a record several times that, escaped.
RECORD_MARGIN = 20_000_000
MAX_CHUNK_SIZE = ENTRY_LIMIT - RECORD_MARGIN


def check_settings(settings: Settings) -> None:
    """``InvalidParameter`` when the WME format is on and its settings cannot hold: a
    ``chunk_size`` that could pass WME's 100 MB entry limit, or a gzip level outside 0..9."""
    if not settings.wme_archives:
        return
    if settings.chunk_size > MAX_CHUNK_SIZE:
        raise InvalidParameter(
            f"chunk size {settings.chunk_size} B could pass WME's {ENTRY_LIMIT} B tar entry "
            f"limit: use at most {MAX_CHUNK_SIZE} B, or FEEDSERVER_WME_ARCHIVES=false")
    if not 0 <= settings.wme_gzip_level <= 9:
        raise InvalidParameter(f"FEEDSERVER_WME_GZIP_LEVEL must be 0..9, not "
                               f"{settings.wme_gzip_level}")


class PartJob(msgspec.Struct, frozen=True, kw_only=True):
    """One sealed chunk to deflate into its part (small: it may go to a worker process)."""

    src: str  # the sealed zstd chunk
    dst: str
    data_size: int
    level: int


def zstd_blocks(path: Path) -> Iterator[bytes]:
    """The NDJSON of a zstd chunk file, in blocks of up to 1 MiB."""
    with path.open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(
            fh, read_across_frames=True) as reader:
        while block := reader.read(_READ):
            yield block


def write_chunk_part(job: PartJob) -> TarGzPart:
    with Path(job.dst).open("wb") as out:
        return write_part(zstd_blocks(Path(job.src)), out, data_size=job.data_size,
                          level=job.level)


# Runs part jobs, possibly in other processes; results in job order (like Executor.map).
PartMapper = Callable[[Callable[[PartJob], TarGzPart], Iterable[PartJob]], Iterable[TarGzPart]]


class WmeParts:
    """A sealed snapshot's WME parts in the scratch folder, ready to publish with the version
    (an ``extras.Extra``)."""

    def __init__(self, paths: list[Path], chunks: list[WmeChunk], archive: WmeArchive, *,
                 prefix: Prefix = PREFIX) -> None:
        self.paths = paths
        self.chunks = chunks
        self.archive = archive
        self.prefix = prefix  # articles, or Structured Contents

    def files(self) -> list[tuple[str, Path]]:
        """(name under the version's folder, local file) of every part."""
        return [(wme_part_name(k), path) for k, path in enumerate(self.paths)]

    def record(self, manifest: Manifest) -> Manifest:
        """``manifest`` with each chunk's part and the archive's checksums recorded."""
        if len(manifest.chunks) != len(self.chunks):
            raise IntegrityError(f"{len(self.chunks)} WME parts for {len(manifest.chunks)} "
                                 "chunks", identifier=manifest.identifier)
        chunks = [msgspec.structs.replace(chunk, wme=WmeChunkFiles(
                      key=wme_part_key(manifest.identifier, manifest.version, k, self.prefix),
                      part=built.part, archive=built.archive))
                  for k, (chunk, built) in enumerate(zip(manifest.chunks, self.chunks,
                                                         strict=True))]
        return msgspec.structs.replace(
            manifest, chunks=chunks, representations=[*manifest.representations, self.archive])


def build_parts(sealed: SealedSnapshot, identifier: str, folder: Path, *, level: int,
                mapper: PartMapper | None = None, prefix: Prefix = PREFIX) -> WmeParts:
    """Deflate every sealed chunk of ``sealed`` into its part under ``folder``, in chunk
    order, and take the checksums of every WME download on the way. ``prefix``: where the
    version is published (article snapshots or Structured Contents)."""
    jobs = [PartJob(src=chunk.path, dst=str(folder / f"wme_{sealed.namespace}_{k}.gz"),
                    data_size=chunk.uncompressed_size, level=level)
            for k, chunk in enumerate(sealed.chunks)]
    builder = SnapshotArchiveBuilder(identifier, level=level)
    chunks: list[WmeChunk] = []
    if mapper is None or len(jobs) < 2:
        for job in jobs:
            with Path(job.dst).open("wb") as out:
                chunks.append(builder.add_chunk(zstd_blocks(Path(job.src)), out,
                                                data_size=job.data_size))
    else:
        for job, part in zip(jobs, mapper(write_chunk_part, jobs), strict=True):
            chunks.append(builder.add_part(part, file_blocks(Path(job.dst))))
    for k, chunk in enumerate(chunks):
        if chunk.part.data_size > ENTRY_LIMIT:
            log.warning("%s chunk %d holds %d B of NDJSON, past WME's %d B entry limit "
                        "(a valid tar entry still; lower chunk_size)", identifier, k,
                        chunk.part.data_size, ENTRY_LIMIT)
    archive = WmeArchive(archive=builder.finish(), level=level, zlib_ng=DEFLATE_VERSION)
    return WmeParts([Path(job.dst) for job in jobs], chunks, archive, prefix=prefix)


def verify_parts(blobs: BlobStore, manifest: Manifest, contents: Sequence[str]) -> None:
    """Re-read the WME parts of ``manifest`` (if it has them): each part's size and digests,
    its NDJSON against ``contents`` (the SHA-256 of each zstd chunk's NDJSON), its CRC-32 and
    zero padding, and the checksums of every ``chunk_<k>.tar.gz`` and of ``<id>.tar.gz``."""
    wme = wme_archive(manifest.representations)
    if wme is None:
        return
    whole = Digester(md5=True)
    whole.update(HEADER)
    parts: list[TarGzPart] = []
    for k, (chunk, content) in enumerate(zip(manifest.chunks, contents, strict=True)):
        files = chunk.wme
        if files is None:
            raise IntegrityError(f"chunk {chunk.identifier} has no WME part",
                                 identifier=manifest.identifier)
        part = files.part
        parts.append(part)
        archive = Digester(md5=True)
        archive.update(HEADER)
        archive.update(entry_header(chunk_entry_name(k), part.data_size))
        whole.update(entry_header(snapshot_entry_name(manifest.identifier, k), part.data_size))
        stored = Digester(md5=True)

        def tee(blocks: Iterable[bytes], sinks: tuple[Digester, ...] = (stored, archive, whole)
                ) -> Iterator[bytes]:
            for block in blocks:
                for sink in sinks:
                    sink.update(block)
                yield block

        data, lines, crc = _inflate(tee(blobs.open_range(files.key)), part.data_size)
        archive.update(archive_tail([(chunk_entry_name(k), part)]))
        problems = []
        if stored.result() != part.checksums:
            problems.append("the part does not match its checksums")
        if crc != part.crc32:
            problems.append("its CRC-32 differs from the recorded one")
        if data != content or part.data_size != chunk.uncompressed_size:
            problems.append("its NDJSON differs from the zstd chunk's")
        if lines != part.lines or lines != chunk.article_count:
            problems.append(f"it holds {lines} lines, manifest says {part.lines}")
        if archive.result() != files.archive:
            problems.append(f"chunk_{k}.tar.gz does not match its checksums")
        if problems:
            raise IntegrityError(f"WME part of chunk {chunk.identifier}: "
                                 + "; ".join(problems), identifier=manifest.identifier)
    whole.update(archive_tail([(snapshot_entry_name(manifest.identifier, k), part)
                               for k, part in enumerate(parts)]))
    if whole.result() != wme.archive:
        raise IntegrityError(f"{manifest.identifier}.tar.gz does not match its checksums",
                             identifier=manifest.identifier)


def _inflate(blocks: Iterable[bytes], data_size: int) -> tuple[str, int, int]:
    """SHA-256 and line count of the first ``data_size`` bytes a part inflates to, and the
    CRC-32 of all of it, checking that the rest is the zero padding to a tar block and that
    the part ends where its deflate data does (a sync flush, not a final block)."""
    inflate = zlib_ng.decompressobj(-zlib_ng.MAX_WBITS)
    digest = hashlib.sha256()
    seen = lines = crc = 0
    padding_ok = True
    try:
        for block in blocks:
            out = inflate.decompress(block)
            if inflate.eof:
                raise IntegrityError("a WME part must not end the deflate stream")
            take = max(0, min(len(out), data_size - seen))
            digest.update(out[:take])
            lines += out.count(b"\n", 0, take)
            padding_ok = padding_ok and not out[take:].strip(b"\x00")
            crc = zlib_ng.crc32(out, crc)
            seen += len(out)
    except _INFLATE_ERROR as exc:
        raise IntegrityError(f"corrupt WME part: {exc}") from exc
    if seen != padded(data_size) or not padding_ok:
        raise IntegrityError("WME part is truncated or badly padded")
    return digest.hexdigest(), lines, crc
