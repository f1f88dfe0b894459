"""`serve --run-schedules` (issue 14): a real server on 127.0.0.1 runs an owed scheduled
backup by itself (the same check as run-due), once; its project answers carry the schedule,
next run, overdue mark and last run; and the API may set a schedule but never a
notification command or webhook (they run on the host: a token is not a shell)."""

from __future__ import annotations

import importlib.util
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from api.app import create_app
from cli.main import main


def _helpers():  # type: ignore[no-untyped-def]
    """This directory's conftest, by its path (as test_api_encrypted.py loads it)."""
    spec = importlib.util.spec_from_file_location(
        "api_test_helpers", Path(__file__).with_name("conftest.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_h = _helpers()
TOKEN, running = _h.TOKEN, _h.running

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _project(tmp_path: Path) -> Path:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("scheduled\n")
    before = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert main(["--root", str(root), "create", "web", str(data), "--time", before]) == 0
    hook = "http://127.0.0.1:9/hook"
    policy = ["policy", "set", "web", "--schedule", "hourly", "--webhook", hook]
    assert main(["--root", str(root), *policy]) == 0
    return root


def test_server_runs_the_owed_schedule_once_and_reports_it(tmp_path: Path) -> None:
    root = _project(tmp_path)
    app = create_app(root, token=TOKEN, allowed_dirs=[], run_schedules=0.05)
    with running(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        deadline = time.monotonic() + 20
        while True:
            (summary,) = client.get("/api/v1/projects").json()
            if summary["last_run"] and summary["last_run"]["status"] != "running":
                break
            assert time.monotonic() < deadline, summary
            time.sleep(0.05)
        assert summary["last_run"]["status"] == "succeeded", summary
        assert summary["schedule"] == "hourly" and summary["overdue"] is False
        assert datetime.fromisoformat(summary["next_run"]) > datetime.now(UTC)
        time.sleep(0.3)  # several more rounds: nothing more is due
        page = client.get("/api/v1/backup/list/web").json()
        assert page["total"] == 2, page

        # the API sets a schedule; the stored webhook stays; a command is refused
        r = client.put("/api/v1/projects/web/policy", json={"schedule": "daily 03:00"})
        assert r.status_code == 200, r.text
        stored = r.json()["policy"]
        assert stored["schedule"] == "daily 03:00"
        assert stored["webhook"] == "http://127.0.0.1:9/hook"
        for field, value in (("on_failure", "touch /tmp/x"), ("webhook", "http://evil/")):
            r = client.put("/api/v1/projects/web/policy", json={field: value, "keep_last": 1})
            assert r.status_code == 403, r.text
            assert r.json()["detail"][0]["loc"] == ["body", field]
        policy = client.get("/api/v1/projects/web/policy").json()["policy"]
        assert policy["on_failure"] is None and policy["schedule"] == "daily 03:00"
