"""Exact cost of metering per request through the whole app, API process and appender child.

``python -m bench._metering_tree prepare DIR`` builds the bench's data directory once (the
snapshot and the API key of ``bench.metering``, key in ``DIR/key``);
``python -m bench._metering_tree run DIR MIX N on|off`` copies it and sends N requests of MIX
(``metadata`` or ``chunk``) through the app in-process with the bench's 8 clients, metering
on or off. Batches are made deterministic (``ledger_batch_size`` 400 records, a flush timer
longer than any run), as at full speed; the writer's last partial batch is flushed at stop.

Run under ``valgrind --tool=cachegrind --trace-children=yes`` for N and 3N: the difference
over 2N is the user-space instructions per request, start-up cancelling, with the API process
and the ledger appender child (its own ``cachegrind.out.PID``) counted apart.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from bench.metering import CONCURRENCY, SNAPSHOT, prepare
from feedserver.api.app import build_app
from feedserver.config import load_settings

PATHS = {
    "metadata": f"/v2/snapshots/{SNAPSHOT}",
    "chunk": f"/v2/snapshots/{SNAPSHOT}/chunks/{SNAPSHOT}_chunk_0/download",
}


async def requests(data_dir: Path, key: str, mix: str, n: int, *, metering: bool) -> None:
    settings = load_settings({}, data_dir=str(data_dir), metering_enabled=metering,
                             log_level="WARNING", ledger_batch_size=400,
                             ledger_flush_seconds=3600.0)
    app = build_app(settings, registry=CollectorRegistry())
    # The transport called directly, as ``bench.metering`` does: no client library's work.
    transport = httpx.ASGITransport(app=app)
    url = httpx.URL(f"http://bench{PATHS[mix]}")
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
    async with app.lifespan():

        async def loop() -> None:
            for _ in range(n // CONCURRENCY):
                resp = await transport.handle_async_request(
                    httpx.Request("GET", url, headers=headers))
                body = await resp.aread()
                assert resp.status_code == 200, body[:500]

        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))


def main(argv: list[str]) -> None:
    if argv[0] == "prepare":
        target = Path(argv[1])
        target.mkdir(parents=True)
        (target / "key").write_text(prepare(target))
        return
    template, mix, n, on = Path(argv[1]), argv[2], int(argv[3]), argv[4] == "on"
    with tempfile.TemporaryDirectory(prefix="metering-tree-") as tmp:
        data_dir = Path(tmp) / "data"
        shutil.copytree(template, data_dir)
        key = (data_dir / "key").read_text()
        asyncio.run(requests(data_dir, key, mix, n, metering=on))


if __name__ == "__main__":
    main(sys.argv[1:])
