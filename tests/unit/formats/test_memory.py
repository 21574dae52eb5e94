"""Flat memory: the writers hold one block / one row group, whatever the input size.

Measured with tracemalloc (Python allocations, deterministic), not time: 24 MB of input
must pass through with a small, input-independent peak."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

from feedserver.formats.parquet import ParquetShardWriter
from feedserver.formats.wme_tar import TarGzWriter
from feedserver.models import Article, ArticleBody, Namespace, Project

TOTAL = 24_000_000
SIZE = 4000


def lines() -> Iterator[bytes]:
    for i in range(TOTAL // SIZE):
        yield b'{"i":%d,"t":"' % i + (b"%08d" % i) * (SIZE // 8) + b'"}'


def articles() -> Iterator[Article]:
    for i in range(TOTAL // SIZE):
        yield Article(name=f"Page {i}", identifier=i, namespace=Namespace(identifier=0),
                      is_part_of=Project(identifier="xxwiki"),
                      article_body=ArticleBody(wikitext=f"{i:08d}" * (SIZE // 8)))


def peak(run: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_tar_writer_memory_is_flat(tmp_path: Path) -> None:
    def run() -> None:
        with (tmp_path / "a.tar.gz").open("wb") as out:
            writer = TarGzWriter(out, entry_name=lambda n: f"e_{n}.ndjson", spool_dir=tmp_path)
            writer.add_lines(lines())  # one entry: all of it is spooled, none held
            writer.close()

    assert peak(run) < 8_000_000


def test_parquet_writer_memory_is_flat(tmp_path: Path) -> None:
    def run() -> None:
        writer = ParquetShardWriter(tmp_path, lambda k: f"s_{k}.parquet",
                                    row_group_size=1_000_000)
        writer.add_all(articles())
        assert sum(s.rows for s in writer.close()) == TOTAL // SIZE

    # One row group of Python strings (x2 for text and wikitext) plus bookkeeping.
    assert peak(run) < 8_000_000
