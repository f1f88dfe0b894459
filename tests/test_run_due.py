"""`run-due` (issue 14): a scheduled project is backed up when due and not before, caught up
once after downtime, never by two run-due at once, and its failures are loud (exit code, last
run, notification command, webhook). Time is driven by `--now`, never by sleeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from cli.main import main

REPO = Path(__file__).resolve().parent.parent


def nb(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _backups(root: Path, project: str = "web") -> list[str]:
    return sorted(p.name for p in (root / "backups" / project).glob("backup_*"))


def _last_run(root: Path, project: str = "web") -> dict:
    return json.loads((root / "backups" / project / "last_run.json").read_text())


@pytest.fixture
def hourly(tmp_path: Path) -> tuple[Path, Path, datetime]:
    """A project backed up once now, then scheduled hourly; returns (root, data, H): H is the
    first full hour after that backup."""
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("first\n")
    assert nb(root, "create", "web", str(data)) == 0
    assert nb(root, "policy", "set", "web", "--schedule", "hourly") == 0
    made = datetime.now(UTC)
    top = made.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return root, data, top


def test_hourly_is_backed_up_when_due_and_not_before(hourly, capsys) -> None:
    root, data, h = hourly
    capsys.readouterr()
    assert nb(root, "run-due", "--now", iso(h - timedelta(seconds=1))) == 0
    assert len(_backups(root)) == 1  # the first full hour has not come
    assert capsys.readouterr().out == ""  # not due: quiet
    (data / "a.txt").write_text("second\n")
    assert nb(root, "run-due", "--now", iso(h + timedelta(minutes=2))) == 0
    assert len(_backups(root)) == 2
    assert "succeeded" in capsys.readouterr().out
    run = _last_run(root)
    assert run["status"] == "succeeded" and run["scheduled_for"] == iso(h)
    assert run["backup_id"] in [b.removeprefix("backup_") for b in _backups(root)]
    # called every minute of the hour: nothing more until the next one
    for minute in (3, 30, 59):
        assert nb(root, "run-due", "--now", iso(h + timedelta(minutes=minute))) == 0
    assert len(_backups(root)) == 2
    assert nb(root, "run-due", "--now", iso(h + timedelta(hours=1, seconds=5))) == 0
    assert len(_backups(root)) == 3
    # what was backed up at h+2m is what the directory held then
    restored = root.parent / "restored"
    assert nb(root, "restore", "web", run["backup_id"], str(restored)) == 0
    assert (restored / "a.txt").read_text() == "second\n"


def test_catch_up_after_downtime_runs_once(hourly, capsys) -> None:
    root, _data, h = hourly
    assert nb(root, "run-due", "--now", iso(h + timedelta(minutes=1))) == 0
    assert len(_backups(root)) == 2
    # the machine was off for five hours: one run for the latest slot, not five
    back = h + timedelta(hours=5, minutes=40)
    assert nb(root, "run-due", "--now", iso(back)) == 0
    assert len(_backups(root)) == 3
    assert _last_run(root)["scheduled_for"] == iso(h + timedelta(hours=5))
    assert nb(root, "run-due", "--now", iso(back + timedelta(minutes=1))) == 0
    assert len(_backups(root)) == 3
    capsys.readouterr()
    assert nb(root, "--json", "projects") == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["schedule"] == "hourly"
    assert summary["last_run"]["status"] == "succeeded"


def test_overdue_is_marked_until_run_due_runs_it(tmp_path, capsys) -> None:
    """Judged at the real time: a project last backed up three hours ago on an hourly
    schedule is overdue; run-due (no --now) runs it and the mark goes."""
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    before = datetime.now(UTC) - timedelta(hours=3)
    assert nb(root, "create", "web", str(data), "--time", iso(before)) == 0
    assert nb(root, "policy", "set", "web", "--schedule", "hourly") == 0
    capsys.readouterr()
    assert nb(root, "--json", "projects") == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["overdue"] is True and summary["last_run"] is None
    assert datetime.fromisoformat(summary["next_run"]) <= datetime.now(UTC)
    assert nb(root, "run-due") == 0
    capsys.readouterr()
    assert nb(root, "--json", "projects") == 0
    (summary,) = json.loads(capsys.readouterr().out)
    assert summary["overdue"] is False and summary["last_run"]["status"] == "succeeded"
    assert datetime.fromisoformat(summary["next_run"]) > datetime.now(UTC)


def test_failure_exit_code_last_run_and_command_sees_env_not_shell(tmp_path, capsys) -> None:
    """The data directory is gone: exit 1, the last run says why, the on-failure command
    gets the values in its environment; an error holding shell syntax stays data."""
    root = tmp_path / "root"
    data = tmp_path / "d$(touch PWNED);x"
    data.mkdir()
    (data / "f").write_text("x")
    assert nb(root, "create", "web", str(data)) == 0
    got = tmp_path / "notified.txt"
    fields = '"$NEXUS_PROJECT" "$NEXUS_STATUS" "$NEXUS_BACKUP_ID" "$NEXUS_ERROR"'
    command = f'printf "%s|%s|%s|%s" {fields} > {got}'
    assert (
        nb(root, "policy", "set", "web", "--schedule", "daily 03:00", "--on-failure", command) == 0
    )
    (data / "f").unlink()
    data.rmdir()
    capsys.readouterr()
    now = datetime.now(UTC) + timedelta(days=1, hours=1)
    assert nb(root, "run-due", "--now", iso(now)) == 1
    err = capsys.readouterr().err
    assert "scheduled run failed: backup: data_dir" in err and err.count("\n") == 1
    run = _last_run(root)
    assert run["status"] == "failed" and "no such directory" in run["error"]
    project, status, backup_id, error = got.read_text().split("|", 3)
    assert (project, status, backup_id) == ("web", "failed", "")
    assert "$(touch PWNED)" in error
    assert not list(tmp_path.rglob("PWNED")) and not (REPO / "PWNED").exists()
    # failed runs are not retried before the next slot (the next day)
    assert nb(root, "run-due", "--now", iso(now + timedelta(minutes=5))) == 0


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    answer = 204

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).received.append(
            {"body": body, "type": self.headers["Content-Type"], "path": self.path}
        )
        self.send_response(type(self).answer)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    _Hook.answer = 204
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook/s3cr3t", _Hook
    server.shutdown()
    server.server_close()


def test_webhook_receives_json_and_its_failure_never_masks_the_result(
    hourly, webhook, capsys
) -> None:
    root, _data, h = hourly
    url, hook = webhook
    assert nb(root, "policy", "set", "web", "--webhook", url, "--on-success", "exit 7") == 0
    assert nb(root, "run-due", "--now", iso(h + timedelta(minutes=1))) == 0
    (got,) = hook.received
    assert got["type"] == "application/json" and got["path"] == "/hook/s3cr3t"
    body = got["body"]
    assert body["project"] == "web" and body["status"] == "succeeded"
    assert body["backup_id"] == _last_run(root)["backup_id"] and body["error"] is None
    assert body["scheduled_for"] == iso(h)
    err = capsys.readouterr().err
    assert "notification command exited 7" in err  # told, and the exit code stays 0
    # the server answers 500, then is gone: still exit 0, the run still succeeded
    hook.answer = 500
    assert nb(root, "run-due", "--now", iso(h + timedelta(hours=1, minutes=1))) == 0
    err = capsys.readouterr().err
    assert "answered HTTP 500" in err and "s3cr3t" not in err
    assert nb(root, "policy", "set", "web", "--webhook", "http://127.0.0.1:9/x") == 0
    assert nb(root, "run-due", "--now", iso(h + timedelta(hours=2, minutes=1))) == 0
    assert _last_run(root)["status"] == "succeeded"
    log = "".join(p.read_text() for p in (root / "logs").glob("web_*.log"))
    assert "webhook http://127.0.0.1:9/...: ConnectError" in log
    assert "s3cr3t" not in log


def test_two_run_due_started_together_back_up_once(hourly) -> None:
    """Two real processes started at once: one backs the project up, the other finds the
    slot taken (waiting for the run lock, then seeing the run) or the run in progress."""
    root, _data, h = hourly
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXUS_BACKUP")}
    argv = [sys.executable, "-m", "cli", "--root", str(root), "run-due"]
    argv += ["--now", iso(h + timedelta(minutes=1))]
    procs = [
        subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    assert [r[0] for r in results] == [0, 0], results
    assert len(_backups(root)) == 2  # the first backup and exactly one scheduled one
    said = b"".join(r[1] for r in results).decode()
    assert said.count("succeeded") == 1, said
    assert not list((root / "backups" / "web" / "run-locks").glob("*"))


def test_not_scheduled_and_unknown_projects(tmp_path, capsys) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    assert nb(root, "create", "plain", str(data)) == 0
    capsys.readouterr()
    assert nb(root, "run-due") == 0
    assert capsys.readouterr().out == ""
    assert nb(root, "run-due", "nosuch") == 1
    assert "nosuch" in capsys.readouterr().err


def test_schedule_alone_removes_nothing_and_bad_input_is_one_line(tmp_path, capsys) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    for _ in range(3):
        assert nb(root, "create", "web", str(data)) == 0
    assert nb(root, "policy", "set", "web", "--schedule", "*:0/15", "--schedule-delay", "5m") == 0
    assert nb(root, "create", "web") == 0
    assert len(_backups(root)) == 4  # no retention rule: every backup kept
    capsys.readouterr()
    for bad in (["--schedule", "sometimes"], ["--schedule-delay", "2d"]):
        assert nb(root, "policy", "set", "web", *bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert nb(root, "policy", "set", "web", "--webhook", "ftp://x") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "http:// or https://" in err, err


def test_run_due_writes_every_projects_metrics_for_the_textfile_collector(hourly, tmp_path):
    """`run-due --metrics-file`: after the runs, node_exporter's textfile format, parsed by
    prometheus_client's own parser, says the scheduled backup just made."""
    from prometheus_client.parser import text_string_to_metric_families

    root, _data, h = hourly
    out = tmp_path / "nexus.prom"
    assert (
        nb(root, "run-due", "--now", iso(h + timedelta(minutes=1)), "--metrics-file", str(out)) == 0
    )
    families = {f.name: f for f in text_string_to_metric_families(out.read_text())}
    counts = {
        (s.labels["project"], s.labels.get("status")): s.value
        for s in families["nexus_backups"].samples
    }
    assert counts[("web", "completed")] == 2  # the first, and the run's
    assert not list(tmp_path.glob("nexus.prom.*"))  # written atomically: no temporary left
