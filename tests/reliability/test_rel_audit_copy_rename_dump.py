"""Audit of `copy`, `rename-project` and `dump` through the real CLI (one process per command,
as a user runs it) and real concurrent processes: a copy's target whose project directory is
another directory of this repository by a bind mount, a rename racing another process that
makes a directory at the new name, a dump whose stdout is a file of the repository or closed.

Every test checks what a user would: the exit code, one clear error line, and that nothing
of the repository changed or was mixed with another project's objects."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rel_harness import bind_mount

EXE = [sys.executable, "-m", "cli"]


def cli(root: Path, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """`nexus-backup --root ROOT args` in a real process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    return subprocess.run(
        [*EXE, "--root", str(root), *args],
        capture_output="stdout" not in kw,
        stderr=subprocess.PIPE if "stdout" in kw else None,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


def one_clear_line(r: subprocess.CompletedProcess) -> bool:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return (
        len(lines) == 1
        and "Traceback" not in r.stderr
        and "internal error" not in r.stderr
        and lines[0].startswith("nexus-backup: ")
    )


def files_of(top: Path) -> dict[str, str]:
    """Every file under `top` (logs aside) by relative path: the BLAKE2 of its bytes."""
    out = {}
    for dirpath, _dirs, names in os.walk(top):
        for n in names:
            full = Path(dirpath) / n
            rel = str(full.relative_to(top))
            if not rel.startswith("logs/"):
                out[rel] = hashlib.blake2b(full.read_bytes()).hexdigest()
    return out


@pytest.fixture
def two_projects(tmp_path: Path) -> Path:
    """A root with projects `web` (two backups) and `other` (one), of different data."""
    root = tmp_path / "root"
    for name in ("web", "other"):
        d = tmp_path / f"data-{name}"
        d.mkdir()
        (d / "f.bin").write_bytes(os.urandom(200_000))
        r = cli(root, "create", name, str(d))
        assert r.returncode == 0, r.stderr
    assert cli(root, "create", "web", str(tmp_path / "data-web")).returncode == 0
    return root


def _ids(root: Path, project: str, *repo: str) -> list[str]:
    r = cli(root, *repo, "--json", "list", project)
    assert r.returncode == 0, r.stderr
    return sorted(b["id"] for b in json.loads(r.stdout))


# --- copy: the target's project directory is a directory of this repository (I7) -----------


@pytest.mark.parametrize("into", ["other", "web"])
def test_a_copy_whose_target_project_is_bind_mounted_from_this_repository_is_refused(
    two_projects: Path, tmp_path: Path, into: str
):
    """`copy web --to T` where T/backups/web is a bind mount of this repository's project
    `other` (or of `web` itself). The check looked at T alone: the copy wrote web's backups
    into `other` ("2 backups copied", `other` then listed three backups, two of them web's),
    or said "already in the target" of the very backups it was asked to copy off-site."""
    root = two_projects
    before = files_of(root)
    target = tmp_path / "offsite"
    with bind_mount(root / "backups" / into, target / "backups" / "web"):
        r = cli(root, "copy", "web", "--to", str(target))
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert one_clear_line(r) and "this repository" in r.stderr, r.stderr
        r = cli(root, "settings", "web", "copy-to", str(target))
        assert r.returncode == 2 and one_clear_line(r), r.stderr
    assert files_of(root) == before
    assert len(_ids(root, "other")) == 1 and len(_ids(root, "web")) == 2


def test_a_copy_whose_target_backups_directory_is_bind_mounted_from_this_one_is_refused(
    two_projects: Path, tmp_path: Path
):
    """T/backups a bind mount of this repository's `backups/`: T's project `web` is ours."""
    root = two_projects
    before = files_of(root)
    target = tmp_path / "offsite"
    with bind_mount(root / "backups", target / "backups"):
        r = cli(root, "copy", "web", "--to", str(target))
        assert r.returncode == 2 and one_clear_line(r) and "this repository" in r.stderr, r
    assert files_of(root) == before


def test_a_copy_into_a_project_of_another_repository_keeps_its_backups(
    two_projects: Path, tmp_path: Path
):
    """The target already holds a project `web` of its own (another host's): the copy adds
    to it, and every backup it had stays, byte for byte; a symlink to this root is refused."""
    root, target = two_projects, tmp_path / "offsite"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "t.txt").write_text("theirs\n")
    r = cli(tmp_path / "host2", "--repo", str(target), "create", "web", str(theirs))
    assert r.returncode == 0, r.stderr
    own = _ids(tmp_path / "host2", "web", "--repo", str(target))
    kept = {k: v for k, v in files_of(target).items() if any(i in k for i in own)}
    r = cli(root, "copy", "web", "--to", str(target))
    assert r.returncode == 0, r.stderr
    after = files_of(target)
    assert {k: after[k] for k in kept} == kept
    listed = _ids(tmp_path / "host2", "web", "--repo", str(target))
    assert listed == sorted([*own, *_ids(root, "web")])
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    r = cli(root, "copy", "web", "--to", str(alias))
    assert r.returncode == 2 and one_clear_line(r) and "this repository" in r.stderr


# --- dump: its stdout is a file of the repository, or closed (I3) ----------------------------


def _dump_into(root: Path, path: Path, cmd: str, args: tuple[str, ...], *, append: bool):
    with open(path, "ab" if append else "wb") as f:
        return cli(root, cmd, "web", "latest", *args, stdout=f)


@pytest.mark.parametrize("cmd", ["dump", "cat"])
def test_dump_and_cat_never_write_into_the_repository_they_read(
    two_projects: Path, tmp_path: Path, cmd: str
):
    """`dump web latest >> backups/web/config.json` appended the tar stream to the project's
    config: the project could no longer be opened ("no backup of it can be restored or made
    until its config.json is put back"), exit 0. `> backups/web/index/out.tar` planted a
    damaged index file (check: DAMAGED). Each is now refused before anything is written,
    and so is a link to such a file, a bind mount of the project, another repository's
    project (the copy's) and the logs; a file elsewhere is written as before."""
    root = two_projects
    project = root / "backups" / "web"
    args = ("f.bin",) if cmd == "cat" else ()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "link").symlink_to(project / "config.json")
    targets = [
        (project / "config.json", True),
        (project / "index" / "out.tar", False),
        (root / "backups" / "other" / "config.json", True),
        (elsewhere / "link", True),
        (tmp_path / "offsite" / "backups" / "web" / "config.json", True),  # a copy's
    ]
    assert cli(root, "copy", "web", "--to", str(tmp_path / "offsite")).returncode == 0
    before = files_of(root)
    offsite = files_of(tmp_path / "offsite")
    for path, append in targets:
        r = _dump_into(root, path, cmd, args, append=append)
        assert r.returncode == 2 and one_clear_line(r), (path, r.stderr)
        assert "inside a nexus-backup repository" in r.stderr
        (project / "index" / "out.tar").unlink(missing_ok=True)  # the shell made it
    assert files_of(root) == before and files_of(tmp_path / "offsite") == offsite
    with bind_mount(project, tmp_path / "mnt"):
        r = _dump_into(root, tmp_path / "mnt" / "config.json", cmd, args, append=True)
        assert r.returncode == 2 and one_clear_line(r), r.stderr
    assert files_of(root) == before
    assert cli(root, "check", "web").returncode == 0
    r = _dump_into(root, elsewhere / "out", cmd, args, append=False)
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "out").stat().st_size > 100_000


def test_dump_with_stdout_closed_says_so_in_one_line(two_projects: Path):
    """`dump web latest >&-` was "internal error: AttributeError: 'NoneType' object has no
    attribute 'fileno'"."""
    r = cli(two_projects, "dump", "web", "latest", stdout=subprocess.DEVNULL, close_fds=True)
    assert r.returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    r = subprocess.run(
        [
            "/bin/sh",
            "-c",
            'exec "$@" >&-',
            "sh",
            *EXE,
            "--root",
            str(two_projects),
            "dump",
            "web",
            "latest",
        ],
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and one_clear_line(r) and "stdout" in r.stderr, r.stderr


# --- rename-project: the new name taken by another process meanwhile (I11) ------------------

STRANGER = r"""
import os, sys, time
path, until = sys.argv[1], time.monotonic() + float(sys.argv[2])
made = replaced = 0
while time.monotonic() < until:
    try:
        os.mkdir(path)  # as `create new` makes its project's directory, then writes in it
    except FileExistsError:
        continue
    made += 1
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    mine = os.fstat(fd)
    try:
        now = os.stat(path)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            replaced += 1  # a rename put another directory over ours
        else:
            os.rmdir(path)
    except OSError:  # gone (renamed over, then away) or not empty (the project is there)
        replaced += 1
    os.close(fd)
print(made, replaced)
"""


def test_a_rename_never_replaces_a_directory_another_process_makes_at_the_new_name(
    tmp_path: Path,
):
    """Another process makes `backups/new` over and over (an empty directory, as `create
    new` does before its config) while this one renames a project `old` to `new` and back.
    The check that `new` is free came before rename(2), which replaces an empty directory
    silently: hundreds of the other process's directories per second were renamed over, and
    that process then wrote into the renamed project. renameat2(RENAME_NOREPLACE) fails
    instead, so no rename ever lands on a directory that is there."""
    from core.storage.local import LocalStore

    backups = tmp_path / "backups"
    (backups / "old").mkdir(parents=True)
    (backups / "old" / "config.json").write_text("{}")
    store = LocalStore(backups)
    stranger = subprocess.Popen(
        [sys.executable, "-c", STRANGER, str(backups / "new"), "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    here, renamed = "old", 0
    while stranger.poll() is None:
        there = "new" if here == "old" else "old"
        try:
            store.rename_child(here, there)
        except FileExistsError:
            continue
        here, renamed = there, renamed + 1
    made, replaced = map(int, stranger.communicate()[0].split())
    assert made > 100 and renamed > 100, (made, renamed)  # the two did race
    assert replaced == 0, f"{replaced} of {made} directories made at the new name were replaced"
    assert (backups / here / "config.json").read_text() == "{}"


@pytest.mark.parametrize("to", ["", "file://", "file:", "file:offsite"])
def test_a_copy_target_that_names_no_directory_is_refused(
    two_projects: Path, tmp_path: Path, to: str
):
    """`copy web --to file://` copied both backups into the current directory ("2 backups
    copied to ."), and `--to ""` said "that is this repository" (it fell back to the
    repository or NEXUS_BACKUP_REPOSITORY). Both name no place: one line, exit 2, nothing
    written where the command ran."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = cli(two_projects, "copy", "web", "--to", to, cwd=cwd)
    assert r.returncode == 2 and one_clear_line(r), r.stderr
    assert "this repository" not in r.stderr
    assert not list(cwd.iterdir())


# --- a project being deleted is never written into (I11) ------------------------------------


def test_a_copy_into_a_target_project_being_deleted_is_refused(two_projects: Path, tmp_path: Path):
    """The target's `web` was being deleted there (`delete-project` killed after its
    `project-deleting` marker, before config.json went): the copy said "copied and
    verified", exit 0, into a project no listing shows, that the next delete-project there
    removes whole. Now one line naming the target, and nothing written into it."""
    root, target = two_projects, tmp_path / "offsite"
    first = _ids(root, "web")[0]
    assert cli(root, "copy", "web", first, "--to", str(target)).returncode == 0
    theirs = target / "backups" / "web"
    (theirs / "project-deleting").write_bytes(b"")
    before = files_of(theirs)
    r = cli(root, "copy", "web", "--to", str(target))
    assert r.returncode != 0 and one_clear_line(r), (r.stdout, r.stderr)
    assert "being deleted" in r.stderr and str(target) in r.stderr
    assert files_of(theirs) == before


HOLD_THEN_DIE = r"""
import sys, time
from core.manager import BackupManager
from core.manage import projects
from core.repo import locks
store = projects.project_store(BackupManager(sys.argv[1]).store, sys.argv[2])
lock = locks.acquire(store, exclusive=True, operation="delete-project", timeout=5)
print("held", flush=True)
sys.stdin.readline()
store.put(projects.DELETING, b"")  # as delete-project does first, then it is killed
print("marked", flush=True)
time.sleep(600)
"""


def test_a_backup_waiting_for_a_delete_project_killed_after_its_marker_writes_nothing(
    two_projects: Path, tmp_path: Path
):
    """A `create web` waits for the project's lock, held by a delete-project that is then
    SIGKILLed after writing `project-deleting` (config.json still there). The waiter took
    the lock and backed up into the project every listing hides and the next delete-project
    removes: "Created full backup", exit 0. Now it stops with one line, writing nothing."""
    root = two_projects
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THEN_DIE, str(root), "web"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
        waiter = subprocess.Popen(
            [*EXE, "--root", str(root), "create", "web", str(tmp_path / "data-web")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 30
        locks_dir = root / "backups" / "web" / "locks"
        while len(list(locks_dir.glob("*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # the waiter has tried the lock (its own shared one comes and goes)
        time.sleep(0.3)
        before = files_of(root / "backups" / "web")
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "marked"
        before["project-deleting"] = files_of(root / "backups" / "web")["project-deleting"]
        holder.kill()
        holder.wait()
        out, err = waiter.communicate(timeout=60)
    finally:
        holder.kill()
    r = subprocess.CompletedProcess(waiter.args, waiter.returncode, out, err)
    assert r.returncode != 0 and one_clear_line(r), (out, err)
    assert "being deleted" in err
    after = {k: v for k, v in files_of(root / "backups" / "web").items() if "locks/" not in k}
    assert after == {k: v for k, v in before.items() if "locks/" not in k}


# --- attacks that found nothing: kept as cheap tests ---------------------------------------


async def test_a_rename_onto_a_link_or_from_a_linked_project_is_refused(tmp_path: Path):
    """The new name a dangling symlink, or the project itself a symlink to a directory
    elsewhere: refused with one clear error, the links and what they point at untouched."""
    from core.errors import Conflict, NexusError
    from core.manager import BackupManager
    from core.models import CreateRequest

    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    mgr = BackupManager(root)
    await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    backups = root / "backups"
    (backups / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(Conflict, match="already exists"):
        await mgr.rename_project("web", "dangling")
    assert not (tmp_path / "nowhere").exists()
    elsewhere = tmp_path / "elsewhere"
    (backups / "web").rename(elsewhere)
    (backups / "web").symlink_to(elsewhere)
    before = files_of(elsewhere)
    with pytest.raises(NexusError, match="symbolic link"):
        await BackupManager(root).rename_project("web", "site")
    assert (backups / "web").is_symlink() and not (backups / "site").exists()
    assert files_of(elsewhere) == before


async def test_a_copy_from_a_source_with_a_lost_index_file_never_completes(tmp_path: Path):
    """The source's index file moved away: the copy fails with one line naming the chunk,
    and the target holds no completed backup (the next copy, index back, completes it)."""
    from core.errors import NexusError
    from core.manager import BackupManager
    from core.models import BackupStatus, CreateRequest

    root, data, target = tmp_path / "root", tmp_path / "data", tmp_path / "offsite"
    data.mkdir()
    (data / "f").write_bytes(os.urandom(50_000))
    mgr = BackupManager(root)
    made = await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    [index] = (root / "backups" / "web" / "index").iterdir()
    away = index.rename(tmp_path / "index-away")
    with pytest.raises(NexusError, match="missing from the index"):
        await BackupManager(root).copy("web", str(target))
    twin = BackupManager(tmp_path / "other", repository=str(target))
    assert all(m.status != BackupStatus.COMPLETED for m in await twin.list("web"))
    away.rename(index)
    done = await BackupManager(root).copy("web", str(target))
    assert [c.backup_id for c in done.copied] == [made.id]
    assert (await BackupManager(tmp_path / "o2", repository=str(target)).check("web")).ok


async def test_dump_paths_that_name_nothing_inside_the_backup_write_nothing(tmp_path: Path):
    """`..`, `.` and a name with a newline: refused or not found, not a byte written; a
    leading or trailing slash names the same file; names with newlines and bytes that are
    not UTF-8 come out exactly."""
    import io
    import tarfile

    from core.errors import NexusError
    from core.manager import BackupManager
    from core.models import CreateRequest

    root, data = tmp_path / "root", tmp_path / "data"
    (data / "d\nir").mkdir(parents=True)
    (data / "d\nir" / "new\nline").write_text("x")
    (data / os.fsdecode(b"\xff\xfebin")).write_text("y")
    mgr = BackupManager(root)
    made = await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    for bad in ("../d\nir", "./d\nir", "d\nir/..", "a\nb", "d\nir/new\nline/x"):
        buf = io.BytesIO()
        with pytest.raises((NexusError, ValueError)):
            mgr.dump_blocking("web", made.id, bad, buf)
        assert buf.getvalue() == b"", bad
    for same in ("/d\nir/new\nline", "d\nir/new\nline/", "d\nir//new\nline"):
        buf = io.BytesIO()
        mgr.dump_blocking("web", made.id, same, buf)
        buf.seek(0)
        with tarfile.open(fileobj=buf) as tar:
            assert tar.getnames() == ["new\nline"], same
    buf = io.BytesIO()
    mgr.dump_blocking("web", made.id, "", buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf, encoding="utf-8") as tar:
        names = {os.fsencode(n) for n in tar.getnames()}
    assert names == {b"d\nir", b"d\nir/new\nline", b"\xff\xfebin"}


async def test_a_copy_that_fails_says_why_in_the_target_not_interrupted(tmp_path: Path):
    """The target's own pack of the chunks it already holds truncated: the copy sends
    nothing for them, its verify fails, and it says so (exit 4). The target then listed the
    backup as "failed (interrupted: the process running it stopped)", its RUNNING metadata
    left as a kill leaves it, with the manifest: now FAILED with the copy's reason, the
    manifest removed, as a backup that fails is (design §2)."""
    from core.errors import Damaged
    from core.manager import BackupManager
    from core.models import BackupStatus, CreateRequest

    root, data, target = tmp_path / "root", tmp_path / "data", tmp_path / "offsite"
    data.mkdir()
    (data / "f").write_bytes(os.urandom(300_000))
    mgr = BackupManager(root)
    first = await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    await mgr.copy("web", str(target))
    (data / "g").write_text("more\n")
    second = await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    [pack] = [p for p in (target / "backups" / "web" / "packs").rglob("*") if p.is_file()]
    os.truncate(pack, 1000)
    with pytest.raises(Damaged, match="does not verify"):
        await mgr.copy("web", str(target), [second.id])
    twin = BackupManager(tmp_path / "other", repository=str(target))
    listed = {m.id: m for m in await twin.list("web")}
    assert listed[second.id].status == BackupStatus.FAILED
    assert "does not verify" in (listed[second.id].error_message or "")
    assert not (target / "backups" / "web" / f"backup_{second.id}" / "data").exists() or not any(
        (target / "backups" / "web" / f"backup_{second.id}" / "data").iterdir()
    )
    assert listed[first.id].status == BackupStatus.COMPLETED  # the one copied before stays
