"""One gzip member from pieces written apart; bytes that depend on their content only."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.formats.gzip_pieces import (
    HEADER,
    DeflatePiece,
    crc32,
    crc32_combine,
    stored_blocks,
    stored_blocks_size,
    stored_member,
    trailer,
)


@given(data=st.binary(max_size=200_000) | st.sampled_from([b"", bytes(65535), bytes(65536)]))
def test_stored_blocks_are_standard_deflate_of_known_size(data: bytes) -> None:
    member = stored_member(data)
    assert member.startswith(HEADER)
    assert len(stored_blocks(data, final=True)) == stored_blocks_size(len(data))
    assert gzip.decompress(member) == data
    assert zlib.decompress(member, wbits=31) == data  # stock zlib agrees


def test_stored_bytes_are_fixed() -> None:
    # Pinned: these bytes come from the RFCs alone, so they must never change with a library.
    assert stored_member(b"ab").hex() == (
        "1f8b08000000000000ff" "010200fdff" "6162" "6d48839e" "02000000")
    assert stored_blocks(b"ab", final=False).hex() == "000200fdff6162"


@given(pieces=st.lists(st.binary(max_size=3000), max_size=6), level=st.integers(0, 9))
def test_pieces_make_one_member(pieces: list[bytes], level: int) -> None:
    """Pieces deflated apart, a stored block, a final block and one trailer (its CRC combined
    from the pieces') are ONE gzip member: a reader that stops after the first member (as
    zlib's single-member decode below does) still gets everything."""
    body = bytearray(HEADER)
    crc = size = 0
    for data in pieces:
        piece = DeflatePiece(level)
        body += piece.compress(data) + piece.finish()
        crc, size = crc32_combine(crc, piece.crc, piece.data_size), size + piece.data_size
        body += stored_blocks(b"|", final=False)
        crc, size = crc32(b"|", crc), size + 1
    body += stored_blocks(b"end", final=True) + trailer(crc32(b"end", crc), size + 3)
    want = b"".join(p + b"|" for p in pieces) + b"end"
    one = zlib.decompressobj(wbits=31)
    assert one.decompress(bytes(body)) == want and one.eof and not one.unused_data
    assert gzip.decompress(bytes(body)) == want


def test_deflate_piece_refuses_misuse() -> None:
    with pytest.raises(ValueError, match="level"):
        DeflatePiece(10)
    piece = DeflatePiece(1)
    piece.finish()
    with pytest.raises(ValueError, match="finished"):
        piece.compress(b"x")
