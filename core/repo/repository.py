"""One project's repository: config, backups' metadata and manifests, the chunk store.

Everything goes through an ObjectStore, so the engine never assumes a local filesystem, and
every object through the repository's codec (`repo.codec`, core/repo/codec.py), so that no
caller knows how an object is sealed: compressed today, encrypted with issue 12.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationError

from core.config import PROJECT_CONFIG
from core.errors import Busy, Damaged, NexusError, NotFound, WrongPassword
from core.ids import is_id
from core.models import BackupMetadata, Model, VerifyResult, check_id
from core.repo import crypto
from core.repo.chunker import ChunkerParams
from core.repo.codec import PLAIN, Codec, DamagedChunk, Kind
from core.repo.index import Index, write_index
from core.repo.marker import FORMAT_NAME
from core.repo.packs import DEFAULT_PACK_SIZE, BlobLocation, PackWriter, pack_name
from core.storage import (
    Buffer,
    NotAnObject,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    RangeReader,
    open_store,
    require_conditional_create,
)

__all__ = ["DamagedChunk", "MissingChunk", "NewerFormat", "Repository"]

#: The newest format this version reads and writes: 1 (plain), 2 (encrypted, issue 12).
FORMAT_VERSION = 2
PLAIN_VERSION = 1
ENCRYPTED_VERSION = 2
CONFIG = PROJECT_CONFIG
PROJECT = "project.json"
POLICY = "policy.json"
#: The last scheduled run (issue 14): core.models.LastRun as JSON, beside the policy.
LAST_RUN = "last_run.json"
BACKUP_PREFIX = "backup_"
#: `deleting/{backup_id}`: written before a delete removes anything of the backup and removed
#: last, so a backup directory without metadata is told apart: being deleted (finish it) or
#: damaged (keep it, report it, refuse to reclaim until it is repaired or deleted on purpose).
TOMBSTONES = "deleting/"


class _ChunkerConfig(Model):
    model_config = ConfigDict(extra="allow")
    algorithm: str = "fastcdc2020"
    avg_size: int = Field(1024 * 1024, ge=64, le=1 << 30)
    min_size: int = Field(256 * 1024, ge=64, le=1 << 30)
    max_size: int = Field(4 * 1024 * 1024, ge=64, le=1 << 30)
    normalized_chunking: int = Field(1, ge=0, le=3)
    seed: int = 0


#: How long an open waits for the config of a project another process is making (its key
#: object there, its config not yet) before it calls the config missing.
CREATING_WAIT = 3.0


#: A project holding key objects and nothing else, the newest older than this, was left
#: half made: its creation stopped between its key object and its config.json (killed, a
#: full disk). Far longer than any creation takes, and than two clocks disagree.
HALF_MADE_AGE = 600.0


def _keys_only(store: ObjectStore) -> bool:
    """The project holds key objects and nothing else (its locks aside): an encrypted
    project's creation writes its key object first and its config next."""
    top = set(store.children())
    return "keys" in top and not top - {"keys", "locks"}


def half_made(store: ObjectStore) -> bool:
    """Whether the project's creation stopped after its key objects, before its config: it
    holds no backup (nothing is sealed before the config is written), so delete-project
    may remove it. A creation going on now (a key object younger than HALF_MADE_AGE, by
    the store's clock against this host's) is not half made."""
    if store.exists(CONFIG) or not _keys_only(store):
        return False
    keys = list(store.list(crypto.KEYS))
    return bool(keys) and all(time.time() - k.mtime > HALF_MADE_AGE for k in keys)


class _EncryptionConfig(Model):
    model_config = ConfigDict(extra="allow")
    scheme: str
    #: The key ids the repository was created with (informative: the key objects under
    #: `keys/` are what opens it, so that adding or removing a key never rewrites the config).
    keys: list[str] = Field(default_factory=list)
    #: `crypto.master_check` of the master key (absent in projects made before it was kept:
    #: any key object that opens is then taken).
    master_check: str | None = None


class RepoConfig(Model):
    """config.json, validated whole: a wrong shape is one clear line, never an internal error."""

    model_config = ConfigDict(extra="allow")
    format: str = FORMAT_NAME
    version: int = Field(ge=1)
    project_id: str | None = None
    created_at: str | None = None
    chunker: _ChunkerConfig = Field(default_factory=_ChunkerConfig)
    hash: str = "blake3"
    pack_size: int = Field(DEFAULT_PACK_SIZE, ge=1, le=1 << 32)
    encryption: _EncryptionConfig | None = None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "the file"
    return f"{where}: {err.get('msg', 'invalid')}"


class MissingChunk(Damaged):
    pass


class NewerFormat(NexusError):
    """A repository of a format newer than this version: nothing is written to it."""


#: What a damaged policy.json's line says to do: `policy set` changes only the rules it
#: names, so it reads the damaged file first and fails the same way.
POLICY_REMEDY = "clear it (policy clear) and set it again"


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time, unique across processes: `YYYYMMDD-HHMMSS-xxxxxx`, in UTC whatever
    zone the time is given in."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now.year:04d}{now:%m%d-%H%M%S}-{secrets.token_hex(3)}"


def project_dir(root: Path, project_id: str) -> Path:
    return root / "backups" / check_id(project_id, "project_id")


class Repository:
    """A project's store plus the in-memory index; cheap to open, safe to share in a process."""

    def __init__(
        self,
        root: Path,
        project_id: str,
        store: ObjectStore | None = None,
        codec: Codec | None = None,
    ) -> None:
        """`store` holds the project's objects; by default the local `root/backups/{id}`.
        `codec` seals and opens them (PLAIN unless given): the one thing encryption sets,
        once a key is unlocked, before any object but the config is read."""
        self.root = root
        self.project_id = check_id(project_id, "project_id")
        self.store: ObjectStore = store or open_store(project_dir(root, project_id))
        self.codec: Codec = codec if codec is not None else PLAIN
        self.index = Index()
        self._config: RepoConfig | None = None
        #: The bytes of config.json as this Repository first read (or wrote) them: who the
        #: project is. Another process that deletes it and makes one of that name anew, or
        #: renames another into its place, leaves other bytes (`same_project`).
        self._config_raw: bytes | None = None
        self._waited = False  # for a config another process was making (`_config_bytes`)
        self._key_id: str | None = None
        self._master: bytes | None = None
        #: The key objects this process has seen open the master key: the one its password
        #: opened, and those it added and read back. A key is removed only while another of
        #: these is left (`remove_key`).
        self._proven: set[str] = set()
        self._encrypted: bool | None = None

    # --- sealed objects --------------------------------------------------------------------

    def _get(self, kind: Kind, name: str, what: str) -> bytes:
        """The object `name`, opened: ObjectNotFound when absent, DamagedObject when it does
        not open (naming `what`), any other OSError when it cannot be read."""
        return self.codec.open(kind, self.store.get(name), name.encode(), what=what)

    def _put(self, kind: Kind, name: str, plaintext: bytes) -> None:
        """Seal and store an object, bound to its name (a cipher will not open it elsewhere)."""
        self.store.put(name, self.sealing_codec().seal(kind, plaintext, name.encode()))

    def sealing_codec(self) -> Codec:
        """`self.codec`, for writing: refused (WrongPassword) while an encrypted repository
        is still locked, so that nothing is ever written to it in the clear. A repository
        holding key objects is encrypted whatever its config says (a config rewritten to
        format 1 does not make the next backup write plaintext)."""
        if self.codec is PLAIN and self.encrypted():
            raise WrongPassword(f"project {self.project_id!r} is encrypted: unlock it first")
        return self.codec

    def encrypted(self) -> bool:
        """The repository is encrypted: its config says so, or it holds key objects. Asked
        once per Repository (every write asks it; a plain repository lists `keys/` once)."""
        if self._encrypted is None:
            try:
                by_config = self.config.encryption is not None
            except NexusError:
                by_config = False
            self._encrypted = by_config or bool(self.store.children(crypto.KEYS))
        return self._encrypted

    # --- keys (encryption at rest) -----------------------------------------------------------

    def key_ids(self) -> list[str]:
        return crypto.key_ids(self.store)

    def _keys(self) -> Iterator[tuple[str, bytes]]:
        """Every key object's id and bytes, by id. What lies under keys/ and is no object (a
        directory, a fifo) reads as empty: a stray that opens nothing, is passed over by an
        unlock, counts as no key and is listed damaged, never an error that keeps the
        project shut (nor a read that blocks for ever)."""
        for key_id in self.key_ids():
            try:
                yield key_id, self.store.get(crypto.KEYS + key_id)
            except ObjectNotFound:  # removed meanwhile
                continue
            except NotAnObject:
                yield key_id, b""

    def keys_fingerprint(self) -> bytes:
        """A digest of every key object (ids and bytes): what an unlock tries, so that one
        that failed need not be tried again (an Argon2id per key) while they are unchanged."""
        h = hashlib.sha256()
        for key_id, raw in self._keys():
            h.update(f"{key_id}\0{len(raw)}\0".encode() + raw)
        return h.digest()

    def unlock(self, password: str) -> str:
        """Open the master key with `password` and set `self.codec` to the repository's
        AEAD codec, before any sealed object is read; returns the id of the key that
        opened. WrongPassword when no key object opens (nothing read but the config and the
        key objects, nothing written). A plain repository needs no password: no-op."""
        if not self.encrypted():
            return ""
        config = self.config
        if config.encryption is None or config.encryption.scheme != crypto.SCHEME:
            raise Damaged(
                f"project {self.project_id!r}: config.json does not say how it is encrypted"
            )
        found = crypto.find_master(self._keys(), password, config.encryption.master_check)
        if found is None:
            raise WrongPassword(f"project {self.project_id!r}: wrong password")
        self._key_id, self._master = found
        self._proven.add(self._key_id)
        self.codec = Codec(crypto.AeadCipher(self._master))
        return self._key_id

    @property
    def unlocked_key(self) -> str | None:
        """The id of the key this repository was unlocked with."""
        return self._key_id

    def add_key(self, password: str, *, kdf: crypto.KdfParams | None = None) -> str:
        """A new key object wrapping the unlocked master key under `password`, durable when
        this returns (created only if absent: a new id never replaces another key), and read
        back and opened with `password` before it counts (a store that kept other bytes
        would otherwise let `key passwd` remove the one key that opens)."""
        if self._master is None:
            raise WrongPassword(f"project {self.project_id!r}: unlock it before adding a key")
        key_id = crypto.new_key_id()
        raw = crypto.make_key_object(
            self._master, password, key_id, params=kdf, host=HOSTNAME, user=current_user()
        )
        self.store.put_new(crypto.KEYS + key_id, raw)
        try:
            opened = crypto.unwrap(self.store.get(crypto.KEYS + key_id), key_id, password)
        except (crypto.KeyError_, ObjectNotFound):
            opened = None
        if opened != self._master:
            raise Damaged(
                f"project {self.project_id!r}: the new key {key_id} does not read back as "
                "written (the store kept other bytes); it is not counted as a key that opens"
            )
        self._proven.add(key_id)
        return key_id

    def remove_key(self, key_id: str) -> None:
        """Remove one key object; refused for an id that is not a key, and when no other
        whole key object would be left (the repository would never open again: a damaged or
        stray object under keys/ opens nothing, so it does not count)."""
        keys = dict(self._keys())
        if key_id not in keys:
            raise NotFound(f"project {self.project_id!r} has no key {key_id!r}")
        # a copy of this key under another name opens nothing either (bound to its id), unless
        # it is the key this process saw open and `key_id` the copy
        others = [
            kid
            for kid, raw in keys.items()
            if kid != key_id and (raw != keys[key_id] or kid in self._proven) and crypto.whole(raw)
        ]
        if not others:
            raise Busy(
                f"project {self.project_id!r}: {key_id} is the last key that can open it; "
                "add another first"
            )
        # Whether another key opens cannot be told without its password (a flipped byte in
        # its wrapped key still parses): only a key this process saw open may be what is left.
        if not any(kid in others for kid in self._proven):
            raise Busy(
                f"project {self.project_id!r}: {key_id} is the only key known to open it (the "
                "others' cannot be checked without their passwords): open the project with "
                "another key's password to remove this one, or change its password (key passwd)"
            )
        self.store.delete(crypto.KEYS + key_id)

    def key_list(self) -> list[dict]:
        """Every key object's readable fields, with its id and whether it opened this session."""
        out = []
        for key_id, raw in self._keys():
            try:
                info = crypto.key_info(raw)
            except crypto.KeyError_ as exc:
                info = {"damaged": str(exc)}
            out.append({"id": key_id, "current": key_id == self._key_id, **info})
        return out

    # --- existence and config -------------------------------------------------------------

    def exists(self) -> bool:
        """The project has a repository: its config, or (a config lost) any object at all,
        which then reads as damaged rather than as an unknown project to create anew."""
        return self.store.exists(CONFIG) or bool(self.store.children())

    def ready_for_writers(self) -> None:
        """Before anything is written: the store prepared, and refused when its server was
        found not to keep concurrent writers apart (a host opening an existing repository
        asks this as the first host did)."""
        self.store.prepare()
        require_conditional_create(self.store)

    def init(
        self,
        like: RepoConfig | None = None,
        *,
        password: str | None = None,
        kdf: crypto.KdfParams | None = None,
    ) -> bool:
        """Create the project's repository; `like` (a copy's source) gives the chunker and
        pack size, so that later backups into it deduplicate with the copies. Only on a store
        whose server keeps concurrent writers apart (create-if-absent enforced, probed by
        `prepare`). False when it exists already, or another process made it first: its
        config is created only if absent, so two first backups never make two projects
        under one name, the one whose config was overwritten writing what nothing opens
        (the caller opens the winner's, as any existing project)."""
        self.ready_for_writers()
        if self.exists():
            return False
        key_ids: list[str] = []
        master = b""
        if password is not None:
            # The key object first: a config saying "encrypted" is never without a key.
            master = crypto.new_master_key()
            key_ids.append(crypto.new_key_id())
            raw = crypto.make_key_object(
                master, password, key_ids[0], params=kdf, host=HOSTNAME, user=current_user()
            )
            self.store.put_new(crypto.KEYS + key_ids[0], raw)
        config = {
            "format": FORMAT_NAME,
            "version": ENCRYPTED_VERSION if password is not None else PLAIN_VERSION,
            "project_id": self.project_id,
            "created_at": datetime.now(UTC).isoformat(),
            "chunker": like.chunker.model_dump() if like else ChunkerParams().as_dict(),
            "hash": "blake3",
            "compression": {"algorithm": "zstd", "level": 3},
            "pack_size": like.pack_size if like else DEFAULT_PACK_SIZE,
        }
        if password is not None:
            config["encryption"] = {
                "scheme": crypto.SCHEME,
                "keys": key_ids,
                "master_check": crypto.master_check(master),
            }
        raw = PLAIN.seal(Kind.CONFIG, json.dumps(config, indent=2).encode())
        try:
            self.store.put_new(CONFIG, raw)
        except ObjectExists:
            if key_ids:  # a key to a master key no project has: never left to be listed
                self.store.delete(crypto.KEYS + key_ids[0])
            return False
        self._config_raw = raw
        self._encrypted = password is not None
        if password is not None:
            self._key_id, self._master = key_ids[0], master
            self._proven.add(key_ids[0])
            self.codec = Codec(crypto.AeadCipher(master))
        return True

    @property
    def config(self) -> RepoConfig:
        """The validated config. Raises Damaged for a wrong shape and NewerFormat for a
        format this version does not know (its objects cannot be read or written safely);
        listing metadata does not need it, so `list` and `info` still answer."""
        if self._config is None:
            try:
                stored = self._config_bytes()
                if self._config_raw is None:
                    self._config_raw = stored
                raw = PLAIN.open(Kind.CONFIG, stored)
            except ObjectNotFound:
                if half_made(self.store):
                    raise Damaged(
                        f"project {self.project_id!r} was left half made (its creation "
                        "stopped after its key object, before its config.json): it holds no "
                        f"backup; delete-project {self.project_id} removes it"
                    ) from None
                if _keys_only(self.store):
                    raise Busy(
                        f"project {self.project_id!r} is being made by another process (its "
                        "key object is there, its config.json not yet), or its creation "
                        "stopped in the last minutes: try again in a moment"
                    ) from None
                if self.exists():
                    raise Damaged(
                        f"project {self.project_id!r}: config.json is missing (its backups "
                        "are still there: nothing is written until it is restored)"
                    ) from None
                raise NotFound(f"unknown project {self.project_id!r}") from None
            except OSError as exc:
                raise Damaged(f"project {self.project_id!r}: config.json cannot be read") from exc
            try:
                config = RepoConfig.model_validate_json(raw)
            except ValidationError as exc:
                raise Damaged(
                    f"project {self.project_id!r}: config.json is not valid ({_first_error(exc)})"
                ) from exc
            if config.format != FORMAT_NAME or config.hash != "blake3":
                raise Damaged(f"project {self.project_id!r}: config.json is not nexus-backup's")
            if config.version > FORMAT_VERSION:
                raise NewerFormat(
                    f"project {self.project_id!r} uses repository format {config.version}, "
                    f"newer than this nexus-backup understands ({FORMAT_VERSION}): upgrade "
                    "nexus-backup to change or read its data"
                )
            self._config = config
        return self._config

    def _config_bytes(self) -> bytes:
        """config.json's bytes. While the project holds key objects and nothing else, another
        process is making it (an encrypted project's key object goes first, its config next):
        the config is waited for a moment (CREATING_WAIT, once), not called missing."""
        deadline: float | None = None
        while True:
            try:
                return self.store.get(CONFIG)
            except ObjectNotFound:
                if self._waited or not _keys_only(self.store):
                    raise
                if deadline is None and half_made(self.store):
                    raise  # stopped long ago: nothing to wait for
                now = time.monotonic()
                deadline = now + CREATING_WAIT if deadline is None else deadline
                if now >= deadline:
                    self._waited = True
                    raise
                time.sleep(0.05)

    def same_project(self) -> bool:
        """config.json still holds the bytes this Repository read first: it is still the
        project whose config, key and index it holds, not one another process made anew
        under its name (delete-project then create), renamed into its place, or whose config
        it replaced (a newer format, damage). One read of a small object; True when no
        config was read yet and none is there now (nothing was cached from it)."""
        try:
            now: bytes | None = self.store.get(CONFIG)
        except OSError:  # gone, no object, unreadable: reopened, the open says why
            now = None
        return now == self._config_raw

    def replaced(self) -> bool:
        """A config this Repository read is no longer there as it was (see `same_project`):
        False for one that never read a config."""
        return self._config_raw is not None and not self.same_project()

    def check_format(self) -> None:
        """Raise unless the config is valid and of a format this version reads and writes
        (Damaged, NewerFormat): asked before anything is restored, verified or written."""
        self.config  # noqa: B018 - the property validates

    def require(self) -> Repository:
        if not self.exists():
            raise NotFound(f"unknown project {self.project_id!r}")
        return self

    @property
    def chunker_params(self) -> ChunkerParams:
        """The chunker's parameters; under encryption its seed is the key's chunker secret
        (never written anywhere: derived again at each unlock)."""
        params = ChunkerParams.from_dict(self.config.chunker.model_dump())
        seed = getattr(self.codec.cipher, "chunker_seed", None)
        if seed is not None:
            params = ChunkerParams(**{**params.as_dict(), "seed": seed})
        return params

    @property
    def pack_size(self) -> int:
        return self.config.pack_size

    def settings(self) -> dict:
        """project.json; absent, unreadable or damaged reads as no settings (they are only
        remembered defaults, such as the data directory)."""
        try:
            settings = json.loads(self._get(Kind.SETTINGS, PROJECT, PROJECT))
        except (OSError, ValueError):  # DamagedObject is a ValueError
            return {}
        return settings if isinstance(settings, dict) else {}

    def save_settings(self, **values: object) -> None:
        """Change some settings, keeping the others, by compare-and-swap: two hosts changing
        different settings at once both land (the loser reads again and retries)."""

        def change(current: object) -> dict:
            merged = dict(current) if isinstance(current, dict) else {}
            merged.update(values)
            return merged

        self._swap(PROJECT, change, lambda: self.settings())

    def _swap(
        self, name: str, change: Callable[[object], object], read: Callable[[], object]
    ) -> object:
        """Replace the JSON object `name` by `change(what read() gives)`, by compare-and-swap
        (S3's If-Match, an etag check under an flock on a disk), sealed as SETTINGS bound to
        its name; retried when another writer changed it meanwhile. Returns what was
        written."""
        for _attempt in range(SETTINGS_ATTEMPTS):
            try:
                etag: str | None = self.store.stat(name).etag
            except ObjectNotFound:
                etag = None
            new = change(read() if etag is not None else None)
            sealed = self.sealing_codec().seal(
                Kind.SETTINGS, json.dumps(new, indent=2).encode(), name.encode()
            )
            try:
                self.store.put_if_unchanged(name, sealed, etag)
                return new
            except ObjectExists:
                continue
        raise Busy(f"project {self.project_id!r}: its {name} keeps changing; try again")

    def policy(self) -> dict | None:
        """policy.json, the project's retention rules as JSON (None: absent or cleared).
        Unlike the settings, a damaged one is an error (Damaged), never read as no policy or
        as another: it decides what is removed."""
        what = f"project {self.project_id!r}: {POLICY}"
        try:
            raw = self._get(Kind.SETTINGS, POLICY, what)
        except ObjectNotFound:
            return None
        except OSError as exc:
            raise Damaged(f"{what} cannot be read ({exc})") from exc
        try:
            value = json.loads(raw)
        except ValueError:
            raise Damaged(f"{what} is damaged (not JSON); {POLICY_REMEDY}") from None
        if value is not None and not isinstance(value, dict):
            raise Damaged(f"{what} is damaged (not an object); {POLICY_REMEDY}")
        return value

    def save_policy(
        self, change: Callable[[dict | None], dict | None], *, whole: bool = False
    ) -> dict | None:
        """Replace the policy by `change(current)` by compare-and-swap (None clears it).
        `whole`: the new policy does not depend on the current one, which is then not read
        (so a damaged policy.json can be replaced or cleared)."""

        def read() -> dict | None:
            return None if whole else self.policy()

        return self._swap(POLICY, change, read)  # type: ignore[arg-type,return-value]

    def last_run(self) -> dict | None:
        """last_run.json (None: never run). Damaged or unreadable reads as never run: it only
        decides whether a scheduled backup is owed, and one backup too many is harmless."""
        try:
            value = json.loads(self._get(Kind.SETTINGS, LAST_RUN, LAST_RUN))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def save_last_run(self, value: dict) -> None:
        """Replace last_run.json whole (compare-and-swap like every settings object)."""
        self._swap(LAST_RUN, lambda _current: value, lambda: None)

    # --- backups ---------------------------------------------------------------------------

    @staticmethod
    def prefix(backup_id: str) -> str:
        return f"{BACKUP_PREFIX}{check_id(backup_id, 'backup_id')}/"

    def backup_ids(self, *, deleting: bool = False) -> list[str]:
        """The backups' ids; those being deleted (a tombstone) only with `deleting`."""
        ids = [
            name[len(BACKUP_PREFIX) :]
            for name in self.store.children()
            if name.startswith(BACKUP_PREFIX)
        ]
        if deleting:
            return ids
        gone = self.tombstones()
        return [i for i in ids if i not in gone] if gone else ids

    def tombstones(self) -> set[str]:
        """Ids of backups whose delete has begun (and may have been cut short). A name there
        that is no backup id was not put by a delete: it names nothing to finish."""
        return {n for n in self.store.children(TOMBSTONES) if is_id(n)}

    def empty_backup_dir(self, backup_id: str) -> bool:
        """True when the backup's directory holds no object at all (a create killed before its
        first metadata was durable): removing it loses nothing. A directory whose name is no
        backup id (`backup_X (copy)`) is not ours to judge: never empty."""
        if not is_id(backup_id):
            return False
        return next(iter(self.store.list(self.prefix(backup_id))), None) is None

    def read_metadata(self, backup_id: str) -> BackupMetadata:
        if not is_id(backup_id):  # listed, never given: the ids given are checked before
            raise Damaged(
                f"{BACKUP_PREFIX}{backup_id} is not a backup (its name is no backup id, a copy?): "
                "move it out of the project"
            )
        name = self.prefix(backup_id) + "metadata.json"
        try:
            raw = self._get(Kind.METADATA, name, f"backup {backup_id!r}: metadata.json")
        except ObjectNotFound:
            raise NotFound(
                f"backup {backup_id!r} not found in project {self.project_id!r}"
            ) from None
        except OSError as exc:  # a directory where the file should be, unreadable...
            raise Damaged(f"backup {backup_id!r}: metadata.json cannot be read") from exc
        try:
            meta = BackupMetadata.model_validate_json(raw)
        except ValidationError as exc:
            raise Damaged(f"backup {backup_id!r}: metadata.json is damaged") from exc
        if meta.id != backup_id:  # another backup's metadata (copied, or moved) is not this one's
            raise Damaged(f"backup {backup_id!r}: metadata.json names another backup ({meta.id!r})")
        if meta.project_id != self.project_id:  # a renamed project: where it lives names it
            meta = meta.model_copy(update={"project_id": self.project_id})
        return meta

    def write_metadata(self, meta: BackupMetadata) -> None:
        name = self.prefix(meta.id) + "metadata.json"
        self._put(Kind.METADATA, name, meta.model_dump_json(indent=2).encode())

    def list_metadata(self) -> tuple[list[BackupMetadata], list[str]]:
        """Every readable backup's metadata, and the ids whose metadata is missing/damaged."""
        found, bad = [], []
        for backup_id in self.backup_ids():
            try:
                found.append(self.read_metadata(backup_id))
            except (NotFound, Damaged, ValueError):
                bad.append(backup_id)
        return found, bad

    def manifest_name(self, backup_id: str) -> str:
        return self.prefix(backup_id) + "data/manifest.zst"

    def read_manifest(self, backup_id: str) -> bytes:
        """The manifest's zstd frame, opened (for `core.repo.manifest`, which streams it)."""
        name = self.manifest_name(backup_id)
        try:
            return self._get(Kind.MANIFEST, name, f"backup {backup_id!r}: manifest")
        except ObjectNotFound:
            raise Damaged(f"backup {backup_id!r}: its manifest is missing") from None
        except OSError as exc:
            raise Damaged(f"backup {backup_id!r}: its manifest cannot be read") from exc

    def write_manifest(self, backup_id: str, frame: bytes) -> None:
        """Store a manifest: `frame` as `ManifestWriter.finish` returns it."""
        self._put(Kind.MANIFEST, self.manifest_name(backup_id), frame)

    def read_verify(self, backup_id: str) -> VerifyResult | None:
        """The last verify's record; absent or damaged reads as never verified."""
        name = self.prefix(backup_id) + "verify.json"
        try:
            return VerifyResult.model_validate_json(self._get(Kind.VERIFY, name, name))
        except (OSError, ValidationError, ValueError):  # DamagedObject is a ValueError
            return None

    def write_verify(self, result: VerifyResult) -> None:
        name = self.prefix(result.backup_id) + "verify.json"
        self._put(Kind.VERIFY, name, result.model_dump_json(indent=2).encode())

    def delete_backup_files(self, backup_id: str) -> None:
        """The tombstone first (the backup vanishes from listings, and a delete cut short is
        finished by the next writer instead of looking damaged), then every object of the
        backup, metadata last but one, the tombstone last."""
        prefix = self.prefix(backup_id)
        tombstone = TOMBSTONES + check_id(backup_id, "backup_id")
        self.store.put(tombstone, b"")  # empty: its name is all it says, nothing to seal
        names = [o.name for o in self.store.list(prefix)]
        meta = prefix + "metadata.json"
        for name in sorted(names, key=lambda n: n == meta):
            self.store.delete(name)
        self.store.delete_prefix(prefix)
        self.store.delete(tombstone)

    # --- chunks ----------------------------------------------------------------------------

    def refresh_index(self) -> Index:
        self.index.refresh(self.store, self.codec)
        return self.index

    def write_index(self, locations: list[tuple[bytes, BlobLocation]]) -> str | None:
        """One new index file for `locations` (their packs durable); its name, or None."""
        return write_index(self.store, self.sealing_codec(), locations)

    def pack_writer(
        self, on_flush: Callable[[str, list[tuple[bytes, BlobLocation]]], None]
    ) -> PackWriter:
        """A writer of new packs of this repository's size, sealed by its codec."""
        remote = self.store.capabilities.local_root is None
        return PackWriter(
            self.store,
            on_flush,
            self.pack_size,
            codec=self.sealing_codec(),
            uploaders=UPLOADERS if remote else 0,
        )

    def read_blobs(
        self, digests: Sequence[bytes], packs: RangeReader | None = None
    ) -> Iterator[Buffer]:
        """The chunks' raw bytes in order, each checked against its hash, reading each run of
        chunks that lie in one pack with one `read_ranges` (one request on a remote store,
        where they are near each other), at most READ_BATCH bytes at a time."""
        for raw, _sealed, _loc in self.read_sealed(digests, packs):
            yield raw

    def read_sealed(
        self, digests: Sequence[bytes], packs: RangeReader | None = None
    ) -> Iterator[tuple[Buffer, Buffer, BlobLocation]]:
        """As `read_blobs`, each chunk with its stored form and location, for a copy into a
        repository that seals chunks alike (it stores them as they are, once checked)."""
        reader = packs if packs is not None else self.store
        i = 0
        while i < len(digests):
            batch = [(digests[i], self._location(digests[i]))]
            size = batch[0][1].length
            while i + len(batch) < len(digests):
                digest = digests[i + len(batch)]
                loc = self._location(digest)
                if loc.pack_id != batch[0][1].pack_id or size + loc.length > READ_BATCH:
                    break
                batch.append((digest, loc))
                size += loc.length
            pack_id = batch[0][1].pack_id
            try:
                stored = reader.read_ranges(
                    pack_name(pack_id), [(loc.offset, loc.length) for _d, loc in batch]
                )
            except ObjectNotFound:
                raise MissingChunk(f"pack {pack_id[:16]} is missing") from None
            except EOFError as exc:
                raise DamagedChunk(f"pack {pack_id[:16]}: {exc}") from exc
            for (digest, loc), sealed in zip(batch, stored, strict=True):
                raw = self.codec.open_blob(
                    digest, sealed, loc.flags, loc.raw_length, pack_id=loc.pack_id
                )
                yield raw, sealed, loc
            i += len(batch)

    def _location(self, digest: bytes) -> BlobLocation:
        loc = self.index.get(digest)
        if loc is None:
            raise MissingChunk(f"chunk {digest.hex()[:16]} is missing from the index")
        return loc

    def stored_bytes(self) -> int:
        return sum(o.size for o in self.store.list("packs/"))


HOSTNAME = socket.gethostname()
#: How often a settings change is tried again when another writer changed them meanwhile.
SETTINGS_ATTEMPTS = 20
#: Threads uploading full packs to a remote store while the backup goes on reading.
UPLOADERS = 3
#: The most bytes of chunks read at once by `read_blobs` (memory stays bounded per reader).
READ_BATCH = 4 * 1024 * 1024


def current_user() -> str:
    """The user this process runs as, by name where the system knows one."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
