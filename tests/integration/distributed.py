"""Harness for the distributed configuration: feedserver processes as SUBPROCESSES with
``FEEDSERVER_MODE=distributed``, pointed at the real servers of the fixtures (Tansu, moto_server,
PostgreSQL on 127.0.0.1).

* ``Stack``: the environment every process shares (unique bucket, topics and consumer group per
  test, so tests never see each other's data) and one-shot CLI runs (``stack.cli(...)``).
* ``Process``: one long-running command with its own data dir (the usage journal is per
  process) and log file; ``wait_http`` / ``wait_log``, ``signal``, ``stop`` (SIGTERM, then
  SIGKILL after a bound). ``Stack.close`` kills whatever is still running.
* ``create_topics``: what the deployment's ``kafka-init`` job does (compose / k8s).

Every wait is bounded; a failure message carries the tail of the process's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import ROOT, free_port
from tests.fixtures import postgres as pg_fixture
from tests.fixtures.moto import MOTO_SERVER
from tests.fixtures.processes import stop_process

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
CLI_TIMEOUT = 300.0


def base_env() -> dict[str, str]:
    """The test runner's environment minus any ``FEEDSERVER_*`` (an unknown one stops a process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Stack:
    """Settings shared by every process of one distributed deployment under test."""

    root: Path
    s3_endpoint: str
    database_url: str
    kafka: str
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    extra: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    @property
    def topics(self) -> dict[str, int]:
        """Topic -> partitions, as the deployment's init job creates them."""
        return {self.event_topic: 1, self.article_topic: 10, self.usage_topic: 3,
                self.dead_letter_topic: 1}

    @property
    def event_topic(self) -> str:
        return f"e2e-{self.name}.page_change"

    @property
    def article_topic(self) -> str:
        return f"e2e-{self.name}.articles"

    @property
    def usage_topic(self) -> str:
        return f"e2e-{self.name}.usage"

    @property
    def dead_letter_topic(self) -> str:
        return f"e2e-{self.name}.dead-letter"

    def env(self, data_dir: Path, **overrides: str) -> dict[str, str]:
        env = base_env()
        env.update({
            "FEEDSERVER_MODE": "distributed",
            "FEEDSERVER_DATA_DIR": str(data_dir),
            "FEEDSERVER_LOG_LEVEL": "WARNING",
            "FEEDSERVER_LOG_FORMAT": "text",
            "FEEDSERVER_DATABASE_URL": self.database_url,
            "FEEDSERVER_S3_ENDPOINT_URL": self.s3_endpoint,
            "FEEDSERVER_S3_BUCKET": f"e2e-{self.name}",
            "FEEDSERVER_S3_REGION": "us-east-1",
            "FEEDSERVER_S3_ACCESS_KEY_ID": "testing",
            "FEEDSERVER_S3_SECRET_ACCESS_KEY": "testing",
            "FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "FEEDSERVER_EVENT_TOPICS": self.event_topic,
            "FEEDSERVER_ARTICLE_TOPIC": self.article_topic,
            "FEEDSERVER_ARTICLE_PARTITIONS": "10",
            "FEEDSERVER_USAGE_TOPIC": self.usage_topic,
            "FEEDSERVER_DEAD_LETTER_TOPIC": self.dead_letter_topic,
            "FEEDSERVER_CONSUMER_GROUP": f"e2e-{self.name}",
            "FEEDSERVER_LEDGER_FLUSH_SECONDS": "0.05",
        })
        env.update(self.extra)
        env.update(overrides)
        return env

    def _dir(self, label: str) -> Path:
        path = self.root / label
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cli(self, *args: str, stdin: str | None = None, timeout: float = CLI_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``feedserver ARGS`` to completion (one-shot jobs: build, admin, load, report)."""
        done = subprocess.run(
            [sys.executable, "-m", "feedserver", *args], env=self.env(self._dir("cli")),
            cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"feedserver {' '.join(args)} exited {done.returncode}: "
                                 f"{done.stderr[-3000:]}")
        return done

    def start(self, label: str, *args: str, port: int | None = None,
              env: Mapping[str, str] | None = None) -> Process:
        proc = Process(label, list(args), self.env(self._dir(label), **(env or {})),
                       self.root / f"{label}.log", port=port)
        self.processes.append(proc)
        proc.start()
        return proc

    def start_apis(self, *labels: str) -> list[Process]:
        """``feedserver serve`` processes on free ports, started together, each healthy."""
        apis = []
        for label in labels:
            port = free_port()
            apis.append(self.start(label, "serve", "--host", "127.0.0.1", "--port", str(port),
                                   port=port))
        for api in apis:
            api.wait_http("/healthz")
        return apis

    def close(self) -> None:
        """Stop every process still running (teardown): SIGTERM, then SIGKILL."""
        for proc in reversed(self.processes):
            proc.stop()


class Process:
    """One long-running ``feedserver`` command in its own process group."""

    def __init__(self, label: str, args: list[str], env: dict[str, str], log: Path, *,
                 port: int | None = None) -> None:
        self.label = label
        self.args = args
        self.env = env
        self.log_path = log
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.label} has no HTTP port"
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "feedserver", *self.args], env=self.env, cwd=ROOT,
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _fail(self, why: str) -> AssertionError:
        return AssertionError(f"{self.label}: {why}\n--- log ---\n{self.log_tail()}")

    def wait_until(self, ready: Callable[[], bool], what: str,
                   timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.alive():
                raise self._fail(f"exited ({self.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise self._fail(f"not {what} after {timeout:.0f}s")
            time.sleep(0.1)

    def wait_http(self, path: str, status: int = 200, timeout: float = START_TIMEOUT) -> None:
        def ok() -> bool:
            try:
                return httpx.get(self.url + path, timeout=3).status_code == status
            except httpx.TransportError:
                return False

        self.wait_until(ok, f"answering {status} on {path}", timeout)

    def wait_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        self.wait_until(lambda: text in self.log_tail(1_000_000), f"logging {text!r}", timeout)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"still running {timeout:.0f}s later") from None

    def stop(self) -> None:
        stop_process(self.proc, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None


async def _create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name=t, num_partitions=n, replication_factor=1)
               for t, n in topics.items() if t not in existing]
        if new:
            await admin.create_topics(new)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def create_topics(bootstrap: str, topics: Mapping[str, int]) -> None:
    """Create the topics (the deployment's init job), bounded."""
    await asyncio.wait_for(_create_topics(bootstrap, topics), 30)


# --- servers of a test's own, to stop and restart (the session fixtures must stay up) ---------


class MotoServer:
    """A ``moto_server`` on a fixed loopback port; ``stop()``/``start()`` (state is lost)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if httpx.get(f"{self.url}/moto-api/", timeout=1.0).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"moto_server not ready on {self.url}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, STOP_TIMEOUT)


class PostgresServer:
    """A throw-away PostgreSQL cluster of its own (same recipe as ``tests.fixtures.postgres``)
    that a test can stop and start again on the same port, data kept."""

    def __init__(self) -> None:
        bindir = pg_fixture._bin_dir()
        if bindir is None:
            raise AssertionError("PostgreSQL is not installed: run `make system-deps`")
        self.bindir = bindir
        self.base = Path(tempfile.mkdtemp(prefix="feedserver-e2e-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.base, user="postgres", group="postgres")
        self.data, self.log = self.base / "data", self.base / "server.log"
        self.port = free_port()
        self.url = f"postgresql://{pg_fixture.SUPERUSER}@127.0.0.1:{self.port}/postgres"
        pg_fixture._run([str(bindir / "initdb"), "-D", str(self.data), "-U",
                         pg_fixture.SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync"])

    def _ctl(self, *args: str) -> None:
        pg_fixture._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args])

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                   f"-c unix_socket_directories={self.base} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._ctl("-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        pg_fixture._wait_ready(self.url, self.log)

    def stop(self) -> None:
        subprocess.run(pg_fixture._as_owner([str(self.bindir / "pg_ctl"), "-D", str(self.data),
                                             "-m", "fast", "-w", "-t", "60", "stop"]),
                       capture_output=True, timeout=90, check=False)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
