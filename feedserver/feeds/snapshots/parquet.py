"""Parquet shards of a sealed version, written from its sealed chunks, and their verification.

The build reads each sealed chunk once more (zstd decompression, not a pass over the dump:
sealing has dropped duplicates and attached redirects, so only sealed chunks are final), in
chunk order, decodes each line and hands it with its clean text to one
``ParquetShardWriter``: shards, row groups and checksums as ``feedserver.formats.parquet``
describes. The clean text (the costly part) is computed per chunk in the build's process pool
when it has one (``mapper``): a worker writes a chunk's texts to a scratch file while the parent
writes the previous chunk's rows, so the shards do not depend on the number of workers.

``verify_parquet`` re-hashes every shard in the blob store and proves its rows are the
version's: the ``article_sha256`` column of all shards hashes to the manifest's
``content_root_hash``.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from feedserver.errors import IntegrityError
from feedserver.feeds.snapshots.chunks import ARTICLE_DECODER, iter_file_lines
from feedserver.feeds.snapshots.manifest import PREFIX, Manifest, Prefix, version_prefix
from feedserver.feeds.snapshots.sealing import SealedSnapshot
from feedserver.feeds.snapshots.shards import (
    CLEANER,
    FOLDER,
    SUFFIX,
    ParquetSet,
    ParquetShard,
    clean_text,
    shard_identifier,
)
from feedserver.feeds.snapshots.structured_rows import HASH_COLUMN as STRUCTURED_HASH_COLUMN
from feedserver.formats.hashing import RootHasher
from feedserver.formats.parquet import ParquetShardWriter, ShardInfo
from feedserver.formats.parquet_rows import Kind, schema_of
from feedserver.models import Article
from feedserver.storage.blobs import BlobStore

_TEXTS = msgspec.msgpack.Decoder(list[str])


class ParquetOptions(msgspec.Struct, frozen=True, kw_only=True):
    shard_size: int
    row_group_size: int


class TextJob(msgspec.Struct, frozen=True, kw_only=True):
    """One sealed chunk whose clean texts a worker writes to ``dst`` (small: sent to a
    worker process)."""

    src: str
    dst: str
    namespaces: dict[int, str]


# Runs text jobs, possibly in other processes; results in job order (like Executor.map).
TextMapper = Callable[[Callable[[TextJob], int], Iterable[TextJob]], Iterable[int]]
# The clean text of the next sealed record, when another build step already computed it
# (``structured_parquet.StructuredTexts``); None: compute it here.
KnownText = Callable[[Article], str | None]


def chunk_texts(job: TextJob) -> int:
    """Write the clean text of every record of a sealed chunk to ``job.dst``; the count."""
    cleaner = clean_text(job.namespaces)
    texts = [cleaner(ARTICLE_DECODER.decode(line)) for line in iter_file_lines(Path(job.src))]
    data = zstandard.ZstdCompressor(level=1).compress(msgspec.msgpack.encode(texts))
    Path(job.dst).write_bytes(data)
    return len(texts)


def _read_texts(path: Path) -> list[str]:
    texts = _TEXTS.decode(zstandard.ZstdDecompressor().decompress(path.read_bytes()))
    path.unlink()
    return texts


def schema_name(schema: pa.Schema) -> str:
    """The ``feedserver.format`` metadata of a row schema: "articles/1", "structured/1"..."""
    meta: dict[bytes, bytes] = schema.metadata or {}
    return meta.get(b"feedserver.format", b"").decode()


def shard_set(shards: list[ShardInfo], prefix: str, identifier: str, *, schema: str,
              namespaces: Mapping[int, str], options: ParquetOptions) -> ParquetSet:
    """The manifest's record of ``shards`` stored under ``prefix + "parquet/"``."""
    listed = [ParquetShard(
        identifier=shard_identifier(identifier, k), index=k,
        key=prefix + FOLDER + shard_identifier(identifier, k) + SUFFIX, rows=s.rows,
        row_groups=s.row_groups, size=s.checksums.size, sha256=s.checksums.sha256)
        for k, s in enumerate(shards)]
    return ParquetSet(
        schema=schema, shards=listed,
        rows=sum(s.rows for s in listed), size=sum(s.size for s in listed),
        pyarrow=pa.__version__, text=CLEANER, namespaces=dict(namespaces),
        shard_size=options.shard_size, row_group_size=options.row_group_size)


def shard_writer(folder: Path, identifier: str, *, kind: Kind, namespaces: Mapping[int, str],
                 options: ParquetOptions) -> ParquetShardWriter:
    folder.mkdir(parents=True, exist_ok=True)
    return ParquetShardWriter(
        folder, lambda k: shard_identifier(identifier, k) + SUFFIX, kind=kind,
        clean_text=clean_text(namespaces), shard_size=options.shard_size,
        row_group_size=options.row_group_size)


class BuiltParquet:
    """Shards written to a local folder, ready to publish (``extras.Extra``)."""

    def __init__(self, folder: Path, identifier: str, shards: list[ShardInfo], *,
                 namespaces: Mapping[int, str], options: ParquetOptions,
                 kind: Kind = "articles", schema: str | None = None,
                 prefix: Prefix = PREFIX) -> None:
        self.folder = folder
        self.identifier = identifier
        self.shards = shards
        self.namespaces = dict(namespaces)
        self.options = options
        # "articles/1", "diff/1", or another row kind's ("structured/1")
        self.schema = schema if schema is not None else schema_name(schema_of(kind))
        self.prefix: Prefix = prefix  # where the version is published

    def files(self) -> list[tuple[str, Path]]:
        """(name under the version's folder, local file) of every shard."""
        return [(FOLDER + s.name, self.folder / s.name) for s in self.shards]

    def parquet_set(self, prefix: str) -> ParquetSet:
        return shard_set(self.shards, prefix, self.identifier, schema=self.schema,
                         namespaces=self.namespaces, options=self.options)

    def record(self, manifest: Manifest) -> Manifest:
        prefix = version_prefix(manifest.identifier, manifest.version, self.prefix)
        return msgspec.structs.replace(manifest, parquet=self.parquet_set(prefix))


def build_parquet(sealed: SealedSnapshot, *, identifier: str, folder: Path,
                  options: ParquetOptions, namespaces: Mapping[int, str],
                  mapper: TextMapper | None = None, known: KnownText | None = None
                  ) -> BuiltParquet:
    """Shards of every record of ``sealed``, in chunk order, under ``folder``. ``known``:
    the texts another step of the build computed already (then nothing is parsed for the
    records it knows, and ``mapper`` is not needed)."""
    writer = shard_writer(folder, identifier, kind="articles", namespaces=namespaces,
                          options=options)
    jobs = [TextJob(src=c.path, dst=str(folder / f"texts_{k}.msgpack.zst"),
                    namespaces=dict(namespaces)) for k, c in enumerate(sealed.chunks)]
    done: Iterator[int] | None = None
    if mapper is not None and known is None and len(jobs) > 1:
        done = iter(mapper(chunk_texts, jobs))
    try:
        for job in jobs:
            texts: Iterator[str] | None = None
            if done is not None:
                next(done)
                texts = iter(_read_texts(Path(job.dst)))
            for line in iter_file_lines(Path(job.src)):
                article = ARTICLE_DECODER.decode(line)
                text = next(texts) if texts is not None else None
                if known is not None:
                    text = known(article)
                writer.add(article, line, text=text)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    rows = sum(s.rows for s in shards)
    if rows != sealed.article_count:
        raise IntegrityError(f"{identifier}: {rows} Parquet rows for "
                             f"{sealed.article_count} records")
    return BuiltParquet(folder, identifier, shards, namespaces=namespaces, options=options)


def _fetch_checked(blobs: BlobStore, shard: ParquetShard, out: IO[bytes]) -> None:
    """Copy a stored shard to ``out``, hashing it; ``IntegrityError`` when it differs from
    the manifest."""
    digest = hashlib.sha256()
    size = 0
    for block in blobs.open_range(shard.key):
        digest.update(block)
        size += len(block)
        out.write(block)
    if size != shard.size or digest.hexdigest() != shard.sha256:
        raise IntegrityError(f"Parquet shard {shard.identifier} does not match its checksum "
                             f"({size} B sha256 {digest.hexdigest()}, manifest: {shard.size} B "
                             f"sha256 {shard.sha256})", identifier=shard.identifier)


def hash_column(schema: str) -> str:
    """The column of a row schema holding each row's record hash."""
    return STRUCTURED_HASH_COLUMN if schema.startswith("structured/") else "article_sha256"


def verify_parquet(blobs: BlobStore, parquet: ParquetSet, *, rows: int,
                   content_root_hash: str | None = None) -> None:
    """Every shard's bytes, row counts and (for article rows, ``content_root_hash`` given)
    the per-article hashes against the manifest; raises ``IntegrityError``. Each shard is
    spooled to a temporary file while hashed and read from there by pyarrow (never through a
    Python file object: pyarrow may release its buffers on its own threads at exit)."""
    root = RootHasher()
    total = 0
    hashed = hash_column(parquet.schema)
    for shard in parquet.shards:
        with tempfile.NamedTemporaryFile(suffix=SUFFIX) as tmp:
            _fetch_checked(blobs, shard, tmp)
            tmp.flush()
            try:
                with pq.ParquetFile(tmp.name) as meta:
                    count = meta.metadata.num_rows
                    for group in range(meta.num_row_groups if content_root_hash else 0):
                        column = meta.read_row_group(group, columns=[hashed])
                        for digest in column.column(0).to_pylist():
                            root.add(digest)
            except (OSError, pa.ArrowException) as exc:
                raise IntegrityError(f"Parquet shard {shard.identifier} is unreadable: "
                                     f"{exc}") from exc
        if count != shard.rows:
            raise IntegrityError(f"Parquet shard {shard.identifier} holds {count} rows, "
                                 f"manifest says {shard.rows}")
        total += count
    if total != rows or total != parquet.rows:
        raise IntegrityError(f"the Parquet shards hold {total} rows, manifest says {rows}")
    if content_root_hash is not None and root.hexdigest() != content_root_hash:
        raise IntegrityError(f"the Parquet rows' {hashed} do not hash to the content "
                             "root hash")


def convert_lines(lines: Iterable[bytes], *, identifier: str, folder: Path,
                  options: ParquetOptions, namespaces: Mapping[int, str]) -> BuiltParquet:
    """Shards of the records ``lines`` (a published version's, in order) under ``folder``:
    Parquet of a version published without it, for an offline hand-over."""
    writer = shard_writer(folder, identifier, kind="articles", namespaces=namespaces,
                          options=options)
    try:
        for line in lines:
            writer.add(ARTICLE_DECODER.decode(line), line)
        shards = writer.close()
    except BaseException:
        writer.abort()
        raise
    return BuiltParquet(folder, identifier, shards, namespaces=namespaces, options=options)


def copy_shard(blobs: BlobStore, shard: ParquetShard, path: Path) -> None:
    """Download a stored shard to ``path``, checked against the manifest while it is written
    (``IntegrityError``, and no file, when it differs)."""
    tmp = path.with_name(path.name + ".part")
    try:
        with tmp.open("wb") as out:
            _fetch_checked(blobs, shard, out)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
