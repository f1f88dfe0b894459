"""An audit of an encrypted project's keys (`key list|add|remove|passwd`, docs/design.md
§6.1) as an attacker and a careless user would try it: two processes changing keys at
once, a real SIGKILL at any instant of `key add` and `key passwd`, key objects that are
truncated, garbage, of a future version, duplicated under another id, or not files at all
(a directory, a fifo, a link to a stranger's file), a wrong password, a password file kept
inside the repository. Real CLI processes on real files; each test checks which passwords
open the project, the bytes under keys/, the exit code and the one error line."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import fast_kdf

from core.manager import BackupManager

REPO = Path(__file__).resolve().parents[2]
PW = "first password"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def argv(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli", "--root", str(root), *args]


def nb(root: Path, *args: str, pw: str = PW, new: str | None = None, timeout: float = 120):
    env = {"NEXUS_BACKUP_PASSWORD": pw, **({"NEXUS_BACKUP_NEW_PASSWORD": new} if new else {})}
    return subprocess.run(
        argv(root, *args),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args[4:], r.returncode, r.stdout, r.stderr)
    return r.stdout


def one_error_line(r: subprocess.CompletedProcess, code: int | None = None, *words: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, (r.args[4:], r.stdout, r.stderr)
    if code is not None:
        assert r.returncode == code, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def opens(root: Path, password: str) -> bool:
    r = nb(root, "--json", "list", "p", pw=password, timeout=30)
    assert r.returncode in (0, 12), (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode == 0


def keys_dir(root: Path) -> Path:
    return root / "backups" / "p" / "keys"


def key_bytes(root: Path) -> dict[str, bytes]:
    d = keys_dir(root)
    return {p.name: (p.read_bytes() if p.is_file() else b"<not a file>") for p in d.iterdir()}


def key_list(root: Path, pw: str = PW) -> list[dict]:
    return json.loads(ok(nb(root, "--json", "key", "list", "p", pw=pw)))


def snapshot(top: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(top.rglob("*")):
        st = p.lstat()
        data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out[str(p.relative_to(top))] = (st.st_mode, st.st_mtime_ns, data)
    return out


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An encrypted project `p` with one backup; its first key cheap to open (the Argon2id
    parameters are recorded per key: a CLI process opens it at the same cost)."""
    fast_kdf(monkeypatch)
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("hello\n")
    mgr = BackupManager(root, password=lambda _p: PW, encrypt=True)
    mgr._repo("p", create=True)
    ok(nb(root, "create", "p", str(data)))
    return root


def _add_cheap_key(root: Path, password: str) -> str:
    """A second key, added in-process with the cheap parameters the fixture set."""
    return BackupManager(root, password=lambda _p: PW).key_add("p", password)


# --- two processes at once ------------------------------------------------------------------


def test_two_key_adds_at_once_both_land_and_every_password_opens(root):
    procs = [
        subprocess.Popen(
            argv(root, "--json", "key", "add", "p"),
            cwd=REPO,
            env=_env(NEXUS_BACKUP_PASSWORD=PW, NEXUS_BACKUP_NEW_PASSWORD=f"new {i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    added = {json.loads(o)["added"] for o, _e in outs}
    assert len(added) == 2 and added <= set(key_bytes(root))
    assert len(key_bytes(root)) == 3
    for password in (PW, "new 0", "new 1"):
        assert opens(root, password), password


def test_two_password_changes_of_one_key_at_once_lose_no_password(root):
    """Two `key passwd` opened with the same password at once: the one that waits finds
    its key gone and changes nothing (one line); every process that said it changed the
    password gave a password that opens, the old one no longer does, and no key was left
    behind by the one that failed."""
    procs = [
        subprocess.Popen(
            argv(root, "--json", "key", "passwd", "p"),
            cwd=REPO,
            env=_env(NEXUS_BACKUP_PASSWORD=PW, NEXUS_BACKUP_NEW_PASSWORD=f"new {i}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    done = [i for i, p in enumerate(procs) if p.returncode == 0]
    assert done, outs
    for i, p in enumerate(procs):
        if p.returncode != 0:
            line = outs[i][1].strip().splitlines()
            assert len(line) == 1 and "Traceback" not in outs[i][1], outs[i]
            assert not opens(root, f"new {i}")
    for i in done:
        assert opens(root, f"new {i}")
    assert not opens(root, PW)
    assert len(key_bytes(root)) == len(done)


def test_two_removals_at_once_never_remove_the_last_two_keys(root):
    """Keys A and B; one process opened with A removes B while another opened with B
    removes A: never both (the project would never open again)."""
    first = next(k["id"] for k in key_list(root) if k["current"])
    second = _add_cheap_key(root, "second")
    for _round in range(3):
        procs = [
            subprocess.Popen(
                argv(root, "key", "remove", "p", victim),
                cwd=REPO,
                env=_env(NEXUS_BACKUP_PASSWORD=pw),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for victim, pw in ((second, PW), (first, "second"))
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        codes = [p.returncode for p in procs]
        assert codes.count(0) <= 1, outs
        left = set(key_bytes(root))
        assert left and left <= {first, second}
        assert opens(root, PW) or opens(root, "second")
        for (_o, err), code in zip(outs, codes, strict=True):
            assert "Traceback" not in err and (code == 0 or len(err.strip().splitlines()) == 1)
        if left == {first, second}:  # both refused (each saw the other's lock): again
            continue
        break
    survivor = PW if first in left else "second"
    assert opens(root, survivor)
    one_error_line(nb(root, "key", "remove", "p", *left, pw=survivor), 1, "last key")


# --- SIGKILL at any instant -------------------------------------------------------------


@pytest.mark.parametrize("action", ["add", "passwd"])
def test_a_real_sigkill_at_any_instant_of_a_key_change_keeps_a_password_that_opens(
    root, seed, action
):
    """`key add` / `key passwd` killed (a real SIGKILL, at a random instant from its start
    to its end): the old password opens (add), or the old or the new one (passwd); no key
    object the kill left half-written is trusted (every key object is whole, or listed as
    damaged); the next key change goes ahead (the dead process's lock is stale)."""
    rng = random.Random(seed)
    began = time.monotonic()
    ok(nb(root, "key", action, "p", new="timing"))
    whole = time.monotonic() - began
    current = "timing" if action == "passwd" else PW
    for round_ in range(6):
        new = f"killed {round_}"
        proc = subprocess.Popen(
            argv(root, "key", action, "p"),
            cwd=REPO,
            env=_env(NEXUS_BACKUP_PASSWORD=current, NEXUS_BACKUP_NEW_PASSWORD=new),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 1.0) * whole)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        old_opens, new_opens = opens(root, current), opens(root, new)
        if action == "add":
            assert old_opens and opens(root, "timing"), f"round {round_}: a password was lost"
        else:
            assert old_opens or new_opens, f"round {round_}: neither password opens"
            current = current if old_opens else new
        listed = key_list(root, pw=current)
        assert all("damaged" not in k and ".tmp-" not in k["id"] for k in listed), listed
        assert len(listed) == len(key_bytes(root))
    # the next key change is not held up by the killed process's lock
    ok(nb(root, "key", "add", "p", pw=current, new="after"))
    assert opens(root, "after") and opens(root, current)


# --- key objects that are not what they should be --------------------------------------------


STRANGER = b"a stranger's file, never to be changed\n"


def _plant(root: Path, kind: str, good: str, tmp_path: Path) -> tuple[str, Path | None]:
    """Put something beside the one good key under keys/; its name and the stranger's
    file it points at (for a link)."""
    d = keys_dir(root)
    raw = (d / good).read_bytes()
    name, stranger = "f" * 32, None
    if kind == "truncated":
        (d / name).write_bytes(raw[: len(raw) // 2])
    elif kind == "empty":
        (d / name).write_bytes(b"")
    elif kind == "garbage":
        (d / name).write_bytes(os.urandom(300))
    elif kind == "future-version":
        obj = json.loads(raw)
        obj["version"] = 2
        (d / name).write_text(json.dumps(obj))
    elif kind == "exact-copy":
        (d / name).write_bytes(raw)
    elif kind == "reformatted-copy":
        (d / name).write_text(json.dumps(json.loads(raw)))
    elif kind == "hostile-kdf":
        obj = json.loads(raw)
        obj["kdf"]["memory_kib"] = 1 << 40
        (d / name).write_text(json.dumps(obj))
    elif kind == "directory":
        (d / name).mkdir()
        (d / name / "x").write_bytes(raw)
    elif kind == "fifo":
        os.mkfifo(d / name)
    elif kind == "link":
        stranger = tmp_path / "stranger"
        stranger.write_bytes(STRANGER)
        (d / name).symlink_to(stranger)
    else:
        raise AssertionError(kind)
    return name, stranger


KINDS = [
    "truncated",
    "empty",
    "garbage",
    "future-version",
    "exact-copy",
    "reformatted-copy",
    "hostile-kdf",
    "directory",
    "fifo",
    "link",
]


@pytest.mark.parametrize("kind", KINDS)
def test_a_stray_key_object_opens_nothing_hangs_nothing_and_never_counts_as_a_key(
    root, tmp_path, kind
):
    """Beside the one good key, something under keys/ that is not a key of ours: the
    project still opens with its password (within seconds: a fifo never blocks, a hostile
    Argon2id is never run), `key list` names it, and removing the good key is refused (it
    would leave nothing that opens). Nothing under keys/, nor a linked stranger's file,
    changes."""
    good = next(iter(key_bytes(root)))
    name, stranger = _plant(root, kind, good, tmp_path)
    before = key_bytes(root) if kind != "fifo" else None
    assert opens(root, PW)
    listed = key_list(root)
    assert sorted(k["id"] for k in listed) == sorted([good, name])
    assert next(k for k in listed if k["id"] == good)["current"]
    refused = nb(root, "key", "remove", "p", good, timeout=30)
    one_error_line(refused, 1, good)
    assert good in set(key_bytes(root)) if kind != "fifo" else (keys_dir(root) / good).exists()
    if before is not None:
        assert key_bytes(root) == before
    if stranger is not None:
        assert stranger.read_bytes() == STRANGER
    assert opens(root, PW)
    # the wrong password still says so (the stray is passed over, not an error)
    one_error_line(nb(root, "list", "p", pw="wrong", timeout=30), 12, "wrong password")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "future-version", "exact-copy"])
def test_the_stray_key_object_itself_may_be_removed(root, tmp_path, kind):
    good = next(iter(key_bytes(root)))
    name, _ = _plant(root, kind, good, tmp_path)
    ok(nb(root, "key", "remove", "p", name))
    assert set(key_bytes(root)) == {good} and opens(root, PW)


def test_removing_a_key_id_that_names_no_key_is_one_line_and_changes_nothing(root):
    before = snapshot(root / "backups")
    for bogus in ("../config.json", "..", "nope", "f" * 32, "keys/x", ""):
        r = nb(root, "key", "remove", "p", bogus)
        one_error_line(r)
    after = snapshot(root / "backups")

    def objects(snap: dict[str, tuple]) -> dict[str, tuple]:  # files; a lock came and went
        return {k: v for k, v in snap.items() if "locks" not in k and v[0] & 0o100000}

    assert objects(after) == objects(before)
    assert opens(root, PW)


# --- a wrong password writes nothing and locks nothing ---------------------------------


def test_a_wrong_password_on_every_key_command_writes_and_locks_nothing(root):
    """Every key command given a wrong password: exit 12, one line, and nothing in the
    root changes (no lock, no key, no log line, no directory)."""
    good = next(iter(key_bytes(root)))
    before = snapshot(root)
    for args in (
        ("key", "list", "p"),
        ("key", "add", "p"),
        ("key", "passwd", "p"),
        ("key", "remove", "p", good),
    ):
        r = nb(root, *args, pw="wrong", new="would-be-new")
        one_error_line(r, 12, "wrong password")
    assert snapshot(root) == before
    assert not opens(root, "would-be-new")


# --- a password file inside the repository ----------------------------------------------


@pytest.mark.parametrize("where", ["project", "keys"])
def test_a_password_file_kept_inside_the_repository_is_never_a_key_nor_damage(root, where):
    """The password file kept in the project's directory, or (careless) under keys/: the
    project opens with it, `check` finds no damage in it, a key change with it works and
    the file stays byte for byte (it is the user's, not an object of ours)."""
    pw_file = (root / "backups" / "p" / ("keys" if where == "keys" else "")) / "password.txt"
    pw_file.write_text(PW + "\n")
    r = nb(root, "--password-file", str(pw_file), "--json", "list", "p", pw="")
    ok(r)
    ok(nb(root, "--password-file", str(pw_file), "check", "p", pw=""))
    ok(nb(root, "--password-file", str(pw_file), "key", "add", "p", pw="", new="machine"))
    assert pw_file.read_text() == PW + "\n"
    assert opens(root, "machine") and opens(root, PW)


# --- a key change racing a project delete -------------------------------------------------


@pytest.mark.parametrize("action", ["add", "passwd"])
def test_a_key_change_that_outlives_a_delete_project_brings_nothing_back(root, tmp_path, action):
    """`key add` / `key passwd` opened the project, then waited for its new password (a
    fifo as --new-password-file: a secret manager slow to answer) while another process
    deleted the project. Given the password at last, it must not write a key object into
    the deleted project: `key add` did, said "added", and left `backups/p/keys/…` alone,
    which `projects` then listed as a damaged project and which made both `create p` and
    `delete-project p` refuse the name for ever."""
    fifo = tmp_path / "new-password"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        argv(root, "key", action, "p", "--new-password-file", str(fifo)),
        cwd=REPO,
        env=_env(NEXUS_BACKUP_PASSWORD=PW),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the process opened the project (its shared reads done) and now waits on the fifo
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            with contextlib.suppress(OSError):  # blocked in open(2) of the fifo
                if Path(f"/proc/{proc.pid}/wchan").read_text() in ("wait_for_partner", "fifo_open"):
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        ok(nb(root, "delete-project", "p", "--yes"))
        assert not (root / "backups" / "p").exists()
        with open(fifo, "w") as f:
            f.write("late password\n")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = err.strip().splitlines()
    assert proc.returncode != 0, (out, err)
    assert len(lines) == 1 and "Traceback" not in err and "deleted" in lines[0], err
    project = root / "backups" / "p"
    assert not project.exists() or not any(project.rglob("*")), sorted(project.rglob("*"))
    assert json.loads(ok(nb(root, "--json", "projects"))) == []
    data = tmp_path / "data"
    ok(nb(root, "create", "p", str(data)))


@pytest.mark.parametrize("name", ["policy.json", "project.json", "config.json", "metadata.json"])
def test_a_fifo_at_an_objects_name_hangs_no_command_and_stops_no_other_project(
    root, tmp_path, name
):
    """A fifo where an object of one project lies (a careless mkfifo, a hostile writer):
    no command blocks on it (each read a fifo would hold for ever); each says what is wrong
    in one line, and a run-due over every project still judges the other one."""
    data = tmp_path / "data2"
    data.mkdir()
    (data / "g").write_text("other\n")
    ok(nb(root, "create", "q", str(data)))
    ok(nb(root, "policy", "set", "q", "--schedule", "hourly", "--keep-last", "3"))
    project = root / "backups" / "p"
    where = next(project.glob("backup_*")) if name == "metadata.json" else project
    target = where / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    for args in (["projects"], ["list", "p"], ["check", "p"], ["policy", "show", "p"]):
        r = nb(root, *args, timeout=30)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        assert len([ln for ln in r.stderr.splitlines() if ": error: " in ln]) <= 1, r.stderr
    r = nb(root, "--json", "run-due", timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    runs = {run["project"]: run for run in json.loads(r.stdout)}
    assert runs["q"]["status"] in ("not-due", "completed"), runs  # judged, not held up
