"""Cheap NDJSON subscribers for ``bench.realtime``, run in processes of their own.

``python -m bench._realtime_clients HOST PORT KEY COUNT TIMEOUT [SLOW]`` opens COUNT streams of
``/v2/articles`` over raw sockets (one HTTP/1.1 request each, no HTTP library, no asyncio),
prints ``connected`` once all answered 200, then reads. The parent writes one line
``expect N`` on stdin once the producer is done (N records each stream should get; ``expect 0``
for idle streams); the process stops reading when every stream has N records, was closed by
the server, or TIMEOUT seconds passed since ``expect``, prints ``done``, waits for a line
``close`` (the parent reads the server's CPU in between), closes its streams and prints one
JSON line (``Result``).
SLOW (default 0) of the streams never read at all: they lag until the server cuts them
(``bench.realtime``'s memory phase), and are left out of the latency figures.

The read path is one ``epoll`` loop over non-blocking sockets; per readable socket it does one
``recv_into`` a preallocated buffer, then takes the ``"bench_sent_ns":<digits>`` stamps (the
producer's send time, the last field of each record) of the complete lines at a fixed offset
before each newline (``stamps``: a C ``memchr`` per line, a slice per record) and keeps their
digits joined per read beside the read's receive time (numbers only after the run).
Chunked-encoding framing sits between the server's writes, which hold whole lines, so it never
splits a stamp; a line cut by the end of a read is carried over to the next. Every record's
latency is kept (none is sampled); latencies become a histogram of 0.1 ms buckets only after
the run, so that measuring costs the clients little CPU while the server is measured.
``Result.cpu_seconds`` is the CPU of the reading part (connect to last record), printed per
million records by the parent.
"""

from __future__ import annotations

import select
import socket
import sys
import time
from array import array
from collections import Counter

import msgspec

STAMP_DIGITS = 19  # time.time_ns() until 2286

CLOSED = b"stream-closed"
READ_BYTES = 256 * 1024
BUCKET_NS = 100_000  # 0.1 ms
WINDOW_NS = 500_000_000  # timeline: records grouped by send time, per 0.5 s
COARSE_NS = 10_000_000  # timeline latency buckets: 10 ms
CONNECT_TIMEOUT = 60.0


class Result(msgspec.Struct):
    received: list[int]
    closed: int
    errors: list[str]
    cpu_seconds: float
    histogram: dict[int, int]  # bucket (0.1 ms) -> samples
    records: int = 0  # records counted by every stream together
    reads: int = 0  # socket reads that returned records (one ``recv_into`` each)
    waited_seconds: float = 0.0  # runnable but not running (waiting for a CPU) while reading
    cut: int = 0  # slow streams the server closed (stream-closed message or EOF)
    # send-time window (``WINDOW_NS``, absolute) -> latency bucket (``COARSE_NS``) -> samples:
    # how latency moves over the phase (a backlog building up, or stalls)
    timeline: dict[int, dict[int, int]] = {}


def stamps(data: bytes | bytearray, end: int) -> list[bytes | bytearray]:
    """The send stamps of the records in ``data[:end]``, in order.

    Each record line ends with ``"bench_sent_ns":<19 digits>}\n`` (the producer makes it the
    last field), so the stamp sits at a fixed offset before each newline: one C ``memchr``
    per line (``find`` of one byte), two byte compares (``}`` before the newline, ``:`` before
    the digits) and one slice per record. Checking the whole key per record (two more slices
    and a compare) cost about a fifth more instructions per record; what it guarded against
    (a line that is not a record) is the closing message and heartbeats, which fail the two
    compares, and ``Reader.stamps_sent`` checks every stamp is 19 digits after the run, so a
    wrong slice fails the run instead of making a wrong latency. A record whose stamp were
    not found would show as not delivered, never as a wrong latency."""
    out: list[bytes | bytearray] = []
    append = out.append
    find = data.find
    i = find(b"\n", 0, end)
    while i >= 0:
        if data[i - 1] == 0x7D and data[i - 21] == 0x3A:  # "}" and ":"
            append(data[i - 20:i - 1])
        i = find(b"\n", i + 1, end)
    return out


class Stream:
    __slots__ = ("closed", "error", "head", "received", "rest", "slow", "sock")

    def __init__(self, sock: socket.socket, *, slow: bool) -> None:
        self.sock = sock
        self.slow = slow
        self.received = 0
        self.closed = False
        self.error: str | None = None
        self.head = True  # still reading the response head
        self.rest = b""  # a line cut by the end of the previous read


def open_stream(host: str, port: int, key: str, *, slow: bool) -> Stream:
    sock = socket.socket()
    if slow:  # a small receive window (set before connecting): the server's writes back up soon
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(CONNECT_TIMEOUT)
    sock.connect((host, port))
    sock.sendall(f"POST /v2/articles HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 f"Authorization: Bearer {key}\r\nAccept: application/x-ndjson\r\n"
                 "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".encode())
    sock.setblocking(False)
    return Stream(sock, slow=slow)


class Reader:
    """Every stream's reads, in one epoll loop."""

    def __init__(self, streams: list[Stream]) -> None:
        self.streams = {s.sock.fileno(): s for s in streams}
        self.poller = select.epoll()
        for fd, s in self.streams.items():
            if not s.slow:
                self.poller.register(fd, select.EPOLLIN)
        self.buffer = bytearray(READ_BYTES)
        self.view = memoryview(self.buffer)
        # every stamp, in arrival order: the stamps' digits (``STAMP_DIGITS`` each) joined per
        # read, turned into numbers only after the run (``stamps_sent``)
        self.digits: list[bytes] = []
        self.reads = array("q")  # (received ns, count) per read with stamps
        self.records = 0

    def pending_heads(self) -> int:
        return sum(s.head for s in self.streams.values() if not s.slow)

    def poll(self, timeout: float) -> None:
        for fd, _ in self.poller.poll(timeout):
            self.read(self.streams[fd])

    def read(self, s: Stream) -> None:
        try:
            n = s.sock.recv_into(self.buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            s.error = repr(exc)
            self._drop(s)
            return
        now = time.time_ns()
        if not n:
            s.closed = True
            self._drop(s)
            return
        # The buffer itself when nothing was carried over (no copy).
        data: bytes | bytearray = s.rest + self.view[:n] if s.rest else self.buffer
        if s.head:
            data = bytes(data[:n]) if data is self.buffer else data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                s.rest = bytes(data)
                return
            if data.split(b" ", 2)[1] != b"200":
                raise RuntimeError(f"subscribe: {bytes(data[:200])!r}")
            s.head = False
            data = data[end + 4:]
            n = len(data)
        elif s.rest:
            n = len(data)
        cut = data.rfind(b"\n", 0, n) + 1
        s.rest = bytes(data[cut:n])
        found = stamps(data, cut)
        if found:
            s.received += len(found)
            self.records += len(found)
            self.digits.append(b"".join(found))
            self.reads.append(now)
            self.reads.append(len(found))
        # The closing message is the stream's last line: look for it at the end only.
        if data.find(CLOSED, max(0, cut - 1024), cut) >= 0:
            s.closed = True
            self._drop(s)

    def _drop(self, s: Stream) -> None:
        self.poller.unregister(s.sock.fileno())

    def stamps_sent(self) -> array[int]:
        """Every record's send stamp (ns), in arrival order."""
        out = array("q")
        for digits in self.digits:
            if not digits.isdigit() or len(digits) % STAMP_DIGITS:
                raise RuntimeError(f"not a send stamp: {bytes(digits[:80])!r}")
            out.extend(int(digits[i:i + STAMP_DIGITS])
                       for i in range(0, len(digits), STAMP_DIGITS))
        return out

    def histogram(self) -> dict[int, int]:
        """Every record's latency, as 0.1 ms buckets."""
        buckets: list[int] = []
        sent, reads, at = self.stamps_sent(), self.reads, 0
        for i in range(0, len(reads), 2):
            now, count = reads[i], reads[i + 1]
            buckets.extend([(now - t) // BUCKET_NS for t in sent[at:at + count]])
            at += count
        return dict(Counter(buckets))

    def timeline(self) -> dict[int, dict[int, int]]:
        """Every record's latency (10 ms buckets) per 0.5 s window of its send time."""
        out: dict[int, Counter[int]] = {}
        sent, reads, at = self.stamps_sent(), self.reads, 0
        for i in range(0, len(reads), 2):
            now, count = reads[i], reads[i + 1]
            for t in sent[at:at + count]:
                window = out.get(t // WINDOW_NS)
                if window is None:
                    window = out[t // WINDOW_NS] = Counter()
                window[(now - t) // COARSE_NS] += 1
            at += count
        return {w: dict(c) for w, c in out.items()}


def slow_state(s: Stream) -> bool:
    """Whether the server closed a slow stream (checked once, at the end: it never reads)."""
    s.sock.setblocking(True)
    s.sock.settimeout(0.5)
    try:
        while chunk := s.sock.recv(READ_BYTES):
            if CLOSED in chunk:
                return True
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def waited() -> float:
    """Seconds this process has been runnable but not running (``/proc/self/schedstat``)."""
    try:
        with open("/proc/self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def run(host: str, port: int, key: str, count: int, timeout: float, slow: int) -> Result:
    cpu0, waited0 = time.process_time(), waited()
    streams = [open_stream(host, port, key, slow=i < slow) for i in range(count)]
    reader = Reader(streams)
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while reader.pending_heads() and time.monotonic() < deadline:
        reader.poll(0.1)
    if reader.pending_heads():
        raise RuntimeError(f"{reader.pending_heads()} streams got no response head")
    print("connected", flush=True)
    stdin = sys.stdin.fileno()  # not a stream: checked first in the loop below
    reader.poller.register(stdin, select.EPOLLIN)
    expect = -1
    end = checked = float("inf")
    live = [s for s in streams if not s.slow]
    while (now := time.monotonic()) < end:
        for fd, _ in reader.poller.poll(0.1):
            if fd == stdin:
                expect = int(sys.stdin.readline().split()[1])
                reader.poller.unregister(fd)
                end = time.monotonic() + timeout
                checked = 0.0
            else:
                reader.read(reader.streams[fd])
        if now - checked > 0.05:  # every stream done? (not per read: O(streams))
            checked = now
            if all(s.received >= expect or s.closed or s.error for s in live):
                break
    cpu = time.process_time() - cpu0  # the run's; building the histogram is after it
    waited_s = waited() - waited0
    print("done", flush=True)  # the parent reads the server's CPU, then says "close"
    sys.stdin.readline()
    cut = sum(slow_state(s) for s in streams if s.slow)
    for s in streams:
        s.sock.close()
    return Result(received=[s.received for s in live], closed=sum(s.closed for s in live),
                  errors=[s.error for s in live if s.error], cpu_seconds=cpu,
                  histogram=reader.histogram(), records=reader.records, cut=cut,
                  reads=len(reader.reads) // 2, waited_seconds=waited_s,
                  timeline=reader.timeline())


if __name__ == "__main__":
    host, port, key, count, timeout = sys.argv[1:6]
    slow = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    result = run(host, int(port), key, int(count), float(timeout), slow)
    sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
    sys.stdout.flush()
