"""gzip members whose bytes depend on their content only."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feedserver.formats.gzip_members import (
    HEADER,
    DeflateMember,
    stored_member,
    stored_member_size,
)


@given(data=st.binary(max_size=200_000) | st.sampled_from([b"", bytes(65535), bytes(65536)]))
def test_stored_member_is_standard_gzip_of_known_size(data: bytes) -> None:
    member = stored_member(data)
    assert member.startswith(HEADER) and len(member) == stored_member_size(len(data))
    assert gzip.decompress(member) == data
    assert zlib.decompress(member, wbits=31) == data  # stock zlib agrees


def test_stored_member_bytes_are_fixed() -> None:
    # Pinned: these bytes come from the RFCs alone, so they must never change with a library.
    assert stored_member(b"ab").hex() == (
        "1f8b08000000000000ff" "010200fdff" "6162" "6d48839e" "02000000")


def test_members_concatenate_into_one_stream() -> None:
    first = DeflateMember(6)
    one = first.compress(b"hello ") + first.finish()
    assert gzip.decompress(one + stored_member(b"world") + one) == b"hello worldhello "


def test_deflate_member_refuses_misuse() -> None:
    with pytest.raises(ValueError, match="level"):
        DeflateMember(10)
    member = DeflateMember(1)
    member.finish()
    with pytest.raises(ValueError, match="finished"):
        member.compress(b"x")
