"""A streamed response whose body pieces may each be several byte strings, written unjoined.

``PartsStream`` is litestar's ``Stream`` whose iterator may yield a tuple of ``bytes`` as one
piece. Where the server performs ``BODY_PARTS`` (``feedserver serve``, see
``api/body_writes.py``) the tuple goes out as one chunk in one ``writev``, its byte strings
unjoined (the realtime stream's shared, already rendered ticks: no per-stream copy of them);
under any other server it is joined into one ``bytes`` first. Either way the client receives
the same bytes.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterable, Iterable
from typing import TYPE_CHECKING, Any, cast

from litestar.enums import MediaType
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.utils.helpers import get_enum_string_value

from feedserver.api.body_writes import BODY_PARTS

if TYPE_CHECKING:
    from litestar.app import Litestar
    from litestar.background_tasks import BackgroundTask, BackgroundTasks
    from litestar.connection import Request
    from litestar.datastructures.cookie import Cookie
    from litestar.types import HTTPResponseBodyEvent, Send, TypeEncodersMap

Piece = bytes | tuple[bytes, ...]


class PartsStream(Stream):
    """``Stream(content)`` with ``content`` an async iterable of ``Piece``s."""

    def __init__(self, content: AsyncIterable[Piece], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self.pieces = content

    def to_asgi_response(self, app: Litestar | None, request: Request[Any, Any, Any], *,
                         background: BackgroundTask | BackgroundTasks | None = None,
                         cookies: Iterable[Cookie] | None = None,
                         encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
                         headers: dict[str, str] | None = None,
                         is_head_response: bool = False,
                         media_type: MediaType | str | None = None,
                         status_code: int | None = None,
                         type_encoders: TypeEncodersMap | None = None) -> ASGIResponse:
        # As litestar's Stream.to_asgi_response (headers and cookies merged alike).
        return _PartsResponse(
            self.pieces, BODY_PARTS in (request.scope.get("extensions") or {}),
            background=self.background or background, content_length=0,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies,
                                                                           cookies),
            encoded_headers=encoded_headers, encoding=self.encoding,
            headers={**headers, **self.headers} if headers is not None else self.headers,
            is_head_response=is_head_response,
            media_type=get_enum_string_value(media_type or self.media_type or MediaType.JSON),
            status_code=self.status_code or status_code)


class _PartsResponse(ASGIStreamingResponse):
    __slots__ = ("parts", "pieces")

    def __init__(self, pieces: AsyncIterable[Piece], parts: bool, **kwargs: Any) -> None:
        super().__init__(iterator=pieces, **kwargs)
        self.pieces = pieces
        self.parts = parts  # the server writes BODY_PARTS messages itself

    async def _stream(self, send: Send) -> None:
        parts = self.parts
        async for piece in self.pieces:
            if isinstance(piece, bytes):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            elif parts:
                # An extension message: the ASGI body event plus the pieces (``body`` empty).
                await send(cast("HTTPResponseBodyEvent", {
                    "type": "http.response.body", "body": b"", BODY_PARTS: piece,
                    "more_body": True}))
            else:
                await send({"type": "http.response.body", "body": b"".join(piece),
                            "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
