"""The zero-copy file body: which ``http.response.zerocopysend`` messages it sends, and how
the bytes are metered when the server reports a cut or a short file. The server side is
tested against real uvicorn in tests/integration/api/test_zerocopy_server.py; here a
recording ``send`` stands in for it, so each message can be checked exactly."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from feedserver.api.body_bytes import BodyMeter
from feedserver.api.zerocopy import (
    ZEROCOPY,
    FileBody,
    FileSegment,
    SendfileInterrupted,
    supports_zerocopy,
)
from feedserver.errors import IntegrityError


class Recorder:
    """A server's ``send``: records each message; can fail the Nth zero-copy one."""

    def __init__(self, *, fail_at: int | None = None, sent: int = 0, short: bool = False):
        self.messages: list[MutableMapping[str, Any]] = []
        self.fail_at, self.sent, self.short = fail_at, sent, short
        self.pieces = 0

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == ZEROCOPY:
            self.pieces += 1
            if self.pieces == self.fail_at:
                raise SendfileInterrupted(self.sent, short=self.short)
            message = {**message, "file": message["file"].name}
        self.messages.append(message)


async def _receive() -> dict[str, Any]:
    return {"type": "http.disconnect"}


def _files(tmp_path: Path) -> list[FileSegment]:
    (tmp_path / "a").write_bytes(b"a" * 10)
    (tmp_path / "b").write_bytes(b"b" * 7)
    return [FileSegment(tmp_path / "a", 3, 10), FileSegment(tmp_path / "b", 0, 7)]


async def _send_body(segments: list[FileSegment], meter: BodyMeter, send: Recorder,
                     piece: int = 4) -> None:
    body = FileBody(segments, meter, piece=piece, status_code=200,
                    media_type="application/zstd", headers={"content-length": "14"})
    asgi = body.to_asgi_response(None, None, headers={})  # type: ignore[arg-type]
    await asgi.send_body(send, _receive)  # type: ignore[arg-type]


async def test_pieces_follow_segments_and_each_is_counted(tmp_path: Path) -> None:
    seen: list[int] = []
    marks: list[int] = []
    send = Recorder()
    await _send_body(_files(tmp_path), BodyMeter(seen.append, checkpoint=marks.append,
                                                 checkpoint_bytes=8), send)
    pieces = [(m["file"], m["offset"], m["count"]) for m in send.messages
              if m["type"] == ZEROCOPY]
    # Never across a segment: 7 bytes of "a" from offset 3 in pieces of 4, then "b".
    assert pieces == [(str(tmp_path / "a"), 3, 4), (str(tmp_path / "a"), 7, 3),
                      (str(tmp_path / "b"), 0, 4), (str(tmp_path / "b"), 4, 3)]
    assert send.messages[-1] == {"type": "http.response.body", "body": b"",
                                 "more_body": False}
    assert seen == [14]
    # Checkpoints are taken before the piece that crosses the mark, including it.
    assert marks == [11]


async def test_a_cut_is_billed_to_the_byte(tmp_path: Path) -> None:
    seen: list[int] = []
    send = Recorder(fail_at=2, sent=1)  # the peer left after 1 byte of the second piece
    await _send_body(_files(tmp_path), BodyMeter(seen.append), send)
    assert seen == [4 + 1]
    assert all(m["type"] == ZEROCOPY for m in send.messages)  # no end of body after a cut


async def test_a_short_file_is_an_integrity_error_and_billed_as_sent(tmp_path: Path) -> None:
    seen: list[int] = []
    send = Recorder(fail_at=3, sent=2, short=True)
    with pytest.raises(IntegrityError):
        await _send_body(_files(tmp_path), BodyMeter(seen.append), send)
    assert seen == [7 + 2]


async def test_literal_bytes_between_files_go_as_body_messages(tmp_path: Path) -> None:
    # A WME tar.gz is stored deflate parts with rebuilt tar headers between them: the headers
    # are literal bytes, sent as ordinary body messages in order and metered like the rest.
    seen: list[int] = []
    send = Recorder()
    a, b = _files(tmp_path)
    head = FileSegment(None, 2, 5, b"HEADER")
    await _send_body([head, a, head, b], BodyMeter(seen.append), send, piece=8)
    order = [(m["type"], m["body"] if m["type"] == "http.response.body"
              else (m["file"], m["offset"], m["count"])) for m in send.messages]
    assert order == [("http.response.body", b"ADE"), (ZEROCOPY, (str(tmp_path / "a"), 3, 7)),
                     ("http.response.body", b"ADE"), (ZEROCOPY, (str(tmp_path / "b"), 0, 7)),
                     ("http.response.body", b"")]
    assert seen == [3 + 7 + 3 + 7]


def test_supports_zerocopy_reads_the_scope_extensions() -> None:
    assert supports_zerocopy({"extensions": {ZEROCOPY: {}}})
    assert not supports_zerocopy({"extensions": None})
    assert not supports_zerocopy({})
