"""Independent audit of issue #9, invariants 1, 2, 3 and 8, through the real CLI (one process
per command, as a user runs it): odd objects in the repository (a user's copy of a pack, a
metadata.json that is a directory, `deleting/` or `quarantine/` that are files, locks from the
future or of a reused pid), a read-only bind mount, and two real processes racing deletes
against each other and against a create that dedups against the chunks being reclaimed.

Every test checks what a user would: the exit code, one clear error line, and a byte-exact
restore of every backup that must have survived."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.repo import locks

P = "aud"
EXE = [sys.executable, "-m", "cli"]


def cli(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`nexus-backup --root ROOT args` in a real process."""
    env = {**os.environ, "NEXUS_DEBUG": ""}
    env.pop("NEXUS_DEBUG")
    return subprocess.run(
        [*EXE, "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def one_clear_line(r: subprocess.CompletedProcess) -> bool:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return (
        "Traceback" not in r.stderr
        and "internal error" not in r.stderr
        and all(ln.startswith("nexus-backup: ") for ln in lines)
    )


def _pdir(root: Path) -> Path:
    return root / "backups" / P


def _ids(root: Path) -> list[str]:
    r = cli(root, "--json", "list", P)
    assert r.returncode == 0, r.stderr
    return [b["id"] for b in json.loads(r.stdout)]


def _restores(root: Path, backup_id: str, src: dict[str, bytes], out: Path) -> None:
    r = cli(root, "restore", P, backup_id, str(out))
    assert r.returncode == 0, r.stderr
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == src


@pytest.fixture
def two(tmp_path: Path):
    """Two completed backups (a, then b) of directories that share no data."""
    root = tmp_path / "repo"
    trees = {}
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "f.bin").write_bytes(os.urandom(250_000))
        trees[name] = {"f.bin": (d / "f.bin").read_bytes()}
    assert cli(root, "create", P, str(tmp_path / "a")).returncode == 0
    r = cli(root, "create", P, str(tmp_path / "b"), "--data-dir-change")
    assert r.returncode == 0, r.stderr
    b_id, a_id = _ids(root)
    return root, (a_id, trees["a"]), (b_id, trees["b"])


# --- I2: repair never loses what it cannot parse, and says so in one line --------------------


@pytest.mark.parametrize("name", ["{id}.bak", "copy-of-pack"])
def test_rebuild_index_with_a_copy_of_a_pack_under_another_name(two, tmp_path, name):
    root, (a_id, a_tree), (b_id, b_tree) = two
    pack = next(p for p in (_pdir(root) / "packs").rglob("*") if p.is_file())
    shutil.copy(pack, pack.parent / name.format(id=pack.name))
    r = cli(root, "rebuild-index", P)
    assert one_clear_line(r), r.stderr
    _restores(root, a_id, a_tree, tmp_path / "oa")
    _restores(root, b_id, b_tree, tmp_path / "ob")


def test_rebuild_index_with_quarantine_a_file_deletes_nothing(two, tmp_path):
    """`quarantine` is a file and a pack header is damaged: rebuild-index cannot keep a copy,
    so it must stop with one line and leave the damaged pack (whose blobs still verify)."""
    root, (a_id, a_tree), (b_id, b_tree) = two
    (_pdir(root) / "quarantine").write_text("in the way")
    packs = sorted(p for p in (_pdir(root) / "packs").rglob("*") if p.is_file())
    raw = bytearray(packs[0].read_bytes())
    raw[-30] ^= 1  # in the header's checksum region of the trailer
    packs[0].write_bytes(bytes(raw))
    before = {p: p.read_bytes() for p in packs}
    r = cli(root, "rebuild-index", P)
    assert r.returncode != 0 and one_clear_line(r), r.stderr
    assert {p: p.read_bytes() for p in packs} == before
    _restores(root, a_id, a_tree, tmp_path / "oa")
    _restores(root, b_id, b_tree, tmp_path / "ob")


# --- I3: odd objects where directories or files are expected ---------------------------------


def test_metadata_that_is_a_directory_is_reported_not_fatal(two, tmp_path):
    root, (a_id, _a_tree), (b_id, b_tree) = two
    meta = _pdir(root) / f"backup_{a_id}" / "metadata.json"
    meta.unlink()
    meta.mkdir()
    r = cli(root, "list", P)
    assert r.returncode == 0 and b_id in r.stdout, r.stderr
    r = cli(root, "check", P)
    assert a_id in r.stdout + r.stderr and one_clear_line(r)
    _restores(root, b_id, b_tree, tmp_path / "ob")


def test_deleting_that_is_a_file_refuses_delete_in_one_line(two, tmp_path):
    """The tombstone directory is a file: delete cannot record its start, so it must delete
    nothing and say so in one line."""
    root, (a_id, a_tree), (b_id, b_tree) = two
    (_pdir(root) / "deleting").write_text("in the way")
    r = cli(root, "delete", P, a_id)
    assert r.returncode == 1 and one_clear_line(r), r.stderr
    assert set(_ids(root)) == {a_id, b_id}
    _restores(root, a_id, a_tree, tmp_path / "oa")
    _restores(root, b_id, b_tree, tmp_path / "ob")


def test_a_lock_that_is_a_directory_does_not_block_or_crash(two, tmp_path):
    root, (a_id, a_tree), _b = two
    (_pdir(root) / "locks" / "h-1-abcd.json").mkdir(parents=True)
    for args in (["list", P], ["check", P], ["verify", P, a_id]):
        r = cli(root, *args)
        assert r.returncode == 0 and one_clear_line(r), (args, r.stderr)
    _restores(root, a_id, a_tree, tmp_path / "oa")


# --- I8: locks ---------------------------------------------------------------------------------


def _plant_lock(root: Path, **fields: object) -> Path:
    now = datetime.now(UTC).isoformat()
    d = {
        "exclusive": True,
        "operation": "create",
        "backup_id": None,
        "pid": 1,
        "pid_start": 1,
        "host": "elsewhere",
        "time": now,
        "refreshed": now,
        **fields,
    }
    where = _pdir(root) / "locks"
    where.mkdir(exist_ok=True)
    path = where / "planted-1-abcd.json"
    path.write_text(json.dumps(d))
    return path


@pytest.mark.slow
def test_a_lock_from_the_future_not_refreshed_for_30_minutes_is_stale(two, tmp_path):
    root, _a, _b = two
    lock = _plant_lock(
        root, time="2099-01-01T00:00:00+00:00", refreshed="2099-01-01T00:00:00+00:00"
    )
    old = time.time() - 31 * 60
    os.utime(lock, (old, old))
    r = cli(root, "create", P, str(tmp_path / "b"), timeout=30)
    assert r.returncode == 0, r.stderr


def test_a_local_lock_whose_pid_lives_but_is_another_process_is_broken(two, tmp_path):
    """Same host, boot and pid namespace, a live pid (this test's) with another start time:
    the process that took the lock is gone (the pid was reused), so the lock is stale."""
    root, _a, _b = two
    me = os.getpid()
    start = locks.process_start(me)
    if start is None or locks.BOOT_ID is None or locks.PIDNS is None:
        pytest.skip("no /proc start time, boot id or pid namespace here")
    _plant_lock(
        root,
        pid=me,
        pid_start=start + 12345,
        host=locks.HOST,
        boot_id=locks.BOOT_ID,
        pidns=locks.PIDNS,
    )
    r = cli(root, "create", P, str(tmp_path / "b"), timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_a_local_lock_of_a_live_process_is_respected(two, tmp_path):
    """The same lock with the right start time: that process still runs, writers wait."""
    root, _a, _b = two
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.1)
        start = locks.process_start(sleeper.pid)
        if start is None or locks.BOOT_ID is None or locks.PIDNS is None:
            pytest.skip("no /proc start time, boot id or pid namespace here")
        _plant_lock(
            root,
            pid=sleeper.pid,
            pid_start=start,
            host=locks.HOST,
            boot_id=locks.BOOT_ID,
            pidns=locks.PIDNS,
        )
        r = cli(root, "create", P, str(tmp_path / "b"), timeout=60)
        assert r.returncode == 1 and "busy" in r.stderr and one_clear_line(r), r.stderr
    finally:
        sleeper.kill()
        sleeper.wait()


# --- I3: a read-only bind mount ----------------------------------------------------------------


def _ro_bind(root: Path, where: Path) -> None:
    where.mkdir()
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(root), str(where)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {r.stderr.decode().strip()}")


def test_read_only_bind_mount_is_listed_checked_verified_and_restored(two, tmp_path):
    root, (a_id, a_tree), _b = two
    ro = tmp_path / "ro"
    _ro_bind(root, ro)
    try:
        for args in (
            ["list", P],
            ["info", P, a_id],
            ["projects"],
            ["check", P],
            ["verify", P, a_id],
        ):
            r = cli(ro, *args)
            assert r.returncode == 0 and one_clear_line(r), (args, r.stderr)
        assert "no projects" not in cli(ro, "projects").stdout.lower()
        _restores(ro, a_id, a_tree, tmp_path / "oa")
        for args in (["delete", P, a_id], ["rebuild-index", P]):
            r = cli(ro, *args)
            assert r.returncode == 1 and one_clear_line(r), (args, r.stderr)
        assert a_id in _ids(root)
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_default_restore_from_a_read_only_bind_mount_says_why(two, tmp_path):
    root, (a_id, _a_tree), _b = two
    target = tmp_path / "t"
    target.mkdir()
    (target / "f.bin").write_text("old")
    (target / "extra").write_text("x")
    ro = tmp_path / "ro"
    _ro_bind(root, ro)
    try:
        r = cli(ro, "restore", P, a_id, str(target), "--overwrite", "always", "--delete")
        assert (target / "f.bin").read_text() == "old" and (target / "extra").exists()
        assert r.returncode == 1 and one_clear_line(r), r.stderr
        said = r.stderr.replace(str(tmp_path), "")  # the tmp path names the test
        assert "checkpoint" in said, r.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


# --- I1 under real concurrency -----------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_deleting_different_backups_at_once(tmp_path):
    """Four backups of unrelated data; two processes delete two of them at the same time. Both
    end (0, or 1 busy), and the two others restore byte for byte."""
    root = tmp_path / "repo"
    trees: dict[str, dict[str, bytes]] = {}
    for i in range(4):
        d = tmp_path / f"s{i}"
        d.mkdir()
        (d / "f.bin").write_bytes(os.urandom(200_000))
        r = cli(root, "create", P, str(d), "--data-dir-change")
        assert r.returncode == 0, r.stderr
        trees[_ids(root)[0]] = {"f.bin": (d / "f.bin").read_bytes()}
    ids = list(trees)
    procs = [
        subprocess.Popen([*EXE, "--root", str(root), "delete", P, bid], stderr=subprocess.PIPE)
        for bid in ids[:2]
    ]
    codes = [p.wait(60) for p in procs]
    errs = [p.stderr.read().decode() for p in procs]
    assert all(c in (0, 1) for c in codes) and "Traceback" not in "".join(errs), errs
    for bid in ids[2:]:
        _restores(root, bid, trees[bid], tmp_path / f"o{bid}")
    assert cli(root, "check", P).returncode == 0


@pytest.mark.slow
def test_delete_racing_a_create_that_dedups_against_its_chunks(tmp_path):
    """The only backup holding some data is deleted while a second process backs up the same
    data again (every chunk a dedup hit on a pack the reclaim wants to remove). Whatever the
    order, the new backup, if completed, restores byte for byte and check is clean."""
    root = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    for round_ in range(5):
        (src / "f.bin").write_bytes(os.urandom(1_500_000))
        want = {"f.bin": (src / "f.bin").read_bytes()}
        assert cli(root, "create", P, str(src)).returncode == 0
        victim = _ids(root)[0]
        before = set(_ids(root))
        dele = subprocess.Popen([*EXE, "--root", str(root), "delete", P, victim])
        time.sleep(0.02 * round_)
        crea = subprocess.Popen([*EXE, "--root", str(root), "create", P, str(src)])
        assert dele.wait(60) in (0, 1) and crea.wait(60) in (0, 1)
        ids = [i for i in _ids(root) if i not in before]
        if ids:
            _restores(root, ids[0], want, tmp_path / f"o{round_}")
        r = cli(root, "check", P)
        assert r.returncode == 0, r.stdout + r.stderr


def test_a_lost_config_is_reported_not_an_unknown_project(two):
    root, _a, _b = two
    (_pdir(root) / "config.json").unlink()
    r = cli(root, "check", P)
    assert r.returncode != 0 and "unknown project" not in r.stderr, r.stderr
    assert "config.json" in r.stdout + r.stderr
    r = cli(root, "projects")
    assert P in r.stdout + r.stderr and "no projects" not in r.stdout.lower(), r.stdout


def _popen(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*EXE, "--root", str(root), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.mark.slow
def test_rebuild_index_racing_creates_and_a_delete_loses_nothing(tmp_path):
    """rebuild-index, two creates and a delete started at the same instant from four real
    processes, three rounds: every completed backup restores byte for byte afterwards and
    check is clean."""
    root = tmp_path / "repo"
    srcs = [tmp_path / f"s{i}" for i in range(2)]
    for s in srcs:
        s.mkdir()
    for i, s in enumerate(srcs):
        (s / "f.bin").write_bytes(os.urandom(400_000))
        args = ["create", P, str(s)] + (["--data-dir-change"] if i else [])
        assert cli(root, *args).returncode == 0
    for round_ in range(3):
        for s in srcs:
            (s / "f.bin").write_bytes(os.urandom(600_000))
        victim = _ids(root)[-1]
        procs = [
            _popen(root, "rebuild-index", P),
            _popen(root, "create", P, str(srcs[0]), "--data-dir-change"),
            _popen(root, "create", P, str(srcs[1]), "--data-dir-change"),
            _popen(root, "delete", P, victim),
        ]
        for p in procs:
            code = p.wait(120)
            err = p.stderr.read().decode()
            assert code in (0, 1) and "Traceback" not in err and "internal" not in err, err
        r = cli(root, "check", P)
        assert r.returncode == 0, (round_, r.stdout, r.stderr)
        for bid in _ids(root):
            out = tmp_path / f"o{round_}-{bid}"
            assert cli(root, "restore", P, bid, str(out)).returncode == 0
    assert not list((_pdir(root)).glob("**/*.tmp-*"))


@pytest.mark.slow
def test_two_processes_deleting_the_same_backup(two, tmp_path):
    root, (a_id, _a_tree), (b_id, b_tree) = two
    procs = [_popen(root, "delete", P, a_id) for _ in range(2)]
    results = [(p.wait(60), p.stderr.read().decode()) for p in procs]
    codes = sorted(c for c, _ in results)
    assert codes[0] == 0 and all(c in (0, 1) for c in codes), results
    assert all("Traceback" not in e and "internal" not in e for _, e in results), results
    assert _ids(root) == [b_id]
    _restores(root, b_id, b_tree, tmp_path / "ob")
    assert cli(root, "check", P).returncode == 0


# --- the second audit (2026-12-02): times, clocks and borrowed metadata ----------------------


def test_a_metadata_json_copied_from_another_backup_is_damage_and_blocks_reclaim(two, tmp_path):
    """b's metadata.json replaced by a's (they differ only in names): b is reported damaged,
    never read as a second a, so reclaim cannot drop the chunks only b's manifest names."""
    root, (a_id, a_tree), (b_id, b_tree) = two
    meta_b = _pdir(root) / f"backup_{b_id}" / "metadata.json"
    saved = meta_b.read_bytes()
    shutil.copy(_pdir(root) / f"backup_{a_id}" / "metadata.json", meta_b)
    r = cli(root, "check", P)
    assert r.returncode != 0 and b_id in r.stdout + r.stderr
    d = tmp_path / "c"
    d.mkdir()
    (d / "c.bin").write_bytes(os.urandom(100_000))
    assert cli(root, "create", P, str(d), "--data-dir-change").returncode == 0
    c_id = next(i for i in _ids(root) if i not in (a_id, b_id))
    r = cli(root, "delete", P, c_id)
    assert r.returncode == 1 and "space not reclaimed" in r.stderr and one_clear_line(r)
    meta_b.write_bytes(saved)  # the operator puts b's own metadata back
    _restores(root, b_id, b_tree, tmp_path / "ob")
    _restores(root, a_id, a_tree, tmp_path / "oa")


def test_metadata_with_times_without_a_zone_is_listed(two):
    """A hand-edited (or older) metadata.json whose times have no zone: UTC, listed and
    sorted beside the others by every listing."""
    root, (a_id, _), (b_id, _) = two
    meta = _pdir(root) / f"backup_{a_id}" / "metadata.json"
    d = json.loads(meta.read_text())
    d["created_at"] = "2020-01-01T00:00:00"
    d["completed_at"] = "2020-01-01T00:00:01"
    meta.write_text(json.dumps(d))
    assert _ids(root) == [b_id, a_id]
    for args in (["projects"], ["stats"], ["list", P, "--since", "2019-12-31T00:00:00"]):
        r = cli(root, *args)
        assert r.returncode == 0 and one_clear_line(r), (args, r.stderr)


def test_forget_lists_again_the_newest_backup_rather_than_delete_it(two, tmp_path):
    """a removed by keep-last 1 (b was newer); b deleted by hand; a's grace passes: the next
    forget must not delete the project's only completed backup (I9): a is listed again."""
    root, (a_id, a_tree), (b_id, _) = two
    assert cli(root, "forget", P, "--keep-last", "1", "--grace", "1").returncode == 0
    assert _ids(root) == [b_id]
    assert cli(root, "delete", P, b_id).returncode == 0
    meta = _pdir(root) / f"backup_{a_id}" / "metadata.json"
    d = json.loads(meta.read_text())
    d["purge_after"] = "2000-01-01T00:00:00Z"  # an hour later, as far as forget can tell
    meta.write_text(json.dumps(d))
    r = cli(root, "forget", P, "--keep-last", "1")
    assert r.returncode == 0 and "Listed again" in r.stdout, r.stdout + r.stderr
    assert _ids(root) == [a_id]
    _restores(root, a_id, a_tree, tmp_path / "oa")


def test_retention_after_a_backup_never_removes_that_backup(tmp_path):
    """A backup dated ahead (made on a host whose clock runs fast) is the newest until then:
    keep-last 1 keeps it, and the backup made now on this host is still kept as just made."""
    from core.manager import BackupManager
    from core.models import CreateRequest

    root = tmp_path / "repo"
    d = tmp_path / "src"
    d.mkdir()
    (d / "f").write_text("one")
    ahead = BackupManager(root, clock=lambda: datetime(2099, 1, 1, tzinfo=UTC))
    future = asyncio.run(ahead.create(CreateRequest(project_id=P, data_dir=str(d))))
    assert cli(root, "policy", "set", P, "--keep-last", "1").returncode == 0
    (d / "f").write_text("two")
    r = cli(root, "--json", "create", P, str(d))
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    made_id = made.get("id") or made["backup"]["id"]
    assert set(_ids(root)) == {future.id, made_id}
    out = tmp_path / "out"
    r = cli(root, "restore", P, made_id, str(out))
    assert r.returncode == 0 and (out / "f").read_text() == "two"


_LAGGING_HOLDER = """
import datetime, sys, time
import core.repo.locks as L
from core.storage.local import LocalStore
real = L._now
L._now = lambda: real() - datetime.timedelta(minutes=40)  # this host's clock lags
L.HOST = "laggard"
lock = L.acquire(LocalStore(sys.argv[1]), exclusive=False, operation="create")
print("held", flush=True)
time.sleep(60)
"""


def test_the_live_lock_of_a_host_whose_clock_lags_is_not_broken(two, tmp_path):
    """Another host (its clock 40 minutes behind, past STALE_AFTER) holds a live lock: its
    `refreshed` reads old, but the object was just written; delete waits, then says busy."""
    root, (a_id, a_tree), (b_id, b_tree) = two
    holder = subprocess.Popen(
        [sys.executable, "-c", _LAGGING_HOLDER, str(_pdir(root))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        r = cli(root, "delete", P, a_id)
        assert r.returncode != 0 and "laggard" in r.stderr and one_clear_line(r), r.stderr
    finally:
        holder.kill()
        holder.wait()
    _restores(root, a_id, a_tree, tmp_path / "oa")
    _restores(root, b_id, b_tree, tmp_path / "ob")


def test_a_given_time_ahead_or_before_1970_is_refused_and_one_with_an_offset_names_in_utc(
    tmp_path,
):
    d = tmp_path / "src"
    d.mkdir()
    (d / "f").write_text("x")
    root = tmp_path / "repo"
    for when, why in (
        ("2099-01-01T00:00:00", "in the future"),
        ("0001-01-01T00:00:00+14:00", "before 1970"),
    ):
        r = cli(root, "create", P, str(d), "--time", when)
        assert r.returncode == 2 and why in r.stderr and one_clear_line(r), r.stderr
        assert not (root / "backups" / P).exists()  # refused before anything is written
    r = cli(root, "--json", "create", P, str(d), "--time", "2020-01-01T05:00:00+03:00")
    assert r.returncode == 0, r.stderr
    assert _ids(root)[0].startswith("20200101-020000-")
