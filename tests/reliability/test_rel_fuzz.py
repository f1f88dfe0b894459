"""Fuzzing with hypothesis: the CLI's arguments (run in-process through cli.main.main, plus a
few real processes) and the HTTP API's payloads and path parameters (a real server, from the
API tests' fixtures). Whatever comes in: no traceback, no internal error, no 500, an exit code
from the documented set, and no file touched outside the allowed places.

The CLI may back up or restore wherever it is told: the generated paths are confined to a
sandbox (sampled paths, relative names without `..`), and commands that block (tui, serve,
demo) are never generated. One sampled target, `link-out/x`, goes through a symlink that
leads outside: a restore told to go there writes there (as cp or tar would), so that
directory, and nothing else outside, may change."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
import rel_harness as h
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.manager import BackupManager
from core.models import CreateRequest

BLOCKING = {"tui", "serve", "demo"}
EXIT_CODES = {0, 1, 2, 3, 4}


class Sandbox:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "repo"
        self.src = base / "work" / "src"
        self.work = base / "work"
        self.outside = base / "outside"
        self.ids: list[str] = []

    def outside_state(self) -> tuple:
        return h.tree_state(self.outside), sorted(os.listdir(self.base))

    def told_outside(self, argv: list[str]) -> Path | None:
        """The directory below `outside` that a restore in `argv` was told to write to."""
        if argv[2:3] != ["restore"] or len(argv) < 6 or argv[5].startswith("-"):
            return None
        target = Path(os.path.realpath(self.work / argv[5]))
        return target if self.outside in target.parents else None


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(tmp_path_factory.mktemp("fuzz"))
    sb.work.mkdir()
    sb.src.mkdir()
    (sb.src / "f.txt").write_text("fuzz\n")
    (sb.src / "g.bin").write_bytes(os.urandom(3000))
    (sb.work / "a-file.txt").write_text("a file, not a directory\n")
    sb.outside.mkdir()
    (sb.outside / "sentinel").write_text("never touched\n")
    os.symlink(sb.outside, sb.work / "link-out")

    async def two() -> list[str]:
        mgr = BackupManager(sb.root)
        return [
            (await mgr.create(CreateRequest(project_id="fz", data_dir=str(sb.src)))).id
            for _ in range(2)
        ]

    sb.ids = asyncio.run(two())
    return sb


def safe_text(min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=min_size,
        max_size=40,
    ).filter(lambda s: not s.startswith("-") and ".." not in s and not s.startswith(("/", "~")))


def mostly(draw, good: st.SearchStrategy, bad: st.SearchStrategy, odds: int = 4):
    """A draw from `good`, except one time in `odds` from `bad`."""
    return draw(bad) if draw(st.integers(0, odds - 1)) == 0 else draw(good)


VALUED = {
    "--type",
    "--tag",
    "--extra",
    "--exclude",
    "--name",
    "--parent",
    "--path",
    "--overwrite",
    "--status",
    "--since",
    "--until",
    "--search",
}


@st.composite
def cli_argv(draw, sb: Sandbox) -> list[str]:
    command = mostly(
        draw,
        st.sampled_from(["create", "restore", "list", "info", "delete", "verify", "projects"]),
        safe_text(1).filter(lambda s: s.strip() not in BLOCKING),
        odds=8,
    )
    project = mostly(
        draw,
        st.sampled_from(["fz", "fz", "new-proj"]),
        st.sampled_from(["nope", "a/b", ".x", "..", "x" * 65, ""]) | safe_text(),
    )
    backup = mostly(
        draw,
        st.sampled_from([*sb.ids, "latest"]),
        st.sampled_from(["2020", "../x", "", "x" * 80]) | safe_text(),
    )
    path = mostly(
        draw,
        st.sampled_from([str(sb.src), str(sb.work / "out"), "out", ".", "src", "restored/x"]),
        st.sampled_from(
            [
                "a-file.txt",
                "link-out/x",
                str(sb.work / "a-file.txt"),
                "missing/dir",
                "/dev/null/x",
                "",
            ]
        )
        | safe_text(),
    )
    positional = {
        "create": [project, path],
        "restore": [project, backup, path],
        "list": [project],
        "info": [project, backup],
        "delete": [project, backup],
        "verify": [project, backup],
        "projects": [],
    }.get(command, draw(st.lists(safe_text(), max_size=3)))
    valid = {
        "create": ["--type", "--tag", "--extra", "--exclude", "--name", "--parent"],
        "restore": ["--path", "--overwrite", "--delete", "--dry-run", "--no-checkpoint"],
        "list": ["--type", "--status", "--tag", "--since", "--until", "--search"],
        "verify": ["--all", "--quick"],
    }.get(command, [])
    flags = ["--delete", "--dry-run", "--no-checkpoint", "--all", "--quick"]
    every = ["--json", *sorted(VALUED), *flags, "--bogus", "-x"]
    pool = ["--json", *valid] if draw(st.integers(0, 3)) else every
    options = draw(st.lists(st.sampled_from(pool), max_size=3))
    value = {
        "--type": ["full", "incremental", "snapshot", "checkpoint"],
        "--tag": ["k=v", "env=prod", "k"],
        "--extra": ["k=v"],
        "--exclude": ["*.bin", "src/*"],
        "--name": ["before-x"],
        "--parent": [*sb.ids],
        "--path": ["f.txt", "*.bin", "src"],
        "--overwrite": ["always", "if-changed", "never"],
        "--status": ["completed", "failed"],
        "--since": ["7d", "2020-01-01", "now"],
        "--until": ["1h", "2099-12-31"],
        "--search": ["full"],
    }
    argv = ["--root", str(sb.root), command, *positional]
    for opt in options:
        argv.append(opt)
        if opt in VALUED:
            good = st.sampled_from(value[opt]) if value[opt] else safe_text()
            argv.append(mostly(draw, good, st.sampled_from(["=", "", "*"]) | safe_text()))
    return argv


def test_cli_arguments_fuzz(sandbox: Sandbox):
    sb = sandbox
    before = sb.outside_state()
    seen: Counter[str] = Counter()

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=False,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(argv=cli_argv(sb))
    @example(argv=["--root", str(sb.root), "restore", "fz", "latest", "link-out/x"])
    def run(argv: list[str]) -> None:
        assert not BLOCKING & set(argv[2:3])
        cwd = os.getcwd()
        os.chdir(sb.work)
        try:
            code, _out, err = h.cli_inproc(argv)
        finally:
            os.chdir(cwd)
        seen[f"{argv[2] if len(argv) > 2 else '-'}:{code}"] += 1
        assert code in EXIT_CODES, (argv, code, err)
        assert h.nexus_error_line(err), (argv, err)
        assert "internal error" not in err, (argv, err)
        told = sb.told_outside(argv)
        if told is not None:  # what it was told to write: gone again for the next example
            shutil.rmtree(told, ignore_errors=True)
        assert sb.outside_state() == before, f"{argv} touched something outside"

    run()
    print(f"[reliability] CLI fuzz outcomes: {dict(sorted(seen.items()))}")
    assert sum(n for k, n in seen.items() if k.endswith((":0", ":3"))) >= 5, seen


@pytest.mark.parametrize(
    "argv",
    [
        ["create"],
        ["create", "fz", "/nonexistent/dir"],
        ["restore", "fz", "latest", "/dev/null"],
        ["info", "fz", "../../etc"],
        ["list", "fz", "--since", "not a date"],
        ["verify", "fz"],
        ["--json", "bogus-command", "\udcff"],
    ],
)
def test_cli_real_process_bad_input_is_one_line(sandbox: Sandbox, argv: list[str]):
    env = h.driver_env() | {"PYTHONIOENCODING": "utf-8:surrogateescape"}
    r = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(sandbox.root), *argv],
        capture_output=True,
        env=env,
        cwd=str(sandbox.work),
        timeout=60,
    )
    err = r.stderr.decode(errors="replace")
    assert r.returncode in {1, 2}, (argv, r.returncode, err)
    assert h.nexus_error_line(err) and len(err.strip().splitlines()) == 1, err


# --- the HTTP API ---------------------------------------------------------------------------------

requires_api = pytest.mark.skipif(
    not (h.REPO_DIR / "tests" / "api" / "conftest.py").exists(),
    reason="the HTTP API's test fixtures (tests/api/conftest.py) are not there yet",
)


def api_text() -> st.SearchStrategy[str]:
    return st.text(max_size=60)


@st.composite
def api_payload(draw, allowed: Path, outside: Path, ids: list[str]) -> tuple[str, dict]:
    path = mostly(
        draw,
        st.sampled_from([str(allowed / "src"), str(allowed / "out"), str(allowed / "out2/x")]),
        st.sampled_from(
            [
                str(allowed),
                str(outside),
                str(allowed / "link-out"),
                str(allowed / "link-out" / "x"),
                f"{allowed}/../{outside.name}",
                f"{allowed}/./out/../../{outside.name}/x",
                "relative/dir",
                "",
                "/",
                "/etc",
                "\x00",
                str(allowed / "a-file.txt"),
                "~/x",
                str(allowed) + "/\u2028",
            ]
        )
        | api_text(),
    )
    project = mostly(
        draw, st.just("fz"), st.sampled_from(["other", "..", "a/b", "", "x" * 70]) | api_text()
    )
    backup = mostly(
        draw,
        st.sampled_from([*ids, "latest"]),
        st.sampled_from(["", "../../x", "nope"]) | api_text(),
    )
    if draw(st.booleans()):
        body = {"project_id": project, "data_dir": path}
        for key, strat in (
            ("backup_type", st.sampled_from(["full", "incremental", "bogus", 3])),
            ("tags", st.dictionaries(api_text(), api_text(), max_size=3) | api_text()),
            ("excludes", st.lists(api_text(), max_size=3)),
            ("name", api_text()),
            ("parent_backup_id", st.sampled_from([*ids, "nope", None])),
            ("unexpected", st.integers()),
        ):
            if draw(st.integers(0, 3)) == 0:
                body[key] = draw(strat)
        return "/api/v1/backup/create", body
    body = {"project_id": project, "backup_id": backup, "restore_dir": path}
    for key, strat in (
        (
            "paths",
            st.lists(
                st.sampled_from(["f.txt", "../x", "/etc/passwd", "*"]) | api_text(), max_size=3
            ),
        ),
        ("overwrite", st.sampled_from(["always", "if-changed", "never", "sometimes"])),
        ("delete_extra", st.booleans() | api_text()),
        ("dry_run", st.booleans()),
        ("checkpoint", st.booleans()),
    ):
        if draw(st.integers(0, 2)) == 0:
            body[key] = draw(strat)
    return "/api/v1/backup/restore", body


def _wait_idle(client, projects: list[str], timeout: float = 60) -> None:
    """Until no backup of these projects is still being written or restored."""
    deadline = time.monotonic() + timeout
    busy_states = {"pending", "running", "validating", "restoring"}
    while time.monotonic() < deadline:
        busy = False
        for p in projects:
            r = client.get(f"/api/v1/backup/list/{p}")
            if r.status_code == 200 and any(i["status"] in busy_states for i in r.json()["items"]):
                busy = True
        if not busy:
            return
        time.sleep(0.05)
    raise AssertionError("backups still running after the fuzz")


@requires_api
def test_api_payloads_and_path_parameters_fuzz(make_api):
    api = make_api()
    src = api.allowed / "src"
    src.mkdir()
    (src / "f.txt").write_text("api fuzz\n")
    (api.allowed / "a-file.txt").write_text("file\n")
    os.symlink(api.outside, api.allowed / "link-out")
    (api.outside / "sentinel").write_text("never touched\n")
    with api.client() as c:
        r = c.post("/api/v1/backup/create", json={"project_id": "fz", "data_dir": str(src)})
        assert r.status_code == 202, r.text
        ids = [r.json()["id"]]
        _wait_idle(c, ["fz"])
        before = h.tree_state(api.outside)
        seen: Counter[str] = Counter()
        outside_listing = sorted(os.listdir(api.outside.parent))

        @settings(
            max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            call=api_payload(api.allowed, api.outside, ids),
            segs=st.tuples(
                st.sampled_from(["fz", "other"]) | api_text(),
                st.sampled_from([*ids, "latest"]) | api_text(),
            ),
            which=st.sampled_from(["body", "info", "delete", "list", "job"]),
        )
        def run(call: tuple[str, dict], segs: tuple[str, str], which: str) -> None:
            p, b = (quote(s, safe="") or "x" for s in segs)
            if which == "body":
                url, body = call
                r = c.post(url, json=body)
            elif which == "info":
                r = c.get(f"/api/v1/backup/info/{p}/{b}")
            elif which == "delete":
                r = c.delete(f"/api/v1/backup/{p}/{b}")
            elif which == "list":
                r = c.get(f"/api/v1/backup/list/{p}", params={"q": segs[1], "since": segs[0]})
            else:
                r = c.get(f"/api/v1/jobs/{p}")
            seen[f"{which}:{r.status_code}"] += 1
            assert r.status_code < 500, (which, call, segs, r.status_code, r.text[:300])
            assert "Traceback" not in r.text
            assert h.tree_state(api.outside) == before

        run()
        print(f"[reliability] API fuzz outcomes: {dict(sorted(seen.items()))}")
        _wait_idle(c, ["fz", "other"])
    assert h.tree_state(api.outside) == before, "the API touched a file outside its allowed dir"
    assert sorted(os.listdir(api.outside.parent)) == outside_listing
    with contextlib.suppress(FileNotFoundError):
        assert not [p for p in api.root.rglob("*") if ".tmp-" in p.name]
