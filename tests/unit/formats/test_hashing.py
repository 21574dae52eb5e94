"""Canonical NDJSON lines, the order-independent content root hash, and file checksums."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import msgspec

from feedserver.formats.checksums import checksum_file
from feedserver.formats.hashing import RootHasher, article_hash, encode_line, root_hash
from feedserver.models import Article, Namespace, Project


def _article(i: int) -> Article:
    return Article(name=f"Page {i}", identifier=i, namespace=Namespace(identifier=0),
                   is_part_of=Project(identifier="testwiki"))


def test_encode_line_is_canonical_ndjson() -> None:
    buf = bytearray()
    view = encode_line(_article(1), buf)
    line = bytes(view)
    del view
    assert bytes(buf) == line + b"\n"
    assert line == msgspec.json.encode(_article(1))
    assert b"abstract" not in line  # omit_defaults
    assert article_hash(line) == article_hash(line + b"\n") == hashlib.sha256(line).hexdigest()


def test_root_hash_is_order_independent_and_spills() -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(2500)]
    expected = hashlib.sha256("".join(h + "\n" for h in sorted(hashes)).encode()).hexdigest()
    shuffled = hashes[:]
    random.Random(7).shuffle(shuffled)
    assert root_hash(hashes) == root_hash(shuffled) == expected
    small = RootHasher(run_limit=100)  # forces 25 sorted runs merged from disk
    for h in shuffled:
        small.add(h)
    assert small.count == 2500
    assert small.hexdigest() == expected
    assert RootHasher().hexdigest() == hashlib.sha256(b"").hexdigest()


def test_checksum_file_feeds_the_whole_download(tmp_path: Path) -> None:
    # A download is several files back to back: each file's checksum and, fed the same
    # bytes in the same pass, the whole download's digest.
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(b"x" * (3 << 20))  # more than one read block
    parts[1].write_bytes(b"tail")
    whole = hashlib.sha256()
    sums = [checksum_file(p, also=whole) for p in parts]
    assert [s.size for s in sums] == [3 << 20, 4]
    assert sums[1].sha256 == hashlib.sha256(b"tail").hexdigest() and sums[1].md5 is None
    assert whole.hexdigest() == hashlib.sha256(b"x" * (3 << 20) + b"tail").hexdigest()
    assert checksum_file(parts[1], md5=True).md5 == hashlib.md5(b"tail").hexdigest()  # noqa: S324
