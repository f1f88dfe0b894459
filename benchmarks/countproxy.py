"""A counting HTTP/1.1 proxy on 127.0.0.1: requests and bytes each way, nothing changed.

Put between an S3 client and the server (the client's endpoint is the proxy's), it counts
every request and the bytes of each request and response (heads and bodies, as on the wire),
so two tools are measured the same way whatever they report about themselves. Bodies are
streamed through in blocks, never held whole, so a big multipart part costs the proxy no more
memory than a small object. One thread per client connection; keep-alive, chunked bodies and
`Expect: 100-continue` are relayed as they come.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote

BLOCK = 1 << 18
#: a key's segment that names one object among many (a hash, a number, an id)
_ID = re.compile(r"[0-9a-f]{2}|[0-9a-f]{6,}[^/]*|\d+[^/]*|[^/]*\.(tmp|part)[^/]*", re.I)


class _Closed(Exception):
    """The peer closed the connection (between exchanges, or in the middle of one)."""


@dataclass
class Counts:
    """What crossed the proxy: requests by method, bytes sent up (client to server), down."""

    requests: Counter[str] = field(default_factory=Counter)
    up: int = 0
    down: int = 0
    #: requests by method and kind of key (see `kind`)
    kinds: Counter[str] = field(default_factory=Counter)

    def total(self) -> int:
        return sum(self.requests.values())

    def minus(self, before: Counts) -> Counts:
        return Counts(
            self.requests - before.requests,
            self.up - before.up,
            self.down - before.down,
            self.kinds - before.kinds,
        )

    def copy(self) -> Counts:
        return Counts(Counter(self.requests), self.up, self.down, Counter(self.kinds))


def kind(method: str, target: bytes) -> str:
    """`GET packs/*` for `GET /bucket/prefix/packs/ab/abcdef...?x`: where the time goes by
    kind of object, without one line per object (the bucket and the prefix dropped, ids
    collapsed to `*`, and the query's first parameter name kept: uploads, list-type...; a
    listing is named by its prefix)."""
    path, _, query = unquote(target.decode(errors="replace")).partition("?")
    parts = [p for p in path.split("/") if p][2:]
    listed = dict(q.partition("=")[::2] for q in query.split("&")).get("prefix")
    if listed is not None:
        parts = [p for p in listed.split("/") if p][1:]
    key = "/".join(dict.fromkeys("*" if _ID.fullmatch(p) else p for p in parts[:4]))
    param = "list" if "list-type" in query else query.split("&")[0].split("=")[0]
    return f"{method} {key or '/'}{'?' + param if param else ''}"


class _Conn:
    """One socket with its read-ahead buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def fill(self) -> None:
        data = self.sock.recv(BLOCK)
        if not data:
            raise _Closed
        self.buf += data

    def head(self) -> bytes:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self.fill()
        head = bytes(self.buf[: end + 4])
        del self.buf[: end + 4]
        return head

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self.fill()
        out = bytes(self.buf[: end + 2])
        del self.buf[: end + 2]
        return out

    def pipe(self, n: int, to: socket.socket) -> int:
        """Relay exactly n bytes to `to`, in blocks."""
        left = n
        while left:
            if not self.buf:
                self.fill()
            part = bytes(self.buf[:left])
            del self.buf[: len(part)]
            to.sendall(part)
            left -= len(part)
        return n

    def pipe_body(self, head: bytes, to: socket.socket, *, none: bool) -> int:
        """Relay the body that `head` announces (length or chunked); its size on the wire."""
        if none:
            return 0
        if (_header(head, b"transfer-encoding") or b"").lower().endswith(b"chunked"):
            sent = 0
            while True:
                line = self.line()
                to.sendall(line)
                size = int(line.split(b";")[0].strip(), 16)
                sent += len(line) + self.pipe(size + 2, to) if size else len(line)
                if size == 0:  # trailers, then the blank line
                    while (t := self.line()) != b"\r\n":
                        to.sendall(t)
                        sent += len(t)
                    to.sendall(b"\r\n")
                    return sent + 2
        length = _header(head, b"content-length")
        return self.pipe(int(length), to) if length else 0


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


class CountingProxy:
    """Listens on 127.0.0.1 (a free port) and relays every exchange to `upstream`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._counts = Counts()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> Counts:
        with self._lock:
            return self._counts.copy()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _add(self, method: str, target: bytes, up: int, down: int) -> None:
        with self._lock:
            self._counts.requests[method] += 1
            self._counts.kinds[kind(method, target)] += 1
            self._counts.up += up
            self._counts.down += down

    def _relay(self, client_sock: socket.socket) -> None:
        client, server = _Conn(client_sock), None
        try:
            while not self._stop.is_set():
                head = client.head()
                if server is None:
                    server = _Conn(socket.create_connection(self.upstream))
                    for s in (client_sock, server.sock):
                        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._exchange(head, client, server)
        except (_Closed, OSError, ValueError, IndexError):
            pass
        finally:
            for s in (client_sock, server.sock if server else None):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()

    def _exchange(self, head: bytes, client: _Conn, server: _Conn) -> None:
        """One request and its response, counted once the response is through."""
        method_b, target = head.split(b" ", 2)[:2]
        method = method_b.decode()
        server.sock.sendall(head)
        up, down = len(head), 0
        if (_header(head, b"expect") or b"").lower() == b"100-continue":
            interim = server.head()
            client.sock.sendall(interim)
            down += len(interim)
            if _status(interim) != 100:  # refused before the body: that is the answer
                down += server.pipe_body(interim, client.sock, none=method == "HEAD")
                self._add(method, target, up, down)
                return
        up += client.pipe_body(head, server.sock, none=False)
        rhead = server.head()
        while _status(rhead) == 100:  # an unasked-for 100 Continue
            client.sock.sendall(rhead)
            down += len(rhead)
            rhead = server.head()
        client.sock.sendall(rhead)
        status = _status(rhead)
        down += len(rhead)
        down += server.pipe_body(rhead, client.sock, none=method == "HEAD" or status in (204, 304))
        self._add(method, target, up, down)
