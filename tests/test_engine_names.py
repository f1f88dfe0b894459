"""I14 in the engine's own sentences: a data directory, a restore target or an OSError's
path named in a message or a log line is written as `core.display.name` writes it (real
directories named with a newline and an ESC), so no face prints it raw."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from core.errors import Conflict, describe_os_error
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest

HOSTILE = "d\nir\x1b[2J"
SHOWN = "d\\nir\\x1b[2J"


def _printable(text: str) -> bool:
    return text.isprintable()


async def test_log_lines_and_a_conflict_name_the_directories_escaped(tmp_path: Path) -> None:
    data, other = tmp_path / HOSTILE, tmp_path / f"o{HOSTILE}"
    data.mkdir()
    other.mkdir()
    (data / "f").write_bytes(b"f")
    mgr = BackupManager(tmp_path / "root")
    await mgr.create_project("proj", str(data))
    meta = await mgr.create(CreateRequest(project_id="proj", data_dir=str(data)))
    target = tmp_path / f"t{HOSTILE}"
    await mgr.restore(RestoreRequest(project_id="proj", backup_id=meta.id, restore_dir=str(target)))
    with pytest.raises(Conflict) as refused:
        await mgr.create(CreateRequest(project_id="proj", data_dir=str(other)))
    message = str(refused.value)
    assert _printable(message)
    assert f"backs up {tmp_path}/{SHOWN}, not {tmp_path}/o{SHOWN}" in message
    messages = [r.message for r in mgr.logger.read("proj")]
    assert all(_printable(m) for m in messages), messages
    assert f"full backup of {tmp_path}/{SHOWN} started" in messages
    assert any(m.startswith(f"restore to {tmp_path}/t{SHOWN} started") for m in messages)


def test_an_os_error_on_a_str_path_names_it_escaped() -> None:
    error = PermissionError(errno.EACCES, "Permission denied", f"/x/{HOSTILE}")
    assert describe_os_error(error, "read") == f"read: /x/{SHOWN}: permission denied"
    as_bytes = PermissionError(errno.EACCES, "Permission denied", f"/x/{HOSTILE}".encode())
    assert describe_os_error(as_bytes, "read") == f"read: /x/{SHOWN}: permission denied"
