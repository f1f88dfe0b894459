"""Encryption at rest (issue 12, docs/design.md §5 and §6): the master key, the key objects
that wrap it under passwords, and `AeadCipher`, the codec's `Cipher` for an encrypted
repository.

A repository's master key is 32 random bytes, made once when the repository is created and
never changed (changing it would mean re-sealing every object). HKDF-SHA256 derives from it
one AES-256-GCM key per object kind, the key of the chunk ids (keyed BLAKE3) and the
chunker's seed, each under its own label, so no two uses share a key. The master key is
stored only wrapped: each key object `keys/{id}` holds it sealed with AES-256-GCM under a
key that Argon2id derives from one password, with the Argon2id parameters and salt recorded
in the object, so several passwords open one repository and each can be changed alone.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.repo.random_pool import random_bytes

if TYPE_CHECKING:
    from core.repo.codec import Kind
    from core.storage import Buffer, ObjectStore

# `cryptography` (and OpenSSL with it) is imported by the functions that use it, when a
# repository is encrypted: a plain repository's commands neither load it nor hold its memory.
# So are the codec and blake3, and `secrets` is not imported (its bytes are os.urandom's):
# `derive_ahead` starts Argon2id once this module is loaded, and every import before it
# delays the unlock (see core/unlock_ahead.py).

SCHEME = "aes-256-gcm+blake3-keyed+argon2id"
KEYS = "keys/"
NONCE = 12
TAG = 16
MASTER_LENGTH = 32

#: Argon2id's cost for a new key: RFC 9106's second recommended option (64 MiB, 3 passes,
#: 4 lanes), about a third of a second on a small machine. Recorded in each key object, so a
#: later version may raise it for new keys without breaking old ones.
KDF_MEMORY_KIB = 64 * 1024
KDF_ITERATIONS = 3
KDF_LANES = 4
#: What a key object may ask for: a hostile one must not make an unlock take all memory.
KDF_MAX_MEMORY_KIB = 4 * 1024 * 1024
KDF_MAX_ITERATIONS = 64


class KeyError_(ValueError):
    """A key object that cannot be read (damaged, of an unknown kind)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise KeyError_("a field is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise KeyError_(f"a field is not base64: {exc}") from exc


def _hkdf(master: bytes, label: str, length: int = 32) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=None, info=f"nexus-backup 2 {label}".encode()
    ).derive(master)


def master_check(master: bytes) -> str:
    """What config.json records of its master key (HKDF output, which reveals nothing of
    it): a key object that opens with the password to another master key (one left by a
    process that lost the race to create the project, or planted) is told apart and passed
    over, never used to seal what this project's key cannot open."""
    return _b64(_hkdf(master, "master check", 16))


def new_master_key() -> bytes:
    return os.urandom(MASTER_LENGTH)


def new_key_id() -> str:
    return os.urandom(16).hex()


# --- key objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    memory_kib: int = KDF_MEMORY_KIB
    iterations: int = KDF_ITERATIONS
    lanes: int = KDF_LANES

    def derive(self, password: str, salt: bytes) -> bytes:
        """The wrapping key; taken from `derive_ahead` when that started this one."""
        with _ahead_lock:
            early = _ahead.pop((self, salt, password), None)
        if early is not None:
            return early.result()
        return self._argon2id(password, salt)

    def _argon2id(self, password: str, salt: bytes) -> bytes:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=salt,
            length=32,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_kib,
        ).derive(password.encode("utf-8"))


def _key_ad(key_id: str) -> bytes:
    """The wrapped master key is bound to its key object's id: a key object copied under
    another name does not open."""
    return b"nexus-backup key\0" + key_id.encode()


def make_key_object(
    master: bytes, password: str, key_id: str, *, params: KdfParams | None = None, **about: str
) -> bytes:
    """The bytes of `keys/{key_id}`: `master` wrapped under `password` (see design.md §6)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    params = params or KdfParams()  # the defaults new_key_ahead derives with
    salt = _take_new_salt(params, password) or os.urandom(16)
    nonce = os.urandom(NONCE)
    wrapping = params.derive(password, salt)
    wrapped = AESGCM(wrapping).encrypt(nonce, master, _key_ad(key_id))
    obj = {
        "version": 1,
        "created_at": datetime.now(UTC).isoformat(),
        **about,
        "kdf": {
            "algorithm": "argon2id",
            "version": 19,
            "memory_kib": params.memory_kib,
            "iterations": params.iterations,
            "lanes": params.lanes,
            "salt": _b64(salt),
        },
        "wrap": {"algorithm": "aes-256-gcm", "nonce": _b64(nonce), "data": _b64(wrapped)},
    }
    return json.dumps(obj, indent=2).encode()


def key_info(raw: bytes) -> dict:
    """A key object's readable fields (never the wrapped key): for `key list`."""
    obj = _parse(raw)
    return {k: v for k, v in obj.items() if k not in ("wrap",)}


def whole(raw: bytes) -> bool:
    """Whether a key object is one an unlock could open with its password (parsed, its
    derivation and wrapping all there): a damaged or stray object under keys/ is not."""
    try:
        _wrapping(_parse(raw))
    except KeyError_:
        return False
    return True


def _parse(raw: bytes) -> dict:
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise KeyError_(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("version") != 1:
        raise KeyError_("not a key object of version 1")
    return obj


def key_ids(store: ObjectStore) -> list[str]:
    """A repository's key objects, in the order an unlock tries them (by id)."""
    return sorted(store.children(KEYS))


#: Derivations `derive_ahead` started, by (parameters, salt, password): each is taken (and
#: forgotten) by the `KdfParams.derive` that asks for it.
_ahead: dict[tuple[KdfParams, bytes, str], Future[bytes]] = {}
_ahead_lock = threading.Lock()


def derive_ahead(raw: bytes, password: str) -> None:
    """Start Argon2id for one key object in a thread, for a process that will unlock with it
    once its imports are done: the derivation releases the GIL, so on a second core the
    unlock then waits for little or nothing. A key object that cannot be read is left to
    the unlock to report."""
    try:
        params, salt, _nonce, _data = _wrapping(_parse(raw))
    except KeyError_:
        return
    _start_derivation(params, salt, password)


#: Salts `new_key_ahead` picked, by password: the next key object made with that password
#: and those parameters takes its salt (and so the derivation started with it), once.
_new_salts: dict[str, tuple[KdfParams, bytes]] = {}


def new_key_ahead(password: str) -> None:
    """As `derive_ahead`, for the key object of a project about to be created: its salt is
    drawn now, and `make_key_object` takes it (a salt is still used by one key only)."""
    params, salt = KdfParams(), os.urandom(16)
    with _ahead_lock:
        if password in _new_salts:
            return
        _new_salts[password] = (params, salt)
    _start_derivation(params, salt, password)


def _take_new_salt(params: KdfParams, password: str) -> bytes | None:
    with _ahead_lock:
        early = _new_salts.get(password)
        if early is None or early[0] != params:
            return None
        del _new_salts[password]
        return early[1]


def _start_derivation(params: KdfParams, salt: bytes, password: str) -> None:
    key = (params, salt, password)
    future: Future[bytes] = Future()
    with _ahead_lock:
        if key in _ahead:
            return
        _ahead[key] = future

    def run() -> None:
        try:
            future.set_result(params._argon2id(password, salt))
        except BaseException as exc:  # handed to the unlock that takes it
            future.set_exception(exc)

    threading.Thread(target=run, name="nexus-derive-ahead", daemon=True).start()


def _wrapping(obj: dict) -> tuple[KdfParams, bytes, bytes, bytes]:
    """A key object's Argon2id parameters, salt, and the nonce and sealed bytes of its
    wrapped key, each checked: KeyError_ for anything no key of ours holds."""
    kdf, wrap = obj.get("kdf"), obj.get("wrap")
    if not isinstance(kdf, dict) or not isinstance(wrap, dict):
        raise KeyError_("kdf or wrap missing")
    if kdf.get("algorithm") != "argon2id" or wrap.get("algorithm") != "aes-256-gcm":
        raise KeyError_("unknown key derivation or wrapping")
    try:
        params = KdfParams(int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyError_("Argon2id parameters missing or not integers") from exc
    if not (
        8 * params.lanes <= params.memory_kib <= KDF_MAX_MEMORY_KIB
        and 1 <= params.iterations <= KDF_MAX_ITERATIONS
        and 1 <= params.lanes <= 64
    ):
        raise KeyError_("Argon2id parameters out of range")
    salt, nonce, data = _unb64(kdf.get("salt")), _unb64(wrap.get("nonce")), _unb64(wrap.get("data"))
    if len(salt) < 16 or len(nonce) != NONCE or len(data) != MASTER_LENGTH + TAG:
        raise KeyError_("salt, nonce or wrapped key of the wrong length")
    return params, salt, nonce, data


def unwrap(raw: bytes, key_id: str, password: str) -> bytes | None:
    """The master key a key object wraps, or None when `password` is not its password.
    KeyError_ when the object is damaged or asks for what no key of ours does."""
    params, salt, nonce, data = _wrapping(_parse(raw))
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        return AESGCM(params.derive(password, salt)).decrypt(nonce, data, _key_ad(key_id))
    except InvalidTag:
        return None


def find_master(
    keys: Iterable[tuple[str, bytes]], password: str, check: str | None = None
) -> tuple[str, bytes] | None:
    """The first key object `password` opens, as (its id, the master key); damaged key
    objects are passed over (another may still open), and so is one that opens to a master
    key other than the one `check` (config.json's `master_check`) records."""
    for key_id, raw in keys:
        try:
            master = unwrap(raw, key_id, password)
        except KeyError_:
            continue
        if master is not None and (check is None or master_check(master) == check):
            return key_id, master
    return None


# --- the cipher ------------------------------------------------------------------------------


class AeadCipher:
    """AES-256-GCM for every sealed object, a key per kind; a random 96-bit nonce per object
    prefixed to its ciphertext; the kind and the object's context (its name, or a chunk's
    id) as associated data. Chunk ids are BLAKE3 keyed with the chunk-id key."""

    name = "aes-256-gcm"
    overhead = NONCE + TAG

    def __init__(self, master: bytes) -> None:
        import blake3
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from core.repo.codec import Kind

        if len(master) != MASTER_LENGTH:
            raise ValueError("a master key is 32 bytes")
        self._invalid_tag = InvalidTag
        self._blob = Kind.BLOB
        self._blake3 = blake3.blake3
        self._aead = {kind: AESGCM(_hkdf(master, f"aead {kind.name}")) for kind in Kind}
        self._id_key = _hkdf(master, "chunk id")
        seed = int.from_bytes(_hkdf(master, "chunker seed", 8), "little") >> 1
        #: pyfastcdc's seed, XORed into its gear table: 63 bits (pyfastcdc shifts it left by
        #: one as a Python int into a uint64), never 0 (which means no seed).
        self.chunker_seed = seed or 1

    @staticmethod
    def _ad(kind: Kind, context: bytes) -> bytes:
        return kind.name.encode() + b"\0" + bytes(context)

    def seal(self, kind: Kind, data: Buffer, context: bytes) -> bytes | bytearray:
        """The nonce, then the ciphertext and its tag. A chunk's are written straight after
        the nonce in one new buffer (its bytes are copied once more, into the pack, and no
        other copy is made); other objects are returned as bytes."""
        nonce = random_bytes(NONCE)  # the cipher takes any buffer: no copy of a chunk's view
        if kind is not self._blob:
            return nonce + self._aead[kind].encrypt(nonce, data, self._ad(kind, context))
        out = bytearray(NONCE + len(data) + TAG)
        out[:NONCE] = nonce
        self._aead[kind].encrypt_into(nonce, data, self._ad(kind, context), memoryview(out)[NONCE:])
        return out

    def open(self, kind: Kind, sealed: Buffer, context: bytes) -> bytes:
        if len(sealed) < self.overhead:
            raise ValueError("shorter than a sealed object")
        view = memoryview(sealed)
        try:
            return self._aead[kind].decrypt(view[:NONCE], view[NONCE:], self._ad(kind, context))
        except self._invalid_tag:
            raise ValueError("does not authenticate (damaged, tampered with or moved)") from None

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return self._blake3(data, key=self._id_key).digest()
