"""Retention through the manager (what every face gets): the stored policy, forget with its
soft removal, grace, undelete and one reclaim, protection, the policy applied after each
backup, and a running backup left alone. Real repositories, real restores."""

from __future__ import annotations

import filecmp
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.errors import Busy, Conflict, Damaged, InvalidInput
from core.manage.locking import locked
from core.manager import BackupManager
from core.models import BackupMetadata, BackupStatus, BackupType, CreateRequest, RestoreRequest
from core.repo.codec import Kind
from core.repo.repository import POLICY
from core.retention import Policy, RetentionRefused

T0 = datetime(2024, 5, 1, 10, tzinfo=UTC)


class Clock:
    """The engine's clock, moved by the test (grace periods are measured by it)."""

    def __init__(self) -> None:
        self.now = datetime(2024, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def backup(mgr: BackupManager, data: Path, when: datetime, **tags: str) -> BackupMetadata:
    """A backup recorded at `when` (create --time) of one file of its own."""
    for old in data.iterdir():
        old.unlink()
    (data / f"file-{when:%Y%m%d%H}").write_bytes(when.isoformat().encode() * 2000)
    req = CreateRequest(project_id="p", data_dir=str(data), created_at=when, tags=tags)
    return mgr.create_blocking(req, _ctx())


def _ctx():
    from core.ops.progress import OperationContext

    return OperationContext("create", "p", None)


def restored_equal(mgr: BackupManager, backup_id: str, tmp: Path, expected: Path) -> bool:
    target = tmp / f"restore-{backup_id}"
    req = RestoreRequest(project_id="p", backup_id=backup_id, restore_dir=str(target))
    from core.ops.progress import OperationContext

    mgr.restore_blocking(req, OperationContext("restore", "p", backup_id))
    cmp = filecmp.dircmp(expected, target)
    return not (cmp.left_only or cmp.right_only or cmp.diff_files)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mgr(root: Path, clock: Clock) -> BackupManager:
    return BackupManager(root, clock=clock)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def test_policy_is_stored_in_the_repository_merged_and_cleared(engine, data, root):
    backup(engine, data, T0)
    assert engine.policy_blocking("p") is None
    engine.set_policy_blocking("p", None, merge={"keep_daily": 7})
    engine.set_policy_blocking("p", None, merge={"keep_within": "30d", "keep_tags": ["env=prod"]})
    # another process (another manager, same store) sees the same policy
    other = BackupManager(root, repository=engine.store.url, password=lambda _p: "engine password")
    policy = other.policy_blocking("p")
    assert policy == Policy(keep_daily=7, keep_within="30d", keep_tags=["env=prod"])
    repo = engine._repo("p")
    sealed = repo.store.get(POLICY)
    if repo.encrypted():  # sealed like the settings: no rule readable in the store
        assert b"keep_daily" not in sealed
        assert repo.codec.open(Kind.SETTINGS, sealed, POLICY.encode())
    engine.set_policy_blocking("p", None, merge={"keep_daily": 0})
    assert other.policy_blocking("p") == Policy(keep_within="30d", keep_tags=["env=prod"])
    with pytest.raises(InvalidInput, match="no rule"):
        engine.set_policy_blocking("p", None, merge={"keep_within": None, "keep_tags": []})
    engine.set_policy_blocking("p", None)
    assert other.policy_blocking("p") is None


def test_forget_soft_removes_then_deletes_after_grace_in_one_reclaim(mgr, data, tmp_path, clock):
    metas, snapshots = [], []
    for day in range(5):
        metas.append(backup(mgr, data, T0 + timedelta(days=day)))
        snap = tmp_path / f"expected-{day}"
        snap.mkdir()
        for f in data.iterdir():
            (snap / f.name).write_bytes(f.read_bytes())
        snapshots.append(snap)
    stored = mgr._repo("p").stored_bytes()
    preview = mgr.forget_blocking("p", Policy(keep_last=2), dry_run=True)
    assert [d.keep for d in preview.decisions] == [True, True, False, False, False]
    assert preview.decisions[0].reasons == ["last 1/2", "newest"]
    assert preview.bytes_freed and preview.bytes_freed > 0
    assert [m.id for m in mgr.list_blocking("p")] == [m.id for m in reversed(metas)]  # dry run

    done = mgr.forget_blocking("p", Policy(keep_last=2))
    assert done.removed == sorted(m.id for m in metas[:3]) and done.purged == []
    assert [m.id for m in mgr.list_blocking("p")] == [metas[4].id, metas[3].id]
    assert {m.id for m in mgr.removed_blocking("p")} == {m.id for m in metas[:3]}
    # in grace: restorable, nothing reclaimed yet, and undelete brings one back
    assert restored_equal(mgr, metas[0].id, tmp_path, snapshots[0])
    assert mgr._repo("p").stored_bytes() == stored
    mgr.undelete_blocking("p", metas[2].id)
    assert metas[2].id in {m.id for m in mgr.list_blocking("p")}

    # before the grace ends nothing is deleted; after it, the next forget deletes and reclaims
    clock.now += timedelta(hours=23)
    assert mgr.forget_blocking("p", Policy(keep_last=3)).purged == []
    clock.now += timedelta(hours=2)
    final = mgr.forget_blocking("p", Policy(keep_last=3))
    assert final.purged == sorted(m.id for m in metas[:2])
    assert final.bytes_reclaimed > 0 and final.packs_deleted >= 1
    assert mgr.removed_blocking("p") == []
    for i in (2, 3, 4):
        assert restored_equal(mgr, metas[i].id, tmp_path, snapshots[i])
    with pytest.raises(Conflict, match="not removed"):
        mgr.undelete_blocking("p", metas[4].id)


def test_protected_backups_survive_every_rule_and_delete_refuses_them(mgr, data):
    old = backup(mgr, data, T0)
    backup(mgr, data, T0 + timedelta(days=1))
    mgr.protect_blocking("p", old.id)
    result = mgr.forget_blocking("p", Policy(keep_last=1, grace_hours=0))
    assert result.purged == [] and result.removed == []
    assert {d.backup_id: d.reasons for d in result.decisions}[old.id] == ["protected"]
    with pytest.raises(Conflict, match="protected: unprotect it first"):
        mgr.delete_blocking("p", old.id, _ctx())
    mgr.unprotect_blocking("p", old.id)
    assert mgr.forget_blocking("p", Policy(keep_last=1, grace_hours=0)).purged == [old.id]


def test_a_policy_keeping_nothing_is_refused_and_nothing_is_removed(mgr, data):
    metas = [backup(mgr, data, T0 + timedelta(days=d)) for d in range(3)]
    with pytest.raises(RetentionRefused):
        mgr.forget_blocking("p", Policy(keep_tags=["env=prod"], grace_hours=0))
    assert len(mgr.list_blocking("p")) == len(metas)
    with pytest.raises(InvalidInput, match="no retention policy"):
        mgr.forget_blocking("p")


def test_policy_is_applied_after_each_backup_and_logged(mgr, data, root):
    backup(mgr, data, T0)
    mgr.set_policy_blocking("p", Policy(keep_last=2, grace_hours=0))
    backup(mgr, data, T0 + timedelta(days=1))
    third = backup(mgr, data, T0 + timedelta(days=2))
    outcome = mgr.retention_outcome("p", third.id)
    assert not isinstance(outcome, str) and outcome is not None
    assert len(outcome.purged) == 1 and outcome.bytes_reclaimed > 0
    assert len(mgr.list_blocking("p")) == 2
    log = "".join(p.read_text() for p in (root / "logs").glob("p_*.log"))
    assert "deleted by retention (no rule keeps it)" in log
    assert "retention kept 2, removed 0, deleted 1" in log


def test_a_damaged_policy_is_one_clear_error_and_never_read_as_another(mgr, data):
    first = backup(mgr, data, T0)
    repo = mgr._repo("p")
    for garbage in (b"\x00garbage", b"[1, 2]", b'{"keep_daily": "many"}'):
        repo.store.put(POLICY, garbage)
        with pytest.raises(Damaged, match=r"policy\.json is damaged"):
            mgr.policy_blocking("p")
        with pytest.raises(Damaged):
            mgr.forget_blocking("p")
        # a backup still completes; retention says why it was not applied
        meta = backup(mgr, data, T0 + timedelta(days=len(garbage)))
        outcome = mgr.retention_outcome("p", meta.id)
        assert isinstance(outcome, str) and outcome.startswith("retention not applied")
    assert first.id in {m.id for m in mgr.list_blocking("p")}
    mgr.set_policy_blocking("p", Policy(keep_last=1))  # replaced whole: readable again
    assert mgr.policy_blocking("p") == Policy(keep_last=1)


def test_a_running_backup_is_never_touched(mgr, data, monkeypatch):
    """A backup in progress holds the shared lock with RUNNING metadata (as create does):
    the preview keeps it, and a real forget waits for the exclusive lock and gives up."""
    from core.manage import locking

    monkeypatch.setattr(locking, "LOCK_TIMEOUT", 0.3)
    for d in range(3):
        backup(mgr, data, T0 + timedelta(days=d))
    repo = mgr._repo("p")
    running = BackupMetadata(
        id="20240601-000000-aaaaaa",
        project_id="p",
        type=BackupType.FULL,
        status=BackupStatus.RUNNING,
        created_at=T0 - timedelta(days=30),
    )
    with locked(repo, "create", exclusive=False, backup_id=running.id):
        repo.write_metadata(running)
        preview = mgr.forget_blocking("p", Policy(keep_last=1, grace_hours=0), dry_run=True)
        assert {d.backup_id: d.reasons for d in preview.decisions}[running.id] == ["in progress"]
        with pytest.raises(Busy):
            mgr.forget_blocking("p", Policy(keep_last=1, grace_hours=0))
        assert repo.read_metadata(running.id).status == BackupStatus.RUNNING
        assert len(mgr.list_blocking("p")) == 4


def test_create_time_is_recorded_and_names_the_backup(mgr, data):
    meta = backup(mgr, data, datetime(2019, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert meta.created_at == datetime(2019, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert meta.id.startswith("20190304-050607-")


@pytest.mark.parametrize(
    ("small", "max_unused", "rewritten"),
    [(20_000, 0.05, 0), (200_000, 0.05, 1), (20_000, 0.0, 1)],
)
def test_reclaim_repacks_only_packs_whose_unused_share_exceeds_the_threshold(
    mgr, data, tmp_path, small, max_unused, rewritten
):
    """Two backups share one pack: the first holds a big file and a small one, the second only
    the big one. Forgetting the first leaves the small file's bytes unused in that pack: it is
    repacked only when their share exceeds `max_unused`, and the kept backup restores either
    way; a pack left as it is is not repacked by the next forget either."""
    import os

    (data / "big.bin").write_bytes(os.urandom(400_000))
    (data / "small.bin").write_bytes(os.urandom(small))
    first = mgr.create_blocking(
        CreateRequest(project_id="p", data_dir=str(data), created_at=T0), _ctx()
    )
    (data / "small.bin").unlink()
    keep = tmp_path / "expected"
    keep.mkdir()
    (keep / "big.bin").write_bytes((data / "big.bin").read_bytes())
    second = mgr.create_blocking(
        CreateRequest(project_id="p", data_dir=str(data), created_at=T0 + timedelta(days=1)),
        _ctx(),
    )
    policy = Policy(keep_last=1, grace_hours=0)
    done = mgr.forget_blocking("p", policy, max_unused=max_unused)
    assert done.purged == [first.id]
    assert done.packs_rewritten == rewritten
    assert restored_equal(mgr, second.id, tmp_path, keep)
    from core.models import DeleteResult
    from core.ops.check import check_repository
    from core.ops.reclaim import reclaim

    again = reclaim(mgr._repo("p"), DeleteResult(project_id="p", backup_id="-"), _ctx(), max_unused)
    assert again.packs_rewritten == 0 and again.packs_deleted == 0

    check = check_repository(mgr._repo("p"), read_data=True, ctx=_ctx())
    assert check.ok, check.errors


def test_the_policy_after_a_backup_never_waits_for_a_busy_project(mgr, data):
    """Another backup running (its shared lock held) when this one completes: retention is
    deferred at once, not after the lock timeout, and the backup is complete."""
    import time

    backup(mgr, data, T0)
    mgr.set_policy_blocking("p", Policy(keep_last=1, grace_hours=0))
    with locked(mgr._repo("p"), "create", exclusive=False, backup_id="20240601-000000-bbbbbb"):
        t0 = time.monotonic()
        meta = backup(mgr, data, T0 + timedelta(days=1))
        assert time.monotonic() - t0 < 3
    outcome = mgr.retention_outcome("p", meta.id)
    assert isinstance(outcome, str) and "busy" in outcome
    assert meta.status == BackupStatus.COMPLETED and len(mgr.list_blocking("p")) == 2
    third = backup(mgr, data, T0 + timedelta(days=2))  # the next backup applies it
    assert not isinstance(mgr.retention_outcome("p", third.id), str)
    assert [m.id for m in mgr.list_blocking("p")] == [third.id]


def test_forget_and_undelete_on_every_store(engine, data, tmp_path):
    """Local, memory, S3 and encrypted: soft removal, undelete, then deletion and its reclaim;
    what is kept restores byte for byte."""
    old = backup(engine, data, T0)
    mid = backup(engine, data, T0 + timedelta(days=1))
    expected = tmp_path / "expected"
    expected.mkdir()
    for f in data.iterdir():
        (expected / f.name).write_bytes(f.read_bytes())
    new = backup(engine, data, T0 + timedelta(days=2))
    done = engine.forget_blocking("p", Policy(keep_last=1))
    assert done.removed == [old.id, mid.id]
    engine.undelete_blocking("p", mid.id)
    engine.protect_blocking("p", mid.id)
    final = engine.forget_blocking("p", Policy(keep_last=1, grace_hours=0))
    assert final.purged == [] and [m.id for m in engine.removed_blocking("p")] == [old.id]
    assert {m.id for m in engine.list_blocking("p")} == {mid.id, new.id}
    assert restored_equal(engine, mid.id, tmp_path, expected)


def test_two_hosts_setting_different_rules_at_once_both_land(root, data):
    """Each thread its own manager (another process, another host): merges by
    compare-and-swap never lose a rule."""
    import threading

    first = BackupManager(root)
    backup(first, data, T0)
    managers = [BackupManager(root) for _ in range(2)]
    rules = [{"keep_daily": n} for n in range(1, 8)], [{"keep_weekly": n} for n in range(1, 8)]

    def run(mgr: BackupManager, changes: list[dict]) -> None:
        for change in changes:
            mgr.set_policy_blocking("p", None, merge=change)

    threads = [
        threading.Thread(target=run, args=(m, r)) for m, r in zip(managers, rules, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert first.policy_blocking("p") == Policy(keep_daily=7, keep_weekly=7)


def test_a_backup_dated_ahead_by_another_hosts_clock_never_empties_keep_within(
    mgr, data, tmp_path, clock
):
    """Two hosts back up one project; one's clock runs a year ahead. keep-within 30d is
    measured from the newest backup, which would put every real backup outside it: measured
    from this host's now instead, the real backups of the last 30 days stay."""
    real = [backup(mgr, data, clock.now - timedelta(days=d)) for d in (40, 20, 1)]
    ahead = BackupManager(mgr.root, clock=lambda: clock.now + timedelta(days=365))
    other = ahead.create_blocking(CreateRequest(project_id="p", data_dir=str(data)), _ctx())
    assert other.created_at > clock.now + timedelta(days=300)
    preview = mgr.forget_blocking("p", Policy(keep_within="30d"), dry_run=True)
    kept = {d.backup_id for d in preview.decisions if d.keep}
    assert kept == {other.id, real[1].id, real[2].id}
    done = mgr.forget_blocking("p", Policy(keep_within="30d"))
    assert done.removed == [real[0].id]


def test_a_checkpoint_dated_ahead_never_empties_the_checkpoint_window(mgr, data, clock):
    real = backup(mgr, data, clock.now - timedelta(days=1))
    ckpt = CreateRequest(project_id="p", data_dir=str(data), backup_type=BackupType.CHECKPOINT)
    mine = mgr.create_blocking(ckpt.model_copy(update={"created_at": clock.now}), _ctx())
    ahead = BackupManager(mgr.root, clock=lambda: clock.now + timedelta(days=365))
    theirs = ahead.create_blocking(ckpt, _ctx())
    decisions = mgr.forget_blocking("p", Policy(keep_checkpoints="7d"), dry_run=True).decisions
    kept = {d.backup_id for d in decisions if d.keep}
    assert {real.id, mine.id, theirs.id} <= kept
