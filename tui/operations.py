"""Running operations (backup, restore, verify, delete, copy): what the progress panel shows and
what quitting has to warn about. Plain data; the app owns the workers that drive them."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from textual.worker import Worker

from core.models import ProgressEvent
from tui import format as fmt

OpKind = Literal[
    "create",
    "restore",
    "verify",
    "delete",
    "delete-project",
    "rename-project",
    "project",
    "copy",
    "forget",
]
OpState = Literal["running", "done", "failed", "cancelled"]

_ids = itertools.count(1)


@dataclass(eq=False)
class Operation:
    kind: OpKind
    project_id: str
    label: str
    backup_id: str | None = None
    id: str = field(default_factory=lambda: f"op{next(_ids)}")
    state: OpState = "running"
    progress: ProgressEvent | None = None
    started: float = field(default_factory=time.monotonic)
    worker: Worker[Any] | None = None
    result: Any = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def percent(self) -> int | None:
        total, done = fmt.fraction(self.progress)
        if not total:
            return None
        return int(100 * done / total)

    def summary(self) -> str:
        """'backup web (full) 42%' — what the quit confirmation lists."""
        pct = self.percent()
        return f"{self.label} {pct}%" if pct is not None else f"{self.label} ({self.state})"


class Operations:
    """The app's operations, in start order; finished ones drop out of `running`."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, op: Operation) -> Operation:
        self._ops[op.id] = op
        return op

    def get(self, op_id: str) -> Operation | None:
        return self._ops.get(op_id)

    def remove(self, op_id: str) -> None:
        self._ops.pop(op_id, None)

    @property
    def running(self) -> list[Operation]:
        return [op for op in self._ops.values() if op.running]

    def __iter__(self):
        return iter(list(self._ops.values()))

    def __len__(self) -> int:
        return len(self._ops)
