"""Diffs as Parquet: a lab applies base + diff with a dataframe join and gets the next version,
row for row (same row hashes, same content root hash as the NDJSON feed)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from feedserver.feeds.diffs.build import compute_diff
from feedserver.feeds.diffs.manifest import ENTRY_DECODER, RAW_ENTRY_DECODER, RawDelete
from feedserver.feeds.snapshots.chunks import iter_file_lines
from feedserver.formats.hashing import ENCODER, RootHasher, article_hash
from feedserver.formats.parquet import ParquetShardWriter
from feedserver.formats.parquet_rows import ARTICLE_SCHEMA, KEY, Kind
from feedserver.models import Article, ArticleBody, DiffDelete, Version, article_key

COLUMNS = ARTICLE_SCHEMA.names


def versions(articles: list[Article]) -> tuple[list[Article], list[Article]]:
    """A base and a next version from real articles: deletes, updates, adds and untouched."""
    unique = list({article_key(a): a for a in articles}.values())
    base, extra = unique[:1000], unique[1000:1150]
    nxt = []
    for i, article in enumerate(base):
        if i % 13 == 0:
            continue  # deleted
        if i % 7 == 0:
            body = (article.article_body.wikitext or "") if article.article_body else ""
            rev = article.version.identifier if article.version else 0
            article = msgspec.structs.replace(
                article, article_body=ArticleBody(wikitext=body + "\n[[Κατηγορία:Νέα]]"),
                version=Version(identifier=rev + 1))
        nxt.append(article)
    return base, nxt + extra


def shards(records: list[Any], folder: Path, *, kind: Kind = "articles") -> str:
    folder.mkdir()
    writer = ParquetShardWriter(folder, lambda k: f"part_{k}.parquet", kind=kind,
                                shard_size=400_000, row_group_size=100_000)
    for record in records:
        if kind == "diff":
            writer.add_entry(record[0], record[1])
        else:
            writer.add(record)
    assert writer.close()
    return str(folder / "*.parquet")


def row_hash(row: dict[str, Any]) -> str:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime | date) else value

    text = json.dumps({k: plain(v) for k, v in row.items()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def tables(articles: list[Article], tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("diff")
    base, nxt = versions(articles)
    base_lines = [ENCODER.encode(a) for a in base]
    next_lines = [ENCODER.encode(a) for a in nxt]
    (tmp / "ndjson").mkdir()
    # The diff entries come from the real diff builder, as the diff feed publishes them.
    computed = compute_diff(lambda: base_lines, lambda: next_lines, tmp / "ndjson",
                            chunk_size=1 << 20, level=3)
    entries = []
    for chunk in computed.chunks:
        for line in iter_file_lines(Path(chunk.path)):
            raw = RAW_ENTRY_DECODER.decode(line)
            article_line = None if isinstance(raw, RawDelete) else bytes(raw.article)
            entries.append((ENTRY_DECODER.decode(line), article_line))
    assert {type(e).__name__ for e, _ in entries} == {"DiffAdd", "DiffUpdate", "DiffDelete"}
    assert isinstance(entries[0][0], DiffDelete)
    return {"base": shards(base, tmp / "base"), "next": shards(nxt, tmp / "next"),
            "diff": shards(entries, tmp / "diff", kind="diff"),
            "root": computed.content_root_hash}


def test_duckdb_join_applies_the_diff(tables: dict[str, str]) -> None:
    cols = ", ".join(COLUMNS)
    keys = ", ".join(KEY)
    # The lab's whole "apply" (as in docs/formats.md): keep the base rows whose key the diff
    # does not name, add the diff's added and updated rows.
    applied = (f"SELECT * FROM read_parquet('{tables['base']}') AS base "
               f"ANTI JOIN read_parquet('{tables['diff']}') AS diff USING ({keys}) "
               "UNION ALL SELECT * EXCLUDE (op, previous_revision_id) "
               f"FROM read_parquet('{tables['diff']}') WHERE op <> 'delete'")
    nxt = f"SELECT {cols} FROM read_parquet('{tables['next']}')"
    con = duckdb.connect()
    assert con.sql(f"SELECT count(*) FROM ({applied})").fetchall() == con.sql(
        f"SELECT count(*) FROM ({nxt})").fetchall()
    # Every column equal, nested lists of structs included, duplicates counted (and the check
    # has teeth: the base alone is not equal to N).
    assert con.sql(f"(SELECT * FROM read_parquet('{tables['base']}')) EXCEPT ALL ({nxt})"
                   ).fetchall()
    assert con.sql(f"({applied}) EXCEPT ALL ({nxt})").fetchall() == []
    assert con.sql(f"({nxt}) EXCEPT ALL ({applied})").fetchall() == []
    # The row hashes the writer stored prove the result is the NDJSON version N.
    root = RootHasher()
    for (digest,) in con.sql(f"SELECT article_sha256 FROM ({applied})").fetchall():
        root.add(digest)
    assert root.hexdigest() == tables["root"]


def test_pyarrow_join_applies_the_diff(tables: dict[str, str]) -> None:
    base = ds.dataset(tables["base"].rsplit("/", 1)[0]).to_table()
    diff = ds.dataset(tables["diff"].rsplit("/", 1)[0]).to_table()
    nxt = ds.dataset(tables["next"].rsplit("/", 1)[0]).to_table()
    # Acero joins carry no list columns, so join the keys with a row number and take rows.
    numbered = base.select(list(KEY)).append_column("row", pa.array(range(base.num_rows)))
    kept = numbered.join(diff.select(list(KEY)), keys=list(KEY), join_type="left anti")
    survivors = base.take(sorted(kept.column("row").to_pylist()))
    changed = diff.filter(pc.field("op") != "delete").select(COLUMNS)
    applied = survivors.to_pylist() + changed.to_pylist()
    assert sorted(map(row_hash, applied)) == sorted(map(row_hash, nxt.to_pylist()))
    assert sorted(r["article_sha256"] for r in applied) == sorted(
        nxt.column("article_sha256").to_pylist())


def test_stored_hash_is_the_ndjson_line_hash(articles: list[Article], tmp_path: Path) -> None:
    writer = ParquetShardWriter(tmp_path, lambda k: f"{k}.parquet")
    for article in articles[:100]:
        writer.add(article)  # no line given: the canonical encoding is hashed
    writer.close()
    got = ds.dataset(tmp_path).to_table(columns=["article_sha256"]).column(0).to_pylist()
    assert got == [article_hash(ENCODER.encode(a)) for a in articles[:100]]
