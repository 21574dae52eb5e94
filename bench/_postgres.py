"""A throw-away PostgreSQL cluster on a free loopback port, for the distributed-case runs.

Debian's ``initdb``/``pg_ctl`` (``make system-deps`` installs them), as the ``postgres`` user
when running as root. Durable settings (``fsync``, ``synchronous_commit``) stay ON: the bench
measures the database as a deployment would run it. ``available()`` is False without the
binaries; the benchmarks then say so and skip the PostgreSQL pass. ``server_cpu`` is the CPU the
cluster's server processes used so far (the server's share of a distributed run's work: it
is not a descendant of the bench, so the bench's own CPU figures never include it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench import _cpu

USER = "feedserver"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def available() -> bool:
    return _bin_dir() is not None


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def server_cpu(url: str) -> float:
    """CPU seconds used so far by the cluster serving ``url`` (from ``cluster()``): its
    postmaster, found by the port on its command line, with the backends it has waited for
    and those still running (``/proc``, 10 ms ticks per process)."""
    port = f"port={url.rsplit(':', 1)[1].split('/', 1)[0]} "
    found = _cpu.stats()
    for pid in found:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone since the listing
            continue
        if "/bin/postgres " in command and port in f"{command} ":
            return found[pid][1] + sum(found[kid][1] for kid in _cpu.descendants(found, pid))
    raise RuntimeError(f"no postmaster listening on {url}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cluster() -> Iterator[str]:
    """``postgresql://feedserver@127.0.0.1:PORT/feedserver`` of a running cluster, removed
    afterwards."""
    bindir = _bin_dir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (make system-deps)")
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres", group="postgres")
    data, log, port = base / "data", base / "server.log", _free_port()
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", USER, "-A",
                              "trust", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    pg_ctl = str(bindir / "pg_ctl")
    options = (f"-c listen_addresses=127.0.0.1 -c port={port} "
               f"-c unix_socket_directories={base} -c max_connections=200")
    subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-l", str(log), "-o", options, "-w",
                              "-t", "60", "start"]), check=True, capture_output=True, timeout=90)
    try:
        admin = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f'CREATE DATABASE "{USER}"')
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql://{USER}@127.0.0.1:{port}/{USER}"
    finally:
        subprocess.run(_as_owner([pg_ctl, "-D", str(data), "-m", "fast", "-w", "-t", "60",
                                  "stop"]), capture_output=True, timeout=90, check=False)
        shutil.rmtree(base, ignore_errors=True)
