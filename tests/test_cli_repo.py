"""`--repo` / NEXUS_BACKUP_REPOSITORY: the repositories live elsewhere than under the root
(another directory today, a bucket with the S3 store); the logs stay under the root."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import _env, nb, ok


def test_repo_elsewhere_holds_the_backups_and_the_root_only_the_logs(tmp_path: Path):
    root, repo, src = tmp_path / "root", tmp_path / "elsewhere", tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    ok(nb(root, "--repo", str(repo), "create", "web", str(src)))
    assert (repo / "backups" / "web" / "config.json").is_file()
    assert not (root / "backups").exists()
    assert list((root / "logs").glob("web_*.log"))
    listed = json.loads(ok(nb(root, "--repo", str(repo), "--json", "list", "web")).stdout)
    assert len(listed) == 1
    # the environment names it as well, and a printed undo names it again
    env = _env(NEXUS_BACKUP_REPOSITORY=f"file://{repo}")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("changed\n")
    restored = ok(nb(root, "restore", "web", "latest", str(out), "--overwrite", "always", env=env))
    assert (out / "a.txt").read_text() == "alpha\n"
    assert f"--repo file://{repo}" in restored.stdout
    # without it, the root has no such project
    missing = nb(root, "list", "web")
    assert missing.returncode == 1 and "unknown project 'web'" in missing.stderr


def test_unknown_repository_scheme_is_one_line(tmp_path: Path):
    proc = nb(tmp_path / "root", "--repo", "ftp://host/x", "projects")
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and "unknown repository scheme 'ftp'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_backups_record_host_and_user_and_list_filters_by_host(tmp_path: Path):
    """Two hosts (one of them naming itself, as a container or a same-named twin would) back
    up into one repository: each backup says who made it, and `list --host` tells them apart."""
    root, src = tmp_path / "root", tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    ok(nb(root, "create", "web", str(src)))
    ok(nb(root, "create", "web", str(src), "--host", "web-02"))
    every = json.loads(ok(nb(root, "--json", "list", "web")).stdout)
    hosts = {b["host"] for b in every}
    assert len(hosts) == 2 and "web-02" in hosts
    assert all(b["user"] for b in every)
    only = json.loads(ok(nb(root, "--json", "list", "web", "--host", "web-02")).stdout)
    assert [b["host"] for b in only] == ["web-02"]
    info = ok(nb(root, "info", "web", only[0]["id"])).stdout
    assert f"{only[0]['user']}@web-02" in info
    bad = nb(root, "create", "web", str(src), "--host", "bad\x01host")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
