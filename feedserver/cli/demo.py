"""`feedserver demo`: the whole embedded pipeline on a dump of our own, then serve it.

This is what `make run` runs on a fresh machine: generate a small dump (`feedserver.demo`), build
its snapshots, seed the on-demand state store, create a demo customer with a user and an API key,
and start the API. Re-running reuses what exists (a new snapshot version is built only when
`--rebuild` is given), so the key printed the first time keeps working.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from feedserver.config import Settings
from feedserver.errors import Conflict, NotFound


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="generate a demo dump, build its snapshot, create a demo key, serve",
    )
    p.add_argument("--pages", type=int, default=300, help="articles in the generated dump")
    p.add_argument("--rebuild", action="store_true", help="build a new snapshot version")
    p.add_argument("--no-serve", action="store_true", help="set up only; do not start the API")
    p.add_argument("--host", default=None, help="bind address (default: settings.host)")
    p.add_argument("--port", type=int, default=None, help="port (default: settings.port)")
    p.set_defaults(handler=run_demo)


def _dump(settings: Settings, pages: int) -> Path:
    from feedserver.demo import write_demo_dump

    path = settings.data_path / "demo" / "demowiki-latest-pages-articles.xml.bz2"
    if not path.is_file():
        write_demo_dump(path, pages=pages)
        print(f"generated demo dump {path}", file=sys.stderr)
    return path


def _snapshots(settings: Settings, dump: Path, rebuild: bool) -> list[str]:
    from feedserver.feeds.snapshots import SnapshotStore, build_snapshots
    from feedserver.feeds.state import StateStore
    from feedserver.storage.db import connect
    from feedserver.storage.factory import open_blob_store

    blobs = open_blob_store(settings)
    store = SnapshotStore(blobs)
    if rebuild or not any(i.startswith("demowiki_") for i in store.identifiers()):
        for m in build_snapshots([dump], blobs, settings, progress=sys.stderr.isatty()):
            print(f"built {m.identifier} version {m.version}: {m.article_count} articles, "
                  f"{len(m.chunks)} chunk(s)", file=sys.stderr)
    identifiers = [i for i in store.identifiers() if i.startswith("demowiki_")]
    db = connect(settings.database)
    try:
        state = StateStore(db)
        for identifier in identifiers:
            state.load_articles(store.iter_articles(store.manifest(identifier)))
    finally:
        db.close()
    return identifiers


def _events(settings: Settings, identifier: str) -> str | None:
    """First run only: a short edit history of the demo wiki through the event log and the
    consumer, so the state store, the realtime stream and the hourly batches have content."""
    from datetime import UTC, datetime
    from itertools import islice

    from feedserver.cli.events import cmd_consume, cmd_load
    from feedserver.demo_events import demo_events
    from feedserver.feeds.snapshots import SnapshotStore
    from feedserver.storage.factory import open_blob_store

    path = settings.data_path / "demo" / "events.jsonl"
    store = SnapshotStore(open_blob_store(settings))
    articles = list(islice(store.iter_articles(store.manifest(identifier)), 12))
    title = articles[0].name if articles else None
    if path.is_file():
        return title
    lines = demo_events(articles, datetime.now(UTC))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in lines))
    cmd_load(argparse.Namespace(file=tmp, topic=None, partitions=1), settings)
    cmd_consume(argparse.Namespace(once=True, max_events=None, batch_size=500,
                                   metrics_port=None, no_seal_batches=True), settings)
    tmp.replace(path)  # only once both steps are done: a failed run is retried next time
    return title


def _account(settings: Settings) -> tuple[str, str | None, str | None]:
    """The demo customer's username, and a new password and API key when first created."""
    from feedserver.accounts.admin import AccountAdmin
    from feedserver.storage.db import connect

    db = connect(settings.database)
    try:
        admin = AccountAdmin(db)
        try:
            admin.get_customer("demo")
            return "demo", None, None
        except NotFound:
            pass
        admin.create_customer("demo", plan="enterprise")
        password: str | None = secrets.token_urlsafe(12)
        try:
            admin.create_user("demo", str(password), "demo", is_admin=True)
        except Conflict:
            password = None
        _, key = admin.create_api_key("demo", name="make run")
        return "demo", password, key
    finally:
        db.close()


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    dump = _dump(settings, args.pages)
    identifiers = _snapshots(settings, dump, args.rebuild)
    title = "Demo Orchard 0"
    if "demowiki_namespace_0" in identifiers:
        title = _events(settings, "demowiki_namespace_0") or title
    username, password, key = _account(settings)
    host = args.host or settings.host
    port = args.port or settings.port
    base = f"http://{host}:{port}"
    print(f"\nsnapshots: {', '.join(identifiers)}")
    if key:
        secrets_file = settings.data_path / "demo" / "credentials.txt"
        secrets_file.write_text(f"username={username}\npassword={password}\napi_key={key}\n",
                                encoding="utf-8")
        secrets_file.chmod(0o600)
        print(f"demo user {username!r}, password {password}\nAPI key (shown once, also in "
              f"{secrets_file}): {key}")
    else:
        print(f"demo credentials: {settings.data_path / 'demo' / 'credentials.txt'}")
    print(f"""
try:
  curl -H "Authorization: Bearer $KEY" {base}/v2/snapshots
  curl -H "Authorization: Bearer $KEY" -o demo.ndjson.zst \\
       {base}/v2/snapshots/demowiki_namespace_0/download
  curl -H "Authorization: Bearer $KEY" {base}/v2/articles/{quote(title)}
  curl -N -H "Authorization: Bearer $KEY" -H "Accept: application/x-ndjson" \\
       "{base}/v2/articles?since=2026-01-01T00:00:00Z"    (realtime, from the start)
  open {base}/usage   (finance page)   {base}/schema (OpenAPI)   {base}/metrics
""")
    if args.no_serve:
        return 0
    from feedserver.cli.serve import serve

    return serve(argparse.Namespace(host=host, port=port, workers=1), settings)
