"""Permissions: everything nexus-backup creates in the repository root (packs, index, locks,
spool, metadata, manifests, verify results, logs) is readable by its owner only: directories
0700, files 0600, whatever the umask of the process that created them."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import rel_harness as h


def _cli(root: Path, umask: int, *args: str) -> subprocess.CompletedProcess:
    """nexus-backup under `umask`: in this process (umask set around the call), but for the
    first call of a test, which is a real process."""
    if _cli.real_done:
        old = os.umask(umask)
        try:
            code, out, err = h.cli_inproc(["--root", str(root), *args])
        finally:
            os.umask(old)
        return subprocess.CompletedProcess(args, code, out, err)
    _cli.real_done = True
    return h.cli_process(root, *args, preexec_fn=lambda: os.umask(umask))


_cli.real_done = False  # type: ignore[attr-defined]


def _loose(root: Path) -> list[str]:
    bad = []
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = Path(dirpath) / name
            st = p.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode) and mode != 0o700:
                bad.append(f"{p.relative_to(root)}/ {oct(mode)}")
            elif stat.S_ISREG(st.st_mode) and mode != 0o600:
                bad.append(f"{p.relative_to(root)} {oct(mode)}")
            elif not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                bad.append(f"{p.relative_to(root)}: unexpected file type {oct(st.st_mode)}")
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode != 0o700:
        bad.append(f"<root> {oct(mode)}")
    return bad


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_everything_in_the_repository_is_owner_only(tmp_path: Path, umask: int):
    _cli.real_done = False  # type: ignore[attr-defined]
    root = tmp_path / "new-root"  # created by nexus-backup itself
    src = tmp_path / "src"
    src.mkdir()
    (src / "public.txt").write_text("world readable in the source\n")
    (src / "public.txt").chmod(0o644)
    (src / "sub").mkdir(mode=0o755)
    (src / "sub" / "big.bin").write_bytes(os.urandom(300_000))
    steps = [
        ("create", "perm", str(src)),
        ("create", "perm", str(src), "--type", "incremental", "--tag", "k=v"),
        ("verify", "perm", "latest"),
        ("restore", "perm", "latest", str(tmp_path / "out")),
        ("restore", "perm", "latest", str(tmp_path / "out"), "--overwrite", "always"),
        ("list", "perm"),
        ("info", "perm", "latest"),
        ("create", "perm", str(tmp_path / "does-not-exist")),  # a failed operation logs too
    ]
    for args in steps:
        r = _cli(root, umask, *args)
        assert r.returncode in (0, 1, 2), (args, r.returncode, r.stderr)
        assert not _loose(root), (args, _loose(root))
    first = sorted((root / "backups" / "perm").glob("backup_*"))[0].name[len("backup_") :]
    r = _cli(root, umask, "delete", "perm", first)
    assert r.returncode == 0, r.stderr
    assert not _loose(root), _loose(root)
    logs = list((root / "logs").iterdir())
    assert logs and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in logs)
    kinds = {p.relative_to(root).parts[2] for p in root.glob("backups/perm/*/*")}
    assert {"packs", "index"} <= {p.name for p in (root / "backups" / "perm").iterdir()}, kinds
