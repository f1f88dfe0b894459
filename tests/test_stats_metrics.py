"""Issue 15 from the command line and the engine: `stats` (history, totals, --since, the
repository summary), `--metrics-file` (the textfile collector's format, written atomically),
and the operations the manager counts."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from metrics_helpers import nb, samples
from prometheus_client.parser import text_string_to_metric_families

from core.manager import BackupManager
from core.metrics import build_registry, render, write_metrics_file
from core.models import CreateRequest

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


async def _history(manager: BackupManager, src: Path) -> list:
    """Three daily backups, a file growing each day by 100 KiB of new bytes."""
    metas = []
    for day in range(3):
        (src / f"day{day}.bin").write_bytes(os.urandom(100 * 1024))
        req = CreateRequest(project_id="p", data_dir=str(src), created_at=T0 + timedelta(days=day))
        metas.append(await manager.create(req))
    return metas


async def test_history_and_totals_from_the_metadata(manager, tmp_path, root):
    src = tmp_path / "src"
    src.mkdir()
    metas = await _history(manager, src)
    s = await manager.stats("p")
    assert [r.id for r in s.backups] == [m.id for m in metas]  # oldest first
    t = s.totals
    assert t.backups == 3 and t.by_status == {"completed": 3}
    assert t.logical_bytes == sum(m.size_bytes for m in metas)
    assert t.latest_size_bytes == metas[-1].size_bytes == 300 * 1024
    packs = root / "backups" / "p" / "packs"
    assert t.stored_bytes == sum(p.stat().st_size for p in packs.rglob("*") if p.is_file())
    # the second and third days' new bytes over the two days between the first and the last
    new_later = metas[1].stats.bytes_stored + metas[2].stats.bytes_stored
    assert t.growth_bytes_per_day == round(new_later / 2, 1)
    assert t.overall_ratio == round(t.logical_bytes / t.stored_bytes, 4)
    assert t.compression_ratio is not None and t.dedup_ratio is not None
    assert t.last_success_at == metas[-1].completed_at
    assert t.last_verify_at is None
    # --since: the rows and their sums from then; the project's totals unchanged
    later = await manager.stats("p", since=T0 + timedelta(hours=12))
    assert [r.id for r in later.backups] == [m.id for m in metas[1:]]
    assert later.totals.bytes_read == sum(m.stats.bytes_read for m in metas[1:])
    assert later.totals.logical_bytes == t.logical_bytes
    assert later.totals.growth_bytes_per_day == round(metas[2].stats.bytes_stored / 1, 1)
    await manager.verify("p", metas[0].id)
    verified = await manager.stats("p")
    assert verified.totals.last_verify_ok is True and verified.totals.last_verify_at is not None
    # the operations this manager ran, by kind and result
    ops = manager.operations.snapshot()
    assert ops[("p", "create", "success")] == 3 and ops[("p", "verify", "success")] == 1


async def test_one_shot_metrics_derive_the_operations_from_the_metadata(manager, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    await manager.create(CreateRequest(project_id="p", data_dir=str(src)))
    with pytest.raises(Exception, match="directory"):
        await manager.create(CreateRequest(project_id="p", data_dir=str(tmp_path / "gone")))
    got = samples(render(build_registry(manager)).decode())
    p = frozenset({("project", "p")})
    assert got[("nexus_backups", p | {("status", "completed")})] == 1
    # derived from the metadata (no in-process counts given): the completed create
    assert got[("nexus_operations_total", p | {("kind", "create"), ("result", "success")})] == 1


def test_stats_cli_human_json_and_repository(tmp_path):
    root, src = tmp_path / "root", tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("hello\n" * 1000)
    for when in ("2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z"):
        assert nb(root, "create", "p", str(src), "--time", when).returncode == 0
        (src / "f.txt").write_text((src / "f.txt").read_text() + when)
    human = nb(root, "stats", "p")
    assert human.returncode == 0 and human.stderr == ""
    assert "2026-11-01 03:00" in human.stdout and "Growth" in human.stdout
    data = json.loads(nb(root, "stats", "p", "--json").stdout)
    assert len(data["backups"]) == 2 and data["totals"]["backups"] == 2
    since = json.loads(nb(root, "stats", "p", "--since", "2026-11-02", "--json").stdout)
    assert len(since["backups"]) == 1
    whole = json.loads(nb(root, "stats", "--json").stdout)
    assert [p["project_id"] for p in whole["projects"]] == ["p"]
    assert whole["totals"]["stored_bytes"] == data["totals"]["stored_bytes"]
    summary = nb(root, "stats")
    assert summary.returncode == 0 and summary.stdout.startswith("PROJECT")
    bad = nb(root, "stats", "p", "--since", "whenever")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    unknown = nb(root, "stats", "nosuch")
    assert unknown.returncode == 1 and "nosuch" in unknown.stderr


def test_metrics_file_after_create_and_verify(tmp_path):
    root, src, out = tmp_path / "root", tmp_path / "src", tmp_path / "textfile"
    src.mkdir()
    out.mkdir()
    (src / "f.txt").write_text("data\n" * 100)
    prom = out / "nexus.prom"
    prom.write_text("old content, replaced whole\n")
    created = nb(root, "create", "p", str(src), "--metrics-file", str(prom))
    assert created.returncode == 0, created.stderr
    got = samples(prom.read_text())
    stats = json.loads(nb(root, "stats", "p", "--json").stdout)
    p = frozenset({("project", "p")})
    assert got[("nexus_project_stored_bytes", p)] == stats["totals"]["stored_bytes"]
    assert got[("nexus_backups", p | {("status", "completed")})] == 1
    assert ("nexus_verify_last_success", p) not in got
    verified = nb(root, "verify", "p", "latest", "--metrics-file", str(prom))
    assert verified.returncode == 0, verified.stderr
    got = samples(prom.read_text())
    assert got[("nexus_verify_last_success", p)] == 1
    assert got[("nexus_operations_total", p | {("kind", "verify"), ("result", "success")})] == 1
    assert sorted(os.listdir(out)) == ["nexus.prom"]  # no temporary file left behind
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    # a directory that does not exist: one warning, the verify's own result unchanged
    missing = nb(root, "verify", "p", "latest", "--metrics-file", str(tmp_path / "no" / "x.prom"))
    assert missing.returncode == 0
    assert missing.stderr.count("\n") == 1 and "metrics file" in missing.stderr


def test_write_metrics_file_replaces_atomically_and_leaves_no_temporary(manager, tmp_path):
    target = tmp_path / "m.prom"
    target.write_text("previous\n")
    before = os.stat(target).st_ino
    write_metrics_file(target, manager)
    assert os.stat(target).st_ino != before  # a new file renamed over, never written in place
    assert list(text_string_to_metric_families(target.read_text()))
    assert sorted(os.listdir(tmp_path)) == ["m.prom"]


def test_info_says_where_the_time_went(tmp_path):
    root, src = tmp_path / "root", tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("data\n" * 1000)
    assert nb(root, "create", "p", str(src)).returncode == 0
    shown = nb(root, "info", "p", "latest")
    assert shown.returncode == 0, shown.stderr
    phases = shown.stdout.split("Phases", 1)[1]
    for name in ("scan", "read pass", "index", "manifest", "chunk+hash", "compress", "store"):
        assert name in phases
    assert "dedup 1.00x" in phases


def test_serve_metrics_public_flag_reaches_the_server():
    from cli.parser import build_parser

    parser = build_parser()
    assert parser.parse_args(["serve"]).metrics_public is False
    assert parser.parse_args(["serve", "--metrics-public"]).metrics_public is True
    args = parser.parse_args(["create", "p", "/d", "--metrics-file", "/m.prom"])
    assert args.metrics_file == "/m.prom"
