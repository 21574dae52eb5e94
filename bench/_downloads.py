"""Download throughput of two servers, measured the same way for both: one client, curl.

The client must not be the limit, or the ratio says more about the client than about the
servers. curl, writing to ``/dev/null`` in its own process, costs far less CPU per GB than
either server (it is printed: ``client`` CPU s/GB), so the servers' own work decides. Each
sample is ``TRANSFERS`` downloads of the whole file on one kept-alive connection (hundreds of
MB, about a second, rather than one ~50 ms download), timed by curl itself per transfer (no
process start-up in the time); each transfer must answer 200 with exactly the expected bytes.
Before the timed samples, each arm is downloaded once into a file and its SHA-256 checked, so
both arms are known to move identical bytes. The samples alternate between the arms
(``REPEATS`` pairs), so load from other processes hits both alike; the value checked is the
median of the per-pair ratios, and the spread (lowest and highest pair) is printed with it.

During the samples the servers run on one core and curl on the other (``pinned``), the same
for both arms, as a client on another machine would. Left to the scheduler, the two shared a
core whenever other work held the second one, and on one core curl's CPU per GB of a
``sendfile`` stream over loopback doubled (its kernel then does the sender's ACK processing and
releases the page-cache pages the socket buffers held): the ratio flipped between ~0.8x and
~2x from run to run with the placement, not with the servers.
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from bench._cpu import process_cpu

TRANSFERS = 12  # downloads per sample: 12 x ~36 MB = ~430 MB
REPEATS = 9  # interleaved samples per arm
CURL = shutil.which("curl")
SERVER_CPU, CLIENT_CPU = 0, 1


class Arm(msgspec.Struct, frozen=True):
    """One side of a comparison: a URL with its request headers, and the server's pid."""

    url: str
    headers: dict[str, str]
    pid: int


class Side(msgspec.Struct):
    """The samples of one arm: MB/s of each, the CPU seconds of server and client."""

    mbps: list[float] = msgspec.field(default_factory=list)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    bytes: int = 0

    def server_s_per_gb(self) -> float:
        return self.server_cpu / (self.bytes / 1e9)

    def client_s_per_gb(self) -> float:
        return self.client_cpu / (self.bytes / 1e9)


class Comparison(msgspec.Struct, frozen=True):
    ours: Side
    base: Side

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours.mbps, self.base.mbps, strict=True)]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def line(self, ours: str, base: str) -> str:
        r, a, b = self.ratios, self.ours, self.base
        return (f"{ours} {statistics.median(a.mbps):.0f} MB/s, {base} "
                f"{statistics.median(b.mbps):.0f} MB/s (medians of {len(r)} interleaved "
                f"samples of {TRANSFERS} downloads, curl; server and client pinned to a core "
                f"each); ratio {self.ratio:.2f}x, pairs "
                f"{min(r):.2f}-{max(r):.2f}x; CPU s/GB server {a.server_s_per_gb():.2f} vs "
                f"{b.server_s_per_gb():.2f}, client (curl) {a.client_s_per_gb():.2f} vs "
                f"{b.client_s_per_gb():.2f}, both {a.server_s_per_gb() + a.client_s_per_gb():.2f}"
                f" vs {b.server_s_per_gb() + b.client_s_per_gb():.2f}")


def available() -> bool:
    return CURL is not None


def _threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


@contextmanager
def pinned(pids: list[int]) -> Iterator[None]:
    """Every thread of the servers ``pids`` on core ``SERVER_CPU`` for the duration (threads
    they start meanwhile inherit it), curl on ``CLIENT_CPU`` (``_curl``); nothing pinned on a
    machine with one core."""
    if len(os.sched_getaffinity(0)) < 2:
        yield
        return
    before = {tid: os.sched_getaffinity(tid) for pid in pids for tid in _threads(pid)}
    for tid in before:
        os.sched_setaffinity(tid, {SERVER_CPU})
    try:
        yield
    finally:
        for pid in pids:
            for tid in _threads(pid):
                os.sched_setaffinity(tid, before.get(tid) or os.sched_getaffinity(0))


def _client_core() -> None:
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {CLIENT_CPU})


def _curl(arm: Arm, outputs: list[str]) -> list[tuple[int, int, float]]:
    """curl fetching ``arm.url`` once per output, on one connection: (status, bytes, seconds)
    of each transfer, as curl measured it."""
    assert CURL is not None
    args = [CURL, "--silent", "--show-error", "--write-out",
            "%{http_code} %{size_download} %{time_total}\n"]
    for name, value in arm.headers.items():
        args += ["--header", f"{name}: {value}"]
    for out in outputs:
        args += ["--output", out, arm.url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False,
                          preexec_fn=_client_core)
    if done.returncode != 0:
        raise RuntimeError(f"curl {arm.url}: exit {done.returncode}: {done.stderr.strip()}")
    rows = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return [(int(s), int(n), float(t)) for s, n, t in rows]


def verify(arm: Arm, size: int, sha256: str) -> None:
    """One download of ``arm`` into a file: status 200, ``size`` bytes, SHA-256 ``sha256``."""
    with tempfile.TemporaryDirectory(prefix="bench-dl-") as tmp:
        path = Path(tmp) / "body"
        ((status, got, _),) = _curl(arm, [str(path)])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if status != 200 or got != size or digest != sha256:
        raise RuntimeError(f"{arm.url}: status {status}, {got} bytes, sha256 {digest[:12]}; "
                           f"expected 200, {size} bytes, {sha256[:12]}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sample(arm: Arm, size: int, side: Side) -> None:
    """One timed sample of ``arm`` (``TRANSFERS`` downloads), added to ``side``."""
    server, client = process_cpu(arm.pid), _children_cpu()
    rows = _curl(arm, [os.devnull] * TRANSFERS)
    side.server_cpu += process_cpu(arm.pid) - server
    side.client_cpu += _children_cpu() - client
    bad = [row for row in rows if row[0] != 200 or row[1] != size]
    if len(rows) != TRANSFERS or bad:
        raise RuntimeError(f"{arm.url}: {len(rows)} transfers, wrong ones {bad[:3]}")
    side.bytes += size * TRANSFERS
    side.mbps.append(size * TRANSFERS / 1e6 / sum(t for _, _, t in rows))


def compare(ours: Arm, base: Arm, size: int, sha256: str) -> Comparison:
    """Both arms checked for identical bytes, then ``REPEATS`` interleaved samples each."""
    verify(ours, size, sha256)
    verify(base, size, sha256)
    a, b = Side(), Side()
    with pinned([ours.pid, base.pid]):
        for i in range(REPEATS):  # alternate which arm goes first: neither always follows
            order = [(ours, a), (base, b)] if i % 2 == 0 else [(base, b), (ours, a)]
            for arm, side in order:
                sample(arm, size, side)
    return Comparison(a, b)
