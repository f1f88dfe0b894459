"""Deleting a whole project (invariant I11): everything of that project goes, nothing of
another, and every state that might make it delete the wrong thing is refused first: a
changed backup count, a protected backup, a newer format, a directory that is not a
project, an encrypted project not unlocked, a busy project, a symlink put in its place; a
delete cut short is finished by the next one, and an operation that waited for the lock
does not bring the project back as a directory of orphans."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import fast_kdf

from core import manager as manager_module
from core.errors import Busy, Conflict, Damaged, NexusError, NotFound, WrongPassword
from core.manage import projects
from core.manager import BackupManager
from core.models import CreateRequest
from core.repo import locks
from core.repo.repository import NewerFormat


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


async def _two(mgr: BackupManager, data_dir: Path) -> None:
    for project in ("doomed", "kept"):
        for _ in range(2):
            await mgr.create(CreateRequest(project_id=project, data_dir=str(data_dir)))


async def test_everything_of_the_project_goes_and_nothing_else(engine, data_dir: Path):
    await _two(engine, data_dir)
    kept = [m.id for m in await engine.list("kept")]
    res = await engine.delete_project("doomed", backups=2)
    assert res.backups_deleted == 2 and res.objects_deleted > 0 and not res.resumed
    assert await engine.project_ids() == ["kept"]
    with pytest.raises(NotFound):
        await engine.list("doomed")
    assert [m.id for m in await engine.list("kept")] == kept
    assert (await engine.verify("kept", kept[0])).ok
    # the name is free again: a new project under it starts empty
    await engine.create_project("doomed", str(data_dir))
    assert await engine.list("doomed") == []


async def test_local_delete_leaves_no_directory_and_keeps_the_logs(root: Path, data_dir: Path):
    mgr = BackupManager(root)
    await _two(mgr, data_dir)
    other = _files(root / "backups" / "kept")
    await mgr.delete_project("doomed")
    assert not (root / "backups" / "doomed").exists()
    assert _files(root / "backups" / "kept") == other
    logs = list((root / "logs").glob("doomed_*.log"))
    assert logs and "project deleted" in logs[0].read_text()


def _objects(mgr: BackupManager, project: str) -> dict[str, bytes]:
    """Every object of a project, byte for byte, whatever the store (its locks aside)."""
    store = projects.project_store(mgr.store, project)
    return {o.name: store.get(o.name) for o in store.list() if not o.name.startswith("locks/")}


async def _with_garbage_metadata(mgr: BackupManager, data_dir: Path) -> str:
    """doomed (two backups and a third whose metadata.json is garbage), kept, and doomed-2,
    whose name starts with doomed's (a delete by prefix would reach it)."""
    await _two(mgr, data_dir)
    await mgr.create(CreateRequest(project_id="doomed-2", data_dir=str(data_dir)))
    third = await mgr.create(CreateRequest(project_id="doomed", data_dir=str(data_dir)))
    store = projects.project_store(mgr.store, "doomed")
    store.put(f"backup_{third.id}/metadata.json", b"\x00garbage{")
    return third.id


async def test_a_backup_with_damaged_metadata_is_counted_apart_and_nothing_else_goes(
    engine, data_dir: Path
):
    """The count the person is shown (what `projects` lists) is the one checked; the backup
    whose metadata is garbage goes too and is reported apart; the other projects, one of
    them named with doomed's name as a prefix, keep every byte."""
    await _with_garbage_metadata(engine, data_dir)
    (shown,) = await engine.projects(only=["doomed"])
    assert shown.backups == 2
    others = {p: _objects(engine, p) for p in ("kept", "doomed-2")}
    with pytest.raises(Conflict, match="now has 2 backups, not 3"):
        await engine.delete_project("doomed", backups=3)  # not the count shown: refused
    res = await engine.delete_project("doomed", backups=shown.backups)
    assert (res.backups_deleted, res.unlisted_deleted) == (2, 1)
    assert res.backups_text().startswith("2 backups and 1 no list showed (metadata damaged")
    assert await engine.project_ids() == ["doomed-2", "kept"]
    assert not list(projects.project_store(engine.store, "doomed").list())
    assert {p: _objects(engine, p) for p in others} == others
    for project in others:
        for meta in await engine.list(project):
            assert (await engine.verify(project, meta.id)).ok


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_cli_deletes_a_project_with_damaged_metadata_and_says_so(
    tmp_path: Path, data_dir: Path, where: str, request: pytest.FixtureRequest
):
    """`delete-project --yes` in a real process: exit 0, one line naming both counts."""
    root = tmp_path / "r"
    repo = request.getfixturevalue("s3_url") if where == "s3" else None
    mgr = BackupManager(root, repository=repo)
    asyncio.run(_with_garbage_metadata(mgr, data_dir))
    others = {p: _objects(mgr, p) for p in ("kept", "doomed-2")}
    args = ["--root", str(root), *(["--repo", repo] if repo else []), "delete-project", "doomed"]
    r = subprocess.run(
        [sys.executable, "-m", "cli", *args, "--yes"], capture_output=True, text=True
    )
    assert r.returncode == 0 and r.stderr == "", (r.returncode, r.stdout, r.stderr)
    assert r.stdout.startswith("Deleted project doomed: 2 backups and 1 no list showed"), r.stdout
    assert asyncio.run(BackupManager(root, repository=repo).project_ids()) == ["doomed-2", "kept"]
    assert {p: _objects(mgr, p) for p in others} == others


def test_every_name_the_layout_defines_is_ours():
    for name in (
        "config.json",
        "project.json",
        "policy.json",
        "last_run.json",
        "packs/ab/ab12",
        "index/ff00",
        "keys/k1",
        "locks/h-1-abcd.json",
        "run-locks/h-1-abcd.json",
        "deleting/20300101-000000-abcd12",
        "backup_20300101-000000-abcd12/metadata.json",
        "backup_x/data/manifest",
    ):
        assert projects.ours(name, 1), name
    for name in ("NOTES.txt", "photos/cat.jpg", "packs", "a/b/c/d", "Config.JSON"):
        assert not projects.ours(name, 1), name
    # an empty object named as a directory of the layout is a folder marker (S3), not data
    for name in ("packs", "index", "keys", "locks", "backup_20300101-000000-abcd12"):
        assert projects.ours(name, 0) and not projects.ours(name, 3), name
    for name in ("NOTES.txt", "photos", "backups", "packs/ab/cd/ef"):
        assert not projects.ours(name, 0), name


async def test_files_that_are_not_nexus_backups_are_left_and_said(root: Path, data_dir: Path):
    mgr = BackupManager(root)
    await _two(mgr, data_dir)
    place = root / "backups" / "doomed"
    (place / "NOTES.txt").write_text("the operator's")
    (place / "photos").mkdir()
    (place / "photos" / "cat.jpg").write_bytes(b"meow")
    res = await mgr.delete_project("doomed")
    assert sorted(res.kept) == ["NOTES.txt", "photos/cat.jpg"]
    assert _files(place) == {"NOTES.txt": b"the operator's", "photos/cat.jpg": b"meow"}
    assert await mgr.project_ids() == ["kept"]


async def test_refusals_delete_nothing(root: Path, data_dir: Path, monkeypatch):
    mgr = BackupManager(root)
    await _two(mgr, data_dir)
    before = _files(root / "backups")
    ids = [m.id for m in await mgr.list("doomed")]
    with pytest.raises(Conflict, match="now has 2 backups, not 1"):
        await mgr.delete_project("doomed", backups=1)  # one made since the count was shown
    await mgr.protect("doomed", ids[0])
    protected = _files(root / "backups")
    with pytest.raises(Conflict, match="protected"):
        await mgr.delete_project("doomed")
    assert _files(root / "backups") == protected
    await mgr.unprotect("doomed", ids[0])
    # busy: another process's operation holds the project
    monkeypatch.setattr(manager_module, "LOCK_TIMEOUT", 0.2)
    store = projects.project_store(mgr.store, "doomed")
    with (
        locks.acquire(store, exclusive=False, operation="restore", timeout=1),
        pytest.raises(Busy),
    ):
        await mgr.delete_project("doomed")
    assert {k: v for k, v in _files(root / "backups").items() if "locks" not in k} == {
        k: v for k, v in before.items() if "locks" not in k
    }
    with pytest.raises(NotFound):
        await mgr.delete_project("never-was")


async def test_a_newer_format_and_a_directory_that_is_not_a_project_are_refused(
    root: Path, data_dir: Path
):
    mgr = BackupManager(root)
    await _two(mgr, data_dir)
    config = root / "backups" / "doomed" / "config.json"
    raw = json.loads(config.read_text())
    raw["version"] = 99  # a format from the future
    config.write_text(json.dumps(raw))
    before = _files(root / "backups")
    with pytest.raises(NewerFormat):
        await BackupManager(root).delete_project("doomed")
    stranger = root / "backups" / "stranger"
    stranger.mkdir()
    (stranger / "thesis.tex").write_text("years of work")
    with pytest.raises(Damaged):
        await BackupManager(root).delete_project("stranger")
    assert (stranger / "thesis.tex").read_text() == "years of work"
    config.unlink()  # a project whose config is lost is damaged, not deletable blind
    with pytest.raises(Damaged):
        await BackupManager(root).delete_project("doomed")
    del before["doomed/config.json"]
    assert {k: v for k, v in _files(root / "backups").items() if k != "stranger/thesis.tex"} == {
        k: v for k, v in before.items()
    }


async def test_a_symlink_in_the_projects_place_deletes_nothing_it_points_to(
    root: Path, data_dir: Path, tmp_path: Path
):
    mgr = BackupManager(root)
    await _two(mgr, data_dir)
    victim = tmp_path / "victim"
    victim.mkdir()
    # what the symlink points to looks like a project: a copy of a real one's config
    (victim / "config.json").write_bytes((root / "backups" / "kept" / "config.json").read_bytes())
    (victim / "precious.txt").write_text("not a backup")
    before = _files(victim)
    os.symlink(victim, root / "backups" / "evil")
    with contextlib.suppress(NexusError):
        await BackupManager(root).delete_project("evil")
    assert _files(victim) == before  # its config.json too: nothing is deleted through a link
    assert sorted(os.listdir(victim)) == ["config.json", "precious.txt"]  # nor written


async def test_an_encrypted_project_is_deleted_only_once_unlocked(
    root: Path, data_dir: Path, monkeypatch
):
    fast_kdf(monkeypatch)
    owner = BackupManager(root, password=lambda _p: "secret", encrypt=True)
    await owner.create(CreateRequest(project_id="sealed", data_dir=str(data_dir)))
    before = _files(root / "backups" / "sealed")
    with pytest.raises(WrongPassword):
        await BackupManager(root).delete_project("sealed")
    assert _files(root / "backups" / "sealed") == before
    await owner.delete_project("sealed")
    assert not (root / "backups" / "sealed").exists()


async def test_a_delete_cut_short_is_finished_and_blocks_a_new_project_meanwhile(
    root: Path, data_dir: Path
):
    """What SIGKILL leaves between the marker and the last object."""
    mgr = BackupManager(root)
    await _two(mgr, data_dir)
    store = projects.project_store(mgr.store, "doomed")
    store.put(projects.DELETING, b"")
    store.delete("config.json")
    for obj in list(store.list("packs/"))[:1]:
        store.delete(obj.name)
    fresh = BackupManager(root)
    assert await fresh.project_ids() == ["kept"]
    with pytest.raises(Conflict, match="being deleted"):
        await fresh.create(CreateRequest(project_id="doomed", data_dir=str(data_dir)))
    res = await fresh.delete_project("doomed")
    assert res.resumed
    assert not (root / "backups" / "doomed").exists()
    await fresh.create(CreateRequest(project_id="doomed", data_dir=str(data_dir)))


async def test_an_operation_that_waited_does_not_bring_the_project_back(root: Path, data_dir: Path):
    """A manager that opened the project before another deleted it writes nothing into it."""
    early = BackupManager(root)
    await _two(early, data_dir)
    await BackupManager(root).delete_project("doomed")
    with pytest.raises(NotFound):
        await early.create(CreateRequest(project_id="doomed", data_dir=str(data_dir)))
    left = root / "backups" / "doomed"
    assert not left.exists() or not [p for p in left.rglob("*") if p.is_file()]
    assert await BackupManager(root).project_ids() == ["kept"]


def test_sigkill_during_a_delete_then_a_second_delete_finishes(tmp_path: Path, data_dir: Path):
    """A real process killed while it deletes: the project is gone from listings at once,
    and the next delete removes the rest; the other project is untouched."""
    root = tmp_path / "r"
    env = {**os.environ, "NEXUS_BACKUP_ROOT": str(root)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True
        )

    big = tmp_path / "big"
    big.mkdir()
    for i in range(300):
        (big / f"f{i}").write_bytes(os.urandom(2048) * (i % 5 + 1))
    assert cli("create", "doomed", str(big)).returncode == 0
    assert cli("create", "kept", str(data_dir)).returncode == 0
    kept = _files(root / "backups" / "kept")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "delete-project", "doomed", "--yes"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = root / "backups" / "doomed" / projects.DELETING
    while proc.poll() is None and not marker.exists():
        pass
    proc.kill()
    proc.wait()
    listed = cli("projects", "--json")
    assert [p["project_id"] for p in json.loads(listed.stdout)] == ["kept"]
    again = cli("delete-project", "doomed", "--yes")
    assert again.returncode in (0, 1), again.stderr  # 1: the first had finished after all
    assert not (root / "backups" / "doomed").exists()
    assert {k: v for k, v in _files(root / "backups" / "kept").items() if "locks" not in k} == {
        k: v for k, v in kept.items() if "locks" not in k
    }


def test_the_cli_refuses_without_yes_off_a_terminal(tmp_path: Path, data_dir: Path):
    root = tmp_path / "r"
    env = {**os.environ, "NEXUS_BACKUP_ROOT": str(root)}
    run = [sys.executable, "-m", "cli"]
    assert subprocess.run([*run, "create", "web", str(data_dir)], env=env).returncode == 0
    res = subprocess.run(
        [*run, "delete-project", "web"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2
    assert "without --yes" in res.stderr and "1 backup" in res.stderr
    assert "Traceback" not in res.stderr
    assert (root / "backups" / "web" / "config.json").exists()
    unknown = subprocess.run(
        [*run, "delete-project", "nope", "--yes"], env=env, capture_output=True, text=True
    )
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr


def test_a_delete_killed_between_unlinks_and_rmdirs_is_finished_whole(
    tmp_path: Path, data_dir: Path
):
    """A delete killed after it unlinked a backup's objects and before it removed their
    directories leaves empty directories and its marker: the next delete removes them and
    the project's directory, and reports no stranger (a symlink a stranger left stays)."""
    root = tmp_path / "r"
    env = {**os.environ, "NEXUS_BACKUP_ROOT": str(root)}
    run = [sys.executable, "-m", "cli"]
    assert subprocess.run([*run, "create", "doomed", str(data_dir)], env=env).returncode == 0
    project = root / "backups" / "doomed"
    (project / projects.DELETING).write_bytes(b"")
    for f in [p for p in project.rglob("*") if p.is_file() and p.name != projects.DELETING]:
        f.unlink()  # every object gone, the directories that held them left
    assert any(p.is_dir() for p in project.rglob("*"))
    again = subprocess.run(
        [*run, "--json", "delete-project", "doomed", "--yes"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["kept"] == []
    assert not project.exists()
