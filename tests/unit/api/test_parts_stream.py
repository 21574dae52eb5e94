"""``PartsStream`` under a server that does not perform ``BODY_PARTS`` (the ASGI test client):
a piece of several byte strings must arrive as exactly their bytes, joined, in order."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st
from litestar import Litestar, get
from litestar.testing import TestClient

from feedserver.api.parts_stream import PartsStream, Piece

pieces = st.lists(st.one_of(st.binary(max_size=50),
                            st.lists(st.binary(max_size=50), max_size=4).map(tuple)),
                  max_size=6)


def _app(body: list[Piece]) -> Litestar:
    async def stream() -> AsyncIterator[Piece]:
        for piece in body:
            yield piece

    @get("/")
    async def handler() -> PartsStream:
        return PartsStream(stream(), media_type="application/octet-stream")

    return Litestar(route_handlers=[handler])


@settings(max_examples=25, deadline=None)
@given(pieces)
def test_pieces_arrive_joined_in_order(body: list[Piece]) -> None:
    # The realtime stream yields several shared ticks as one tuple; a server without the
    # extension must still deliver every byte, in order (here: joined per piece).
    expected = b"".join(p if isinstance(p, bytes) else b"".join(p) for p in body)
    with TestClient(_app(body)) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.content == expected
