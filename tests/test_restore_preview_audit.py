"""Audit of the previews (invariants 5 and 9) against what then happens: what the restore's
plan calls a creation never replaces what appeared at that name since (while the checkpoint
was taken), a directory that exists is never changed beyond what the preview counted, the
CLI's totals say what is overwritten past the list's cap, and `forget --dry-run` names every
backup `forget` then deletes.

Each test checks what a user would: the bytes and modes of the target, the backups listed."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from metrics_helpers import nb as cli_process
from restore_helpers import run_restorer

from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops import restore_anon

P = "pa"
REPO = Path(__file__).resolve().parent.parent


async def _backup(mgr: BackupManager, src: Path):
    return await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))


def _req(backup_id: str, target: Path, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id=P, backup_id=backup_id, restore_dir=str(target), **kw)


# --- a creation never replaces what appeared after the plan --------------------------------


@pytest.mark.parametrize("anon", [True, False], ids=["nameless-inode", "temp-name"])
@pytest.mark.parametrize("kind", ["file", "symlink"])
async def test_a_name_taken_after_the_plan_is_never_replaced_by_a_creation(
    tmp_path, monkeypatch, anon, kind
):
    """The plan says `new` is created (nothing was there) and `a.txt` overwritten, so a
    checkpoint is taken first; while it is taken, the user's program writes `new`. That file
    is in no checkpoint: the restore must leave it (and say so), not replace it while its
    figures still say "created"."""
    if anon and not restore_anon.supported():
        pytest.skip("no nameless files here")
    monkeypatch.setattr(restore_anon, "supported", lambda: anon)
    root = tmp_path / "root"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"backup a")
    if kind == "file":
        (src / "new").write_bytes(b"backup new")
    else:
        os.symlink("a.txt", src / "new")
    meta = await _backup(BackupManager(root), src)
    target = tmp_path / "target"
    target.mkdir()
    (target / "a.txt").write_bytes(b"user a, differs")
    taken: list[bool] = []

    def checkpoint(_target: Path, _fd: int) -> str | None:
        (target / "new").write_bytes(b"user data written meanwhile")
        taken.append(True)
        return None

    res = run_restorer(root, P, meta.id, target, checkpoint=checkpoint)
    assert taken, "the plan overwrote something: a checkpoint was due"
    assert res.counts.files_overwrite == 1
    assert (target / "a.txt").read_bytes() == b"backup a"
    assert not (target / "new").is_symlink()
    assert (target / "new").read_bytes() == b"user data written meanwhile"
    assert any("new" in w for w in res.warnings), res.warnings
    assert sorted(os.listdir(target)) == ["a.txt", "new"], "a temp file was left"


# --- an existing directory is changed only as the preview says -----------------------------


async def _dir_mode_case(tmp_path: Path) -> tuple[Path, str, Path]:
    """A backup whose directory `private` was 0755; the target holds it as 0700 with the same
    file inside (its bytes, mode and times match)."""
    root = tmp_path / "root"
    src = tmp_path / "src"
    (src / "private").mkdir(parents=True)
    (src / "private" / "k").write_bytes(b"key")
    os.chmod(src / "private", 0o755)
    meta = await _backup(BackupManager(root), src)
    target = tmp_path / "target"
    (target / "private").mkdir(parents=True)
    (target / "private" / "k").write_bytes(b"key")
    st = os.stat(src / "private" / "k")
    os.chmod(target / "private" / "k", stat.S_IMODE(st.st_mode))
    os.utime(target / "private" / "k", ns=(st.st_mtime_ns, st.st_mtime_ns))
    os.chmod(target / "private", 0o700)
    return root, meta.id, target


async def test_overwrite_never_leaves_an_existing_directorys_mode_alone(tmp_path):
    """`--overwrite never` keeps what exists: a directory the user made private is not made
    readable by everyone again, while the preview says nothing changes."""
    root, backup_id, target = await _dir_mode_case(tmp_path)
    mgr = BackupManager(root)
    preview = await mgr.restore(_req(backup_id, target, overwrite="never", dry_run=True))
    assert not preview.counts.destructive
    await mgr.restore(_req(backup_id, target, overwrite="never"))
    assert stat.S_IMODE(os.stat(target / "private").st_mode) == 0o700


@pytest.mark.parametrize("overwrite", ["if-changed", "always"])
async def test_a_directory_whose_mode_is_set_again_is_in_the_preview(tmp_path, overwrite):
    """if-changed or always sets the backup's mode on an existing directory: the preview
    counts it (as it counts a file whose mode only is set again), so the change is shown
    and a checkpoint that can undo it is taken."""
    root, backup_id, target = await _dir_mode_case(tmp_path)
    mgr = BackupManager(root)
    preview = await mgr.restore(_req(backup_id, target, overwrite=overwrite, dry_run=True))
    assert preview.counts.dirs_metadata == 1
    assert preview.counts.destructive
    assert [(c.action, c.path) for c in preview.changes if c.kind == "dir"] == [
        ("metadata", "private")
    ]
    done = await mgr.restore(_req(backup_id, target, overwrite=overwrite))
    assert done.counts == preview.counts
    assert stat.S_IMODE(os.stat(target / "private").st_mode) == 0o755
    assert done.undo is not None, "no checkpoint was taken of what changed"
    await mgr.restore(done.undo.request)
    assert stat.S_IMODE(os.stat(target / "private").st_mode) == 0o700


# --- the CLI's preview says how many existing entries are replaced -------------------------


def _in_all(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if "in all:" in line)


@pytest.mark.parametrize("replaced", ["file-by-symlink", "file-by-dir", "file-by-file"])
def test_the_cli_preview_counts_what_is_overwritten_past_its_list(tmp_path, replaced):
    """More than the 1,000 changes the preview lists, the one overwrite last in the
    manifest: the listed rows are all creations and the list is cut. The totals line is then
    all the user has, and it must say that one existing entry (the user's file, its bytes)
    is replaced, whatever takes its place: a file, a symlink or a directory."""
    root = tmp_path / "root"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(1001):
        (src / f"a{i:04}").write_bytes(b"%d" % i)
    if replaced == "file-by-symlink":
        os.symlink("a0000", src / "zz")
    elif replaced == "file-by-dir":
        (src / "zz").mkdir()
    else:
        (src / "zz").write_bytes(b"backup bytes")
    made = cli_process(root, "--json", "create", P, str(src))
    assert made.returncode == 0, made.stderr
    target = tmp_path / "target"
    target.mkdir()
    (target / "zz").write_bytes(b"the user's own bytes")
    args = ["restore", P, "latest", str(target)]
    if replaced == "file-by-dir":
        args += ["--overwrite", "always"]
    preview = cli_process(root, *args, "--dry-run")
    assert preview.returncode == 0, preview.stderr
    assert "more changes not listed" in preview.stdout
    assert "zz" not in preview.stdout.replace(str(target), "")  # past the list's cap
    line = _in_all(preview.stdout)
    assert "1 to overwrite" in line, line
    done = cli_process(root, *args, "--no-checkpoint")
    assert done.returncode == 0, done.stderr
    zz = target / "zz"
    if replaced == "file-by-symlink":
        assert os.readlink(zz) == "a0000"
    elif replaced == "file-by-dir":
        assert zz.is_dir() and not zz.is_symlink()
    else:
        assert zz.read_bytes() == b"backup bytes"


# --- forget --dry-run names every backup forget then deletes --------------------------------


def test_forget_dry_run_names_the_backups_whose_grace_is_over(tmp_path):
    """Backups removed by an earlier forget and past their grace period are deleted for good
    (and their space reclaimed) by the next forget: its dry run must say so, with the same
    sets the real run then acts on."""
    from datetime import UTC, datetime, timedelta

    from core.ops.progress import OperationContext
    from core.retention import Policy

    now = [datetime(2024, 6, 1, tzinfo=UTC)]
    mgr = BackupManager(tmp_path / "root", clock=lambda: now[0])
    data = tmp_path / "data"
    data.mkdir()
    made = []
    for day in range(4):
        (data / "f").write_bytes(b"day %d " % day * 1000)
        when = now[0] - timedelta(days=10 - day)
        req = CreateRequest(project_id=P, data_dir=str(data), created_at=when)
        made.append(mgr.create_blocking(req, OperationContext("create", P, None)).id)
    first = mgr.forget_blocking(P, Policy(keep_last=2))
    assert first.removed == sorted(made[:2]) and first.purged == []
    now[0] += timedelta(days=3)  # the grace period (24 h) is over
    preview = mgr.forget_blocking(P, Policy(keep_last=2), dry_run=True)
    done = mgr.forget_blocking(P, Policy(keep_last=2))
    assert done.purged == sorted(made[:2]), "the real forget deleted them"
    assert (preview.removed, preview.purged, preview.reinstated) == (
        done.removed,
        done.purged,
        done.reinstated,
    )


# --- copy: killed and run again, into a project that exists with other chunker parameters ---


def _tree_bytes(top: Path, *, skip: str = "") -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for dirpath, _dirs, names in os.walk(top):
        for n in names:
            full = Path(dirpath) / n
            rel = str(full.relative_to(top))
            if not (skip and f"/{skip}/" in f"/{rel}"):
                out[rel] = full.read_bytes()
    return out


def _small_project(root: Path) -> None:
    """The project made in `root` with small chunks and packs (another host's choice)."""
    from core.repo.repository import Repository
    from core.storage.local import atomic_write

    BackupManager(root)
    repo = Repository(root, P)
    repo.init()
    path = repo.store.path("config.json")  # type: ignore[attr-defined]
    config = json.loads(path.read_bytes())
    config["chunker"].update({"avg_size": 16384, "min_size": 4096, "max_size": 65536})
    config["pack_size"] = 128 * 1024
    atomic_write(path, json.dumps(config, indent=2).encode())


def test_a_killed_copy_into_a_project_with_other_chunking_changes_neither_side(tmp_path):
    """The target repository already holds the project (made there, with small chunks and
    packs, from other data). A real `copy --to` is SIGKILLed once it has written a pack, then
    run again: the source repository is unchanged byte for byte (its lock directory aside:
    a reader's own lock, left by the killed process), the target's own backup still restores
    byte for byte, and so does the copied one."""
    import signal
    import time

    src_root, dst_root = tmp_path / "a", tmp_path / "b"
    theirs, mine = tmp_path / "theirs", tmp_path / "mine"
    theirs.mkdir()
    mine.mkdir()
    (theirs / "t.bin").write_bytes(os.urandom(600_000))
    for i in range(12):
        (mine / f"m{i:02}.bin").write_bytes(os.urandom(1024 * 1024))
    _small_project(dst_root)
    there = cli_process(dst_root, "--json", "create", P, str(theirs))
    assert there.returncode == 0, there.stderr
    made = cli_process(src_root, "--json", "create", P, str(mine))
    assert made.returncode == 0, made.stderr
    source_before = _tree_bytes(src_root / "backups", skip="locks")
    packs = dst_root / "backups" / P / "packs"
    held = {p.name for p in packs.rglob("*") if p.is_file()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    argv = [sys.executable, "-m", "cli", "--root", str(src_root), "copy", P, "--to", str(dst_root)]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    killed = False
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.is_file() and p.name not in held for p in packs.rglob("*")):
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.002)
    proc.communicate(timeout=60)
    if not killed or proc.returncode != -signal.SIGKILL:
        pytest.skip("the copy ended before a pack landed: nothing was killed")
    again = cli_process(src_root, "copy", P, "--to", str(dst_root))
    assert again.returncode == 0, again.stderr
    assert _tree_bytes(src_root / "backups", skip="locks") == source_before
    for name, made_by, data in (("theirs", there, theirs), ("mine", made, mine)):
        out = tmp_path / f"out-{name}"
        r = cli_process(dst_root, "restore", P, json.loads(made_by.stdout)["id"], str(out))
        assert r.returncode == 0, r.stderr
        assert _tree_bytes(out) == _tree_bytes(data), name


# --- --delete never empties a filesystem mounted in the target --------------------------------


def test_delete_never_empties_a_filesystem_mounted_where_the_backup_has_nothing(tmp_path):
    """The backup was made before a disk was mounted at `target/disk`. `restore --delete`
    must not delete what is on that disk (what is mounted is not the target's to empty, as a
    directory replaced whole already holds): neither in the preview nor in the real run."""
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    (src / "a").write_bytes(b"a")
    (target / "disk").mkdir(parents=True)
    root = tmp_path / "root"
    made = cli_process(root, "create", P, str(src))
    assert made.returncode == 0, made.stderr
    r = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target / "disk")], capture_output=True)
    if r.returncode:
        pytest.skip(f"cannot mount here: {r.stderr.decode().strip()}")
    try:
        (target / "disk" / "sub").mkdir()
        (target / "disk" / "sub" / "precious").write_bytes(b"on the other disk")
        (target / "stray").write_bytes(b"not in the backup")
        args = ["restore", P, "latest", str(target), "--delete"]
        preview = cli_process(root, *args, "--dry-run")
        assert preview.returncode in (0, 3), preview.stderr
        assert "precious" not in preview.stdout and "disk/" not in preview.stdout, preview.stdout
        assert "1 to delete" in preview.stdout, preview.stdout
        done = cli_process(root, *args)
        assert done.returncode in (0, 3), done.stderr
        assert (target / "disk" / "sub" / "precious").read_bytes() == b"on the other disk"
        assert not (target / "stray").exists()
        assert (target / "a").read_bytes() == b"a"
    finally:
        subprocess.run(["umount", "-l", str(target / "disk")], capture_output=True)


# --- names that differ only in case or Unicode normalisation --------------------------------


@pytest.mark.parametrize(
    ("theirs", "mine"),
    [("README", "readme"), ("caf\u00e9", "cafe\u0301")],
    ids=["case", "nfc-nfd"],
)
async def test_names_alike_but_not_equal_are_previewed_as_what_happens(tmp_path, theirs, mine):
    """The backup holds `theirs`, the target a name that reads alike (`mine`: another case,
    or the other Unicode normalisation). On this filesystem they are two names: the preview
    counts one creation and, with --delete, one deletion, and the restore does exactly that,
    leaving the backup's bytes under the backup's name."""
    root, src = tmp_path / "root", tmp_path / "src"
    src.mkdir()
    (src / theirs).write_bytes(b"the backup's")
    meta = await _backup(BackupManager(root), src)
    mgr = BackupManager(root)
    for delete in (False, True):
        target = tmp_path / f"target-{delete}"
        target.mkdir()
        (target / mine).write_bytes(b"the user's")
        req = _req(meta.id, target, delete_extra=delete, checkpoint=False)
        preview = await mgr.restore(req.model_copy(update={"dry_run": True}))
        assert (preview.counts.files_create, preview.counts.deleted) == (1, int(delete))
        assert preview.counts.overwritten == 0
        done = await mgr.restore(req)
        assert done.counts == preview.counts
        assert (target / theirs).read_bytes() == b"the backup's"
        assert (target / mine).exists() is not delete
