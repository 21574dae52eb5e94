"""Parquet shards: read back by pyarrow.dataset and duckdb, sizes honoured, bytes stable,
corruption caught, the Hugging Face ``wikimedia/wikipedia`` features matched."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.errors import IntegrityError
from feedserver.formats.parquet import (
    ParquetShardWriter,
    ShardInfo,
    shard_name,
    verify_shard,
    write_shards,
)
from feedserver.formats.parquet_rows import HF_FEATURES, wikitext_text
from feedserver.models import Article, Namespace, Project

ID = "elwikivoyage_namespace_0"


def marked_text(article: Article) -> str:
    # A stand-in cleaner that differs from every other column, to see that it is the one used.
    return f"clean:{article.identifier}:{wikitext_text(article)[:50]}"


def write(articles: list[Article], folder: Path, **options: int) -> list[ShardInfo]:
    writer = ParquetShardWriter(folder, lambda k: shard_name(ID, k), clean_text=marked_text,
                                **options)
    writer.add_all(articles)
    return writer.close()


def test_pyarrow_dataset_and_duckdb_read_every_row(articles: list[Article], tmp_path: Path
                                                   ) -> None:
    shards = write(articles, tmp_path, shard_size=1_000_000, row_group_size=200_000)
    assert len(shards) > 2
    assert [s.name for s in shards] == [shard_name(ID, k) for k in range(len(shards))]
    assert sum(s.rows for s in shards) == len(articles)
    ids = [str(a.identifier) for a in articles]
    texts = [marked_text(a) for a in articles]
    table = ds.dataset(tmp_path, format="parquet").to_table(columns=["id", "text"])
    assert table.column("id").to_pylist() == ids  # shards in name order keep record order
    assert table.column("text").to_pylist() == texts
    files = [str(tmp_path / s.name) for s in shards]
    rows = duckdb.sql(f"SELECT id, text FROM read_parquet({files!r})").fetchall()
    assert rows == list(zip(ids, texts, strict=True))


def test_typed_columns_hold_the_records(articles: list[Article], tmp_path: Path) -> None:
    shards = write(articles[:300], tmp_path)
    rows = pq.read_table(tmp_path / shards[0].name).to_pylist()
    for article, row in zip(articles[:300], rows, strict=True):
        assert row["title"] == article.name and row["url"] == article.url
        assert row["revision_id"] == (article.version.identifier if article.version else None)
        assert row["date_modified"] == article.date_modified
        assert (row["namespace"], row["wiki"]) == (article.namespace.identifier,
                                                  article.is_part_of.identifier)
        assert row["wikitext"] == (article.article_body.wikitext if article.article_body
                                   else None)
        for name in ("categories", "templates", "redirects"):
            links = getattr(article, name)
            assert row[name] == (None if links is None else
                                 [{"name": x.name, "url": x.url} for x in links])
        assert row["license"] == (None if article.license is None else [
            {"identifier": x.identifier, "name": x.name, "url": x.url} for x in article.license])


def test_shard_size_is_honoured_and_shards_are_filled(articles: list[Article], tmp_path: Path
                                                      ) -> None:
    limit = 600_000
    shards = write(articles, tmp_path, shard_size=limit, row_group_size=60_000)
    for shard in shards:
        size = (tmp_path / shard.name).stat().st_size
        assert size == shard.checksums.size <= limit
    # Not cut needlessly early either: every shard but the last is at least half full.
    assert all(s.checksums.size > limit // 2 for s in shards[:-1])
    for shard in shards:
        meta = pq.ParquetFile(tmp_path / shard.name).metadata
        assert (meta.num_rows, meta.num_row_groups) == (shard.rows, shard.row_groups)


def test_one_column_of_one_row_group_can_be_read_alone(articles: list[Article], tmp_path: Path
                                                       ) -> None:
    shards = write(articles, tmp_path, row_group_size=500_000)
    assert shards[0].row_groups > 3
    titles = pq.ParquetFile(tmp_path / shards[0].name).read_row_group(2, columns=["title"])
    assert titles.num_rows > 0 and titles.column_names == ["title"]


def test_bytes_identical_across_runs(articles: list[Article], tmp_path: Path) -> None:
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    one = write(articles, tmp_path / "a", shard_size=1_500_000)
    two = write(articles, tmp_path / "b", shard_size=1_500_000)
    assert one == two
    for shard in one:
        assert (tmp_path / "a" / shard.name).read_bytes() == (tmp_path / "b" / shard.name
                                                              ).read_bytes()


def test_corrupt_shard_is_detected(articles: list[Article], tmp_path: Path) -> None:
    (shard,) = write_shards(articles[:400], tmp_path, ID, clean_text=marked_text)
    path = tmp_path / shard.name
    verify_shard(path, shard)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match its checksum"):
        verify_shard(path, shard)
    # Readers that check page CRC-32s refuse it on their own, manifest or not.
    with pytest.raises(OSError):
        pq.read_table(path, page_checksum_verification=True)


def test_hugging_face_features(articles: list[Article], tmp_path: Path) -> None:
    # The ``datasets`` package (pandas, hub client, ...) is too heavy for the test budget; its
    # Value("string") feature is arrow ``string``, so the same check is made with pyarrow:
    # the four columns of wikimedia/wikipedia come first, with its names and types.
    (shard,) = write_shards(articles[:50], tmp_path, ID)
    schema = pq.read_schema(tmp_path / shard.name)
    assert schema.names[:4] == list(HF_FEATURES) == ["id", "url", "title", "text"]
    for name, dtype in HF_FEATURES.items():
        assert schema.field(name).type == pa.string() and dtype == "string"
    hf = pq.read_table(tmp_path / shard.name, columns=list(HF_FEATURES))
    assert hf.schema.remove_metadata() == pa.schema(
        [pa.field("id", pa.string(), nullable=False), pa.field("url", pa.string()),
         pa.field("title", pa.string(), nullable=False),
         pa.field("text", pa.string(), nullable=False)])
    assert all(isinstance(v, str) and v.isdigit() for v in hf.column("id").to_pylist())


@settings(max_examples=25, deadline=None)
@given(titles=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=20),
       body=st.text(max_size=200))
def test_any_unicode_roundtrips(titles: list[str], body: str, tmp_path_factory: pytest.
                                TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("pq")
    records = [Article(name=t, identifier=i, namespace=Namespace(identifier=0),
                       is_part_of=Project(identifier="xxwiki"))
               for i, t in enumerate(titles)]
    writer = ParquetShardWriter(folder, lambda k: f"s{k}.parquet", clean_text=lambda _: body,
                                row_group_size=50)
    writer.add_all(records)
    shards = writer.close()
    table = ds.dataset([str(folder / s.name) for s in shards]).to_table()
    assert table.column("title").to_pylist() == titles
    assert table.column("text").to_pylist() == [body] * len(titles)


def test_wrong_record_kind_is_refused(tmp_path: Path) -> None:
    writer = ParquetShardWriter(tmp_path, lambda k: f"{k}.parquet", kind="diff")
    with pytest.raises(ValueError, match="takes entries"):
        writer.add(Article(name="a", identifier=1, namespace=Namespace(identifier=0),
                           is_part_of=Project(identifier="xxwiki")))
    assert writer.close() == []
