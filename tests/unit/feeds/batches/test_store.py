"""Hourly batches, pure parts: hour assignment, completeness, retention, latest-per-article,
deterministic files."""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import UTC, datetime

import msgspec
import pytest
import zstandard

from feedserver.errors import InvalidParameter
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.files import batch_files, latest, pick
from feedserver.formats.wme_layout import read_range, snapshot_archive
from feedserver.models import Article, Event, Namespace, Project
from feedserver.storage.eventlog import LogRecord

H = datetime(2026, 3, 1, 10, tzinfo=UTC)
START = hours.start_ms(H)
END = hours.end_ms(H)
GRACE = hours.DEFAULT_GRACE_MS


def record(page: int, ts: int, *, offset: int, partition: int = 0, wiki: str = "enwiki",
           ns: int = 0, kind: str = "update", text: str = "") -> LogRecord:
    article = Article(name=f"P{page}{text}", identifier=page, namespace=Namespace(identifier=ns),
                      is_part_of=Project(identifier=wiki),
                      event=Event(identifier=f"e{offset}", type=kind))  # type: ignore[arg-type]
    return LogRecord(topic="t", partition=partition, offset=offset, timestamp_ms=ts,
                     key=f"{wiki}/{ns}/{page}".encode(), value=msgspec.json.encode(article))


def md5(data: bytes) -> str:
    """WME's checksum (its ``version``), not a security measure."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_hour_of_boundaries() -> None:
    assert hours.hour_of(START) == H
    assert hours.hour_of(END - 1) == H
    assert hours.hour_of(END) == datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert hours.label(H) == "2026-03-01T10"
    assert (hours.date_text(H), hours.hour_text(H)) == ("2026-03-01", "10")


@pytest.mark.parametrize("raw", ["2026-03-01T24", "2026-02-30T01", "2026-03-01", "x",
                                 "2026-03-01T1", "2026-03-01T10:00", "../etc/passwd"])
def test_parse_hour_arg_rejects(raw: str) -> None:
    with pytest.raises(InvalidParameter):
        hours.parse_hour_arg(raw)


def test_parse_hour_and_date_hour() -> None:
    assert hours.parse_hour_arg("2026-03-01T10") == H
    assert hours.parse_date_hour("2026-03-01", "10") == H
    for d, h in (("2026-3-1", "10"), ("2026-03-01", "7"), ("2026-03-01", "99"),
                 ("2026-13-01", "00"), ("..", "00")):
        with pytest.raises(InvalidParameter):
            hours.parse_date_hour(d, h)


def test_partition_passed_and_complete() -> None:
    after = END + GRACE
    # A record stamped past end + grace: passed, whatever the end.
    assert hours.partition_passed(H, last_timestamp_ms=after, at_end=False, captured_ms=0)
    # Reached the end, but the end was captured before the grace ran out: not passed.
    assert not hours.partition_passed(H, last_timestamp_ms=END - 5, at_end=True,
                                      captured_ms=after - 1)
    assert hours.partition_passed(H, last_timestamp_ms=END - 5, at_end=True, captured_ms=after)
    # Stopped mid-hour without reaching the end: not passed.
    assert not hours.partition_passed(H, last_timestamp_ms=END - 5, at_end=False,
                                      captured_ms=after)
    assert hours.hour_complete(H, {0: True, 1: True}, after)
    assert not hours.hour_complete(H, {0: True, 1: False}, after)
    assert not hours.hour_complete(H, {0: True}, after - 1)  # not over yet


def test_pending_hours_within_retention() -> None:
    now = END + GRACE  # hour 10 just sealed
    assert hours.pending_hours(now, 48, [], earliest=None) == []
    got = hours.pending_hours(now, 3, [], earliest=datetime(2020, 1, 1, tzinfo=UTC))
    # Three hours kept: the three before the current one.
    assert [hours.label(h) for h in got] == ["2026-03-01T08", "2026-03-01T09",
                                             "2026-03-01T10"]
    got = hours.pending_hours(now, 48, [datetime(2026, 3, 1, 9, tzinfo=UTC)],
                              earliest=datetime(2026, 3, 1, 8, tzinfo=UTC))
    assert [hours.label(h) for h in got] == ["2026-03-01T08", "2026-03-01T10"]
    assert hours.pending_hours(now - 1, 48, [], earliest=H) == []  # grace not over


def test_latest_per_article_in_hour() -> None:
    recs = [
        record(1, START - 1, offset=0, text="before"),  # previous hour
        record(1, START, offset=1, text="a"),
        record(2, START + 10, offset=2, kind="delete"),
        record(1, START + 20, offset=3, text="b"),  # latest of page 1
        record(1, END, offset=4, text="next"),  # next hour
        record(3, START + 5, offset=0, partition=1, ns=10),
    ]
    out = latest(recs, START, END)
    names = {k.identifier: msgspec.json.decode(p.line)["name"] for k, p in out.items()}
    assert names == {1: "P1b", 2: "P2", 3: "P3"}
    assert out[next(k for k in out if k.identifier == 2)].event_type == "delete"


def test_latest_across_partitions_uses_timestamp() -> None:
    # The same article on two partitions (the partition count changed): later stamp wins.
    recs = [record(1, START + 50, offset=9, partition=0, text="new"),
            record(1, START + 10, offset=99, partition=1, text="old")]
    (p,) = latest(recs, START, END).values()
    assert b"P1new" in p.line


def test_pick_skips_bad_values() -> None:
    bad = LogRecord(topic="t", partition=0, offset=0, timestamp_ms=START, key=None,
                    value=b"not json")
    assert pick(bad) is None
    hostile = record(1, START, offset=0, wiki="../etc")
    assert pick(hostile) is None


def test_batch_files_deterministic_and_chunked() -> None:
    recs = [record(i, START + i, offset=i, text="x" * 200) for i in range(30, 0, -1)]
    recs.append(record(7, START + 99, offset=40, wiki="dewiki", kind="delete"))
    files = batch_files(latest(recs, START, END).values(), chunk_size=1000, level=3)
    again = batch_files(latest(reversed(recs), START, END).values(), chunk_size=1000, level=3)
    assert files == again
    assert [f.identifier for f in files] == ["dewiki_namespace_0", "enwiki_namespace_0"]
    de, en = files
    assert de.event_counts == {"delete": 1} and de.article_count == 1
    assert en.article_count == 30 and len(en.chunks) > 1
    data = b"".join(c.data for c in en.chunks)
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as r:
        lines = r.read().splitlines()
    assert [msgspec.json.decode(line)["identifier"] for line in lines] == list(range(1, 31))
    assert en.size == len(data) and en.date_modified == datetime.fromtimestamp(
        (START + 30) / 1000, tz=UTC)


def test_batch_files_wme_archive() -> None:
    """With a gzip level, each batch chunk also gets its WME part; ``<id>.tar.gz`` laid out
    from them holds the same NDJSON as the zstd chunks, one ``<id>_<n>.ndjson`` per chunk,
    and its recorded MD5 (the batch ``version``) is the archive's."""
    recs = [record(i, START + i, offset=i, text="x" * 200) for i in range(1, 31)]
    (plain,) = batch_files(latest(recs, START, END).values(), chunk_size=1000, level=3)
    (en,) = batch_files(latest(recs, START, END).values(), chunk_size=1000, level=3,
                        wme_level=6)
    assert plain.wme is None and en.wme is not None and en.wme.level == 6
    assert [c.data for c in en.chunks] == [c.data for c in plain.chunks]  # zstd unchanged
    parts = [c.wme.part for c in en.chunks if c.wme is not None]
    data = b"".join(read_range(snapshot_archive(en.identifier, parts),
                               lambda i, start, stop: [en.chunks[i].wme_data[start:stop]]))
    assert md5(data) == en.wme.archive.md5
    assert len(data) == en.wme.archive.size
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = tar.getnames()
        ndjson = b"".join(tar.extractfile(n).read() for n in names)  # type: ignore[union-attr]
    assert names == [f"enwiki_namespace_0_{k}.ndjson" for k in range(len(en.chunks))]
    with zstandard.ZstdDecompressor().stream_reader(
            io.BytesIO(b"".join(c.data for c in en.chunks)), read_across_frames=True) as r:
        assert ndjson == r.read()
