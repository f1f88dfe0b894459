"""The repair and retention paths (rebuild-index, check, reclaim, forget and its policy), tried
as an attacker and as a careless user would: damaged headers and lost index files, odd names
in a project, policy files edited by hand, and what a dry run names. Each test works on real
files (and the CLI as a process where it says so) and checks that nothing a backup needs is
lost, byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import rel_harness as h
import zstandard

from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo import manifest as mf
from core.repo.index import decode_index
from core.repo.packs import ENTRY, TRAILER, pack_name, read_pack_entries
from core.repo.repository import Repository

P = "audit"
NOBODY = 65534


def _pdir(root: Path) -> Path:
    return root / "backups" / P


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


async def _restores(root: Path, backup_id: str, want: dict[str, bytes], tmp: Path) -> None:
    out = tmp / f"out-{backup_id}-{time.monotonic_ns()}"
    await BackupManager(root).restore(
        RestoreRequest(project_id=P, backup_id=backup_id, restore_dir=str(out))
    )
    assert _tree(out) == want


@pytest.fixture
async def one(tmp_path: Path):
    """One completed backup of a big incompressible file and a small text: one pack of two
    blobs, named by one index file."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(300_000))
    (src / "g.txt").write_text("small " * 50)
    meta = await BackupManager(root).create(CreateRequest(project_id=P, data_dir=str(src)))
    return root, meta.id, _tree(src)


@pytest.mark.parametrize("entry", [0, 1])
@pytest.mark.parametrize("index", ["missing", "truncated"])
async def test_a_damaged_chunk_id_in_a_pack_header_with_its_index_lost_is_salvaged(
    one, tmp_path, entry, index
):
    """A flipped bit in the id of one entry of a pack's header, and the index file naming the
    pack lost or cut: rebuild-index salvaged only the chunks whose header id still checked and
    moved the pack, holding the other chunk intact, to quarantine, so the backup could no
    longer be restored. The chunk's bytes are named by their own hash: it is salvaged."""
    root, backup_id, want = one
    repo = Repository(root, P)
    (pack_id,) = {loc.pack_id for loc in repo.refresh_index().entries.values()}
    path = _pdir(root) / pack_name(pack_id)
    entries = read_pack_entries(repo.store, pack_name(pack_id), repo.codec)
    assert len(entries) == 2
    data = bytearray(path.read_bytes())
    header = len(data) - TRAILER.size - len(entries) * ENTRY.size
    data[header + entry * ENTRY.size + 5] ^= 0x40  # a bit of the entry's chunk id
    path.write_bytes(bytes(data))
    (victim,) = (_pdir(root) / "index").iterdir()
    assert {loc.pack_id for _d, loc in decode_index(victim.read_bytes())} == {pack_id}
    if index == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:50])

    r = h.cli_process(root, "rebuild-index", P)
    assert r.returncode == 4, r.stderr  # a damaged pack was found
    assert "2 chunks salvaged" in r.stdout, r.stdout
    assert "Traceback" not in r.stderr
    await _restores(root, backup_id, want, tmp_path)
    r = h.cli_process(root, "check", P, "--read-data")
    assert r.returncode == 0, r.stdout + r.stderr
    # the damaged original is kept in quarantine, byte for byte (I2)
    assert (_pdir(root) / "quarantine" / pack_name(pack_id)).read_bytes() == bytes(data)


@pytest.mark.parametrize(
    "edit",
    [{"grace_hours": False}, {"grace_hours": True}, {"keep_last": True}, {"keep_daily": False}],
)
async def test_a_hand_edited_policy_with_a_boolean_count_is_damaged_not_a_number(tmp_path, edit):
    """policy.json edited by hand with `"grace_hours": false` was read as 0 hours: forget
    deleted for good at once what it removes (true was 1 hour, and 1 backup for a count).
    A boolean where a number belongs is damage, one line; nothing is removed."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / "f.txt").write_text(f"version {i}\n" * 100)
        r = h.cli_process(root, "create", P, str(src))
        assert r.returncode == 0, r.stderr
    r = h.cli_process(root, "policy", "set", P, "--keep-last", "2")
    assert r.returncode == 0, r.stderr
    path = _pdir(root) / "policy.json"
    policy = json.loads(path.read_bytes())
    path.write_text(json.dumps({**policy, **edit}))
    before = h.regular_files(_pdir(root))
    for args in (("policy", "show", P), ("forget", P, "--dry-run"), ("forget", P)):
        r = h.cli_process(root, *args)
        assert r.returncode != 0, (args, r.stdout)
        assert "policy.json is damaged" in r.stderr and h.nexus_error_line(r.stderr), r.stderr
        assert r.stderr.count("\n") == 1, r.stderr
    after = h.regular_files(_pdir(root))
    assert {k: v for k, v in after.items() if "locks/" not in k} == {
        k: v for k, v in before.items() if "locks/" not in k
    }
    r = h.cli_process(root, "list", P)
    assert r.returncode == 0 and r.stdout.count("completed") == 3, r.stdout


def _ids(text: str) -> dict[str, str]:
    """The forget table's rows: backup id -> action."""
    rows = [ln.split() for ln in text.splitlines()]
    return {r[0]: r[3] for r in rows if len(r) >= 4 and r[0][:8].isdigit()}


async def test_forget_names_every_backup_it_deletes_for_good_dry_run_and_real(tmp_path):
    """Backups removed by an earlier forget whose grace period is over are deleted for good
    by the next one; its table named none of them ("Would remove 2 backups of 1"), in the
    dry run and the real run alike: the preview must name exactly what goes."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    ids = []
    for i in range(3):
        (src / "f.txt").write_text(f"version {i}\n" * 100)
        r = h.cli_process(root, "--json", "create", P, str(src))
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["id"])
    r = h.cli_process(root, "forget", P, "--keep-last", "1")
    assert r.returncode == 0 and _ids(r.stdout) == {
        ids[2]: "keep",
        ids[1]: "remove",
        ids[0]: "remove",
    }, r.stdout
    for backup_id in ids[:2]:  # their grace period passed
        meta = _pdir(root) / f"backup_{backup_id}" / "metadata.json"
        value = json.loads(meta.read_bytes())
        value["purge_after"] = "2020-01-01T00:00:00Z"
        meta.write_text(json.dumps(value))
    want = {ids[2]: "keep", ids[1]: "delete", ids[0]: "delete"}
    dry = h.cli_process(root, "forget", P, "--keep-last", "1", "--dry-run")
    assert dry.returncode == 0 and _ids(dry.stdout) == want, dry.stdout
    assert "Would remove 2 backups of 3, keeping 1." in dry.stdout, dry.stdout
    real = h.cli_process(root, "forget", P, "--keep-last", "1")
    assert real.returncode == 0 and _ids(real.stdout) == want, real.stdout
    assert "Removed 2 backups of 3, keeping 1." in real.stdout, real.stdout
    assert sorted(p.name for p in _pdir(root).glob("backup_*")) == [f"backup_{ids[2]}"]


@pytest.mark.parametrize("stranger", ["backup_{id} (copy)", "deleting/notes.txt~"])
async def test_a_name_that_is_no_backup_id_in_the_project_stops_no_backup_and_loses_nothing(
    tmp_path, stranger
):
    """A file manager's copy of a backup directory (`backup_ID (copy)`), or an editor's file
    under deleting/, made every writer (create, delete, forget, rebuild-index) and check fail
    with "internal error: ValueError: invalid backup_id": recovery judged the name as an id.
    It is no backup: backups are made and checked beside it; a copy of a backup, whose chunks
    it names, blocks reclaim (nothing deleted) until it is moved out; nothing removes it."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    ids = []
    for i in range(2):
        (src / f"f{i}.bin").write_bytes(os.urandom(50_000))
        r = h.cli_process(root, "--json", "create", P, str(src))
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["id"])
    strange = _pdir(root) / stranger.format(id=ids[0])
    if stranger.startswith("backup_"):
        shutil.copytree(_pdir(root) / f"backup_{ids[0]}", strange)
    else:
        strange.parent.mkdir()
        strange.write_text("notes")
    kept = h.regular_files(strange) if strange.is_dir() else {"": strange.read_bytes()}

    (src / "f2.bin").write_bytes(os.urandom(50_000))
    r = h.cli_process(root, "create", P, str(src))
    assert r.returncode == 0, r.stderr
    r = h.cli_process(root, "check", P)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert r.returncode == (4 if stranger.startswith("backup_") else 0), r.stdout + r.stderr
    packs = sorted(p.name for p in _pdir(root).glob("packs/*/*"))
    r = h.cli_process(root, "delete", P, ids[0])
    assert "internal error" not in r.stderr and f"Deleted backup {ids[0]}" in r.stdout, r.stderr
    if stranger.startswith("backup_"):  # the copy names the deleted backup's chunks
        assert r.returncode == 1 and "space not reclaimed" in r.stderr, r.stderr
        assert sorted(p.name for p in _pdir(root).glob("packs/*/*")) == packs
    else:
        assert r.returncode == 0, r.stderr
    for args in (("rebuild-index", P), ("forget", P, "--keep-last", "5")):
        r = h.cli_process(root, *args)
        assert r.returncode == 0 and "internal error" not in r.stderr, (args, r.stderr)
    assert (h.regular_files(strange) if strange.is_dir() else {"": strange.read_bytes()}) == kept
    if stranger.startswith("backup_"):  # moved back by hand under its own name: restorable
        shutil.rmtree(_pdir(root) / f"backup_{ids[0]}", ignore_errors=True)
        strange.rename(_pdir(root) / f"backup_{ids[0]}")
        await _restores(root, ids[0], {"f0.bin": (src / "f0.bin").read_bytes()}, tmp_path)


def test_a_delete_a_read_only_backup_stopped_never_stops_the_next_backups(world_tmp, as_nobody):
    """A backup directory made read-only (chmod -R a-w, to keep it): its delete fails after
    its tombstone, with one line. Every later writer's recovery then tried to finish that
    delete and failed the same way: no backup, forget or rebuild-index could run ("error:
    manifest.zst: permission denied") until someone found the directory. The delete is left
    for a later writer; the others run; once writable, the next writer finishes it."""
    root, src = world_tmp / "repo", world_tmp / "src"
    src.mkdir()
    (src / "f.txt").write_text("one\n" * 1000)
    ids = []
    for i in range(2):
        (src / f"g{i}.bin").write_bytes(os.urandom(20_000))
        r = h.cli_process(root, "--json", "create", P, str(src))
        assert r.returncode == 0, r.stderr
        ids.append(json.loads(r.stdout)["id"])
    for p in [world_tmp, *world_tmp.rglob("*")]:
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
    kept = _pdir(root) / f"backup_{ids[0]}"
    (kept / "data").chmod(0o500)
    kept.chmod(0o500)
    base = ["--root", str(root)]
    r = as_nobody([*base, "delete", P, ids[0]], world_tmp)
    assert r.returncode == 1 and h.nexus_error_line(r.stderr), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    (src / "g2.bin").write_bytes(os.urandom(20_000))
    for argv in (["create", P, str(src)], ["forget", P, "--keep-last", "5"], ["rebuild-index", P]):
        r = as_nobody([*base, *argv], world_tmp)
        assert r.returncode == 0, (argv, r.stderr)
    r = as_nobody([*base, "--json", "list", P], world_tmp)
    listed = [m["id"] for m in json.loads(r.stdout)]
    assert len(listed) == 2 and ids[1] in listed and ids[0] not in listed, listed
    kept.chmod(0o700)
    (kept / "data").chmod(0o700)
    r = as_nobody([*base, "check", P, "--read-data"], world_tmp)  # a reader: changes nothing
    assert r.returncode == 0, r.stdout + r.stderr
    r = as_nobody([*base, "rebuild-index", P], world_tmp)  # a writer: finishes the delete
    assert r.returncode == 0 and not kept.exists(), r.stderr
    r = as_nobody([*base, "check", P, "--read-data"], world_tmp)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_damaged_policy_says_a_remedy_that_works(tmp_path):
    """A damaged policy.json said "set it again or clear it", but `policy set` changes only
    the rules it names, so it reads the damaged file and fails the same way: the line names
    `policy clear`, and doing what it says works."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("x")
    assert h.cli_process(root, "create", P, str(src)).returncode == 0
    (_pdir(root) / "policy.json").write_text('{"keep_last": tru')
    r = h.cli_process(root, "policy", "set", P, "--keep-last", "3")
    assert r.returncode == 4 and h.nexus_error_line(r.stderr), r.stderr
    assert "policy.json is damaged" in r.stderr and "(policy clear)" in r.stderr, r.stderr
    assert h.cli_process(root, "policy", "clear", P).returncode == 0
    r = h.cli_process(root, "policy", "set", P, "--keep-last", "3")
    assert r.returncode == 0 and "--keep-last 3" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("entry", [0, 1])
async def test_a_damaged_length_in_a_pack_header_with_its_index_lost_is_salvaged(
    one, tmp_path, entry
):
    """A flipped bit in one entry's stored length, and the index file lost: the header read
    without its checksum placed every blob after that entry at a wrong offset, and the entry
    itself at a wrong length, so rebuild-index salvaged none of them and moved the pack,
    both chunks intact, to quarantine. The blobs end where the header begins: read from
    there back, the entries after the damaged one, and then it, are placed again."""
    root, backup_id, want = one
    repo = Repository(root, P)
    (pack_id,) = {loc.pack_id for loc in repo.refresh_index().entries.values()}
    path = _pdir(root) / pack_name(pack_id)
    entries = read_pack_entries(repo.store, pack_name(pack_id), repo.codec)
    data = bytearray(path.read_bytes())
    header = len(data) - TRAILER.size - len(entries) * ENTRY.size
    data[header + entry * ENTRY.size + 32 + 2] ^= 0x10  # a bit of its stored length
    path.write_bytes(bytes(data))
    for f in (_pdir(root) / "index").iterdir():
        f.unlink()

    r = h.cli_process(root, "rebuild-index", P)
    assert r.returncode == 4 and "2 chunks salvaged" in r.stdout, r.stdout + r.stderr
    await _restores(root, backup_id, want, tmp_path)
    r = h.cli_process(root, "check", P, "--read-data")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
async def two_apart(tmp_path: Path):
    """Two completed backups of two directories sharing no data (each in its own pack)."""
    root = tmp_path / "repo"
    out = []
    for i, name in enumerate(("a", "b")):
        d = tmp_path / name
        d.mkdir()
        (d / "f.bin").write_bytes(os.urandom(100_000))
        req = CreateRequest(project_id=P, data_dir=str(d), data_dir_change=bool(i))
        out.append(((await BackupManager(root).create(req)).id, _tree(d)))
    return root, out


@pytest.mark.parametrize("state", ["missing", "truncated", "garbage", "newer", "other"])
async def test_a_kept_backups_odd_manifest_stops_reclaim(two_apart, tmp_path, state):
    """The manifest of the backup that stays is missing, cut, garbage, of a newer format (its
    checksum made to match, so that only the format can refuse it) or another backup's: the
    delete of the other backup reclaims nothing, and once the manifest is back the kept
    backup restores byte for byte."""
    root, [(a_id, _a), (b_id, b_tree)] = two_apart
    path = _pdir(root) / f"backup_{b_id}" / "data" / "manifest.zst"
    original = path.read_bytes()
    if state == "missing":
        path.unlink()
    elif state == "truncated":
        path.write_bytes(original[: len(original) // 2])
    elif state == "garbage":
        path.write_bytes(os.urandom(len(original)))
    elif state == "other":
        path.write_bytes((_pdir(root) / f"backup_{a_id}" / "data" / "manifest.zst").read_bytes())
    else:
        lines = zstandard.ZstdDecompressor().decompressobj().decompress(original)
        newer = lines.replace(b'"nexus_manifest":1', b'"nexus_manifest":2', 1)
        assert newer != lines
        path.write_bytes(zstandard.ZstdCompressor().compress(newer))
        meta = _pdir(root) / f"backup_{b_id}" / "metadata.json"
        value = json.loads(meta.read_bytes())
        value["checksum"] = mf.checksum(path.read_bytes())
        meta.write_text(json.dumps(value))
    packs = sorted(p.name for p in _pdir(root).glob("packs/*/*"))
    res = await BackupManager(root).delete(P, a_id)
    assert res.reclaim_refused and "nothing was deleted" in res.reclaim_refused
    assert sorted(p.name for p in _pdir(root).glob("packs/*/*")) == packs
    if state == "newer":
        assert "format" in res.reclaim_refused or "nexus_manifest" in res.reclaim_refused
    path.write_bytes(original)
    if state == "newer":
        meta.write_text(json.dumps({**value, "checksum": mf.checksum(original)}))
    await _restores(root, b_id, b_tree, tmp_path)


BAD_RULES = [
    ["--keep-last", "-1"],
    ["--keep-last", "1.5"],
    ["--keep-last", "1e3"],
    ["--keep-last", "99999999999999"],
    ["--keep-last", "0"],
    ["--keep-within", "0d"],
    ["--keep-within", "1"],
    ["--keep-within", "30d 1h"],
    ["--keep-within", "99999999999999999999d"],
    ["--keep-checkpoints", "0"],
    ["--keep-tag", "="],
    ["--keep-last", "1", "--grace", "-1"],
    ["--keep-last", "1", "--grace", "100000"],
    ["--keep-last", "1", "--max-unused", "nan"],
]


def test_bad_policy_values_are_one_line_and_change_nothing(tmp_path):
    """Zero, negative, huge and non-integer rule values given to forget (dry run and real)
    and to policy set: one error line, exit 2, no backup removed and no policy stored."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    base = ["--root", str(root)]
    for i in range(2):
        (src / "f.txt").write_text(f"v{i}")
        assert h.cli_inproc([*base, "create", P, str(src)])[0] == 0
    before = {k: v for k, v in h.regular_files(_pdir(root)).items() if "locks/" not in k}
    for rules in BAD_RULES:
        for argv in (["forget", P, "--dry-run"], ["forget", P], ["policy", "set", P]):
            if argv[0] == "policy" and "--max-unused" in rules:
                continue
            code, _out, err = h.cli_inproc([*base, *argv, *rules])
            assert code == 2 and h.nexus_error_line(err) and err.count("\n") == 1, (rules, err)
    after = {k: v for k, v in h.regular_files(_pdir(root)).items() if "locks/" not in k}
    assert after == before
