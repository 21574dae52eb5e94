"""Move bytes from one socket to another through a pipe with ``splice(2)``, on the event loop.

``relay(src, dst, count)`` moves the next ``count`` bytes arriving on the socket ``src`` (a
store's response body) into the socket ``dst`` (the client's): the kernel moves the pages,
Python never holds the bytes. Both sockets are non-blocking. The loop fills the pipe from
``src`` and drains it into ``dst``, and waits only when neither moved: for ``src`` to become
readable when the pipe is empty, for ``dst`` to become writable when the pipe holds bytes the
client's socket does not take (flow control: at most a pipe's worth waits on the server).

``dst`` is waited on through a duplicate of its descriptor: the event loop refuses a second
registration of a descriptor its transport owns, and the transport keeps reading it (a
client's disconnect). The caller makes sure the transport has nothing buffered to write.

A failure raises ``SpliceInterrupted`` with the bytes that went into ``dst``; ``source``
tells that ``src`` ended or failed (or stayed silent ``timeout`` seconds) rather than
``dst``. Bytes in the pipe that did not reach ``dst`` are dropped with it.
"""

from __future__ import annotations

import asyncio
import fcntl
import os

SPLICE = "feedserver.splice"  # ASGI extension and message type: {"fd", "count", "more_body"}
PIPE_BYTES = 1024 * 1024  # /proc/sys/fs/pipe-max-size's default: what an unprivileged user gets
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


class SpliceInterrupted(ConnectionError):
    """``sent`` bytes reached the client before the relay stopped; ``source``: the store's
    socket ended early or failed, else the client's side failed."""

    def __init__(self, sent: int, *, source: bool = False, reason: str = "") -> None:
        side = "source" if source else "client"
        super().__init__(f"splice stopped after {sent} bytes ({side}{': ' if reason else ''}"
                         f"{reason})")
        self.sent = sent
        self.source = source


async def relay(src: int, dst: int, count: int, *, timeout: float) -> None:
    """Move ``count`` bytes from socket ``src`` to socket ``dst`` (``SpliceInterrupted``)."""
    loop = asyncio.get_running_loop()
    out = os.dup(dst)
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            cap = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # a lower pipe-max-size: keep the default
            cap = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        filled = sent = 0
        while sent < count:
            if filled < count and filled - sent < cap:
                try:
                    n = os.splice(src, w, min(cap - (filled - sent), count - filled),
                                  flags=_FLAGS)
                except BlockingIOError:
                    n = -1
                except OSError as exc:
                    raise SpliceInterrupted(sent, source=True, reason=str(exc)) from exc
                if n == 0:
                    raise SpliceInterrupted(sent, source=True, reason="ended early")
                if n > 0:
                    filled += n
                elif filled == sent:  # nothing in the pipe and nothing on the socket
                    await _ready(loop, src, write=False, timeout=timeout, sent=sent)
                    continue
            if filled > sent:
                try:
                    sent += os.splice(r, out, filled - sent, flags=_FLAGS)
                except BlockingIOError:
                    await _ready(loop, out, write=True, timeout=None, sent=sent)
                except OSError as exc:  # EPIPE, ECONNRESET: the client went away
                    raise SpliceInterrupted(sent, reason=str(exc)) from exc
    finally:
        os.close(r)
        os.close(w)
        os.close(out)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool,
                 timeout: float | None, sent: int) -> None:
    waiter: asyncio.Future[None] = loop.create_future()
    if write:
        loop.add_writer(fd, _wake, waiter)
    else:
        loop.add_reader(fd, _wake, waiter)
    try:
        async with asyncio.timeout(timeout):
            await waiter
    except TimeoutError as exc:
        raise SpliceInterrupted(sent, source=True, reason="timed out") from exc
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)
