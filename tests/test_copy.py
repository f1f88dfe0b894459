"""`copy` between repositories: from every engine store to another, only what the target
lacks travels, the copy restores byte for byte, a copy cut short is finished by running it
again, and a damaged source never becomes a COMPLETED backup in the target."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from store_helpers import Tap, flip_byte, object_names, open_repository, project_store
from store_helpers import reopen as reopen_of
from tree_compare import tree_snapshot

from core.errors import Damaged, InvalidInput
from core.manager import BackupManager
from core.models import BackupStatus, BackupType, CreateRequest, RestoreRequest
from core.repo.repository import UPLOADERS

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def manager(engine):
    return engine


def _target_url(manager: BackupManager, tmp_path: Path) -> str:
    """A target of the other kind: memory for a local source, a directory for the others."""
    if manager.store.capabilities.local_root is not None:
        return f"memory://{uuid.uuid4().hex}"
    return str(tmp_path / "target")


def _tree(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(3 * MiB))
    (d / "sub" / "b.txt").write_text("bravo\n" * 5000)
    os.symlink("a.bin", d / "link")
    return d


async def test_copy_restores_byte_exact_and_sends_only_what_is_missing(manager, tmp_path):
    data = _tree(tmp_path)
    first = await manager.create(CreateRequest(project_id="web", data_dir=str(data)))
    (data / "c.bin").write_bytes(os.urandom(2 * MiB))
    second = await manager.create(
        CreateRequest(project_id="web", data_dir=str(data), backup_type=BackupType.INCREMENTAL)
    )
    to = _target_url(manager, tmp_path)

    one = await manager.copy("web", to, [first.id])
    assert [c.backup_id for c in one.copied] == [first.id]
    both = await manager.copy("web", to)
    assert both.already_there == [first.id]
    [c2] = both.copied
    assert c2.backup_id == second.id and c2.chunks_present > 0  # a.bin's chunks stayed home
    assert MiB < c2.bytes_sent < 3 * MiB  # about c.bin: nothing sent twice
    again = await manager.copy("web", to)
    assert not again.copied and sorted(again.already_there) == sorted([first.id, second.id])

    target = BackupManager(tmp_path / "target-logs", repository=to, password=manager._password)
    listed = {m.id: m for m in await target.list("web")}
    assert set(listed) == {first.id, second.id}
    assert listed[second.id].status == BackupStatus.COMPLETED
    assert listed[second.id].created_at == second.created_at
    assert listed[second.id].parent_backup_id == second.parent_backup_id
    out = tmp_path / "out"
    await target.restore(
        RestoreRequest(project_id="web", backup_id=second.id, restore_dir=str(out))
    )
    assert tree_snapshot(out) == tree_snapshot(data)
    assert (await target.check("web", read_data=True)).ok


async def test_copy_cut_short_is_finished_by_the_next_copy(manager, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(40):  # three packs
        (data / f"f{i:02}.bin").write_bytes(os.urandom(MiB))
    meta = await manager.create(CreateRequest(project_id="web", data_dir=str(data)))
    to = _target_url(manager, tmp_path)
    target = BackupManager(tmp_path / "target-logs", repository=to, password=manager._password)

    class Cut(Exception):
        pass

    packs_sent: list[str] = []

    def hook(n: int, op: str, name: str) -> None:
        if op == "put_file" and name.startswith("packs/"):
            packs_sent.append(name)
            if len(packs_sent) == 2:
                raise Cut  # the second pack landed, unindexed: the connection is gone

    tapped = BackupManager(manager.root, repository=manager.store.url, password=manager._password)
    real_open = tapped.copy_blocking

    def copy_with_cut(project_id, to_url, ids, ctx):
        import core.manager as m

        opened = m.open_store

        def open_tapped(url, **kw):
            return Tap(opened(url, **kw), hook)

        m.open_store = open_tapped
        try:
            return real_open(project_id, to_url, ids, ctx)
        finally:
            m.open_store = opened

    tapped.copy_blocking = copy_with_cut
    with pytest.raises(Cut):
        await tapped.copy("web", to)
    # nothing completed in the target, and its lock is gone (the failure released it)
    assert all(m.status != BackupStatus.COMPLETED for m in await target.list("web"))
    store = project_store(target, "web")
    # the uploads already under way when the connection went may still have landed
    packs, indexes = object_names(store, "packs/"), object_names(store, "index/")
    assert 2 <= len(packs) <= 2 + UPLOADERS and 1 <= len(indexes) <= len(packs) - 1
    assert not object_names(store, "locks/")

    done = await manager.copy("web", to)
    [copied] = done.copied
    assert copied.chunks_present > 0 and copied.bytes_sent < 30 * MiB  # the indexed pack stayed
    out = tmp_path / "out"
    await target.restore(RestoreRequest(project_id="web", backup_id=meta.id, restore_dir=str(out)))
    assert tree_snapshot(out) == tree_snapshot(data)
    check = await target.check("web", read_data=True)
    assert check.ok, check.errors


async def test_damaged_source_never_completes_in_the_target(manager, tmp_path):
    data = _tree(tmp_path)
    meta = await manager.create(CreateRequest(project_id="web", data_dir=str(data)))
    src = project_store(manager, "web")
    [pack] = object_names(src, "packs/")
    flip_byte(src, pack, MiB)
    to = _target_url(manager, tmp_path)
    with pytest.raises(Damaged):
        await manager.copy("web", to)
    target = BackupManager(tmp_path / "target-logs", repository=to, password=manager._password)
    assert all(m.status != BackupStatus.COMPLETED for m in await target.list("web"))
    assert meta.id  # the source backup itself is untouched
    assert [m.status for m in await manager.list("web")] == [BackupStatus.COMPLETED]


async def test_copy_to_itself_is_refused(manager, tmp_path):
    data = _tree(tmp_path)
    await manager.create(CreateRequest(project_id="web", data_dir=str(data)))
    with pytest.raises(InvalidInput, match="this repository"):
        await manager.copy("web", manager.store.url)


def _nb(root: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkilled_copy_is_resumed_by_the_cli(tmp_path):
    """A real `nexus-backup copy` process killed with SIGKILL once the target holds a pack;
    the same command run again finishes it, and the copy restores byte for byte."""
    root, target = tmp_path / "root", tmp_path / "target"
    data = tmp_path / "data"
    data.mkdir()
    for i in range(64):
        (data / f"f{i:02}.bin").write_bytes(os.urandom(MiB))
    made = _nb(root, "--json", "create", "web", str(data))
    meta = json.loads(made.communicate(timeout=120)[0])
    packs = target / "backups" / "web" / "index"  # a pack landed and is indexed
    proc = _nb(root, "copy", "web", "--to", str(target))
    deadline = time.monotonic() + 60
    while not (packs.is_dir() and any(packs.glob("*/*"))) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    again = _nb(root, "--json", "copy", "web", "--to", str(target))
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    result = json.loads(out)
    if killed:
        assert [c["backup_id"] for c in result["copied"]] == [meta["id"]]
        assert result["copied"][0]["chunks_present"] > 0, "the killed copy's pack was sent again"
    restored = tmp_path / "out"
    r = _nb(
        tmp_path / "other-root", "--repo", str(target), "restore", "web", meta["id"], str(restored)
    )
    assert r.wait(timeout=120) == 0, r.stderr.read()
    assert tree_snapshot(restored) == tree_snapshot(data)


def test_copy_after_each_backup_from_the_cli(tmp_path):
    """`settings PROJECT copy-to REPO`: every new backup is copied there as it completes;
    an unreachable target leaves the backup complete, says so on stderr and exits 3."""
    root, target = tmp_path / "root", tmp_path / "offsite"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}

    def nb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli", "--root", str(root), *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert nb("create", "web", str(data)).returncode == 0
    set_it = nb("settings", "web", "copy-to", str(target))
    assert set_it.returncode == 0 and f"Copy to   {target}" in set_it.stdout, set_it
    made = nb("--json", "create", "web", str(data))
    assert made.returncode == 0, made.stderr
    meta = json.loads(made.stdout)
    twin = BackupManager(tmp_path / "other", repository=str(target))
    import asyncio

    listed = asyncio.run(twin.list("web"))
    assert [m.id for m in listed] == [meta["id"]]
    assert listed[0].status == BackupStatus.COMPLETED

    moved = target.rename(tmp_path / "offsite-away")
    target.write_text("not a repository")  # the off-site disk is not there any more
    failed = nb("create", "web", str(data))
    assert failed.returncode == 3, failed
    assert "warning: copy to" in failed.stderr and "Traceback" not in failed.stderr
    assert target.read_text() == "not a repository" and moved.is_dir()
    assert len(asyncio.run(BackupManager(root).list("web"))) == 3  # the backup itself is there
    off = nb("settings", "web", "copy-to", "off")
    assert off.returncode == 0 and "no copy after each backup" in off.stdout
    bad = nb("settings", "web", "copy-to", "ftp://x")
    assert bad.returncode == 2 and "unknown repository scheme" in bad.stderr
    # a newline would later become a directive of the scheduled unit (design I15)
    injected = nb("settings", "web", "copy-to", f"{target}\nExecStartPost=/bin/sh -c evil")
    assert injected.returncode == 2 and injected.stderr.count("\n") == 1
    assert "control character" in injected.stderr
    assert json.loads(nb("--json", "settings", "web").stdout).get("copy_to") is None  # still off


async def test_two_hosts_changing_settings_at_once_both_land(engine, tmp_path):
    """On every store: one host re-points the data directory while another sets copy-to; the
    compare-and-swap of project.json keeps both."""
    import asyncio

    data = _tree(tmp_path)
    await engine.create(CreateRequest(project_id="web", data_dir=str(data)))
    one = open_repository(engine, "web")
    two = open_repository(reopen_of(engine), "web")
    values = [{f"key{i}": i} for i in range(16)]

    async def set_all(repo, part):
        for v in part:
            await asyncio.to_thread(repo.save_settings, **v)

    await asyncio.gather(set_all(one, values[::2]), set_all(two, values[1::2]))
    settings = one.settings()
    assert all(settings.get(f"key{i}") == i for i in range(16)), settings
    assert settings["data_dir"] == str(data)


async def test_copy_into_or_around_this_repository_is_refused(tmp_path):
    """A target inside the repository (its own project directory) or holding it would mix
    two repositories' objects: refused, nothing written."""
    root = tmp_path / "root"
    mgr = BackupManager(root)
    data = _tree(tmp_path)
    await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for to in (root / "backups" / "web", root / "backups", tmp_path):
        with pytest.raises(InvalidInput, match="this repository"):
            await mgr.copy("web", str(to))
        with pytest.raises(InvalidInput, match="this repository"):
            await mgr.set_copy_to("web", str(to))
    after = sorted(p.relative_to(root) for p in root.rglob("*") if "logs" not in p.parts)
    assert after == [p for p in before if "logs" not in p.parts]
