"""Reading a handed-over socket range (``SocketRange``) as its holder would: the bytes the
store's buffer held already, then the rest from the socket."""

from __future__ import annotations

import os
import socket

from feedserver.storage.blobs import SocketRange


def drain(rng: SocketRange) -> bytes:
    """``rng``'s bytes as its holder gets them: the buffered head, then its socket."""
    out = bytearray(rng.head)
    with socket.socket(fileno=os.dup(rng.fileno)) as sock:
        sock.settimeout(30)
        for _ in range(rng.length + 1):  # bounded: each recv is at least one byte
            if len(out) >= rng.length:
                break
            block = sock.recv(rng.length - len(out))
            assert block, "the store closed before the range's end"
            out += block
    return bytes(out)
