"""The data of nexus-backup: backup types and statuses, the metadata the spec names, requests.

Everything that crosses a boundary (metadata.json on disk, the HTTP API, the CLI's --json, the
TUI) is one of these pydantic models, so that a value is validated once, where it enters.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.compare_names import raw_of
from core.ids import check_id  # defined apart, for pydantic-free callers
from core.kinds import BackupStatus, BackupType  # defined apart, for the CLI's parser
from core.utc import utc

MAX_TAGS = 32
MAX_TAG_KEY = 64
MAX_TAG_VALUE = 256
MAX_EXTRA_BYTES = 16 * 1024
#: Levels of objects and arrays `extra` may nest, itself the first: deeper documents are
#: where JSON parsers (the stdlib's, pydantic's) hit their recursion limits.
MAX_EXTRA_DEPTH = 8
#: Paths or globs one restore may name: each is matched against every entry of the backup.
MAX_RESTORE_PATHS = 1000
MAX_WARNINGS = 1000
#: The paths a backup left out that its metadata lists (BackupStats.left_out).
#: (As many as MAX_WARNINGS: metadata.json is read by every list, and stays small.)
MAX_LEFT_OUT = 1000


#: Statuses a live process may hold a backup in; a dead process leaves them to recovery.
IN_PROGRESS = frozenset({BackupStatus.PENDING, BackupStatus.RUNNING, BackupStatus.VALIDATING})
#: Statuses whose backup has a complete, restorable manifest.
RESTORABLE = frozenset({BackupStatus.COMPLETED, BackupStatus.RESTORING})


def _project_id(value: str) -> str:
    return check_id(value, "project_id")


def _backup_id(value: str) -> str:
    return check_id(value, "backup_id")


def _tags(value: dict[str, str]) -> dict[str, str]:
    """The one rule for the tags a face gives (CLI `--tag`, the TUI's form, the API's body):
    a key of 1-64 printable characters without '=' or ',' (which separate tags and values
    where tags are typed), a value of at most 256; an empty value makes a bare tag."""
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for key, val in value.items():
        if not key or len(key) > MAX_TAG_KEY or not key.isprintable():
            raise ValueError(f"tag key {key[:80]!r} must be 1-{MAX_TAG_KEY} printable characters")
        if "=" in key or "," in key:
            raise ValueError(f"tag key {key[:80]!r} must not contain '=' or ','")
        if len(val) > MAX_TAG_VALUE or not val.isprintable():
            raise ValueError(f"tag {key!r}: value must be at most {MAX_TAG_VALUE} printable chars")
    return value


def parse_tag_item(text: str) -> tuple[str, str]:
    """One tag as typed: ``env=prod`` -> ('env', 'prod'); a bare ``nightly`` -> ('nightly', ''),
    a tag with an empty value, shown as its key alone (core.display.tags_text) and found by
    the filter ``tag:nightly``. Checked by the rule of `Tags`; raises ValueError."""
    key, _sep, value = text.partition("=")
    _tags({key: value})
    return key, value


def parse_tags(texts: Iterable[str]) -> dict[str, str]:
    """Tags as typed (``["env=prod", "nightly"]``) -> a dict, by `parse_tag_item`'s rule; a key
    given twice keeps its last value. Raises ValueError."""
    return _tags(dict(parse_tag_item(t) for t in texts))


def nesting_depth(value: object, stop: int) -> int:
    """How many levels of dicts and lists `value` nests (a scalar 0, `{}` 1), counted with
    an explicit stack so that no depth exhausts the interpreter's; the count ends as soon
    as it passes `stop`."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > stop:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _extra(value: dict) -> dict:
    """Bounded in depth first (so that serializing it is safe), then in size: a backup's
    metadata.json must stay readable by every JSON parser."""
    import json

    if nesting_depth(value, MAX_EXTRA_DEPTH) > MAX_EXTRA_DEPTH:
        raise ValueError(
            f"extra nests deeper than {MAX_EXTRA_DEPTH} levels of objects and arrays "
            "(extra itself is the first)"
        )
    if len(json.dumps(value, default=str)) > MAX_EXTRA_BYTES:
        raise ValueError(f"extra must serialize to at most {MAX_EXTRA_BYTES} bytes")
    return value


ProjectId = Annotated[str, AfterValidator(_project_id)]
BackupId = Annotated[str, AfterValidator(_backup_id)]
Tags = Annotated[dict[str, str], AfterValidator(_tags)]
Extra = Annotated[dict, AfterValidator(_extra)]
#: Every time a model holds: one without a zone (a client's, an old or hand-edited
#: metadata.json) is UTC, so that no listing or sort ever compares naive with aware times.
Time = Annotated[datetime, AfterValidator(utc)]


class Model(BaseModel):
    """The base of the engine's models: a model's validator and serializer are built when it
    is first used, not when its module is imported, so that a command (`list`, `--help`)
    pays only for the models it touches."""

    model_config = ConfigDict(defer_build=True)


class PhaseTimings(Model):
    """Where a backup's time went, in seconds, so a slow backup says why (issue 15).

    The scan, index, manifest and validate phases run one after another on one thread: their
    wall time. Read, chunk-and-hash, compress and store overlap on the reader threads: each
    is the time summed over those threads (so together they can exceed `read_pass_seconds`,
    the read pass's wall time, by up to the number of `workers`)."""

    scan_seconds: float = 0.0
    read_seconds: float = 0.0  # opening, reading and statting source files
    chunk_hash_seconds: float = 0.0  # the rest of the readers' time: cutting, hashing, dedup
    compress_seconds: float = 0.0  # sealing new chunks (zstd, and encryption when on)
    store_seconds: float = 0.0  # adding to packs and storing them, plus the final flush
    index_seconds: float = 0.0
    manifest_seconds: float = 0.0
    validate_seconds: float = 0.0
    read_pass_seconds: float = 0.0
    workers: int = 0


class BackupStats(Model):
    """What a backup actually did, beside the logical size the spec's fields give.

    The fields after `warnings` came with issue 15: absent from older metadata (None)."""

    bytes_read: int = 0
    bytes_stored: int = 0  # new bytes written to packs, after compression
    chunks_new: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0  # distinct chunks the backup's files consist of
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    dirs_count: int = 0
    symlinks_count: int = 0
    duration_seconds: float = 0.0
    throughput_bytes_per_second: float = 0.0
    warnings: list[str] = Field(default_factory=list)  # skipped or unstable files, capped
    #: the new chunks' size before compression (bytes_stored is after)
    bytes_new_raw: int | None = None
    #: bytes read per new byte stored before compression (None: nothing new to store)
    dedup_ratio: float | None = None
    #: new bytes before compression per byte stored (None: nothing new stored)
    compression_ratio: float | None = None
    phases: PhaseTimings | None = None
    #: The paths (base64 of their bytes) the backup saw and could not hold: files it could
    #: not read, entries it could not stat, special files, directories it could not list
    #: (their contents unknown). A restore's --delete never removes them or what is beneath
    #: them (design I4). None: a backup made before they were recorded.
    left_out: list[str] | None = None
    #: More than MAX_LEFT_OUT were left out: `left_out` lists the first ones only, and a
    #: restore's --delete removes nothing.
    left_out_more: bool = False


class BackupMetadata(Model):
    """metadata.json: exactly the spec's fields, plus the stats of the run."""

    model_config = ConfigDict(use_enum_values=False)

    id: BackupId
    project_id: ProjectId
    type: BackupType
    status: BackupStatus = BackupStatus.PENDING
    created_at: Time
    completed_at: Time | None = None
    size_bytes: int = 0
    checksum: str | None = None
    parent_backup_id: str | None = None
    files_count: int = 0
    error_message: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    extra: dict = Field(default_factory=dict)
    stats: BackupStats = Field(default_factory=BackupStats)
    #: who made it: several hosts back up into one shared repository (None: older backups)
    host: str | None = None
    user: str | None = None
    #: Never removed by a retention rule, and refused by delete until unprotected.
    protected: bool = False
    #: Set when retention removed it: no longer listed, still restorable (and `undelete`
    #: brings it back) until `purge_after`, when the next forget deletes it and its data.
    removed_at: Time | None = None
    purge_after: Time | None = None
    removed_reason: str | None = None

    @property
    def restorable(self) -> bool:
        return self.status in RESTORABLE

    @property
    def name(self) -> str | None:
        """A checkpoint's name (its `name` tag)."""
        return self.tags.get("name")


class CreateRequest(Model):
    """What to back up; the spec's create body plus excludes, parent and checkpoint name."""

    model_config = ConfigDict(extra="forbid")

    project_id: ProjectId
    backup_type: BackupType = BackupType.FULL
    data_dir: str = Field(min_length=1, max_length=4096)
    tags: Tags = Field(default_factory=dict)
    extra: Extra = Field(default_factory=dict)
    excludes: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=256
    )
    parent_backup_id: BackupId | None = None
    name: Annotated[str, Field(min_length=1, max_length=MAX_TAG_VALUE)] | None = None
    #: Read the data directory's `.nexusignore` (a pre-restore checkpoint does not: it must
    #: hold everything the restore may overwrite).
    use_ignore_file: bool = True
    #: Back up a directory other than the project's remembered one (which is then re-pointed).
    data_dir_change: bool = False
    #: The host and user recorded as having made it (default: this host, this user), for a
    #: host whose name changes (a container) or two hosts that share one name.
    host: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")] | None = (
        None
    )
    user: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")] | None = (
        None
    )
    #: The creation time recorded (restic's --time, to import older backups); None: now.
    created_at: Time | None = None
    #: Directories `data_dir` must lie beneath (the API's --allow-dir): it is opened from one
    #: of them component by component without following symlinks, so a swap after the check
    #: cannot send the backup elsewhere. None: no confinement (the CLI, the TUI).
    confine_to: list[str] | None = Field(default=None, exclude=True)


OverwritePolicy = Literal["always", "if-changed", "never"]


class RestoreRequest(Model):
    """The spec's restore body plus the restore options."""

    model_config = ConfigDict(extra="forbid")

    project_id: ProjectId
    backup_id: BackupId
    restore_dir: str = Field(min_length=1, max_length=4096)
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=MAX_RESTORE_PATHS
    )  # paths or globs inside the backup; empty means everything
    overwrite: OverwritePolicy = "if-changed"
    delete_extra: bool = False  # remove files in the target that the backup does not hold
    dry_run: bool = False
    checkpoint: bool = True  # take a CHECKPOINT of a non-empty target before overwriting it
    #: Directories `restore_dir` must lie beneath (the API's --allow-dir), see CreateRequest.
    confine_to: list[str] | None = Field(default=None, exclude=True)


class ListFilter(Model):
    """Filters of `list`; every one optional, all combined with AND."""

    type: BackupType | None = None
    status: BackupStatus | None = None
    tag: str | None = None  # "key=value" or "key"
    since: Time | None = None
    until: Time | None = None
    text: str | None = None  # substring of id, tags, error message
    host: str | None = None  # the host that made it, exactly


class ProgressEvent(Model):
    """A progress report of a long operation, emitted at a bounded rate."""

    operation: Literal["create", "restore", "verify", "delete", "check", "copy", "forget"]
    project_id: str
    backup_id: str | None = None
    phase: str  # scanning, reading, validating, restoring, verifying, reclaiming, done
    files_done: int = 0
    files_total: int | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    current_path: str | None = None
    rate_bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    elapsed_seconds: float = 0.0


RestoreAction = Literal["create", "overwrite", "unchanged", "skip", "delete", "metadata"]


class RestoreChange(Model):
    #: As a diff's: text (\\xNN for a byte not UTF-8), and `path_b64` its bytes if not UTF-8.
    path: str
    path_b64: str | None = None
    action: RestoreAction
    #: "special": a fifo, socket or device in the target (only ever deleted).
    kind: Literal["file", "dir", "symlink", "special"] = "file"
    size: int = 0
    reason: str | None = None

    @property
    def exact(self) -> str:
        """The name as the engine's inputs take it (surrogate escapes), for a face to show."""
        return os.fsdecode(raw_of(self.path, self.path_b64))


class RestoreCounts(Model):
    """Exact counts of what a restore does (or, dry-run, would do), for any number of
    entries: the faces show these, never a count of the capped `changes` list."""

    files_create: int = 0
    files_overwrite: int = 0
    files_unchanged: int = 0
    files_metadata: int = 0  # content matches, mode or times are set again
    dirs_metadata: int = 0  # an existing directory given the backup's mode (or owner) again
    dirs_create: int = 0
    dirs_overwrite: int = 0  # a non-directory replaced by a directory
    symlinks_create: int = 0
    symlinks_overwrite: int = 0
    skipped: int = 0
    delete_files: int = 0  # files and symlinks in the target the backup does not hold (--delete)
    delete_dirs: int = 0
    bytes_to_write: int = 0

    @property
    def overwritten(self) -> int:
        """Entries of the target that are replaced."""
        return self.files_overwrite + self.dirs_overwrite + self.symlinks_overwrite

    @property
    def deleted(self) -> int:
        return self.delete_files + self.delete_dirs

    @property
    def destructive(self) -> bool:
        """Whether the restore changes anything that was in the target (a checkpoint is then
        taken first): content replaced or deleted, or only mode or times set again."""
        return bool(self.overwritten or self.deleted or self.files_metadata or self.dirs_metadata)


class RestoreUndo(Model):
    """What undoes a restore that changed its target: the CHECKPOINT taken of the target just
    before, restored back over the whole target (overwrite "if-changed", so only what the
    restore changed is written again (I6: bytes compared, not guessed); "always" when the
    restore replaced a directory by a non-directory or back), delete_extra, no
    checkpoint of its own). The engine builds it once (`of`); the faces only render it, the CLI
    as a command line (`command`), the API as this data (`request` can be posted as is)."""

    project_id: str
    checkpoint_id: str
    target: str
    request: RestoreRequest

    @classmethod
    def of(
        cls, project_id: str, checkpoint_id: str, target: str, *, replaces_types: bool = False
    ) -> RestoreUndo:
        """`replaces_types`: the restore put a file where a directory was or the other way
        round, which only "always" puts back ("if-changed" leaves such a clash as it is)."""
        request = RestoreRequest(
            project_id=project_id,
            backup_id=checkpoint_id,
            restore_dir=target,
            overwrite="always" if replaces_types else "if-changed",
            delete_extra=True,
            checkpoint=False,
        )
        return cls(
            project_id=project_id, checkpoint_id=checkpoint_id, target=target, request=request
        )

    def command(
        self, *, root: str | None = None, repository: str | None = None, prog: str = "nexus-backup"
    ) -> str:
        """`request` as a command line to paste into a shell; `root` and `repository` (when
        the repositories are not under the root) name where it was made (left out where that
        is not the reader's business, as in the API)."""
        req = self.request
        words = [prog, *(["--root", root] if root is not None else [])]
        words += [*(["--repo", repository] if repository is not None else []), "restore"]
        words += [req.project_id, req.backup_id, req.restore_dir, *req.paths]
        words += ["--overwrite", req.overwrite]
        words += ["--delete"] if req.delete_extra else []
        words += ["--dry-run"] if req.dry_run else []
        words += ["--no-checkpoint"] if not req.checkpoint else []
        return shlex.join(words)


class DamagedFile(Model):
    path: str
    reason: str


class RestoreResult(Model):
    project_id: str
    backup_id: str
    restore_dir: str
    dry_run: bool
    files_written: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    files_deleted: int = 0
    dirs_created: int = 0
    symlinks_created: int = 0
    bytes_written: int = 0
    verified: bool = False
    checkpoint_id: str | None = None  # the CHECKPOINT taken of the target before it was changed
    undo: RestoreUndo | None = None  # set with checkpoint_id: the restore that undoes this one
    undo_hint: str | None = None  # undo.command(), naming the repository
    counts: RestoreCounts = Field(default_factory=RestoreCounts)  # exact, see RestoreCounts
    changes: list[RestoreChange] = Field(default_factory=list)  # capped examples of the preview
    changes_truncated: bool = False
    warnings: list[str] = Field(default_factory=list)
    #: Files not restored because their data in the repository is damaged (a pack missing,
    #: truncated or failing its hashes): each left as it was in the target, the rest of the
    #: backup restored. `files_damaged` counts them all, the list names the first
    #: MAX_WARNINGS. `verified` is False when there is any.
    files_damaged: int = 0
    damaged_files: list[DamagedFile] = Field(default_factory=list)
    duration_seconds: float = 0.0


class VerifyResult(Model):
    project_id: str
    backup_id: str
    quick: bool
    ok: bool
    checked_at: Time
    files_checked: int = 0
    chunks_checked: int = 0
    bytes_checked: int = 0
    checksum_ok: bool = True
    damaged_files: list[DamagedFile] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    duration_seconds: float = 0.0


class DeleteResult(Model):
    project_id: str
    backup_id: str
    bytes_reclaimed: int = 0
    packs_deleted: int = 0
    packs_rewritten: int = 0
    #: Needed chunks whose served copy was damaged, served again from an intact copy that
    #: reclaim would otherwise have deleted.
    chunks_repaired: int = 0
    #: Why no space was reclaimed (the backup itself is deleted): reclaim could not prove
    #: which data is unreferenced, and deleted no pack.
    reclaim_refused: str | None = None


class ProjectDeleteResult(Model):
    project_id: str
    #: The backups a list showed (the count the person confirming was shown).
    backups_deleted: int = 0
    #: Backups no list showed, deleted with the project: metadata missing or damaged, or
    #: removed by retention and still in their grace period.
    unlisted_deleted: int = 0
    objects_deleted: int = 0
    bytes_deleted: int = 0
    #: A delete cut short (the process killed) was finished: its count is of what was left.
    resumed: bool = False
    #: Files in the project's place that are not nexus-backup's, left where they were.
    kept: list[str] = Field(default_factory=list)

    def backups_text(self) -> str:
        """'2 backups', or '2 backups and 1 no list showed (...)': every face says the same."""
        from core.display import plural

        text = plural(self.backups_deleted, "backup")
        if self.unlisted_deleted:
            text += (
                f" and {self.unlisted_deleted} no list showed (metadata damaged, or removed by"
                " retention)"
            )
        return text


class ManifestSummary(Model):
    source: str | None = None
    hostname: str | None = None
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    size_bytes: int = 0
    chunks: int = 0


class BackupInfo(Model):
    """`info`: the metadata plus what the manifest says, the parent chain and the last verify."""

    metadata: BackupMetadata
    manifest: ManifestSummary | None = None
    parent_chain: list[str] = Field(default_factory=list)
    #: Backups of the chain that no longer exist (deleted since; the chain ends there).
    deleted_parents: list[str] = Field(default_factory=list)
    last_verify: VerifyResult | None = None
    #: Why the project's config.json cannot be read, when it cannot: the backup's metadata
    #: stands alone and may read "completed", but no backup of the project restores until
    #: the config is repaired (the listings of projects give it as `unreadable`).
    config_problem: str | None = None


class BackupInfoView(BackupMetadata):
    """`info` as the faces give it to programs (`info --json`, the API): the specification's
    metadata fields at the top level, as create and list give them (a client written from the
    specification reads `status` there), and beside them what `info` adds."""

    manifest: ManifestSummary | None = None
    parent_chain: list[str] = Field(default_factory=list)
    deleted_parents: list[str] = Field(default_factory=list)
    last_verify: VerifyResult | None = None
    config_problem: str | None = None

    @classmethod
    def of(cls, info: BackupInfo, **more: object) -> Self:
        extra = info.model_dump(exclude={"metadata"})
        return cls.model_validate({**info.metadata.model_dump(), **extra, **more})


RunStatus = Literal["running", "succeeded", "failed"]


class LastRun(Model):
    """A project's last scheduled run (`run-due`), kept in its repository beside its policy
    (`last_run.json`): written "running" when the run starts and again with its outcome."""

    model_config = ConfigDict(extra="ignore")

    started_at: Time
    finished_at: Time | None = None
    status: RunStatus
    #: The scheduled instant this run was for (the owed slot).
    scheduled_for: Time | None = None
    backup_id: str | None = None
    error: str | None = Field(default=None, max_length=4096)
    host: str = ""
    #: Files skipped or changed while read by the run's backup.
    warnings: int = 0


class ProjectSummary(Model):
    project_id: str
    backups: int = 0
    last_backup_at: Time | None = None
    last_status: BackupStatus | None = None
    stored_bytes: int = 0  # bytes in packs on disk
    data_dir: str | None = None  # the directory last backed up (remembered per project)
    encrypted: bool = False  # encrypted at rest (issue 12)
    #: Encrypted and not opened: no password given, or a wrong one. Nothing else is known.
    locked: bool = False
    #: Why the project cannot be opened at all (its config.json damaged or missing beside
    #: other objects, a format newer than this version's): listed, never left out of a
    #: listing. Nothing else is known.
    unreadable: str | None = None
    #: Its policy's schedule (issue 14), when the next run is expected, whether a run is
    #: owed for longer than a timer would leave it, and the last scheduled run.
    schedule: str | None = None
    next_run: Time | None = None
    overdue: bool = False
    last_run: LastRun | None = None


class TreeEntry(Model):
    """One entry of a backup's tree, for browsing."""

    path: str
    name: str
    kind: Literal["file", "dir", "symlink"]
    size: int = 0
    mtime: Time | None = None
    mode: int = 0
    target: str | None = None
    has_children: bool = False


class CheckResult(Model):
    """A whole project's check: the index against the packs, then every backup verified."""

    project_id: str
    ok: bool
    read_data: bool
    checked_at: Time
    packs_checked: int = 0
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    backups: list[VerifyResult] = Field(default_factory=list)
    duration_seconds: float = 0.0


class RebuildResult(Model):
    project_id: str
    packs_read: int = 0
    chunks_indexed: int = 0
    damaged_packs: list[str] = Field(default_factory=list)
    chunks_salvaged: int = 0  # chunks of damaged packs that verified and were kept
    quarantined: list[str] = Field(default_factory=list)  # objects set aside, never deleted
    notes: list[str] = Field(default_factory=list)


class CopiedBackup(Model):
    """One backup copied into another repository: what travelled and what was there."""

    backup_id: str
    chunks_sent: int = 0
    chunks_present: int = 0
    bytes_sent: int = 0
    packs_written: int = 0


class CopyResult(Model):
    """A copy of a project's backups to another repository (`copy --to`)."""

    project_id: str
    target: str
    copied: list[CopiedBackup] = Field(default_factory=list)
    #: already whole in the target (a rerun after a kill copies only what is missing)
    already_there: list[str] = Field(default_factory=list)
    bytes_sent: int = 0
    #: What the copy did that the person asking may not expect (one line each): an
    #: encrypted project's backups stored in plain in a target that exists plain.
    warnings: list[str] = Field(default_factory=list)
