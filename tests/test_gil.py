"""The restore's shorter GIL switch interval (`core.gil`) is the process's own setting: it is
put back exactly as found once the last restore ends, however it ends, and overlapping
restores in threads (the service runs several) never leave it lowered or restore it early."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from restore_helpers import run_restorer
from tree_compare import tree_snapshot

from core.errors import Cancelled, NexusError
from core.gil import RESTORE_SWITCH_INTERVAL, quick_handoffs
from core.models import CreateRequest
from core.ops.progress import OperationContext


@pytest.fixture
def default_interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(before)


def test_overlapping_holders_put_back_the_value_found_before_the_first(default_interval):
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, float] = {}

    def first() -> None:
        with quick_handoffs():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with quick_handoffs():
            second_in.set()
            first_out.wait(5)
            seen["after first left"] = sys.getswitchinterval()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen["after first left"] == pytest.approx(RESTORE_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(default_interval)


def test_a_shorter_interval_set_by_someone_else_is_not_raised(default_interval):
    sys.setswitchinterval(0.0001)
    low = sys.getswitchinterval()  # as the interpreter rounds it
    with quick_handoffs():
        assert sys.getswitchinterval() == low
    assert sys.getswitchinterval() == low


async def test_restores_leave_the_interval_as_found_when_they_succeed_and_fail(
    manager, root: Path, data_dir: Path, tmp_path: Path, default_interval
):
    meta = await manager.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    target = tmp_path / "out"
    run_restorer(root, "p", meta.id, target)
    assert tree_snapshot(target) == tree_snapshot(data_dir)
    assert sys.getswitchinterval() == pytest.approx(default_interval)

    for pack in (root / "backups" / "p" / "packs").rglob("*"):
        if pack.is_file():
            raw = bytearray(pack.read_bytes())
            raw[len(raw) // 3] ^= 0xFF
            pack.write_bytes(bytes(raw))
    damaged = run_restorer(root, "p", meta.id, tmp_path / "out2")  # every file: damaged
    assert damaged.files_damaged and not damaged.verified
    assert sys.getswitchinterval() == pytest.approx(default_interval)
    ctx = _CancelWhileWriting("restore", "p", meta.id)
    with pytest.raises(NexusError):  # and one that fails while its writers run
        run_restorer(root, "p", meta.id, tmp_path / "out3", ctx=ctx)
    assert ctx.raised and sys.getswitchinterval() == pytest.approx(default_interval)


class _CancelWhileWriting(OperationContext):
    """Cancelled at the first check a writer makes (the interval lowered by then)."""

    raised = False

    def check(self) -> None:
        if self.phase == "restoring" and threading.current_thread() is not threading.main_thread():
            self.raised = True
            raise Cancelled("cancelled by the test")
        super().check()
