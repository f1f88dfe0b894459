"""The CLI as a scripter and an operator meet it (issue 16), run for real in subprocesses:
exit codes as the README's table says, `--json` errors on stdout, `--version`, shell
completion, `create` of the remembered directory, `serve`'s token rules, bare tags, and each
command's own `--help`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_cli import js, nb, ok, one_error


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "repo"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    top = tmp_path / "data"
    (top / "sub").mkdir(parents=True)
    (top / "a.txt").write_text("hello\n")
    (top / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    return top


def json_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> dict:
    """A --json failure: the one line on stderr, and `{"error": {...}}` alone on stdout with
    the same exit code."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    body = json.loads(proc.stdout)
    assert set(body) == {"error"}, body
    err = body["error"]
    assert err["code"] == code and isinstance(err["message"], str)
    assert err["message"] in proc.stderr
    for needle in needles:
        assert needle.lower() in err["message"].lower(), (needle, err)
    return err


# --- exit codes: a malformed id is 2, an unknown one 1, a root that is a file 2 ------------


@pytest.mark.parametrize("command", ["info", "restore", "delete", "verify", "copy"])
def test_a_malformed_backup_id_is_exit_2_an_unknown_one_exit_1(root, data, tmp_path, command):
    js(nb(root, "--json", "create", "p", str(data)))
    extra = {"restore": [str(tmp_path / "t")], "copy": ["--to", str(tmp_path / "other")]}
    args = extra.get(command, [])
    one_error(nb(root, command, "p", "a..b", *args), 2, "invalid backup id")
    one_error(nb(root, command, "p", ".hidden", *args), 2, "backup id")
    one_error(nb(root, command, "p", "20200101-000000-abcdef", *args), 1, "not found")
    assert not (tmp_path / "t").exists() and not (tmp_path / "other").exists()


def test_an_unknown_project_is_exit_1_a_malformed_one_exit_2(root, data):
    one_error(nb(root, "list", "nosuch"), 1, "unknown project")
    one_error(nb(root, "list", "no..such"), 2, "invalid project id")


@pytest.mark.parametrize(
    "args",
    [["projects"], ["list", "p"], ["info", "p", "latest"], ["create", "p", "DATA"], ["tui"]],
)
def test_a_root_that_is_a_file_is_one_clear_line(tmp_path, data, args):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("precious\n")
    args = [str(data) if a == "DATA" else a for a in args]
    line = one_error(nb(a_file, *args), 2, str(a_file), "is a file")
    assert "errno" not in line.lower()
    assert a_file.read_text() == "precious\n"  # nothing written over it
    under = one_error(nb(a_file / "sub", *args), 2, f"{a_file} is a file")
    assert "cannot be made" in under


def test_a_repository_that_is_a_file_is_one_clear_line(root, tmp_path, data):
    a_file = tmp_path / "store"
    a_file.write_text("x")
    one_error(nb(root, "--repo", str(a_file), "create", "p", str(data)), 2, "is a file")
    assert a_file.read_text() == "x"


# --- --json errors ------------------------------------------------------------------------


def test_json_errors_are_an_object_on_stdout_with_the_same_exit_code(root, data, tmp_path):
    json_error(nb(root, "--json", "list", "nosuch"), 1, "unknown project")
    json_error(nb(root, "list", "nosuch", "--json"), 1, "unknown project")  # after the command
    json_error(nb(root, "--json", "info", "p", "a..b"), 2, "invalid backup id")
    json_error(nb(root, "--json", "frobnicate"), 2, "frobnicate")
    json_error(nb(root, "--json", "create", "p", str(tmp_path / "missing")), 2, "missing")
    a_file = tmp_path / "f"
    a_file.write_text("x")
    json_error(nb(a_file, "--json", "projects"), 2, "is a file")
    # without --json nothing goes to stdout
    one_error(nb(root, "list", "nosuch"), 1)


def test_json_error_of_a_restore_that_cannot_start(root, data, tmp_path):
    bid = js(nb(root, "--json", "create", "p", str(data)))["id"]
    a_file = tmp_path / "f"
    a_file.write_text("keep")
    json_error(nb(root, "--json", "restore", "p", bid, str(a_file)), 2)
    assert a_file.read_text() == "keep"


def test_a_positional_named_json_is_not_the_option(root, data):
    """`--json` after `--` is an argument, not the option: no JSON error then."""
    proc = nb(root, "list", "--", "--json")
    assert proc.returncode == 2 and proc.stdout == ""


# --- bare tags ------------------------------------------------------------------------------


def test_a_bare_tag_is_accepted_shown_and_found(root, data):
    meta = js(nb(root, "--json", "create", "p", str(data), "--tag", "nightly", "--tag", "env=prod"))
    assert meta["tags"] == {"nightly": "", "env": "prod"}
    table = ok(nb(root, "list", "p")).stdout
    assert "env=prod, nightly" in table and "nightly=" not in table
    assert [m["id"] for m in js(nb(root, "--json", "list", "p", "--tag", "nightly"))] == [
        meta["id"]
    ]
    assert js(nb(root, "--json", "list", "p", "--tag", "nightly=x")) == []
    one_error(nb(root, "create", "p", str(data), "--tag", "a,b"), 2, "--tag")
