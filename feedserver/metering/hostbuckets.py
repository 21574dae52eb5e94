"""GCRA buckets in a memory-mapped file: ONE bucket per customer for every process of one host.

``serve --workers N`` on SQLite is N processes on one host (SQLite is a local file). They share
the rate-limit state through a small file next to the database (``<database>-ratelimit``),
mapped into each process: a hit is an exclusive ``flock`` of that file, a read-modify-write of
one slot and the unlock, a few microseconds on the event loop, where the database limiter cost
a worker-thread hop plus a write transaction (about 30 µs of SQLite, and the hop, which is
milliseconds on a loaded machine). The decision is the same GCRA step (``ratelimit.decide``),
taken under one lock by whichever process asks, so N processes draw from exactly one bucket.

Layout: a 64-byte header (magic, slot count) then ``SLOTS`` slots of 32 bytes: the bucket's
key (16 bytes of BLAKE2b of its name) and its theoretical arrival time (float64 seconds).
Open addressing with linear probing; a key is never removed, but a slot whose time lies in the
past may be taken over by another key: a GCRA bucket whose ``tat <= now`` is full, exactly as
if it did not exist, so reusing its slot forgets nothing. Only when ``PROBES`` consecutive
slots all hold live buckets (65,536 slots; that many customers all limited at once on one
host) is the slot of the bucket closest to full reused, and that bucket starts full again:
logged, never silent.

A ``kill -9`` cannot leave the lock held (the kernel drops a dead process's ``flock``) nor a
torn time (one aligned 8-byte store). A file with another size or magic (another version) is
reset under the lock: every bucket starts full.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import threading
from pathlib import Path

from feedserver.metering.ratelimit import RateDecision, take_tokens
from feedserver.plans import RateLimit

log = logging.getLogger(__name__)

MAGIC = b"feedserver-gcra-1"
HEADER = 64
SLOT = 32
SLOTS = 65_536
PROBES = 64
_EMPTY = bytes(16)
_TAT = struct.Struct("<d")


def _key(bucket: str) -> bytes:
    return hashlib.blake2b(bucket.encode(), digest_size=16).digest()


class HostRateLimiter:
    """``RateLimiter`` over a shared file; never blocks on I/O (``try_hit`` always decides)."""

    def __init__(self, path: str | Path, *, slots: int = SLOTS) -> None:
        self.path = Path(path)
        self.slots = slots
        self.size = HEADER + slots * SLOT
        self._lock = threading.Lock()  # flock is per open file: threads of one process share it
        self._where: dict[str, tuple[bytes, int]] = {}  # bucket -> (key, slot offset) last seen
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.fstat(self._fd).st_size != self.size or os.pread(
                        self._fd, len(MAGIC), 0) != MAGIC:
                    os.ftruncate(self._fd, 0)  # another layout: every bucket starts full
                    os.ftruncate(self._fd, self.size)
                    os.pwrite(self._fd, MAGIC + struct.pack("<Q", slots), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(self._fd, self.size)
        except BaseException:
            os.close(self._fd)
            raise

    def try_hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        return self.hit(bucket, policy, now)

    def hit(self, bucket: str, policy: RateLimit, now: float) -> RateDecision:
        return self.take(bucket, policy, now, 1)[1]

    def take(self, bucket: str, policy: RateLimit, now: float,
             tokens: int) -> tuple[int, RateDecision]:
        """``tokens`` requests' worth at once when the bucket holds them, else one (the
        ``TokenBucket`` step ``LeasedRateLimiter`` leases from); returns how many were taken
        (0 when denied) and the decision for the first."""
        known = self._where.get(bucket)
        key = known[0] if known is not None else _key(bucket)
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                # The slot this process found last time, if it still holds the key (another
                # key may have taken it over once it expired); else probe.
                if known is not None and self._map[known[1]:known[1] + 16] == key:
                    offset = known[1]
                else:
                    start = int.from_bytes(key[:8], "little") % self.slots
                    offset = self._slot(key, start, now)
                    if len(self._where) >= 100_000:
                        self._where.clear()
                    self._where[bucket] = (key, offset)
                tat = _TAT.unpack_from(self._map, offset + 16)[0]
                # a new slot's 0.0: a full bucket
                taken, decision, new_tat = take_tokens(tat, now, policy, tokens)
                if new_tat != tat:
                    _TAT.pack_into(self._map, offset + 16, new_tat)
                return taken, decision
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _slot(self, key: bytes, start: int, now: float) -> int:
        """The offset of ``key``'s slot, claiming one when it has none (under the lock)."""
        m = self._map
        free = -1
        oldest, oldest_tat = -1, float("inf")
        for i in range(PROBES):
            offset = HEADER + ((start + i) % self.slots) * SLOT
            held = m[offset:offset + 16]
            if held == key:
                return offset
            if held == _EMPTY:
                # Keys are never removed, so ``key`` cannot lie beyond a never-used slot.
                free = offset if free < 0 else free
                break
            tat = _TAT.unpack_from(m, offset + 16)[0]
            if tat <= now and free < 0:
                free = offset  # a full bucket: the same as no bucket, so the slot is free
            if tat < oldest_tat:
                oldest, oldest_tat = offset, tat
        if free < 0:
            log.warning("rate-limit table %s is full around one slot: bucket reset", self.path)
            free = oldest
        m[free:free + 16] = key
        _TAT.pack_into(m, free + 16, 0.0)
        return free

    def close(self) -> None:
        with self._lock:
            self._map.close()
            os.close(self._fd)
