"""``feedserver usage ...``: verify the ledger, reports, the usage-topic consumer, journal
replay; corrections and exports are in ``usage_billing``."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from feedserver.cli import usage_billing
from feedserver.cli.command import bind
from feedserver.config import Settings
from feedserver.errors import IntegrityError
from feedserver.metering.customers import customer_directory
from feedserver.metering.evidence import batch_records
from feedserver.metering.journal import Journal, encode_lines
from feedserver.metering.ledger import Ledger
from feedserver.metering.periods import Periods, utcnow
from feedserver.metering.reports import build_report, to_csv, to_json
from feedserver.metering.service import JOURNAL_DIR
from feedserver.metering.usage_topic import consume_usage
from feedserver.metering.verification import verify_and_record
from feedserver.metrics import Metrics
from feedserver.storage.db import Database, connect
from feedserver.storage.eventlog import open_event_log


def register(sub: Any) -> None:
    usage = sub.add_parser("usage", help="metering: ledger, reports, usage consumer")
    cmds = usage.add_subparsers(dest="usage_command", required=True, metavar="ACTION")

    verify = cmds.add_parser("verify", help="walk the hash chain; exit 1 on the first bad row")
    bind(verify, cmd_verify)

    report = cmds.add_parser("report", help="monthly usage per customer, meter and day, priced")
    report.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    report.add_argument("--format", choices=("csv", "json"), default="csv")
    report.add_argument("--customer", help="customer name or id (default: all)")
    report.add_argument("--output", type=Path, help="write here instead of stdout")
    bind(report, cmd_report)

    consume = cmds.add_parser("consume", help="usage topic -> ledger (distributed mode)")
    consume.add_argument("--idle-exit", type=float, default=None, metavar="SECONDS",
                         help="stop after the topic has been idle this long")
    consume.add_argument("--metrics-port", type=int,
                         help="serve Prometheus /metrics on this port")
    bind(consume, cmd_consume)

    replay = cmds.add_parser("replay", help="commit usage journals left by stopped servers")
    bind(replay, cmd_replay)

    evidence = cmds.add_parser(
        "evidence", help="the per-response records a batch's rows sum, from its evidence")
    evidence.add_argument("batch", help="a batch row's usage id, its request_id "
                                        "(batch:<sha256>) or the sha256")
    bind(evidence, cmd_evidence)
    usage_billing.register(cmds)


def _ledger(settings: Settings, db: Database) -> Ledger:
    """The ledger as the server appends to it: months close ``usage_grace_hours`` after they
    end, so a late record lands in the current month."""
    return Ledger(db, periods=Periods.hours(settings.usage_grace_hours))


def cmd_verify(settings: Settings) -> int:
    db = connect(settings.database)
    try:  # the outcome is kept: the portal shows the last one next to the chain head
        result = verify_and_record(Ledger(db), source="cli", when=utcnow())
    finally:
        db.close()
    if not result.ok:
        raise IntegrityError(f"usage ledger: {result.problem} ({result.rows} rows verified)")
    print(f"usage ledger: {result.rows} rows, hash chain intact "
          f"(head seq {result.head_seq}, {result.head_hash})")
    return 0


def cmd_report(settings: Settings, *, month: str, format: str = "csv",
               customer: str | None = None, output: Path | None = None) -> int:
    db = connect(settings.database)
    try:
        directory = customer_directory(db)
        customer_id = directory.resolve(customer) if customer else None
        report = build_report(db, month, customer_id=customer_id, terms_of=directory.terms,
                              name_of=directory.name)
    finally:
        db.close()
    data = to_csv(report).encode() if format == "csv" else to_json(report) + b"\n"
    if output:
        output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def cmd_consume(settings: Settings, *, idle_exit: float | None = None,
                metrics_port: int | None = None) -> int:
    if not settings.kafka_bootstrap_servers:
        # The API sends usage to the event log only with Kafka; else it writes the ledger.
        raise ValueError("usage consume needs FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS")

    metrics = Metrics()
    if metrics_port:
        start_http_server(metrics_port, addr=settings.host, registry=metrics.registry)

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        db = connect(settings.database)
        events = open_event_log(settings, db)
        try:
            stats = await consume_usage(
                _ledger(settings, db), events, settings.usage_topic,
                f"{settings.consumer_group}.usage", stop=stop, idle_exit_seconds=idle_exit,
                metrics=metrics,
            )
        finally:
            await events.close()
            db.close()
        print(f"usage consume: {stats.messages} messages, {stats.inserted} new ledger rows, "
              f"{stats.invalid} invalid")
        return 0

    return asyncio.run(run())


def cmd_evidence(settings: Settings, *, batch: str) -> int:
    """Print, one JSON object per line, the usage records of every response in a batch's
    evidence: what its ledger rows sum (``ledger_granularity = "batch"``), checked against
    the digest the rows name."""
    db = connect(settings.database)
    try:
        _, records = batch_records(Ledger(db), batch)
    finally:
        db.close()
    sys.stdout.buffer.write(encode_lines(records))
    sys.stdout.flush()
    return 0


def cmd_replay(settings: Settings) -> int:
    db = connect(settings.database)
    journal = Journal(settings.data_path / JOURNAL_DIR)
    try:
        recovered = journal.recover()
        inserted = _ledger(settings, db).append(recovered.records)
        journal.discard()
    finally:
        db.close()
    print(f"usage replay: {len(recovered.segments)} journal segment(s), "
          f"{len(recovered.records)} records, {inserted} new ledger rows, "
          f"{recovered.skipped_lines} unreadable line(s) skipped")
    return 0
