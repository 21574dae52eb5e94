"""The metering bench's ASGI client gets what an HTTP client would: the status and every byte.

It replaced httpx's transport so the bench times the server's work, not a client library's
(docs/metering.md, "The bench's own client"); a client that lost bytes, or signalled a
disconnect before a streamed body ended (litestar then stops the stream), would make the
bench time less than a whole response.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from litestar import Litestar, Request, get
from litestar.response import Stream

from bench.metering import AsgiClient


@get("/small")
async def small(request: Request[None, None, None]) -> dict[str, str]:
    return {"auth": request.headers.get("authorization", "")}


@get("/streamed")
async def streamed() -> Stream:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(50):
            await asyncio.sleep(0)  # the client's receive() runs meanwhile
            yield b"%03d," % i

    return Stream(pieces())


def test_status_body_and_headers_reach_the_app() -> None:
    app = Litestar([small, streamed])
    client = AsgiClient(app, "/small", [(b"host", b"bench"), (b"authorization", b"Bearer k")])
    status, body = asyncio.run(client.get())
    assert status == 200 and body == b'{"auth":"Bearer k"}'


def test_a_streamed_body_arrives_whole() -> None:
    app = Litestar([small, streamed])
    status, body = asyncio.run(AsgiClient(app, "/streamed", [(b"host", b"bench")]).get())
    assert status == 200 and body == b"".join(b"%03d," % i for i in range(50))
