"""One query, one answer: each query of the table goes through the CLI (a real subprocess), the
TUI's filter bar (`tui.filtering.parse_filter` on the real BackupManager's list) and the API's
list endpoint (a real uvicorn server), and all three must select the same backups.

The repository holds real backups made by the engine; their times, statuses and tags are then
set by rewriting their metadata through `Repository.write_metadata`, the engine's own writer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from core.manager import BackupManager
from core.models import BackupStatus, BackupType, CreateRequest
from core.repo.repository import Repository
from tui.filtering import parse_filter

REPO = Path(__file__).resolve().parent.parent
TOKEN = "query-all-faces-token"
PROJECT = "faces"
NOW = datetime.now(UTC)

#: label -> (type, status, error message, tags, created_at)
BACKUPS = {
    "a": (
        BackupType.FULL,
        BackupStatus.COMPLETED,
        None,
        {"env": "prod"},
        NOW - timedelta(minutes=5),
    ),
    "b": (
        BackupType.INCREMENTAL,
        BackupStatus.COMPLETED,
        None,
        {"env": "staging", "nightly": "yes"},
        NOW - timedelta(hours=2),
    ),
    "c": (
        BackupType.FULL,
        BackupStatus.FAILED,
        "Disk full",
        {"env": "prod"},
        NOW - timedelta(days=2),
    ),
    "d": (
        BackupType.SNAPSHOT,
        BackupStatus.COMPLETED,
        None,
        {"owner": "ann"},
        datetime(2025, 3, 15, 10, 0, tzinfo=UTC),
    ),
    "e": (
        BackupType.FULL,
        BackupStatus.COMPLETED,
        None,
        {},
        datetime(2025, 4, 2, 23, 30, tzinfo=UTC),
    ),
}

#: (filters as key -> value, the bar's text when it cannot be key:value joined, expected labels)
TABLE: list[tuple[dict[str, str], str | None, str]] = [
    ({}, None, "abcde"),
    ({"type": "full"}, None, "ace"),
    ({"type": "snapshot"}, None, "d"),
    ({"status": "failed"}, None, "c"),
    ({"tag": "env"}, None, "abc"),  # a bare key: any value of it
    ({"tag": "env=prod"}, None, "ac"),
    ({"tag": "env=pr"}, None, ""),  # a value matches exactly, never by prefix
    ({"tag": "nightly"}, None, "b"),
    ({"since": "30m"}, None, "a"),
    ({"since": "1.5h"}, None, "a"),
    ({"since": "3 h ago"}, "since:3h", "ab"),
    ({"since": "30 min ago"}, "since:30min", "a"),
    ({"since": "7d"}, None, "abc"),
    ({"since": "2w"}, None, "abc"),
    ({"until": "1d"}, None, "cde"),
    ({"since": "2025-03", "until": "2025-03"}, "date:2025-03", "d"),  # a month, to its end
    ({"until": "2025-03-15"}, None, "d"),  # a day, to its end
    ({"since": "2025-03-16", "until": "2025-04-02"}, None, "e"),
    ({"since": "2025-04-02T23:00"}, None, "abce"),  # no zone: UTC
    ({"until": "2025-04-02T23:00"}, None, "d"),
    ({"until": "2025-04-03T00:00:00+01:00"}, None, "d"),  # 23:00 UTC
    ({"since": "2025-04-02T23:30:00Z", "until": "2025-04-02T23:30:00Z"}, None, "e"),
    ({"text": "disk"}, None, "c"),
    ({"text": "incremental"}, None, "b"),  # the type is text too
    ({"text": "env=staging"}, None, "b"),
    ({"text": "prod full"}, None, "ac"),  # every word must occur
    ({"type": "full", "tag": "env=prod", "since": "7d", "status": "completed"}, None, "a"),
    ({"host": "web-01"}, None, "ac"),  # the host that made it, exactly
    ({"host": "web"}, None, ""),
    ({"host": "db-01", "type": "full"}, None, "e"),
    ({"text": "web-01"}, None, "ac"),  # the host is text too
]

CLI_OPTION = {"type": "--type", "status": "--status", "tag": "--tag", "since": "--since"}
CLI_OPTION |= {"until": "--until", "text": "--search", "host": "--host"}
API_PARAM = {"type": "type", "status": "status", "tag": "tag", "since": "since"}
API_PARAM |= {"until": "until", "text": "q", "host": "host"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A repository with the backups of BACKUPS; returns its root and label -> backup id."""
    base = tmp_path_factory.mktemp("faces")
    root, data = base / "repo", base / "data"
    data.mkdir()
    (data / "f.txt").write_text("some bytes\n")
    mgr = BackupManager(root)
    ids: dict[str, str] = {}
    for label, (kind, status, error, tags, created) in BACKUPS.items():
        parent = ids["a"] if kind == BackupType.INCREMENTAL else None
        req = CreateRequest(
            project_id=PROJECT,
            backup_type=kind,
            data_dir=str(data),
            tags=tags,
            parent_backup_id=parent,
            host="web-01" if label in "ac" else "db-01",
        )
        meta = asyncio.run(mgr.create(req))
        store = Repository(root, PROJECT)
        update = {"status": status, "error_message": error, "created_at": created}
        store.write_metadata(store.read_metadata(meta.id).model_copy(update=update))
        ids[label] = meta.id
    return root, ids


@pytest.fixture(scope="module")
def api_url(
    repo: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The real API over that repository, served by uvicorn as tests/api/conftest.py does."""
    spec = importlib.util.spec_from_file_location("api_conftest", REPO / "tests/api/conftest.py")
    assert spec is not None and spec.loader is not None
    api_conftest = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("api_conftest", api_conftest)
    spec.loader.exec_module(api_conftest)
    allowed = tmp_path_factory.mktemp("allowed")
    with api_conftest.running(create_app(repo[0], token=TOKEN, allowed_dirs=[allowed])) as url:
        yield url


def _cli_ids(root: Path, filters: dict[str, str]) -> set[str]:
    args = [a for key, value in filters.items() for a in (CLI_OPTION[key], value)]
    env = {k: v for k, v in os.environ.items() if k not in ("NEXUS_BACKUP_ROOT", "NEXUS_DEBUG")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), "--json", "list", PROJECT, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0 and not proc.stderr, (proc.returncode, proc.stderr)
    return {m["id"] for m in json.loads(proc.stdout)}


def _bar_text(filters: dict[str, str]) -> str:
    return " ".join(v if k == "text" else f"{k}:{v}" for k, v in filters.items())


def _tui_ids(root: Path, filters: dict[str, str], bar: str | None) -> set[str]:
    flt = parse_filter(bar if bar is not None else _bar_text(filters), datetime.now(UTC))
    assert not flt.errors, flt.errors
    backups = asyncio.run(BackupManager(root).list(PROJECT))
    return {m.id for m in backups if flt.matches(m)}


def _api_ids(url: str, filters: dict[str, str]) -> set[str]:
    params = {API_PARAM[k]: v for k, v in filters.items()}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.get(f"{url}/api/v1/backup/list/{PROJECT}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return {m["id"] for m in r.json()["items"]}


@pytest.mark.slow
def test_every_face_selects_the_same_backups(
    repo: tuple[Path, dict[str, str]], api_url: str
) -> None:
    root, ids = repo
    failures = []
    for filters, bar, labels in TABLE:
        expected = {ids[label] for label in labels}
        faces = {
            "cli": _cli_ids(root, filters),
            "tui": _tui_ids(root, filters, bar),
            "api": _api_ids(api_url, filters),
        }
        for face, got in faces.items():
            if got != expected:
                names = sorted(k for k, v in ids.items() if v in got)
                failures.append(f"{face} {filters}: got {names}, expected {sorted(labels)}")
    assert not failures, "\n".join(failures)
