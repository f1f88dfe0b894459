"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between an S3 client and a real server.

It relays one request and its response at a time on each connection (keep-alive included),
and before relaying asks `choose(method, path)` what to do with that exchange:

- PASS: relay as is
- DELAY: wait `delay` seconds, then relay
- ERROR_503: answer 503 SlowDown itself, never reaching the server
- RESET_BEFORE: drop the connection (a TCP reset) before the server sees the request
- RESET_AFTER: let the server carry the request out, then reset instead of answering (the
  write happened, its answer is lost)
- TRUNCATE: relay the response's head and half its body, then reset
- FAKE_SUCCESS: turn a 412 Precondition Failed into 200 OK (a server that ignores
  If-None-Match, as the client sees it)
- FORBIDDEN: answer 403 AccessDenied itself, never reaching the server (credentials, or a
  bucket policy, that deny this request: `read_only` denies every write and delete)

`random_faults(rate, seed)` picks among the faults at random; tests count what was injected.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable

PASS = "pass"
DELAY = "delay"
ERROR_503 = "503"
RESET_BEFORE = "reset-before"
RESET_AFTER = "reset-after"
TRUNCATE = "truncate"
FAKE_SUCCESS = "fake-success"
FORBIDDEN = "forbidden"
FAULTS = (DELAY, ERROR_503, RESET_BEFORE, RESET_AFTER, TRUNCATE)

Chooser = Callable[[str, str], str]

_503_BODY = b"<?xml version='1.0'?><Error><Code>SlowDown</Code><Message>fault</Message></Error>"
_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(_503_BODY)}\r\n\r\n".encode()
    + _503_BODY
)

_403_BODY = (
    b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)
_403 = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(_403_BODY)}\r\n\r\n".encode()
    + _403_BODY
)


def read_only(method: str, path: str) -> str:
    """Read-only credentials: GET, HEAD and listings pass, every write and delete is denied."""
    return PASS if method in ("GET", "HEAD") else FORBIDDEN


def random_faults(rate: float, seed: int, faults: tuple[str, ...] = FAULTS) -> Chooser:
    rng = random.Random(seed)
    lock = threading.Lock()

    def choose(method: str, path: str) -> str:
        with lock:
            return rng.choice(faults) if rng.random() < rate else PASS

    return choose


class _Closed(Exception):
    pass


def _read_head(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise _Closed
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    del buf[:end]
    return head


def _read_exact(sock: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        data = sock.recv(65536)
        if not data:
            raise _Closed
        buf += data
    out = bytes(buf[:n])
    del buf[:n]
    return out


def _read_chunked(sock: socket.socket, buf: bytearray) -> bytes:
    """A chunked body, returned as it came (the framing kept)."""
    out = bytearray()
    while True:
        while b"\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                raise _Closed
            buf += data
        end = buf.index(b"\r\n") + 2
        line = bytes(buf[:end])
        del buf[:end]
        out += line
        size = int(line.split(b";")[0].strip(), 16)
        out += _read_exact(sock, buf, size + 2)
        if size == 0:
            return bytes(out)


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _read_body(sock: socket.socket, buf: bytearray, head: bytes, *, no_body: bool) -> bytes:
    if no_body:
        return b""
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        return _read_chunked(sock, buf)
    length = _header(head, b"content-length")
    return _read_exact(sock, buf, int(length)) if length else b""


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """Listens on 127.0.0.1:port and relays to `upstream` (host, port)."""

    def __init__(self, upstream: tuple[str, int], choose: Chooser, delay: float = 0.3) -> None:
        self.upstream = upstream
        self.choose = choose
        self.delay = delay
        self.injected: Counter[str] = Counter()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            t = threading.Thread(target=self._relay, args=(client,), daemon=True)
            t.start()

    def _count(self, what: str) -> None:
        with self._lock:
            self.injected[what] += 1

    def _relay(self, client: socket.socket) -> None:
        server: socket.socket | None = None
        cbuf, sbuf = bytearray(), bytearray()
        try:
            while not self._stop.is_set():
                head = _read_head(client, cbuf)
                body = _read_body(client, cbuf, head, no_body=False)
                method, path = head.split(b" ", 2)[:2]
                action = self.choose(method.decode(), path.decode())
                if action != PASS:
                    self._count(action)
                if action == RESET_BEFORE:
                    _reset(client)
                    return
                if action == ERROR_503:
                    client.sendall(_503)
                    continue
                if action == FORBIDDEN:
                    client.sendall(_403)
                    continue
                if action == DELAY:
                    time.sleep(self.delay)
                if server is None:
                    server = socket.create_connection(self.upstream)
                server.sendall(head + body)
                rhead = _read_head(server, sbuf)
                status = int(rhead.split(b" ", 2)[1])
                rbody = _read_body(
                    server, sbuf, rhead, no_body=method == b"HEAD" or status in (204, 304)
                )
                if action == RESET_AFTER:
                    _reset(client)
                    return
                if action == TRUNCATE and rbody:
                    client.sendall(rhead + rbody[: len(rbody) // 2])
                    _reset(client)
                    return
                if action == FAKE_SUCCESS and status == 412:
                    rhead = b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nETag: "fake"\r\n\r\n'
                    rbody = b""
                client.sendall(rhead + rbody)
        except (_Closed, OSError, ValueError, IndexError):
            pass
        finally:
            with contextlib.suppress(OSError):
                client.close()
            if server is not None:
                with contextlib.suppress(OSError):
                    server.close()
