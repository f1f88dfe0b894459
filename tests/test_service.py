"""`core.service.Engine` is the seam the faces type their manager with: BackupManager must
satisfy it, member by member (a static-ish check with inspect, since no type checker runs in
the suite), and the faces must not call the manager outside it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from core.manager import BackupManager
from core.service import Engine

REPO = Path(__file__).resolve().parent.parent


def _methods() -> dict[str, object]:
    return {
        name: value
        for name, value in vars(Engine).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }


def _shape(fn: object) -> list[tuple[str, object, bool]]:
    """Each parameter's name, kind and whether it has a default (annotations are strings
    under `from __future__ import annotations`, compared separately)."""
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default is not p.empty) for p in sig.parameters.values()]


@pytest.mark.parametrize("name", sorted(_methods()))
def test_backup_manager_has_each_engine_method_with_the_same_signature(name: str):
    proto = _methods()[name]
    impl = getattr(BackupManager, name, None)
    assert impl is not None, f"BackupManager has no {name}"
    assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(proto), name
    assert _shape(impl) == _shape(proto), name
    want, got = inspect.signature(proto), inspect.signature(impl)  # type: ignore[arg-type]
    for p in want.parameters.values():
        assert p.default == got.parameters[p.name].default, (name, p.name)
        assert p.annotation == got.parameters[p.name].annotation, (name, p.name)
    assert want.return_annotation == got.return_annotation, name


def _properties() -> set[str]:
    return {name for name, value in vars(Engine).items() if isinstance(value, property)}


def test_backup_manager_has_the_engines_attributes(tmp_path: Path):
    mgr = BackupManager(tmp_path / "root")
    for name in [*Engine.__annotations__, *_properties()]:
        assert hasattr(mgr, name), name


def test_the_faces_call_nothing_of_the_manager_outside_the_engine():
    """Every `mgr.x` / `manager.x` a face writes names a member of Engine."""
    members = set(_methods()) | set(Engine.__annotations__) | _properties()
    used = set()
    for face in ("cli", "tui", "api"):
        for path in (REPO / face).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            used |= set(re.findall(r"\b(?:mgr|manager)\)?\.([a-z_]+)\b", text))
    assert used and used <= members, sorted(used - members)
