"""The layers of the code, enforced: `lint-imports` checks the import-linter contracts of
pyproject.toml ([tool.importlinter]): the engine imports no face and no UI or web framework,
the faces (cli, tui, api) import one another only downwards (cli starts tui and api), and a
face uses the engine's public surface, never its internals. Its report names each import
that breaks a contract, so it is the failure message as it is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_import_contracts_hold():
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: pip install -e '.[test]'"
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


#: The engine's modules that work on the user's own files (the data directory, the restore
#: target, the data_dir check, the log files): there FileNotFoundError is about those files.
USER_FILES = {
    "core/ops/walker.py",
    "core/ops/backup.py",
    "core/ops/restore.py",
    "core/ops/restore_anon.py",
    "core/ops/confine.py",
    "core/manager.py",
    "core/logger.py",
}


def test_no_store_type_or_filesystem_error_leaks_out_of_core_storage():
    """The seam is real: outside core/storage the engine names no concrete store, reads no
    store's `.base`, and catches FileNotFoundError only about the user's files (a missing
    repository object is ObjectNotFound)."""
    leaks = []
    for path in sorted((REPO / "core").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("core/storage/"):
            continue
        text = path.read_text()
        for word in ("LocalStore", "MemoryStore", ".base", "isinstance(repo.store"):
            if word in text:
                leaks.append(f"{rel}: {word}")
        if "FileNotFoundError" in text and rel not in USER_FILES:
            leaks.append(f"{rel}: FileNotFoundError")
    assert not leaks, leaks


def test_a_plain_repository_never_loads_cryptography(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """OpenSSL costs every process memory: only an encrypted repository loads it."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys, os\n"
        "from core.manager import BackupManager\n"
        "from core.models import CreateRequest\n"
        "import cli.main\n"
        f"d = {str(tmp_path)!r} + '/data'; os.makedirs(d)\n"
        "open(d + '/a', 'w').write('a')\n"
        f"m = BackupManager({str(tmp_path)!r} + '/root')\n"
        "meta = asyncio.run(m.create(CreateRequest(project_id='p', data_dir=d)))\n"
        "asyncio.run(m.verify('p', meta.id))\n"
        "print('cryptography' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr
