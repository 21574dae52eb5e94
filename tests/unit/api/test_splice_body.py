"""The splice body's fallback (``splice_body._blocks``): a stored part whose answer the store
cannot hand over as a socket (S3 answering chunked or encoded) is sent as blocks, read as the
streamed relay reads them, billed to the byte, and a part shorter than its manifest says is
an error, never a silently short body. The socket path itself runs against moto in
tests/integration/api/test_s3_splice.py."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedserver.api.body_bytes import BodyMeter
from feedserver.api.ranges import Segment
from feedserver.api.splice_body import _ASGISpliceBody
from feedserver.errors import IntegrityError
from feedserver.storage.blobs import FilesystemBlobStore, SocketRange


class BlocksOnly(FilesystemBlobStore):
    """A real filesystem store whose every ranged read is an answer that cannot be handed
    over: ``open_socket`` gives blocks, as S3's does for a chunked answer."""

    def splices(self) -> bool:
        return True

    def open_socket(self, key: str, start: int, stop: int
                    ) -> SocketRange | Generator[bytes, None, None]:
        return self.open_range(key, start, stop)


async def _send_body(blobs: BlocksOnly, segments: list[Segment]) -> tuple[bytes, list[int]]:
    billed: list[int] = []
    body = _ASGISpliceBody(blobs=blobs, segments=segments, meter=BodyMeter(billed.append),
                           piece=64 * 1024, status_code=200, media_type="application/zstd")
    out: list[bytes] = []

    async def send(message: dict[str, object]) -> None:
        assert message["type"] == "http.response.body"
        out.append(bytes(message["body"]))  # type: ignore[call-overload]

    async def receive() -> dict[str, object]:  # pragma: no cover - never awaited
        return {}

    await body.send_body(send, receive)  # type: ignore[arg-type]
    return b"".join(out), billed


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=300_000), cut=st.data())
async def test_a_part_not_handed_over_is_sent_as_blocks_and_billed(
        tmp_path_factory: pytest.TempPathFactory, data: bytes, cut: st.DataObject) -> None:
    blobs = BlocksOnly(tmp_path_factory.mktemp("blobs"))
    blobs.put_bytes("a/part", data)
    start = cut.draw(st.integers(0, len(data) - 1))
    stop = cut.draw(st.integers(start + 1, len(data)))
    # a literal piece between two stored ones, as a WME archive's rebuilt tar header
    segments = [Segment("a/part", start, stop), Segment("", 0, 3, b"hdr"),
                Segment("a/part", 0, len(data))]
    sent, billed = await _send_body(blobs, segments)
    assert sent == data[start:stop] + b"hdr" + data
    assert billed == [len(sent)]  # one final report, exactly what was sent


async def test_a_part_shorter_than_its_manifest_is_an_error(tmp_path: Path) -> None:
    blobs = BlocksOnly(tmp_path)
    blobs.put_bytes("a/part", b"x" * 100)
    with pytest.raises(IntegrityError):
        await _send_body(blobs, [Segment("a/part", 0, 150)])
