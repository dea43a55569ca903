"""An in-test TCP proxy that cuts one client's link to Redis: ``pass``, ``blackhole`` and ``reset`` modes.

* ``pass``: bytes flow both ways.
* ``blackhole``: nothing is forwarded either way, but every socket stays open (a partition: the peer sees silence,
  not an error). Bytes sent meanwhile wait in the proxy and the kernel's buffers and flow after the heal, as TCP's
  retransmissions would deliver them: a command whose client gave up may still reach Redis late.
* ``reset``: every connection is closed with a TCP reset, and new ones are reset as soon as they are accepted.

Threads, one pair per connection; ``close()`` stops everything (the tests use it as a context manager).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

PASS, BLACKHOLE, RESET = "pass", "blackhole", "reset"


def _reset(sock: socket.socket) -> None:
    """Close with RST (linger 0), waking a thread blocked in recv on it first."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """Listens on a free loopback port and forwards each connection to ``upstream`` (host, port)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._mode = PASS
        self._changed = threading.Condition()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        self.accepted = 0
        threading.Thread(target=self._accept, name="tcpproxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch modes; ``reset`` resets every open connection now."""
        assert mode in (PASS, BLACKHOLE, RESET), mode
        with self._changed:
            self._mode = mode
            pairs: list[tuple[socket.socket, socket.socket]] = []
            if mode == RESET:
                pairs, self._pairs = self._pairs, []
            self._changed.notify_all()
        if mode == RESET:
            for a, b in pairs:
                _reset(a)
                _reset(b)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self._mode == RESET:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._changed:
                self._pairs.append((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="tcpproxy-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._changed:  # hold what was read while black-holed; drop it if the link is reset
                    self._changed.wait_for(lambda: self._mode != BLACKHOLE or self._closed)
                    if self._mode == RESET or self._closed:
                        break
                dst.sendall(data)
        except OSError:
            pass
        with self._changed:
            self._pairs = [p for p in self._pairs if src not in p]
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            pairs, self._pairs = self._pairs, []
            self._changed.notify_all()
        with contextlib.suppress(OSError):
            self._listener.close()
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
