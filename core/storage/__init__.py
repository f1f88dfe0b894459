"""Where a project's repository objects live. The engine sees only the protocol, its errors
and its capabilities (`base`), and opens a store from a URL (`url`); the concrete stores
(`local`, `memory`, and object storage next) are imported by nothing else in the engine."""

from core.storage.base import (
    TMP_MARK,
    Buffer,
    Capabilities,
    NotAnObject,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    RangeReader,
    StoreError,
    StoreUnavailable,
    UnsafeSharing,
    require_conditional_create,
)
from core.storage.url import open_store

__all__ = [
    "TMP_MARK",
    "Buffer",
    "Capabilities",
    "NotAnObject",
    "ObjectExists",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "RangeReader",
    "StoreError",
    "StoreUnavailable",
    "UnsafeSharing",
    "open_store",
    "require_conditional_create",
]
