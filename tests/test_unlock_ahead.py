"""The key derivation started while the CLI imports (core/unlock_ahead.py, crypto.derive_ahead):
an optimisation that must change nothing a user sees. The master key it opens is the one the
unlock opens, a wrong password is still refused, a damaged first key object or a second key
still work, and a password command runs once, also when it fails."""

from __future__ import annotations

import base64
import json
import secrets
import sys
from pathlib import Path

from test_encryption import PASSWORD, nb, one_line, tree

from core.repo import crypto


def test_a_derivation_ahead_opens_the_same_master_and_is_taken_once() -> None:
    params = crypto.KdfParams(memory_kib=64, iterations=1, lanes=1)
    master = crypto.new_master_key()
    key_id = crypto.new_key_id()
    raw = crypto.make_key_object(master, "pw", key_id, params=params)
    crypto.derive_ahead(raw, "pw")
    assert len(crypto._ahead) == 1
    assert crypto.unwrap(raw, key_id, "pw") == master
    assert crypto._ahead == {}  # taken by the unlock, not kept
    crypto.derive_ahead(raw, "not it")
    assert crypto.unwrap(raw, key_id, "not it") is None  # the wrong password stays wrong
    assert crypto._ahead == {}
    crypto.derive_ahead(b"{not json", "pw")  # left to the unlock to report
    crypto.derive_ahead(json.dumps({"version": 1}).encode(), "pw")
    assert crypto._ahead == {}


def test_a_new_key_derived_ahead_takes_its_salt_once_and_opens() -> None:
    master = crypto.new_master_key()
    crypto.new_key_ahead("pw")
    ((_params, salt),) = crypto._new_salts.values()
    first, second = crypto.new_key_id(), crypto.new_key_id()
    raw = crypto.make_key_object(master, "pw", first)
    assert crypto._new_salts == {} and crypto._ahead == {}  # taken, not kept
    assert crypto.key_info(raw)["kdf"]["salt"] == base64.b64encode(salt).decode()
    assert crypto.unwrap(raw, first, "pw") == master
    other = crypto.make_key_object(master, "pw", second)  # a salt serves one key only
    assert crypto.key_info(other)["kdf"]["salt"] != crypto.key_info(raw)["kdf"]["salt"]
    crypto.new_key_ahead("pw")
    cheap = crypto.KdfParams(memory_kib=64, iterations=1, lanes=1)
    odd = crypto.make_key_object(master, "pw", first, params=cheap)  # other parameters:
    assert (
        crypto.key_info(odd)["kdf"]["salt"]
        != base64.b64encode(  # not that salt
            crypto._new_salts["pw"][1]
        ).decode()
    )
    crypto._new_salts.clear()
    crypto._ahead.clear()


def _project(tmp_path: Path) -> tuple[Path, Path]:
    data, root = tmp_path / "data", tmp_path / "root"
    tree(data)
    made = nb(root, "create", "p", str(data), "--encrypt", NEXUS_BACKUP_PASSWORD=PASSWORD)
    assert made.returncode == 0, made.stderr
    return data, root


def test_the_cli_restores_an_encrypted_project_with_the_derivation_ahead(tmp_path: Path) -> None:
    data, root = _project(tmp_path)
    out = tmp_path / "out"
    done = nb(root, "restore", "p", "latest", str(out), NEXUS_BACKUP_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stderr
    for f in data.rglob("*"):
        if f.is_file():
            assert (out / f.relative_to(data)).read_bytes() == f.read_bytes()
    assert "wrong password" in one_line(nb(root, "list", "p", NEXUS_BACKUP_PASSWORD="no"), 12)


def test_a_password_command_runs_once_also_when_it_fails(tmp_path: Path) -> None:
    _data, root = _project(tmp_path)
    runs = tmp_path / "runs"
    script = tmp_path / "secret.py"
    script.write_text(
        "import sys\n"
        f"open({str(runs)!r}, 'a').write('run\\n')\n"
        f"print({PASSWORD!r}) if sys.argv[1] == 'ok' else sys.exit(3)\n"
    )
    listed = nb(root, "--password-command", f"{sys.executable} {script} ok", "--json", "list", "p")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1, listed.stderr
    assert runs.read_text() == "run\n"
    failed = nb(root, "--password-command", f"{sys.executable} {script} no", "list", "p")
    assert "exited with 3" in one_line(failed, 2)
    assert runs.read_text() == "run\nrun\n"


def test_a_damaged_first_key_object_leaves_the_second_key_to_open(tmp_path: Path) -> None:
    _data, root = _project(tmp_path)
    keys = root / "backups" / "p" / "keys"
    (keys / ("0" * 32)).write_bytes(secrets.token_bytes(300))  # sorts first, is garbage
    listed = nb(root, "--json", "list", "p", NEXUS_BACKUP_PASSWORD=PASSWORD)
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 1, listed.stderr
