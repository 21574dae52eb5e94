"""``feedserver batches build|list``: hourly batch files from the article topic.

``build`` without ``--hour`` builds every complete hour not yet built within
``batch_retention_hours`` and deletes older ones: run it hourly (a k8s CronJob, a compose
service with a loop). ``feedserver events consume`` also does it every minute by itself, so the
embedded single-machine setup needs no cron.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Any

import msgspec

from feedserver.cli.command import bind
from feedserver.config import Settings
from feedserver.errors import InvalidParameter
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.build import build_hour, build_pending
from feedserver.feeds.batches.store import HourIndex, built_hours, read_hour
from feedserver.storage.blobs import open_blob_store
from feedserver.storage.db import connect
from feedserver.storage.eventlog import open_event_log


def register(sub: Any) -> None:
    parser = sub.add_parser("batches", help="hourly batch files: build, list")
    cmds = parser.add_subparsers(dest="batches_command", required=True, metavar="ACTION")

    build = cmds.add_parser("build", help="build complete hours (default: every one not yet "
                                          "built within retention; also expires old hours)")
    build.add_argument("--hour", metavar="YYYY-MM-DDTHH",
                       help="(re)build this UTC hour only; it must be complete")
    build.add_argument("--grace-seconds", type=int, default=hours.DEFAULT_GRACE_MS // 1000,
                       help="wait this long after an hour ends before sealing it (default 60)")
    bind(build, cmd_build)

    listing = cmds.add_parser("list", help="built hours and their batches")
    listing.add_argument("--json", action="store_true", help="one JSON object per hour")
    bind(listing, cmd_list)


def _summary(index: HourIndex) -> str:
    head = f"{index.date}T{index.hour}"
    if not index.batches:
        return f"{head}  (no events)"
    return "\n".join(f"{head}  {b.identifier}  {b.article_count} articles  "
                     f"{int(b.size.value)} bytes  sha256 {b.sha256[:16]}" for b in index.batches)


def cmd_build(settings: Settings, *, hour: str | None = None,
              grace_seconds: int = hours.DEFAULT_GRACE_MS // 1000) -> int:
    start = hours.parse_hour_arg(hour) if hour is not None else None
    if grace_seconds < 0:
        raise InvalidParameter("--grace-seconds must not be negative")
    built = asyncio.run(_build(settings, start, grace_seconds * 1000))
    for index in built:
        print(_summary(index))
    if not built:
        print("no complete hour left to build")
    return 0


async def _build(settings: Settings, hour: datetime | None, grace_ms: int) -> list[HourIndex]:
    db = connect(settings.database)
    event_log = open_event_log(settings, db)
    blobs = open_blob_store(settings)
    try:
        if hour is not None:
            return [await build_hour(event_log, blobs, settings, hour, grace_ms=grace_ms)]
        return await build_pending(event_log, blobs, settings, grace_ms=grace_ms)
    finally:
        await event_log.close()
        db.close()


def cmd_list(settings: Settings, *, json: bool = False) -> int:
    blobs = open_blob_store(settings)
    indexes = [read_hour(blobs, h) for h in built_hours(blobs)]
    for index in indexes:
        if json:
            sys.stdout.write(msgspec.json.encode(index).decode() + "\n")
        else:
            print(_summary(index))
    if not indexes and not json:
        print("no batches built")
    return 0
