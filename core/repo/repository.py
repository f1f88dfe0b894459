"""One project's repository: config, backups' metadata and manifests, the chunk store.

Everything goes through an ObjectStore, so the engine never assumes a local filesystem.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import Damaged, NexusError, NotFound
from core.models import BackupMetadata, VerifyResult, check_id
from core.repo.chunker import ChunkerParams, hash_bytes
from core.repo.index import Index
from core.repo.packs import DEFAULT_PACK_SIZE, decompress, pack_name
from core.storage import (
    ObjectNotFound,
    ObjectStore,
    RangeReader,
    open_store,
    require_conditional_create,
)

FORMAT_VERSION = 1
CONFIG = "config.json"
PROJECT = "project.json"
BACKUP_PREFIX = "backup_"
#: `deleting/{backup_id}`: written before a delete removes anything of the backup and removed
#: last, so a backup directory without metadata is told apart: being deleted (finish it) or
#: damaged (keep it, report it, refuse to reclaim until it is repaired or deleted on purpose).
TOMBSTONES = "deleting/"


class _ChunkerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    algorithm: str = "fastcdc2020"
    avg_size: int = Field(1024 * 1024, ge=64, le=1 << 30)
    min_size: int = Field(256 * 1024, ge=64, le=1 << 30)
    max_size: int = Field(4 * 1024 * 1024, ge=64, le=1 << 30)
    normalized_chunking: int = Field(1, ge=0, le=3)
    seed: int = 0


class RepoConfig(BaseModel):
    """config.json, validated whole: a wrong shape is one clear line, never an internal error."""

    model_config = ConfigDict(extra="allow")
    format: str = "nexus-backup"
    version: int = Field(ge=1)
    project_id: str | None = None
    created_at: str | None = None
    chunker: _ChunkerConfig = Field(default_factory=_ChunkerConfig)
    hash: str = "blake3"
    pack_size: int = Field(DEFAULT_PACK_SIZE, ge=1, le=1 << 32)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "the file"
    return f"{where}: {err.get('msg', 'invalid')}"


class MissingChunk(Damaged):
    pass


class NewerFormat(NexusError):
    """A repository of a format newer than this version: nothing is written to it."""


class DamagedChunk(Damaged):
    pass


def new_backup_id(now: datetime | None = None) -> str:
    """Sortable by time, unique across processes: `YYYYMMDD-HHMMSS-xxxxxx`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def project_dir(root: Path, project_id: str) -> Path:
    return root / "backups" / check_id(project_id, "project_id")


class Repository:
    """A project's store plus the in-memory index; cheap to open, safe to share in a process."""

    def __init__(self, root: Path, project_id: str, store: ObjectStore | None = None) -> None:
        """`store` holds the project's objects; by default the local `root/backups/{id}`."""
        self.root = root
        self.project_id = check_id(project_id, "project_id")
        self.store: ObjectStore = store or open_store(project_dir(root, project_id))
        self.index = Index()
        self._config: RepoConfig | None = None

    # --- existence and config -------------------------------------------------------------

    def exists(self) -> bool:
        """The project has a repository: its config, or (a config lost) any object at all,
        which then reads as damaged rather than as an unknown project to create anew."""
        return self.store.exists(CONFIG) or bool(self.store.children())

    def init(self) -> None:
        """Create the project's repository (idempotent), on a store whose server keeps
        concurrent writers apart (create-if-absent enforced, probed by `prepare`)."""
        self.store.prepare()
        require_conditional_create(self.store)
        if self.exists():
            return
        config = {
            "format": "nexus-backup",
            "version": FORMAT_VERSION,
            "project_id": self.project_id,
            "created_at": datetime.now(UTC).isoformat(),
            "chunker": ChunkerParams().as_dict(),
            "hash": "blake3",
            "compression": {"algorithm": "zstd", "level": 3},
            "pack_size": DEFAULT_PACK_SIZE,
        }
        self.store.put(CONFIG, json.dumps(config, indent=2).encode())

    @property
    def config(self) -> RepoConfig:
        """The validated config. Raises Damaged for a wrong shape and NewerFormat for a
        format this version does not know (its objects cannot be read or written safely);
        listing metadata does not need it, so `list` and `info` still answer."""
        if self._config is None:
            try:
                raw = self.store.get(CONFIG)
            except ObjectNotFound:
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
            if config.format != "nexus-backup" or config.hash != "blake3":
                raise Damaged(f"project {self.project_id!r}: config.json is not nexus-backup's")
            if config.version > FORMAT_VERSION:
                raise NewerFormat(
                    f"project {self.project_id!r} uses repository format {config.version}, "
                    f"newer than this nexus-backup understands ({FORMAT_VERSION}): upgrade "
                    "nexus-backup to change or read its data"
                )
            self._config = config
        return self._config

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
        return ChunkerParams.from_dict(self.config.chunker.model_dump())

    @property
    def pack_size(self) -> int:
        return self.config.pack_size

    def settings(self) -> dict:
        try:
            settings = json.loads(self.store.get(PROJECT))
        except (OSError, ValueError):
            return {}
        return settings if isinstance(settings, dict) else {}

    def save_settings(self, **values: object) -> None:
        current = self.settings()
        current.update(values)
        self.store.put(PROJECT, json.dumps(current, indent=2).encode())

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
        """Ids of backups whose delete has begun (and may have been cut short)."""
        return set(self.store.children(TOMBSTONES))

    def empty_backup_dir(self, backup_id: str) -> bool:
        """True when the backup's directory holds no object at all (a create killed before its
        first metadata was durable): removing it loses nothing."""
        return next(iter(self.store.list(self.prefix(backup_id))), None) is None

    def read_metadata(self, backup_id: str) -> BackupMetadata:
        try:
            raw = self.store.get(self.prefix(backup_id) + "metadata.json")
        except ObjectNotFound:
            raise NotFound(
                f"backup {backup_id!r} not found in project {self.project_id!r}"
            ) from None
        except OSError as exc:  # a directory where the file should be, unreadable...
            raise Damaged(f"backup {backup_id!r}: metadata.json cannot be read") from exc
        try:
            return BackupMetadata.model_validate_json(raw)
        except ValidationError as exc:
            raise Damaged(f"backup {backup_id!r}: metadata.json is damaged") from exc

    def write_metadata(self, meta: BackupMetadata) -> None:
        self.store.put(
            self.prefix(meta.id) + "metadata.json", meta.model_dump_json(indent=2).encode()
        )

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
        try:
            return self.store.get(self.manifest_name(backup_id))
        except ObjectNotFound:
            raise Damaged(f"backup {backup_id!r}: its manifest is missing") from None
        except OSError as exc:
            raise Damaged(f"backup {backup_id!r}: its manifest cannot be read") from exc

    def write_manifest(self, backup_id: str, data: bytes) -> None:
        self.store.put(self.manifest_name(backup_id), data)

    def read_verify(self, backup_id: str) -> VerifyResult | None:
        try:
            return VerifyResult.model_validate_json(
                self.store.get(self.prefix(backup_id) + "verify.json")
            )
        except (OSError, ValidationError, ValueError):
            return None

    def write_verify(self, result: VerifyResult) -> None:
        self.store.put(
            self.prefix(result.backup_id) + "verify.json", result.model_dump_json(indent=2).encode()
        )

    def delete_backup_files(self, backup_id: str) -> None:
        """The tombstone first (the backup vanishes from listings, and a delete cut short is
        finished by the next writer instead of looking damaged), then every object of the
        backup, metadata last but one, the tombstone last."""
        prefix = self.prefix(backup_id)
        tombstone = TOMBSTONES + check_id(backup_id, "backup_id")
        self.store.put(tombstone, b"")
        names = [o.name for o in self.store.list(prefix)]
        meta = prefix + "metadata.json"
        for name in sorted(names, key=lambda n: n == meta):
            self.store.delete(name)
        self.store.delete_prefix(prefix)
        self.store.delete(tombstone)

    # --- chunks ----------------------------------------------------------------------------

    def refresh_index(self) -> Index:
        self.index.refresh(self.store)
        return self.index

    def read_blob(self, digest: bytes, packs: RangeReader | None = None) -> bytes:
        """A chunk's raw bytes, checked against its hash (`packs` keeps packs open)."""
        loc = self.index.get(digest)
        if loc is None:
            raise MissingChunk(f"chunk {digest.hex()[:16]} is missing from the index")
        try:
            name = pack_name(loc.pack_id)
            if packs is not None:
                stored = packs.get_range(name, loc.offset, loc.length)
            else:
                stored = self.store.get_range(name, loc.offset, loc.length)
            raw = decompress(stored, loc.flags, loc.raw_length)
        except ObjectNotFound:
            raise MissingChunk(f"pack {loc.pack_id[:16]} is missing") from None
        except (EOFError, ValueError, struct.error) as exc:
            raise DamagedChunk(
                f"chunk {digest.hex()[:16]} in pack {loc.pack_id[:16]}: {exc}"
            ) from exc
        except Exception as exc:  # zstandard.ZstdError
            if type(exc).__name__ == "ZstdError":
                raise DamagedChunk(
                    f"chunk {digest.hex()[:16]} in pack {loc.pack_id[:16]}: {exc}"
                ) from exc
            raise
        if len(raw) != loc.raw_length or hash_bytes(raw) != digest:
            raise DamagedChunk(
                f"chunk {digest.hex()[:16]} in pack {loc.pack_id[:16]} fails its hash"
            )
        return raw

    def stored_bytes(self) -> int:
        return sum(o.size for o in self.store.list("packs/"))


HOSTNAME = socket.gethostname()
