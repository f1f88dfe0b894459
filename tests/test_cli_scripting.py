"""The CLI as a scripter and an operator meet it (issue 16), run for real in subprocesses:
exit codes as the README's table says, `--json` errors on stdout, `--version`, shell
completion, `create` of the remembered directory, `serve`'s token rules, bare tags, and each
command's own `--help`."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import _env, js, nb, ok, one_error

from cli.main import main


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


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess:
    """`main(args)` in this process (fast), as a CompletedProcess like `nb`'s."""
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.mark.slow
def test_exit_codes_of_ids_and_roots_in_real_processes(root, data, tmp_path):
    """One real process per case of the README's table; the in-process tests below try
    every command."""
    js(nb(root, "--json", "create", "p", str(data)))
    one_error(nb(root, "info", "p", "a..b"), 2, "invalid backup id")
    one_error(nb(root, "info", "p", "20200101-000000-abcdef"), 1, "not found")
    a_file = tmp_path / "f"
    a_file.write_text("precious\n")
    one_error(nb(a_file, "projects"), 2, str(a_file), "is a file")
    assert a_file.read_text() == "precious\n"


@pytest.mark.parametrize("command", ["info", "restore", "delete", "verify", "copy"])
def test_a_malformed_backup_id_is_exit_2_an_unknown_one_exit_1(
    root, data, tmp_path, capsys, command
):
    assert main(["--root", str(root), "--json", "create", "p", str(data)]) == 0
    capsys.readouterr()
    extra = {"restore": [str(tmp_path / "t")], "copy": ["--to", str(tmp_path / "other")]}
    args = ["--root", str(root), command, "p"]
    tail = extra.get(command, [])
    one_error(in_process(capsys, *args, "a..b", *tail), 2, "invalid backup id")
    one_error(in_process(capsys, *args, ".hidden", *tail), 2, "backup id")
    one_error(in_process(capsys, *args, "20200101-000000-abcdef", *tail), 1, "not found")
    assert not (tmp_path / "t").exists() and not (tmp_path / "other").exists()


def test_an_unknown_project_is_exit_1_a_malformed_one_exit_2(root, capsys):
    one_error(in_process(capsys, "--root", str(root), "list", "nosuch"), 1, "unknown project")
    one_error(in_process(capsys, "--root", str(root), "list", "no..such"), 2, "project id")


@pytest.mark.parametrize(
    "args",
    [["projects"], ["list", "p"], ["info", "p", "latest"], ["create", "p", "DATA"], ["tui"]],
)
def test_a_root_that_is_a_file_is_one_clear_line(tmp_path, data, capsys, args):
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("precious\n")
    args = [str(data) if a == "DATA" else a for a in args]
    line = one_error(in_process(capsys, "--root", str(a_file), *args), 2, str(a_file), "a file")
    assert "errno" not in line.lower()
    assert a_file.read_text() == "precious\n"  # nothing written over it
    under = in_process(capsys, "--root", str(a_file / "sub"), *args)
    assert "cannot be made" in one_error(under, 2, f"{a_file} is a file")


def test_a_repository_that_is_a_file_is_one_clear_line(root, tmp_path, data):
    a_file = tmp_path / "store"
    a_file.write_text("x")
    one_error(nb(root, "--repo", str(a_file), "create", "p", str(data)), 2, "is a file")
    assert a_file.read_text() == "x"


# --- --json errors ------------------------------------------------------------------------


def test_json_errors_are_an_object_on_stdout_with_the_same_exit_code(root, data, tmp_path, capsys):
    json_error(nb(root, "--json", "list", "nosuch"), 1, "unknown project")  # a real process
    r = ["--root", str(root)]
    json_error(in_process(capsys, *r, "list", "nosuch", "--json"), 1, "unknown project")
    json_error(in_process(capsys, *r, "--json", "info", "p", "a..b"), 2, "invalid backup id")
    json_error(in_process(capsys, *r, "--json", "frobnicate"), 2, "frobnicate")
    missing = str(tmp_path / "missing")
    json_error(in_process(capsys, *r, "--json", "create", "p", missing), 2, "missing")
    a_file = tmp_path / "f"
    a_file.write_text("x")
    json_error(in_process(capsys, "--root", str(a_file), "--json", "projects"), 2, "is a file")
    # without --json nothing goes to stdout
    one_error(in_process(capsys, *r, "list", "nosuch"), 1)


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


def test_a_bare_tag_is_accepted_shown_and_found(root, data, capsys):
    meta = js(nb(root, "--json", "create", "p", str(data), "--tag", "nightly", "--tag", "env=prod"))
    assert meta["tags"] == {"nightly": "", "env": "prod"}
    r = ["--root", str(root)]
    table = in_process(capsys, *r, "list", "p").stdout
    assert "env=prod, nightly" in table and "nightly=" not in table
    found = json.loads(in_process(capsys, *r, "--json", "list", "p", "--tag", "nightly").stdout)
    assert [m["id"] for m in found] == [meta["id"]]
    assert (
        json.loads(in_process(capsys, *r, "--json", "list", "p", "--tag", "nightly=x").stdout) == []
    )
    one_error(in_process(capsys, *r, "create", "p", str(data), "--tag", "a,b"), 2, "--tag")


# --- --version, --help -------------------------------------------------------------------


def test_version_names_the_program_and_its_version(root):
    from importlib.metadata import version

    proc = ok(nb(root, "--version"))
    assert proc.stdout.strip() == f"nexus-backup {version('nexus-backup')}"


def test_each_command_help_is_its_own_and_the_exit_codes_are_in_the_main_help(root, capsys):
    main_help = in_process(capsys, "--help").stdout
    assert main_help.count("exit codes:") == 1 and "130" in main_help
    for command, own in [
        ("create", "back up a directory"),
        ("verify", "--quick"),
        ("serve", "NEXUS_BACKUP_TOKEN"),
        ("completion", "bash, zsh or fish"),
    ]:
        text = in_process(capsys, command, "--help").stdout
        assert own in text, (command, text)
        assert "exit codes:" not in text and "130" not in text
        assert "see 'nexus-backup --help'" in text


def test_serve_help_names_the_token_variable_and_the_default_port(root):
    text = " ".join(ok(nb(root, "serve", "--help")).stdout.split())
    assert "NEXUS_BACKUP_TOKEN" in text and "8765" in text and "16 characters" in text


# --- serve's token --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "file", "env"])
def test_serve_refuses_a_token_shorter_than_16_characters(root, tmp_path, how):
    short = "0123456789abcde"  # 15
    args, env = ["serve", "--port", "1"], _env()
    if how == "option":
        args += ["--token", short]
    elif how == "file":
        (tmp_path / "tok").write_text(short + "\n")
        args += ["--token-file", str(tmp_path / "tok")]
    else:
        env["NEXUS_BACKUP_TOKEN"] = short
    proc = nb(root, *args, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "shorter than 16" in lines[0], proc.stderr
    assert not root.exists()  # refused before anything was opened


# --- create PROJECT: the remembered directory -------------------------------------------


def test_create_without_a_directory_backs_up_the_remembered_one(root, data, tmp_path, capsys):
    r = ["--root", str(root)]
    first = js(nb(root, "--json", "create", "p", str(data)))
    (data / "new.txt").write_text("added later\n")
    again = js(nb(root, "--json", "create", "p", "--type", "incremental"))
    assert again["files_count"] == first["files_count"] + 1
    assert again["parent_backup_id"] == first["id"]
    out = tmp_path / "out"
    assert main([*r, "restore", "p", again["id"], str(out)]) == 0
    assert (out / "new.txt").read_text() == "added later\n"
    capsys.readouterr()
    # a project that does not exist yet: one line, exit 2, nothing made
    proc = in_process(capsys, *r, "create", "other")
    one_error(proc, 2, "'other' does not exist yet", "DATA_DIR")
    assert main([*r, "--json", "projects"]) == 0
    assert [p["project_id"] for p in json.loads(capsys.readouterr().out)] == ["p"]


# --- completion -------------------------------------------------------------------------


def _commands() -> list[str]:
    from cli.completion import describe
    from cli.parser import build_parser

    return [c.name for c in describe(build_parser())[1]]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_parse_and_name_every_command(root, tmp_path, shell):
    proc = ok(nb(root, "completion", shell))
    text = proc.stdout
    commands = _commands()
    assert {"create", "restore", "completion", "serve", "tui"} <= set(commands)
    for command in commands:
        assert command in text, (shell, command)
    for option in ("--type", "--overwrite", "--json", "--root"):
        assert option.removeprefix("--") in text
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed: only the script's content was checked")
    script = tmp_path / f"nb.{shell}"
    script.write_text(text)
    check = subprocess.run([binary, "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_bash_completion_completes_commands_options_and_choices(root, tmp_path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "nb.bash"
    script.write_text(ok(nb(root, "completion", "bash")).stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(shlex.quote(w) for w in ("nexus-backup", *words))
        code = (
            f"source {shlex.quote(str(script))}; COMP_WORDS=({line}); "
            f"COMP_CWORD={len(words)}; _nexus_backup; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        proc = subprocess.run(["bash", "-c", code], capture_output=True, text=True, check=True)
        return proc.stdout.split()

    assert set(complete("re")) == {"restore", "rebuild-index", "rename-project"}
    assert complete("--root", "/tmp", "ver") == ["verify"]
    assert complete("list", "p", "--type", "") == ["full", "incremental", "snapshot", "checkpoint"]
    assert complete("restore", "p", "latest", "out", "--over") == ["--overwrite"]
    assert complete("completion", "") == ["bash", "zsh", "fish"]


def test_fish_completion_completes_commands_and_choices(root, tmp_path):
    fish = shutil.which("fish")
    if fish is None:
        pytest.skip("fish is not installed")
    script = tmp_path / "nb.fish"
    script.write_text(ok(nb(root, "completion", "fish")).stdout)

    def complete(line: str) -> list[str]:
        code = f"source {shlex.quote(str(script))}; complete -C {shlex.quote(line)}"
        proc = subprocess.run([fish, "-c", code], capture_output=True, text=True, check=True)
        return [row.split("\t")[0] for row in proc.stdout.splitlines()]

    assert "create" in complete("nexus-backup cr")
    assert complete("nexus-backup list p --type ") == sorted(
        ["full", "incremental", "snapshot", "checkpoint"]
    )
    assert set(complete("nexus-backup key ")) >= {"list", "add", "remove", "passwd"}


def test_zsh_completion_registers_itself(root, tmp_path):
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed")
    script = tmp_path / "nb.zsh"
    script.write_text(ok(nb(root, "completion", "zsh")).stdout)
    code = f"autoload -U compinit; compinit -u -D; source {shlex.quote(str(script))}; "
    code += "print -r -- ${_comps[nexus-backup]}"
    proc = subprocess.run([zsh, "-f", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.strip() == "_nexus_backup", proc.stderr


def test_list_says_when_backups_cannot_be_read_instead_of_no_backups(tmp_path: Path) -> None:
    """An encrypted project whose keys/ and config.json were lost is not an empty project."""
    import os
    import shutil
    import subprocess
    import sys

    root, data = tmp_path / "root", tmp_path / "data"
    data.mkdir()
    (data / "a").write_text("a")
    env = {
        **os.environ,
        "NEXUS_BACKUP_ROOT": str(root),
        "NEXUS_BACKUP_PASSWORD": "pw",
        "NEXUS_BACKUP_NEW_PASSWORD": "pw",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True
        )

    assert cli("create", "p", str(data), "--encrypt").returncode == 0
    project = root / "backups" / "p"
    shutil.rmtree(project / "keys")
    (project / "config.json").unlink()
    r = cli("list", "p")
    assert "1 backup of p not listed: metadata.json cannot be read" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def _in_a_deleted_cwd(root: Path, where: Path, *args: str) -> subprocess.CompletedProcess:
    """`nexus-backup --root ROOT ARGS` run from a current directory deleted just before
    (`mkdir d; cd d; rmdir ../d`), as a shell leaves it."""
    script = 'mkdir "$1" && cd "$1" && rmdir "$1" && shift && exec "$@"'
    return subprocess.run(
        ["sh", "-c", script, "sh", str(where), sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
        timeout=60,
    )


def test_a_deleted_current_directory_is_one_clear_line(root, data, tmp_path):
    """Each way a relative path is resolved (a data dir, a restore target, --root, --repo,
    a copy target, --json) from a deleted current directory: one line saying so, exit 1,
    nothing made anywhere; commands that need no relative path still work there."""
    ok(nb(root, "create", "p", str(data)))
    before = sorted(p.name for p in tmp_path.iterdir())
    absolute = ["--root", str(root)]
    for args in (
        [*absolute, "create", "p", "data"],
        [*absolute, "restore", "p", "latest", "out"],
        [*absolute, "restore", "p", "latest", "out", "--dry-run"],
        [*absolute, "copy", "p", "--to", "elsewhere"],
        [*absolute, "--repo", "repo", "list", "p"],
        ["--root", "repo", "list", "p"],
    ):
        r = _in_a_deleted_cwd(root, tmp_path / "gone", *args)
        one_error(r, 1, "current directory no longer exists", "absolute paths")
        r = _in_a_deleted_cwd(root, tmp_path / "gone", "--json", *args)
        json_error(r, 1, "current directory no longer exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    for args in (["list", "p"], ["create", "p"], ["ls", "p", "latest"], ["check", "p"]):
        ok(_in_a_deleted_cwd(root, tmp_path / "gone", *absolute, *args))
