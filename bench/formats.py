"""Cost of the extra download formats, as ratios to the zstd NDJSON chunks of the same run.

Input: every article of the real elwikivoyage sample dump, read once with ``read_dump``.
Cases (best of ``REPEATS`` each, rounds interleaved so that shared load hits them alike):

* ``zstd NDJSON`` (baseline): ``ChunkWriter`` as staging runs it (encode, line digests, zstd
  level 3 per chunk of ``CHUNK`` bytes);
* ``+ WME tar.gz``: the baseline, then each chunk decompressed and deflated into its WME part
  (``SnapshotArchiveBuilder``: the build path, checksums of every download included), at
  zlib-ng levels 6 (default) and 1;
* ``+ Parquet``: the baseline, then each chunk's lines decoded to ``Article`` and written to
  Parquet shards (clean text: the placeholder, i.e. the wikitext again);
* references: the WME archive written from lines by ``TarGzWriter`` (spooling), and by the
  standard library (``tarfile`` ``w:gz``, zlib) to show what zlib-ng buys.

Then the bytes of each format, and how fast a client decodes each back to records: zstd
lines, the SDK's way for tar.gz (zlib-ng threaded gzip + ``tarfile`` stream), Parquet read
into Arrow. Rates are MB/s of NDJSON.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import zstandard
from zlib_ng import gzip_ng_threaded

from feedserver.feeds.snapshots.chunks import (
    ARTICLE_DECODER,
    ChunkWriter,
    StagedChunk,
    iter_file_lines,
)
from feedserver.formats.hashing import ENCODER
from feedserver.formats.parquet import ParquetShardWriter, shard_name
from feedserver.formats.parquet_rows import wikitext_text
from feedserver.formats.wme_layout import SnapshotArchiveBuilder, snapshot_archive_size
from feedserver.formats.wme_tar import TarGzWriter, snapshot_entry_name
from feedserver.ingest.dump import read_dump
from feedserver.models import Article

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT.parent / "shared/data/dumps/operations-dumps-mwbzutils/sample-pages-articles.xml.bz2"
ID = "elwikivoyage_namespace_0"
CHUNK = 4 * 1024 * 1024  # several chunks from a 13 MB dump, as 64 MB chunks from a big one
REPEATS = 5
_READ = 1 << 20


def zstd_blocks(chunk: StagedChunk) -> list[bytes]:
    with Path(chunk.path).open("rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as r:
        return list(iter(lambda: r.read(_READ), b""))


class Run:
    """One case's scratch folder and outputs (bytes written per format)."""

    def __init__(self, articles: list[Article], folder: Path) -> None:
        self.articles = articles
        self.folder = folder
        self.sizes: dict[str, int] = {}

    def chunks(self) -> list[StagedChunk]:
        writer = ChunkWriter(self.folder, chunk_size=CHUNK, level=3)
        for article in self.articles:
            writer.add(article.namespace.identifier, article)
        chunks = writer.close()
        self.sizes["zstd NDJSON"] = sum(Path(c.path).stat().st_size for c in chunks)
        return chunks

    def wme(self, level: int) -> None:
        builder = SnapshotArchiveBuilder(ID, level=level)
        for k, chunk in enumerate(self.chunks()):
            with (self.folder / f"part_{k}.gz").open("wb") as out:
                builder.add_chunk(zstd_blocks(chunk), out, data_size=chunk.uncompressed_size)
        builder.finish()
        self.sizes[f"WME tar.gz level {level}"] = snapshot_archive_size(builder.parts)

    def parquet(self, name: str, clean: Callable[[Article], str]) -> None:
        writer = ParquetShardWriter(self.folder, lambda k: shard_name(ID, k), clean_text=clean)
        for chunk in self.chunks():
            for line in iter_file_lines(Path(chunk.path)):
                writer.add(ARTICLE_DECODER.decode(line), line)
        self.sizes[name] = sum(s.checksums.size for s in writer.close())

    def tar_lines(self) -> None:
        with (self.folder / "lines.tar.gz").open("wb") as out:
            writer = TarGzWriter(out, entry_name=lambda n: snapshot_entry_name(ID, n),
                                 entry_limit=CHUNK, spool_dir=self.folder)
            for article in self.articles:
                writer.add(ENCODER.encode(article))
            writer.close()

    def stdlib_tar(self, data: bytes) -> None:
        info = tarfile.TarInfo(f"{ID}_0.ndjson")
        info.size = len(data)
        with tarfile.open(self.folder / "std.tar.gz", "w:gz", compresslevel=6) as tar:
            tar.addfile(info, io.BytesIO(data))


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run() -> None:
    _, records = read_dump(DUMP, wiki=None, namespaces=None)
    articles = [r for r in records if isinstance(r, Article)]
    ndjson = b"".join(ENCODER.encode(a) + b"\n" for a in articles)
    mb = len(ndjson) / 1e6
    sizes: dict[str, int] = {}

    def case(fn: Callable[[Run], object]) -> Callable[[], object]:
        def go() -> None:
            with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
                job = Run(articles, Path(tmp))
                fn(job)
                sizes.update(job.sizes)
        return go

    cases: list[tuple[str, Callable[[], object]]] = [
        ("zstd NDJSON (baseline)", case(Run.chunks)),
        ("+ WME tar.gz (zlib-ng 6)", case(lambda r: r.wme(6))),
        ("+ WME tar.gz (zlib-ng 1)", case(lambda r: r.wme(1))),
        ("+ Parquet (text = wikitext)", case(lambda r: r.parquet("Parquet, text = wikitext",
                                                                 wikitext_text))),
        ("+ Parquet (text empty)", case(lambda r: r.parquet("Parquet, text empty",
                                                            lambda _: ""))),
        ("ref: TarGzWriter from lines", case(Run.tar_lines)),
        ("ref: stdlib tarfile w:gz (zlib 6)", case(lambda r: r.stdlib_tar(ndjson))),
    ]
    best = {label: float("inf") for label, _ in cases}
    for _ in range(REPEATS):
        for label, fn in cases:
            best[label] = min(best[label], timed(fn))
    base = best[cases[0][0]]
    print(f"{len(articles)} articles, {mb:.1f} MB NDJSON; best of {REPEATS}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("write: MB/s of NDJSON, and time as a ratio to the baseline")
    for label, _ in cases:
        print(f"  {label:<36} {mb / best[label]:7.1f} MB/s  {best[label] / base:5.2f}x time")
    print("bytes: as a ratio to zstd NDJSON")
    for name, size in sizes.items():
        print(f"  {name:<36} {size / 1e6:7.2f} MB  {size / sizes['zstd NDJSON']:5.2f}x")
    read_rates(articles, ndjson, mb)


def read_rates(articles: list[Article], ndjson: bytes, mb: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as tmp:
        job = Run(articles, Path(tmp))
        chunks = job.chunks()
        job.wme(6)
        job.parquet("p", wikitext_text)
        archive = Path(tmp) / "whole.tar.gz"
        with archive.open("wb") as out:
            writer = TarGzWriter(out, entry_name=lambda n: snapshot_entry_name(ID, n))
            writer.add_lines(ndjson.splitlines())
            writer.close()
        shards = sorted(Path(tmp).glob("*.parquet"))

        def zstd_read() -> None:
            for chunk in chunks:
                for _ in iter_file_lines(Path(chunk.path)):
                    pass

        def sdk_read() -> None:
            with archive.open("rb") as fh, gzip_ng_threaded.open(fh, "rb", threads=-1) as gz, \
                    tarfile.open(fileobj=gz, mode="r|") as tar:
                for member in tar:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        for _ in handle:
                            pass

        def parquet_read() -> None:
            for shard in shards:
                pq.read_table(shard)

        reads = [("zstd NDJSON lines (baseline)", zstd_read),
                 ("tar.gz, the SDK's way", sdk_read), ("Parquet to Arrow", parquet_read)]
        best = {label: min(timed(fn) for _ in range(REPEATS)) for label, fn in reads}
    base = best[reads[0][0]]
    print("read: MB/s of NDJSON decoded back, and time as a ratio to the baseline")
    for label, _ in reads:
        print(f"  {label:<36} {mb / best[label]:7.1f} MB/s  {best[label] / base:5.2f}x time")


if __name__ == "__main__":
    run()
