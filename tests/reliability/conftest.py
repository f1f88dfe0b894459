"""Fixtures of the reliability suite: seeds, small-config repositories, tmpfs mounts, privilege
drops, and the API test fixtures (re-exported from tests/api/conftest.py).

Every random choice is drawn from a seed printed at the start of the test; rerun one failure
with NEXUS_REL_SEED=<seed> pytest tests/reliability -k <test>."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import rel_harness as h  # noqa: E402

FIXED_SEED = os.environ.get("NEXUS_REL_SEED")
SESSION_SEED = h.env_seed()


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This test's seed (printed): NEXUS_REL_SEED when set, else the session's random seed
    mixed with the test's name."""
    if FIXED_SEED:
        value = int(FIXED_SEED)
    else:
        digest = hashlib.sha256(f"{SESSION_SEED}:{request.node.name}".encode()).digest()
        value = int.from_bytes(digest[:4], "big") or 1
    print(
        f"\n[reliability] {request.node.name}: seed {value} "
        f"(reproduce: NEXUS_REL_SEED={value} pytest tests/reliability -k '{request.node.name}')"
    )
    return value


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`mount_tmpfs(name, size)`: a size-limited tmpfs at tmp_path/name (unmounted after).
    Skips, saying why, where mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a size-limited tmpfs here: {r.stderr.strip()}")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def as_nobody() -> Callable[..., subprocess.CompletedProcess]:
    """`as_nobody(argv, cwd)`: run `nexus-backup argv` in a real process that drops to uid/gid
    65534 after importing the engine as root (the interpreter lives under /root, which nobody
    cannot read, so the process imports first and warms up the lazy imports, then setuids)."""
    reason = h.can_drop_privileges()
    if reason:
        pytest.skip(reason)

    def runner(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", NOBODY_DRIVER, *argv],
            capture_output=True,
            text=True,
            cwd=str(cwd),
            env=h.driver_env(),
            timeout=120,
        )

    return runner


NOBODY_DRIVER = r"""
import contextlib, io, os, sys, tempfile
sys.path.insert(0, os.environ["NEXUS_REL_REPO"])
import cli.main
with tempfile.TemporaryDirectory() as t, contextlib.redirect_stdout(io.StringIO()):
    os.mkdir(t + "/s"); open(t + "/s/f", "w").write("x")
    cli.main.main(["--root", t + "/r", "--json", "create", "w", t + "/s"])
    cli.main.main(["--root", t + "/r", "--json", "list", "w"])
    cli.main.main(["--root", t + "/r", "--json", "restore", "w", "latest", t + "/o"])
    cli.main.main(["--root", t + "/r", "--json", "verify", "w", "latest"])
os.setgroups([]); os.setgid(65534); os.setuid(65534)
assert os.geteuid() == 65534
sys.exit(cli.main.main(sys.argv[1:]))
"""


# --- the API's fixtures, from tests/api/conftest.py ---------------------------------------------

_API_CONFTEST = HERE.parent / "api" / "conftest.py"
api_fixtures = None
if _API_CONFTEST.exists():
    with contextlib.suppress(ImportError):
        spec = importlib.util.spec_from_file_location(
            f"nexus_api_conftest_{uuid.uuid4().hex[:8]}", _API_CONFTEST
        )
        assert spec is not None and spec.loader is not None
        api_fixtures = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = api_fixtures  # dataclasses look their module up there
        spec.loader.exec_module(api_fixtures)

if api_fixtures is not None:
    api = api_fixtures.api  # the module-scoped server over a temporary root
    make_api = api_fixtures.make_api


@pytest.fixture
def world_tmp() -> Iterator[Path]:
    """A temp dir every user can reach (pytest's tmp_path is under a 0700 root directory)."""
    d = Path(tempfile.mkdtemp(prefix="nexus-rel-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in d.rglob("*"):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    p.chmod(0o700)
        shutil.rmtree(d, ignore_errors=True)
