"""A store of objects in an S3 bucket (AWS S3 or any S3-compatible server), through obstore.

Names map to keys under the store's prefix. S3 gives what the protocol asks for: a PUT is
atomic (a reader sees the old object or the new one, and a multipart upload appears only
when it completes), and `If-None-Match: *` makes create-if-absent the server's job, which
`check_conditional_writes` verifies on the server at hand rather than trusting.

Transient failures (5xx, throttling, resets, timeouts) are retried by obstore with
exponential backoff and jitter, bounded in count and time; whatever is left is mapped to the
protocol's errors, each one line that names the bucket or the endpoint.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import os
import random
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import obstore
from obstore import exceptions as obx
from obstore.store import S3Store as _Client

from core.errors import InvalidInput
from core.storage.base import (
    TMP_MARK,
    Buffer,
    Capabilities,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    SimpleReader,
    StoreError,
    StoreUnavailable,
    check_name,
    check_range,
    coalesce,
    join,
    split_spans,
    spooled_file_gone,
)

T = TypeVar("T")

#: ranges of a pack closer than this are fetched by one GET: a request costs more than
#: reading past a gap of this size
COALESCE_GAP = 1 << 20
#: bounded retries of transient errors (obstore: exponential backoff with jitter); a dead
#: endpoint fails in seconds, a flaky one gets a few tries
RETRY = {
    "max_retries": 4,
    "retry_timeout": timedelta(seconds=30),
    "backoff": {
        "init_backoff": timedelta(milliseconds=100),
        "max_backoff": timedelta(seconds=2),
        "base": 2,
    },
}
CLIENT = {
    "connect_timeout": timedelta(seconds=5),
    # a stalled connection is given up (and retried) after this long without a byte
    "read_timeout": timedelta(seconds=30),
    # a whole request, a big pack included
    "timeout": timedelta(minutes=10),
}
#: the parts of a multipart upload (put_file of a big file): memory is chunk x concurrency
PART_SIZE = 8 << 20
PART_CONCURRENCY = 4
#: parallel GETs of one `read_ranges`
RANGE_CONCURRENCY = 8
DELETE_BATCH = 1000
#: attempts of a write that failed on the wire after it was sent (obstore does not retry it)
WRITE_ATTEMPTS = 4
#: environment variables that let obstore find credentials without an access key
CREDENTIAL_SOURCES = (
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)

#: S3's rule for bucket names (lowercase letters, digits, dots, hyphens; 3 to 63)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")

_pool = ThreadPoolExecutor(max_workers=RANGE_CONCURRENCY, thread_name_prefix="nexus-s3")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the bucket is and how to sign requests to it (from the AWS variables)."""

    bucket: str
    region: str = "us-east-1"
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    allow_http: bool = False

    @classmethod
    def from_env(cls, bucket: str, environ: Mapping[str, str] | None = None) -> S3Settings:
        """The AWS way: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
        AWS_REGION (or AWS_DEFAULT_REGION, else us-east-1) and AWS_ENDPOINT_URL for an
        S3-compatible server. Plain http is allowed to a loopback endpoint, elsewhere only
        with AWS_ALLOW_HTTP=true: it sends the data in clear."""
        env = os.environ if environ is None else environ
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        allow_http = False
        if endpoint:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidInput(f"AWS_ENDPOINT_URL={endpoint}: not an http(s):// URL")
            if parts.scheme == "http":
                allow_http = _loopback(parts.hostname) or _true(env.get("AWS_ALLOW_HTTP"))
                if not allow_http:
                    raise InvalidInput(
                        f"AWS_ENDPOINT_URL={endpoint}: plain http sends the backups in clear;"
                        " use https, or set AWS_ALLOW_HTTP=true"
                    )
        return cls(
            bucket=bucket,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint=endpoint.rstrip("/") if endpoint else None,
            access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            allow_http=allow_http,
        )

    @property
    def where(self) -> str:
        """The bucket and the server, for error lines."""
        return f"bucket {self.bucket!r} at {self.endpoint or f'AWS S3 ({self.region})'}"

    def missing_credentials(self, environ: Mapping[str, str]) -> str | None:
        """Why no request could be signed, or None. Without an endpoint obstore may still
        find instance credentials (EC2, ECS); an S3-compatible server has none of those."""
        if self.access_key_id and self.secret_access_key:
            return None
        if self.access_key_id or self.secret_access_key:
            return "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together"
        if self.endpoint and not any(environ.get(v) for v in CREDENTIAL_SOURCES):
            return "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        return None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def make_client(settings: S3Settings) -> _Client:
    """The obstore client: path-style when an endpoint is given (S3-compatible servers
    rarely resolve bucket subdomains), bounded retries, the timeouts above."""
    config: dict[str, object] = {"region": settings.region}
    if settings.endpoint:
        config["endpoint"] = settings.endpoint
        config["virtual_hosted_style_request"] = False
    if settings.access_key_id:
        config["access_key_id"] = settings.access_key_id
        config["secret_access_key"] = settings.secret_access_key
    if settings.session_token:
        config["session_token"] = settings.session_token
    try:
        return _Client(
            settings.bucket,
            config=config,  # type: ignore[arg-type]
            client_options={**CLIENT, "allow_http": settings.allow_http},  # type: ignore[typeddict-item]
            retry_config=RETRY,  # type: ignore[arg-type]
        )
    except (obx.BaseError, ValueError) as exc:
        raise StoreUnavailable(f"{settings.where}: {_short(exc)}") from None


# --- errors ---------------------------------------------------------------------------------

_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"status code: (\d{3})")
_CONNECT = re.compile(r"kind: Connect\b")  # not ConnectionReset
_RETRIED = re.compile(r"retries: (\d+),\s*max_retries: (\d+)")
#: obstore's words for a failure on the wire (refused, reset, cut short, timed out)
_TRANSPORT = ("error sending request", "body error", "dns error", "Connection refused", "timed out")


class Transport(StoreUnavailable):
    """A request that failed on the wire. `maybe_done`: it failed after it was sent (obstore
    retries only before), so the server may have carried it out."""

    def __init__(self, message: str, *, maybe_done: bool) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done


def _short(exc: BaseException) -> str:
    """The useful head of obstore's message: one line, no debug dump, no XML body."""
    text = " ".join(str(exc).split("Debug source:", 1)[0].split())
    text = text.split(": <?xml", 1)[0]
    code = _CODE.search(str(exc))
    if code and code.group(1) not in text:
        text += f" ({code.group(1)})"
    return text[:300]


def _status(exc: BaseException) -> int | None:
    found = _STATUS.search(str(exc))
    return int(found.group(1)) if found else None


class _RangeNotSatisfiable(Exception):
    pass


class _UnreadableKey(StoreError):
    """A listing met a key obstore cannot parse (a newline in it, `a//b`): nothing under
    that prefix can be listed, so whoever asked fails, never reads a partial listing."""


def _translate(exc: BaseException, where: str, name: str) -> Exception:
    """The protocol's error for an obstore failure on `name`."""
    text = str(exc)
    code = _CODE.search(text)
    code_name = code.group(1) if code else ""
    status = _status(exc)
    if code_name == "NoSuchBucket":
        return StoreUnavailable(f"{where}: the bucket does not exist")
    if isinstance(exc, obx.PermissionDeniedError | obx.UnauthenticatedError) or status in (
        401,
        403,
    ):
        reason = code_name or ("forbidden" if status == 403 else "unauthenticated")
        refused = StoreUnavailable(f"{where}: the server refused our credentials ({reason})")
        # permission denied, as a read-only mount's EACCES: credentials (or a bucket policy)
        # that may read but not write make readers go on without their lock (invariant I3)
        refused.errno = errno.EACCES
        return refused
    if isinstance(exc, FileNotFoundError | obx.NotFoundError):
        return ObjectNotFound(f"object {name!r} not found")
    if status == 416:
        return _RangeNotSatisfiable(name)
    if isinstance(exc, obx.InvalidPathError):
        return _UnreadableKey(
            f"{where}: {name or 'request'}: an object there has a name that cannot be read,"
            f" so nothing there can be listed (rename or remove it with another S3 tool):"
            f" {_short(exc)}"
        )
    if isinstance(exc, obx.AlreadyExistsError | obx.PreconditionError):
        return ObjectExists(f"object {name!r} already exists")
    if any(sign in text for sign in _TRANSPORT):
        tried = _RETRIED.search(text)
        retries = int(tried.group(1)) if tried else 0
        what = (
            "cannot reach the server"
            if _CONNECT.search(text) or "dns error" in text
            else "the connection to the server failed"
        )
        tries = f" (after {retries} retries)" if retries else ""
        # obstore retries a request only until it is sent: one that failed later may
        # have been carried out, and only its caller knows whether doing it again is safe
        unsent = tried is None or retries >= int(tried.group(2))
        return Transport(f"{where}: {what}{tries}", maybe_done=not unsent)
    return StoreError(f"{where}: {name or 'request'}: {_short(exc)}")


# --- the store ------------------------------------------------------------------------------


class _Bucket:
    """What every view of one bucket made by `sub` shares: the client (its connection pool),
    the probed capabilities, the local spool."""

    def __init__(self, settings: S3Settings, client: _Client) -> None:
        self.settings = settings
        self.client = client
        self.capabilities = Capabilities(
            local_root=None,
            conditional_create=True,  # what S3 promises; `prepare` checks it
            coalesce_gap=COALESCE_GAP,
            server=settings.where,
            server_clock=True,
        )
        self.probed = False
        self.lock = threading.Lock()
        self._spool: Path | None = None

    def spool(self) -> Path:
        """`nexus-backup/spool` under the user's cache directory (owner-only), else a private
        temp directory. Files there carry unique TMP_MARK names, so processes share it."""
        with self.lock:
            if self._spool is None or not self._spool.is_dir():
                self._spool = _spool_dir()
            return self._spool


def _spool_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "nexus-backup" / "spool"
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="nexus-s3-spool-"))


class S3Store:
    """Objects under `prefix` in one S3 bucket."""

    def __init__(
        self,
        settings: S3Settings,
        prefix: str = "",
        *,
        _bucket: _Bucket | None = None,
    ) -> None:
        self._bucket = _bucket or _Bucket(settings, make_client(settings))
        self._prefix = prefix.strip("/")
        if self._prefix:
            check_name(self._prefix)

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> S3Store:
        """`s3://BUCKET/PREFIX`, with the endpoint and credentials from the environment."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidInput(f"{url}: an S3 repository is s3://BUCKET/PREFIX")
        if parts.query or parts.fragment:
            raise InvalidInput(f"{url}: an S3 URL has no ?query or #fragment")
        if not _BUCKET.fullmatch(parts.netloc):
            raise InvalidInput(f"{url}: {parts.netloc!r} is not an S3 bucket name")
        env = os.environ if environ is None else environ
        settings = S3Settings.from_env(parts.netloc, env)
        missing = settings.missing_credentials(env)
        if missing:
            raise StoreUnavailable(f"{settings.where}: {missing}")
        try:
            return cls(settings, parts.path)
        except ValueError:
            raise InvalidInput(f"{url}: invalid prefix {parts.path!r}") from None

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    @property
    def capabilities(self) -> Capabilities:
        return self._bucket.capabilities

    @property
    def url(self) -> str:
        return f"s3://{self._bucket.settings.bucket}/{self._prefix}"

    @property
    def _client(self) -> _Client:
        return self._bucket.client

    def _key(self, name: str) -> str:
        return join(self._prefix, check_name(name))

    def _dir(self, prefix: str) -> str:
        """The key of a directory-like prefix ("" for the store's own)."""
        prefix = prefix.strip("/")
        return self._key(prefix) if prefix else self._prefix

    def _call(self, name: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (obx.BaseError, OSError, ValueError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise _translate(exc, self._bucket.settings.where, name) from None

    def _write(self, name: str, fn: Callable[[], T]) -> T:
        """Run an idempotent write, again (bounded, with jittered backoff) when it failed on
        the wire after it was sent: it may or may not have happened, and doing it again
        leaves the same object (put_new: see there)."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return self._call(name, fn)
            except Transport as exc:
                if not exc.maybe_done or attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.1 * 2**attempt))
        raise AssertionError("unreachable")

    def sub(self, prefix: str) -> S3Store:
        return S3Store(self._bucket.settings, self._key(prefix.strip("/")), _bucket=self._bucket)

    # --- writing ----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Nothing to create on S3: check that the bucket answers with our credentials and
        that the server enforces create-if-absent (once per bucket)."""
        self._call("", lambda: obstore.list_with_delimiter(self._client, self._prefix or None))
        self.check_conditional_writes()

    def check_conditional_writes(self) -> bool:
        """Whether the server refuses a second `If-None-Match: *` PUT of one key: writers
        on several hosts rely on it. The answer lands in `capabilities.conditional_create`
        (a server that accepts both reports False). The probe objects carry TMP_MARK, so no
        listing shows one a crash left behind and `remove_partials` removes it."""
        bucket = self._bucket
        if bucket.probed:
            return bucket.capabilities.conditional_create
        key = join(self._prefix, f"{TMP_MARK}probe-{secrets.token_hex(8)}")
        try:
            self._call(key, lambda: obstore.put(self._client, key, b"1", mode="create"))
            try:
                obstore.put(self._client, key, b"2", mode="create")
                enforced = False
            except (obx.AlreadyExistsError, obx.PreconditionError):
                enforced = True
            except (obx.BaseError, OSError) as exc:
                raise _translate(exc, bucket.settings.where, key) from None
        finally:
            self._call(key, lambda: obstore.delete(self._client, key))
        with bucket.lock:
            bucket.capabilities = replace(bucket.capabilities, conditional_create=enforced)
            bucket.probed = True
        return enforced

    def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        self._write(name, lambda: obstore.put(self._client, key, data, use_multipart=False))

    def put_new(self, name: str, data: bytes) -> None:
        """Create-if-absent by the server (`If-None-Match: *`). An object that already holds
        exactly these bytes counts as ours: a PUT whose answer was lost, done again, finds
        its own first attempt there. (So writers that must not both win write bytes of
        their own: a lock names its holder; a pack is named by its content anyway.)"""
        key = self._key(name)
        try:
            self._write(name, lambda: obstore.put(self._client, key, data, mode="create"))
            return
        except ObjectExists:
            pass
        try:
            if self.get(name) == bytes(data):
                return
        except ObjectNotFound:
            pass
        raise ObjectExists(f"object {name!r} already exists")

    def put_if_unchanged(self, name: str, data: bytes, etag: str | None) -> None:
        """`If-Match: ETAG` (`If-None-Match: *` for an absent one). Only when an attempt may
        have landed before its answer was lost, and the next one then fails its precondition,
        does an object holding exactly our bytes count as ours (two writers computing the same
        bytes are otherwise told apart: the loser hears ObjectExists)."""
        key = self._key(name)
        mode = "create" if etag is None else {"e_tag": etag}
        maybe_landed = False
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self._call(name, lambda: obstore.put(self._client, key, data, mode=mode))
                return
            except Transport as exc:
                if not exc.maybe_done or attempt == WRITE_ATTEMPTS - 1:
                    raise
                maybe_landed = True
                time.sleep(random.uniform(0.05, 0.1 * 2**attempt))
            except (ObjectExists, ObjectNotFound):
                break
        if maybe_landed:
            with contextlib.suppress(ObjectNotFound):
                if self.get(name) == bytes(data):
                    return
        raise ObjectExists(f"object {name!r} was changed by another writer")

    def put_file(self, name: str, path: Path) -> None:
        """Upload a local file (multipart above PART_SIZE), then remove it. If the upload
        fails the file stays, and the object is absent: S3 shows an upload only once it
        completes."""
        key = self._key(name)
        path = Path(path)
        if not path.exists():
            raise spooled_file_gone(path)
        self._write(
            name,
            lambda: obstore.put(
                self._client,
                key,
                path,
                chunk_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            ),
        )
        os.unlink(path)

    def spool(self) -> Path:
        return self._bucket.spool()

    # --- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> bytes:
        key = self._key(name)
        return self._call(name, lambda: bytes(obstore.get(self._client, key).bytes()))

    def _span(self, name: str, start: int, length: int) -> Buffer:
        """Bytes [start, start+length) of `name`, exactly, or EOFError: a view of the
        client's buffer, not a copy."""
        check_range(name, start, length)
        key = self._key(name)
        try:
            data: Buffer = self._call(
                name,
                lambda: memoryview(
                    obstore.get_range(self._client, key, start=start, length=length)
                ),
            )
        except _RangeNotSatisfiable:
            data = b""
        if len(data) != length:
            raise EOFError(f"{name}: short read at {start} ({len(data)} of {length} bytes)")
        return data

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        if length == 0:
            self.stat(name)
            return b""
        return bytes(self._span(name, offset, length))

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[Buffer]:
        """Ranges closer than COALESCE_GAP share a GET; the GETs run in parallel. (Not
        obstore's get_ranges: it panics on a range past the end of the object.)"""
        spans = coalesce(ranges, COALESCE_GAP)
        wanted = [(start, end - start) for start, end, _ in spans if end > start]
        if not wanted:
            self.stat(name)
        if len(wanted) <= 1:
            got = [self._span(name, s, n) for s, n in wanted]
        else:
            got = list(_pool.map(lambda sn: self._span(name, *sn), wanted))
        blobs = iter(got)
        return split_spans(ranges, spans, [next(blobs) if e > s else b"" for s, e, _ in spans])

    def reader(self) -> SimpleReader:
        return SimpleReader(self)

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except ObjectNotFound:
            return False
        return True

    def stat(self, name: str) -> ObjectInfo:
        key = self._key(name)
        meta = self._call(name, lambda: obstore.head(self._client, key))
        return _info(name, meta)

    # --- listing ----------------------------------------------------------------------------

    def _names_below(self, directory: str) -> Iterator[tuple[str, dict]]:
        """(key relative to the store, metadata) of every object under a directory key. Not
        the directory's own key: a "folder" object (`index/`, as an S3 console's "Create
        folder" writes it, which obstore reads back as `index`) is no object of the
        directory, and read as one it made a project's index look damaged."""
        base = self._prefix + "/" if self._prefix else ""
        below = directory + "/" if directory else ""
        stream = self._call(directory, lambda: iter(obstore.list(self._client, directory or None)))
        while True:
            try:
                chunk = self._call(directory, lambda: next(stream))
            except StopIteration:
                return
            for meta in chunk:
                if meta["path"].startswith(base) and meta["path"].startswith(below):
                    yield meta["path"][len(base) :], meta

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Sorted by name, as the protocol asks (SeaweedFS lists directory by directory:
        `a/x` before `a-b`). A prefix that does not end a directory (`packs`, also naming
        `packsfoo`) lists its parent one level, then only the matching entries below."""
        if prefix and not prefix.endswith("/"):
            check_name(prefix)
            parent, _, stem = prefix.rpartition("/")
            directory = self._dir(parent)
            listing = self._call(
                prefix, lambda: obstore.list_with_delimiter(self._client, directory or None)
            )
            found = [
                (rel, meta)
                for rel, meta in self._objects(listing, directory)
                if _last(rel).startswith(stem)
            ]
            for sub in listing["common_prefixes"]:
                if _last(sub).startswith(stem):
                    found.extend(self._names_below(sub))
        else:
            if prefix:
                check_name(prefix.rstrip("/"))
            found = list(self._names_below(self._dir(prefix)))
        for rel, meta in sorted(found, key=lambda item: item[0]):
            if TMP_MARK not in rel:
                yield _info(rel, meta)

    def _objects(self, listing: dict, directory: str) -> Iterator[tuple[str, dict]]:
        """The objects of a delimiter listing of `directory`, relative to the store. Not the
        directory itself: SeaweedFS lists an emptied directory as an object of its name."""
        base = self._prefix + "/" if self._prefix else ""
        below = directory + "/" if directory else ""
        for meta in listing["objects"]:
            if meta["path"].startswith(below) and meta["path"] != directory:
                yield meta["path"][len(base) :], meta

    def children(self, prefix: str = "") -> list[str]:
        """A delimiter listing. Its sub-prefixes are checked to hold an object: SeaweedFS
        keeps listing a directory whose objects were all deleted (S3 lists only prefixes
        of objects), and a deleted backup must not come back as an empty one."""
        if prefix.strip("/"):
            check_name(prefix.strip("/"))
        directory = self._dir(prefix)
        listing = self._call(
            prefix, lambda: obstore.list_with_delimiter(self._client, directory or None)
        )
        subs = [p for p in listing["common_prefixes"] if TMP_MARK not in _last(p)]
        held = list(_pool.map(self._holds_objects, subs)) if subs else []
        names = {_last(p) for p, yes in zip(subs, held, strict=True) if yes}
        names.update(_last(rel) for rel, _ in self._objects(listing, directory))
        return sorted(n for n in names if TMP_MARK not in n)

    def _holds_objects(self, directory: str) -> bool:
        """Whether any object lies under a directory key (the first page of its listing). A
        page holding a key obstore cannot read (a newline in it, planted by another tool)
        answers yes: it is an object there. Failing instead made that one project fail every
        listing of them all (`projects`, and `run-due`, which then backed up no project)."""
        stream = self._call(
            directory, lambda: iter(obstore.list(self._client, directory, chunk_size=1))
        )
        try:
            first = self._call(directory, lambda: list(itertools.islice(stream, 1)))
        except _UnreadableKey:
            return True
        return any(first)

    # --- deleting ---------------------------------------------------------------------------

    def delete(self, name: str) -> None:
        key = self._key(name)
        with contextlib.suppress(ObjectNotFound):
            self._call(name, lambda: obstore.delete(self._client, key))

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i : i + DELETE_BATCH]
            with contextlib.suppress(ObjectNotFound):
                self._call(batch[0], lambda b=batch: obstore.delete(self._client, b))

    def delete_prefix(self, prefix: str) -> None:
        """Every object under a directory-like prefix, probe leftovers included. Unfinished
        multipart uploads are not seen by a listing (see remove_partials)."""
        check_name(prefix.strip("/"))
        directory = self._key(prefix.strip("/"))
        self._delete_keys([meta["path"] for _, meta in self._names_below(directory)])

    def remove_partials(self) -> int:
        """Remove leftover probe objects (TMP_MARK). Unfinished multipart uploads of a killed
        writer cannot be listed or aborted through obstore (it has no ListMultipartUploads):
        they stay invisible to every reader, and a bucket lifecycle rule
        (AbortIncompleteMultipartUpload) reclaims their space."""
        keys = [meta["path"] for rel, meta in self._names_below(self._prefix) if TMP_MARK in rel]
        self._delete_keys(keys)
        return len(keys)

    def free_bytes(self) -> int | None:
        return None


def _last(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _info(name: str, meta: Mapping[str, object]) -> ObjectInfo:
    modified = meta["last_modified"]
    return ObjectInfo(
        name,
        int(meta["size"]),  # type: ignore[call-overload]
        modified.timestamp(),  # type: ignore[attr-defined]
        str(meta.get("e_tag") or ""),
    )
