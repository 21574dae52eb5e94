"""Hand over the socket under a botocore streaming body (``S3BlobStore.open_socket``).

botocore reads a GET's body through urllib3, which reads it through ``http.client`` from a
buffered file over the connection's socket. After the response headers, that buffer may
already hold the body's first bytes (one ``recv`` of up to 8 KiB read the headers); the rest
of the body is still in the socket. ``socket_range`` returns both, so a server can send the
buffered bytes and then ``splice(2)`` the rest from the socket without Python reading it.

Only where that is exact: a plain TCP socket (TLS bytes must be decrypted in Python), a body
framed by ``Content-Length`` (not chunked), without a content encoding, of exactly the
length asked, nothing read from it yet, and a socket with a timeout (non-blocking at the
file descriptor, as CPython makes it). Anything else: None, and the body is read as blocks.

Keep-alive stays urllib3's: a range consumed whole closes ``http.client``'s response (it
then knows the connection is at a message boundary) and returns the connection to the
pool (a server that closes after each response, as moto does, has closed it already: then
the socket is closed with the response); anything else closes the connection (it is put
back closed, so the pool keeps its slot and reconnects). These are urllib3/http.client
internals (``_raw_stream``, ``_fp``, ``SocketIO._sock``):
tested against the pinned versions with a real moto_server, and any surprise is a None.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl

from feedserver.storage.blobs.base import SocketRange

SPLICE = hasattr(os, "splice")  # Linux, Python >= 3.10


def socket_range(body: object, length: int) -> SocketRange | None:
    """The rest of botocore's ``body`` (``length`` bytes) as a ``SocketRange``, or None."""
    raw = getattr(body, "_raw_stream", None)  # urllib3.response.HTTPResponse
    response = getattr(raw, "_fp", None)  # http.client.HTTPResponse
    # The socket under http.client's buffered file (its connection lets go of it already
    # when the server closes after this response, as moto does)
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if (not SPLICE or length <= 0 or not isinstance(response, http.client.HTTPResponse)
            or not isinstance(sock, socket.socket) or isinstance(sock, ssl.SSLSocket)
            or sock.gettimeout() is None or response.chunked or response.length != length
            or getattr(raw, "length_remaining", None) != length
            or getattr(raw, "_fp_bytes_read", None) != 0
            or (response.getheader("content-encoding") or "identity").lower() != "identity"):
        return None
    buffered = response.fp
    if buffered is None or raw is None:
        return None
    # What the buffer holds already (one recv when it is empty: the body's first bytes,
    # waited for in the store's worker thread, as the first block of a streamed read is).
    head = buffered.read(min(len(buffered.peek(0)), length))

    def finish(complete: bool) -> None:
        if complete:
            response.length = 0
            response.close()  # closes the buffered file only: the socket stays open
        else:
            raw.close()  # the socket is mid-body: closed, never reused
        raw.release_conn()

    return SocketRange(head, sock.fileno(), length, finish)
