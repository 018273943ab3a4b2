"""A loopback relay in front of a foxglove-sdk WebSocket server that also admits clients offering only the older
name of its subprotocol.

foxglove-sdk servers (the Python package 0.30, like foxglove_bridge 3.x) accept only clients that offer the
``foxglove.sdk.v1`` WebSocket subprotocol; any other client gets ``400 Bad Request`` with the body "Missing expected
sec-websocket-protocol header" and is dropped. Clients built on ``@foxglove/ws-protocol`` (its default), older
Foxglove app releases and Lichtblick releases before its ``foxglove.sdk.v1`` support (1.21 and earlier) offer only
``foxglove.websocket.v1``: the same protocol under its earlier name (same messages). The relay listens
on the public port; for such a client it rewrites the offer to ``foxglove.sdk.v1`` on the way in and the server's
choice back to ``foxglove.websocket.v1`` on the way out, then copies bytes both ways unchanged. Every other
handshake (``foxglove.sdk.v1`` offered, or neither) passes through untouched, so the SDK answers it as it would.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading

_logger = logging.getLogger(__name__)

#: The subprotocol foxglove-sdk servers speak.
SDK_SUBPROTOCOL = "foxglove.sdk.v1"
#: The same protocol's earlier name (``@foxglove/ws-protocol``, older Lichtblick and Foxglove app releases).
LEGACY_SUBPROTOCOL = "foxglove.websocket.v1"
#: Largest HTTP upgrade request or response head relayed (bytes).
MAX_HEAD_BYTES = 64 * 1024
_CHUNK = 1 << 16
_PROTOCOL_LINE = re.compile(rb"(?i)^sec-websocket-protocol\s*:(.*)$")


def offered_subprotocols(head: bytes) -> list[str]:
    """The subprotocols an HTTP upgrade request head offers (every ``Sec-WebSocket-Protocol`` line, in order)."""
    offered: list[str] = []
    for line in head.split(b"\r\n")[1:]:
        m = _PROTOCOL_LINE.match(line)
        if m:
            offered += [p.strip() for p in m.group(1).decode("latin-1").split(",") if p.strip()]
    return offered


def rewrite_request(head: bytes) -> tuple[bytes, bool]:
    """(request head to forward, whether the client offered only the legacy name).

    A request offering ``LEGACY_SUBPROTOCOL`` and not ``SDK_SUBPROTOCOL`` gets its ``Sec-WebSocket-Protocol`` lines
    replaced by one offering ``SDK_SUBPROTOCOL``; every other request is returned unchanged.

    Args:
        head: the request line and headers, ending with the empty line (``\\r\\n\\r\\n``).
    """
    offered = offered_subprotocols(head)
    if SDK_SUBPROTOCOL in offered or LEGACY_SUBPROTOCOL not in offered:
        return head, False
    lines = [line for line in head[:-4].split(b"\r\n") if not _PROTOCOL_LINE.match(line)]
    lines.append(f"Sec-WebSocket-Protocol: {SDK_SUBPROTOCOL}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n", True


def rewrite_response(head: bytes) -> bytes:
    """The server's upgrade response head with the chosen ``SDK_SUBPROTOCOL`` renamed ``LEGACY_SUBPROTOCOL`` (other
    responses, e.g. a 400, unchanged)."""
    lines = head[:-4].split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 101"):
        return head
    out = [f"Sec-WebSocket-Protocol: {LEGACY_SUBPROTOCOL}".encode()
           if (m := _PROTOCOL_LINE.match(line)) and m.group(1).strip() == SDK_SUBPROTOCOL.encode() else line
           for line in lines]
    return b"\r\n".join(out) + b"\r\n\r\n"


class SubprotocolRelay:
    """Listens on ``host:port`` and relays every connection to the server on ``host:upstream_port`` (see the module
    docstring), in a background thread with its own event loop.

    Args:
        upstream_port: port of the foxglove-sdk server (on ``host``).
        host: the address both listen on.
        port: public port; 0 picks a free one (see ``port``).

    Raises:
        RuntimeError: the port cannot be bound (in use).
    """

    def __init__(self, upstream_port: int, host: str, port: int):
        self.host, self.upstream_port = host, upstream_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="foxglove-relay", daemon=True)
        self._thread.start()
        self._writers: set[asyncio.StreamWriter] = set()
        try:
            self._server = asyncio.run_coroutine_threadsafe(
                asyncio.start_server(self._handle, host, port, limit=MAX_HEAD_BYTES), self._loop).result()
        except OSError as exc:
            self._shutdown_loop()
            raise RuntimeError(f"cannot listen on {host}:{port}: {exc}") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            head, legacy = rewrite_request(await client_r.readuntil(b"\r\n\r\n"))
            upstream_r, upstream_w = await asyncio.open_connection(self.host, self.upstream_port, limit=MAX_HEAD_BYTES)
            self._writers.add(upstream_w)
            upstream_w.write(head)
            response = await upstream_r.readuntil(b"\r\n\r\n")
            client_w.write(rewrite_response(response) if legacy else response)
            if legacy:
                _logger.info("live view: a client offering only %s connected (served as %s)", LEGACY_SUBPROTOCOL,
                             SDK_SUBPROTOCOL)
            pumps = [asyncio.ensure_future(_pump(client_r, upstream_w)),
                     asyncio.ensure_future(_pump(upstream_r, client_w))]
            _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass  # a client that leaves or sends garbage only ends its own connection
        finally:
            for w in (client_w, upstream_w):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _stop(self) -> None:
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5.0)

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._loop.close()

    def close(self) -> None:
        """Stop listening and drop every relayed connection (idempotent)."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10.0)
        self._shutdown_loop()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until end of stream (with back-pressure)."""
    while data := await reader.read(_CHUNK):
        writer.write(data)
        await writer.drain()
