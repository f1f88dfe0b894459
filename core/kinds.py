"""The kinds of backup and the statuses a backup goes through: the names every face shows and
every filter takes.

Apart from the models (core.models re-exports both) so that what needs only these names, as
the CLI's parser does to build `--type` and `--status` for `--help`, imports no pydantic.
"""

from __future__ import annotations

from enum import StrEnum


class BackupType(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    SNAPSHOT = "snapshot"
    CHECKPOINT = "checkpoint"


class BackupStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    VALIDATING = "validating"
    RESTORING = "restoring"
