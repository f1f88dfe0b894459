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
