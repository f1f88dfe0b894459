"""What rebuild-index sets aside in `quarantine/`, tried as a careless operator would: the same
stranger's file left in `index/` again, a pack damaged again, rebuild-index run twice, and the
project deleted afterwards. Nothing set aside may be lost (invariant I2), and a project delete
takes what the program itself set aside with the project (invariant I11). The CLI runs as a
process, as a user runs it; every check is on the files in the repository."""

from __future__ import annotations

import os
from pathlib import Path

import rel_harness as h

P = "qa"


def _project(root: Path) -> Path:
    return root / "backups" / P


def _quarantined(root: Path) -> dict[str, bytes]:
    top = _project(root) / "quarantine"
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def _backup(root: Path, src: Path) -> None:
    done = h.cli_process(root, "create", P, str(src))
    assert done.returncode == 0, done.stderr


def _flip_header(pack: Path, at: int = -20) -> None:
    data = bytearray(pack.read_bytes())
    data[at] ^= 0xFF  # inside the header, before the trailer: the header's checksum fails
    pack.write_bytes(bytes(data))


def test_a_file_quarantined_twice_under_one_name_keeps_both(tmp_path: Path) -> None:
    """An operator's notes left in `index/`, set aside by one rebuild, then another file of the
    same name set aside by the next: both copies are kept, each byte for byte."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    _backup(root, src)
    index = _project(root) / "index"
    first, second = b"my notes, first\n", b"other notes, second\n"
    (index / "README.txt").write_bytes(first)
    done = h.cli_process(root, "rebuild-index", P)
    assert done.returncode == 0, done.stderr
    (index / "README.txt").write_bytes(second)
    done = h.cli_process(root, "rebuild-index", P, "--json")
    assert done.returncode == 0, done.stderr
    kept = _quarantined(root)
    assert sorted(kept.values()) == sorted([first, second]), kept
    assert not (index / "README.txt").exists()
    # the second result names where its copy went: never the first copy's name
    assert "quarantine/index/README.txt.1" in done.stdout


def test_the_same_bytes_quarantined_again_are_kept_once(tmp_path: Path) -> None:
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    _backup(root, src)
    index = _project(root) / "index"
    for _ in range(2):
        (index / "README.txt").write_bytes(b"the same notes\n")
        done = h.cli_process(root, "rebuild-index", P)
        assert done.returncode == 0, done.stderr
    assert _quarantined(root) == {"index/README.txt": b"the same notes\n"}


def test_a_pack_damaged_again_after_its_rebuild_keeps_both_damaged_copies(tmp_path: Path) -> None:
    """A pack whose header is damaged is set aside and rebuilt byte for byte under its own name
    (its chunks salvaged); damaged again (the disk is failing), the next rebuild sets aside
    its new damaged bytes beside the first, and the data still restores."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    payload = os.urandom(200_000)
    (src / "f.bin").write_bytes(payload)
    _backup(root, src)
    copies = []
    for at in (-20, -24):  # a bit flipped elsewhere each time: other damaged bytes
        [pack] = [p for p in (_project(root) / "packs").rglob("*") if p.is_file()]
        _flip_header(pack, at)
        copies.append(pack.read_bytes())
        done = h.cli_process(root, "rebuild-index", P)
        assert done.returncode == 4, done.stderr  # damage found (and repaired)
    kept = _quarantined(root)
    assert sorted(kept.values()) == sorted(copies), sorted(kept)
    out = tmp_path / "out"
    done = h.cli_process(root, "restore", P, "latest", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "f.bin").read_bytes() == payload


def test_a_project_delete_takes_its_quarantined_packs_with_it(tmp_path: Path) -> None:
    """rebuild-index set a damaged pack aside in `quarantine/packs/..`: a project delete then
    removes it with the rest (the program wrote it), so the project is gone and its name can
    be used again; before, the delete reported it as a stranger's file and the project stayed
    listed, its config gone, `create` refused for ever."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(200_000))
    _backup(root, src)
    [pack] = [p for p in (_project(root) / "packs").rglob("*") if p.is_file()]
    _flip_header(pack)
    done = h.cli_process(root, "rebuild-index", P)
    assert done.returncode == 4, done.stderr  # damage found (and repaired)
    assert any(name.startswith("packs/") for name in _quarantined(root))
    done = h.cli_process(root, "delete-project", P, "--yes")
    assert done.returncode == 0, done.stderr
    assert "did not write" not in done.stdout + done.stderr
    assert not _project(root).exists() or not any(_project(root).rglob("*"))
    listed = h.cli_process(root, "projects", "--json")
    assert listed.returncode == 0 and P not in listed.stdout
    _backup(root, src)  # the name is free again


def test_a_strangers_file_beside_the_quarantine_is_still_left_and_reported(tmp_path: Path) -> None:
    """What the layout does not name stays where it is, in `quarantine/` too: only what
    rebuild-index sets aside (copies of packs and index files) goes with the project."""
    root, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    _backup(root, src)
    stranger = _project(root) / "quarantine" / "notes" / "deep" / "keep.txt"
    stranger.parent.mkdir(parents=True)
    stranger.write_text("an operator's notes\n")
    done = h.cli_process(root, "delete-project", P, "--yes")
    assert done.returncode == 0, done.stderr
    assert stranger.read_text() == "an operator's notes\n"
    assert "quarantine/notes/deep/keep.txt" in done.stdout + done.stderr
