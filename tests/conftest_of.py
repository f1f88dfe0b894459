"""A test directory's own conftest, loaded by its path: `from conftest import` finds whichever
conftest was imported first under that name (tests/api and tests/tui both have one), so a
test importing from it breaks when both directories run in one process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def conftest_of(test_file: str) -> ModuleType:
    path = Path(test_file).with_name("conftest.py")
    name = f"conftest_of_{path.parent.name}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
