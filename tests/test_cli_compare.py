"""`diff`, `find`, `ls`, `cat` and `dump` run for real (`python -m cli` in subprocesses) on a
tree with odd names, a type change and symlinks: what a user types and reads."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import REPO, _env, js, nb, ok, one_error

ODD = b"caf\xe9-latin1"


def _tree(top: Path) -> Path:
    (top / "docs").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "docs" / "readme.md").write_text("# readme\n")
    (top / "config.yaml").write_text("a: 1\n")
    (top / "becomes-dir").write_text("file\n")
    (top / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    os.symlink("docs/readme.md", top / "link")
    with open(os.path.join(os.fsencode(top), ODD), "wb") as f:
        f.write(b"odd\n")
    return top


def _make_two(tmp: Path) -> tuple[Path, Path, str, str]:
    """Two backups of a tree, the second after a content change, a type change and a new file."""
    root, top = tmp / "root", _tree(tmp / "data")
    a = js(nb(root, "--json", "create", "p", str(top)))["id"]
    (top / "config.yaml").write_text("a: 2\nb: 3\n")
    (top / "becomes-dir").unlink()
    (top / "becomes-dir").mkdir()
    (top / "docs" / "new.md").write_text("new\n")
    b = js(nb(root, "--json", "create", "p", str(top), "--type", "incremental"))["id"]
    return root, top, a, b


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str, str]:
    """Shared by the tests that only read (none changes the tree or the repository)."""
    return _make_two(tmp_path_factory.mktemp("two"))


@pytest.mark.slow  # several runs of the program
def test_diff_prints_each_change_and_the_totals(two):
    root, _top, a, b = two
    lines = ok(nb(root, "diff", "p", a, b)).stdout.splitlines()
    assert "M  config.yaml  (content, size 5 Bytes → 10 Bytes, mtime)" in lines
    assert "T  becomes-dir/  (file → dir)" in lines
    assert "+  docs/new.md" in lines
    assert lines[-1].startswith(f"{a} → {b}: 1 added, 0 removed")
    narrowed = ok(nb(root, "diff", "p", a, b, "--path", "docs")).stdout.splitlines()
    assert narrowed[:-1] == ["M  docs/  (mtime)", "+  docs/new.md"]
    data = js(nb(root, "--json", "diff", "p", a, "latest"))
    assert data["b"] == b and data["totals"]["added"] == 1 and not data["truncated"]
    assert {c["path"] for c in data["changes"]} == {
        "config.yaml",
        "becomes-dir",
        "docs",
        "docs/new.md",
    }


@pytest.mark.slow  # several runs of the program
def test_diff_against_the_live_directory(tmp_path):
    root, top, _a, b = _make_two(tmp_path)
    assert ok(nb(root, "diff", "p", b, "--live")).stdout.startswith("No differences")
    with open(os.path.join(os.fsencode(top), ODD), "wb") as f:
        f.write(b"ODD\n")  # the same size
    os.utime(os.path.join(os.fsencode(top), ODD), ns=(0, 10**18))
    quick = ok(nb(root, "diff", "p", b, "--live")).stdout
    assert "M  caf\\xe9-latin1  (mtime, content not compared (same size))" in quick
    assert "--verify-content hashes them" in quick
    proven = ok(nb(root, "diff", "p", b, "--live", "--verify-content")).stdout
    assert "M  caf\\xe9-latin1  (content, mtime)" in proven
    data = js(nb(root, "--json", "diff", "p", b, "--live", "--verify-content"))
    [change] = data["changes"]
    assert base64.b64decode(change["path_b64"]) == ODD and change["compared"] == "hash"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["diff", "p", "latest"], 2, "--live"),
        (["diff", "p", "latest", "latest", "--live"], 2, "not both"),
        (["diff", "p", "latest", "latest", "--verify-content"], 2, "--verify-content"),
        (["diff", "p", "20200101-000000-abcdef", "latest"], 1, "not found"),
        (["diff", "p", "latest", "latest", "--path", "../x"], 2, "'..'"),
        (["diff", "nope", "latest", "latest"], 1, "unknown project"),
        (["find"], 2, "required"),
        (["find", "p", ""], 2, "empty"),
        (["find", "pattern-only"], 2, "all-projects"),
        (["ls", "p", "latest", "nope"], 1, "not in backup"),
        (["cat", "p", "latest", "docs"], 2, "directory"),
        (["cat", "p", "latest", "link"], 2, "symlink"),
        (["cat", "p", "latest", "missing.txt"], 1, "not in backup"),
        (["dump", "p", "latest", "missing"], 1, "not in backup"),
    ],
)
def test_bad_input_is_one_error_line(two, args, code, needle):
    root = two[0]
    one_error(nb(root, *args), code, needle)


@pytest.mark.slow  # several runs of the program
def test_find_lists_the_backups_holding_a_path(two):
    root, _top, a, b = two
    out = ok(nb(root, "find", "p", "*.yaml")).stdout.splitlines()
    assert out[0] == "config.yaml"
    assert out[1].startswith(f"  {b}  10 Bytes") and out[2].startswith(f"  {a}  5 Bytes")
    collapsed = ok(nb(root, "find", "p", "readme")).stdout.splitlines()
    assert collapsed[:2] == ["docs/readme.md", collapsed[1]]
    assert f"{b} .. {a} (2 backups)" in collapsed[1]
    data = js(nb(root, "--json", "find", "--all-projects", "caf"))
    [hit] = data["hits"]
    assert base64.b64decode(hit["path_b64"]) == ODD and hit["versions"][0]["backups"] == 2
    assert ok(nb(root, "find", "p", "nothing-like-it")).stdout.startswith("No path matches")


@pytest.mark.slow  # several runs of the program
def test_ls_short_long_recursive_and_json(two):
    root, _top, _a, b = two
    short = ok(nb(root, "ls", "p", b)).stdout.splitlines()
    assert short == sorted(short, key=lambda s: s.encode()) or "docs/" in short
    assert {"docs/", "empty/", "config.yaml", "link", "caf\\xe9-latin1"} <= set(short)
    long = ok(nb(root, "ls", "p", b, "-l")).stdout
    assert "link -> docs/readme.md" in long and "(2 files)" in long
    deep = ok(nb(root, "ls", "p", b, "--recursive")).stdout.splitlines()
    assert "docs/new.md" in deep and "docs/readme.md" in deep
    data = js(nb(root, "--json", "ls", "p", b, "docs"))
    assert [e["name"] for e in data["entries"]] == ["new.md", "readme.md"]


@pytest.mark.slow  # several runs of the program
def test_cat_writes_the_exact_bytes(two):
    root, top, _a, _b = two
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), "cat", "p", "latest", "big.bin"],
        capture_output=True,
        cwd=REPO,
        env=_env(),
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout == (top / "big.bin").read_bytes()
    odd = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), "cat", "p", "latest", os.fsdecode(ODD)],
        capture_output=True,
        cwd=REPO,
        env=_env(),
        timeout=60,
    )
    assert odd.returncode == 0 and odd.stdout == b"odd\n"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tar") is None, reason="needs tar")
def test_dump_piped_into_tar_reproduces_the_tree(two, tmp_path, tree_of):
    root, top, _a, _b = two
    dest = tmp_path / "untarred"
    dest.mkdir()
    cmd = f"{sys.executable} -m cli --root {root} dump p latest | tar -x -C {dest}"
    proc = subprocess.run(cmd, shell=True, capture_output=True, cwd=REPO, env=_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert tree_of(dest) == tree_of(top)  # names, bytes, modes, mtimes to the ns, symlinks
    sub = tmp_path / "sub"
    sub.mkdir()
    cmd = f"{sys.executable} -m cli --root {root} dump p latest docs | tar -x -C {sub}"
    assert subprocess.run(cmd, shell=True, cwd=REPO, env=_env(), timeout=60).returncode == 0
    assert sorted(os.listdir(sub / "docs")) == ["new.md", "readme.md"]
    assert json.dumps(sorted(os.listdir(sub))) == '["docs"]'


#: Names that read alike unless a backslash is escaped too, with the one way each must read:
#: a newline and a backslash followed by n, ESC and a literal \x1b, a C1 control (U+0085),
#: the byte 0x85 that is not UTF-8 and a literal \x85 or \u0085.
ALIKE = {
    b"a\\b": "a\\\\b",
    b"a\\\\b": "a\\\\\\\\b",
    b"a\nb": "a\\nb",
    b"a\\nb": "a\\\\nb",
    b"a\x1bb": "a\\x1bb",
    b"a\\x1bb": "a\\\\x1bb",
    "a\x85b".encode(): "a\\u0085b",
    b"a\x85b": "a\\x85b",
    b"a\\x85b": "a\\\\x85b",
    b"a\\u0085b": "a\\\\u0085b",
}


def _raw_controls(text: str) -> list[str]:
    import unicodedata

    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Zl", "Zp")]


def test_names_that_would_read_alike_read_apart_in_every_face(tmp_path: Path):
    """Each name of ALIKE as a file and as a symlink's target, backed up: ls, ls -lR, find,
    diff and restore's preview print each its own way (ALIKE's), never a raw control."""
    root, top = tmp_path / "root", tmp_path / "data"
    top.mkdir()
    (top / "keep.txt").write_text("kept\n")
    a = js(nb(root, "--json", "create", "p", str(top)))["id"]
    for i, raw in enumerate(ALIKE):
        with open(os.path.join(os.fsencode(top), raw), "wb") as f:
            f.write(b"x\n")
        os.symlink(raw, os.path.join(os.fsencode(top), b"l%d" % i))
    b = js(nb(root, "--json", "create", "p", str(top)))["id"]
    want = set(ALIKE.values())
    assert len(want) == len(ALIKE)
    links = {f"l{i}": shown for i, shown in enumerate(ALIKE.values())}
    outputs = {
        "ls": ok(nb(root, "ls", "p", b)).stdout,
        "ls -lR": ok(nb(root, "ls", "p", b, "-l", "-R")).stdout,
        "find": ok(nb(root, "find", "p", "a*")).stdout,
        "find links": ok(nb(root, "find", "p", "l*")).stdout,
        "diff": ok(nb(root, "diff", "p", a, b)).stdout,
        "preview": ok(nb(root, "restore", "p", b, str(tmp_path / "out"), "--dry-run")).stdout,
    }
    for face, text in outputs.items():
        assert not _raw_controls(text), (face, text)
    assert set(outputs["ls"].splitlines()) == want | set(links) | {"keep.txt"}
    assert set(outputs["find"].splitlines()[:-1:2]) == want
    lines = {"ls -lR": outputs["ls -lR"], "find links": outputs["find links"]}
    for face, text in lines.items():
        ends = {line.split(" -> ")[-1].split()[0] for line in text.splitlines() if " -> " in line}
        assert ends == want, (face, ends)
    assert {line[3:] for line in outputs["diff"].splitlines()[:-1]} == want | set(links)
    created = {line.split()[1] for line in outputs["preview"].splitlines() if " create " in line}
    assert created >= want, created
    assert not (tmp_path / "out").exists()
