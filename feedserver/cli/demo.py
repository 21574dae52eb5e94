"""`feedserver demo`: the whole embedded pipeline on a dump of our own, then serve it.

This is what `make run` runs on a fresh machine: generate a small dump (`feedserver.demo`), build
its snapshots, seed the on-demand state store, replay a short edit history through the event
log and the consumer, create a demo customer with a user and an API key, and start the API.

Every step is idempotent, so a second run (the next day) reuses what exists, and a run that was
killed half-way is completed by the next one: the dump is written under a temporary name and
renamed, snapshot versions are published atomically, events are loaded only into an empty input
topic and the consumer resumes from its committed offsets, and credentials that were never
written are issued again. What cannot be repaired (a damaged database, say) is one line naming
the data directory to remove; a port in use is one line before anything is built.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import secrets
import socket
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from feedserver.cli.command import bind
from feedserver.cli.events import cmd_consume, cmd_load
from feedserver.cli.serve import serve
from feedserver.config import Settings
from feedserver.errors import Conflict, FeedError, NotFound

WIKI = "demowiki"
ARTICLES = f"{WIKI}_namespace_0"
USERNAME = "demo"
DEFAULT_TITLE = "Demo Orchard 0"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="generate a demo dump, build its snapshot, create a demo key, serve",
    )
    p.add_argument("--pages", type=int, default=300, help="articles in the generated dump")
    p.add_argument("--rebuild", action="store_true", help="build a new snapshot version")
    p.add_argument("--no-serve", action="store_true", help="set up only; do not start the API")
    p.add_argument("--host", default=None, help="bind address (default: settings.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: settings.port)")
    bind(p, run_demo)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    api_key: str


class PortInUse(Conflict):
    """The address the demo would serve on is taken (by an earlier `make run`, say)."""


class DemoDamaged(FeedError):
    """Demo data that a rerun cannot repair."""


def check_port_free(host: str, port: int) -> None:
    """Fail in one line before building anything when ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is already in use (another `make run`?): stop "
                    f"that server, or choose another port: FEEDSERVER_PORT={port + 1} make run",
                    port=port) from None
            raise


def _dump(settings: Settings, pages: int) -> Path:
    from feedserver.demo.dump import write_demo_dump

    path = settings.data_path / "demo" / f"{WIKI}-latest-pages-articles.xml.bz2"
    if not path.is_file():
        # Written under another name and renamed: a killed run never leaves a truncated dump.
        part = path.with_name(path.name + ".part")
        write_demo_dump(part, pages=pages)
        part.replace(path)
        print(f"generated demo dump {path}", file=sys.stderr)
    return path


def _snapshots(settings: Settings, dump: Path, rebuild: bool) -> dict[str, int]:
    """The demo's snapshot identifiers and their article counts, built when missing."""
    from feedserver.feeds.events.state import StateStore
    from feedserver.feeds.snapshots.build import build_snapshots
    from feedserver.feeds.snapshots.store import SnapshotStore
    from feedserver.storage.blobs import open_blob_store
    from feedserver.storage.db import connect

    blobs = open_blob_store(settings)
    store = SnapshotStore(blobs)
    if rebuild or not any(i.startswith(f"{WIKI}_") for i in store.identifiers()):
        # The demo serves every format: Parquet too (/v2/snapshots/{id}/parquet).
        with_parquet = msgspec.structs.replace(settings, parquet_enabled=True)
        for m in build_snapshots([dump], blobs, with_parquet, progress=sys.stderr.isatty()):
            print(f"built {m.identifier} version {m.version}: {m.article_count} articles, "
                  f"{len(m.chunks)} chunk(s)", file=sys.stderr)
    manifests = [store.manifest(i) for i in store.identifiers() if i.startswith(f"{WIKI}_")]
    db = connect(settings.database)
    try:
        state = StateStore(db)  # newer event state wins over what a snapshot seeds
        for manifest in manifests:
            state.load_lines(store.iter_lines(manifest))
    finally:
        db.close()
    return {m.identifier: m.article_count for m in manifests}


async def _topic_is_empty(settings: Settings, topic: str) -> bool:
    from feedserver.storage.db import connect
    from feedserver.storage.eventlog import open_event_log

    db = connect(settings.database)
    event_log = open_event_log(settings, db)
    try:
        await event_log.create_topic(topic, 1)
        return not any((await event_log.end_offsets(topic)).values())
    finally:
        await event_log.close()
        db.close()


def _events(settings: Settings) -> str | None:
    """A short edit history of the demo wiki through the event log and the consumer, so the
    state store, the realtime stream and the hourly batches have content. Returns the title
    of the first edited article."""
    from feedserver.demo.events import demo_events
    from feedserver.feeds.snapshots.store import SnapshotStore
    from feedserver.storage.blobs import open_blob_store

    store = SnapshotStore(open_blob_store(settings))
    articles = list(islice(store.iter_articles(store.manifest(ARTICLES)), 12))
    path = settings.data_path / "demo" / "events.jsonl"
    topic = settings.event_topics[0]
    if asyncio.run(_topic_is_empty(settings, topic)):
        lines = demo_events(articles, datetime.now(UTC))
        part = path.with_name(path.name + ".part")
        part.write_bytes(b"".join(line + b"\n" for line in lines))
        part.replace(path)
        cmd_load(settings, file=path, topic=topic)
    # Every run: resumes from the committed offsets, so a run killed mid-way is completed
    # and a finished one reads nothing.
    cmd_consume(settings, once=True, no_seal_batches=True)
    return articles[0].name if articles else None


def _read_credentials(path: Path) -> Credentials | None:
    try:
        fields = dict(line.split("=", 1) for line in path.read_text("utf-8").splitlines()
                      if "=" in line)
    except FileNotFoundError:
        return None
    if not all(fields.get(k) for k in ("username", "password", "api_key")):
        return None
    return Credentials(fields["username"], fields["password"], fields["api_key"])


def _account(settings: Settings, path: Path) -> tuple[Credentials, bool]:
    """The demo user's credentials and whether they are new. Issued again (new password, new
    API key) whenever the credentials file is missing: a run killed after creating the account
    but before writing the file must not leave a user nobody can log in as."""
    from feedserver.accounts.admin import AccountAdmin
    from feedserver.storage.db import connect

    known = _read_credentials(path)
    if known is not None:
        return known, False
    db = connect(settings.database)
    try:
        admin = AccountAdmin(db)
        try:
            admin.get_customer(USERNAME)
        except NotFound:
            admin.create_customer(USERNAME, plan="enterprise")
        password = secrets.token_urlsafe(12)
        try:
            admin.create_user(USERNAME, password, USERNAME, is_admin=True)
        except Conflict:
            admin.set_password(USERNAME, password)
        _, key = admin.create_api_key(USERNAME, name="make run")
    finally:
        db.close()
    credentials = Credentials(USERNAME, password, key)
    part = path.with_name(path.name + ".part")
    part.write_text(f"username={USERNAME}\npassword={password}\napi_key={key}\n",
                    encoding="utf-8")
    part.chmod(0o600)
    part.replace(path)
    return credentials, True


def example_requests(base: str, title: str, credentials: Path) -> list[str]:
    """The shell commands `make run` prints and README.md shows (a test runs each one)."""
    auth = '-H "Authorization: Bearer $KEY"'
    return [
        f"KEY=$(sed -n 's/^api_key=//p' {credentials})",
        f"curl {auth} {base}/v2/snapshots",
        f"curl {auth} -o demo.tar.gz {base}/v2/snapshots/{ARTICLES}/download",
        f"curl {auth} {base}/v2/articles/{quote(title)}",
        f"curl {auth} {base}/v2/structured-contents/{quote(title)}",
        f'curl -N {auth} -H "Accept: application/x-ndjson" '
        f'"{base}/v2/articles?since=2026-01-01T00:00:00Z"',
    ]


def _set_up(settings: Settings, pages: int, rebuild: bool) -> tuple[dict[str, int], str,
                                                                     Credentials, bool]:
    dump = _dump(settings, pages)
    counts = _snapshots(settings, dump, rebuild)
    title = (_events(settings) if ARTICLES in counts else None) or DEFAULT_TITLE
    credentials, new = _account(settings, settings.data_path / "demo" / "credentials.txt")
    return counts, title, credentials, new


def run_demo(settings: Settings, *, pages: int = 300, rebuild: bool = False,
             no_serve: bool = False, host: str | None = None, port: int | None = None) -> int:
    host = host or settings.host
    port = port or settings.port
    if not no_serve:
        check_port_free(host, port)
    try:
        counts, title, credentials, new = _set_up(settings, pages, rebuild)
    except (FeedError, OSError, ValueError, sqlite3.DatabaseError) as exc:
        detail = exc.detail if isinstance(exc, FeedError) else f"{type(exc).__name__}: {exc}"
        raise DemoDamaged(f"the demo data in {settings.data_path} could not be set up "
                          f"({detail}); remove it (make clean) and run `make run` "
                          "again") from exc
    base = f"http://{host}:{port}"
    credentials_file = settings.data_path / "demo" / "credentials.txt"
    print("\nsnapshots: " + ", ".join(f"{i} ({n} article{'' if n == 1 else 's'})"
                                      for i, n in counts.items()))
    print(f"demo user {credentials.username!r}, password {credentials.password}"
          f"{' (new)' if new else ''}; API key in {credentials_file}")
    print("\ntry:")
    for line in example_requests(base, title, credentials_file):
        print(f"  {line}")
    print(f"  open {base}/usage (the portal: sign in as {credentials.username!r}), "
          f"{base}/schema (OpenAPI), {base}/metrics\n")
    if no_serve:
        return 0
    sys.stdout.flush()  # the examples before the server's log, also through a pipe
    return serve(settings, host=host, port=port, workers=1)
