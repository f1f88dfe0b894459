"""The repository root as a URL: a path or `file://...` (LocalStore), `memory://NAME` (a
store shared within this process, for tests), `s3://BUCKET/PREFIX` (S3Store, endpoint and
credentials from the AWS variables)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.errors import InvalidInput
from core.storage.base import ObjectStore

SCHEMES = ("file", "memory", "s3")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")


def is_url(text: str) -> bool:
    """True for `scheme:...` with a scheme of two characters or more, a letter first (RFC 3986;
    `s3:`), so that a Windows drive (`C:`) is not one."""
    head, sep, _ = text.partition(":")
    return bool(sep) and _SCHEME.fullmatch(head) is not None


def local_path(url: str | Path) -> Path | None:
    """The directory a local repository URL names, None for any other store."""
    if isinstance(url, Path) or not is_url(url):
        return Path(url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"{url}: a file:// URL names a local path (no host)")
        path = unquote(parts.path)
        if not path.startswith("/"):  # `file://`, `file:x`: never the current directory
            raise InvalidInput(f"{url}: a file:// URL names an absolute path (file:///DIR)")
        return Path(path)
    return None


def open_store(url: str | Path, *, create: bool = False) -> ObjectStore:
    """The store a repository URL names; `create` makes a local directory if missing."""
    path = local_path(url)
    if path is not None:
        from core.storage.local import LocalStore

        return LocalStore(path, create=create)
    scheme = urlsplit(str(url)).scheme
    if scheme == "memory":
        from core.storage.memory import named

        parts = urlsplit(str(url))
        store = named(parts.netloc)
        return store.sub(parts.path.strip("/")) if parts.path.strip("/") else store
    if scheme == "s3":
        from core.storage.cache import CachedStore, cache_dir
        from core.storage.s3 import S3Store

        return CachedStore(S3Store.from_url(str(url)), cache_dir())
    raise InvalidInput(
        f"{url}: unknown repository scheme {scheme!r} (use a path or one of "
        + ", ".join(f"{s}://" for s in SCHEMES)
        + ")"
    )
