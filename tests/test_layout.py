"""Dependency direction of design.md section 2: no import runs back down-to-up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"app", "config", "scheduler", "tagging", "core", "cards", "storage", "bots", "admin"}

# Which project packages each floor may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "tagging": set(),
    "core": {"tagging"},
    "storage": {"core", "tagging"},
    "cards": {"core", "tagging"},
    "bots.teams": {"core", "cards", "tagging"},
    "bots.wecom": {"core", "cards", "tagging"},
    "scheduler": {"core", "tagging", "config"},
    "admin": {"core", "cards", "tagging"},
}
# Third-party packages that must stay inside one floor.
CONFINED = {"sqlalchemy": "storage", "alembic": "storage", "botbuilder": "bots.teams", "botframework": "bots.teams"}


def _floor(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts
    if parts[0] == "bots" and len(parts) > 2:
        return f"bots.{parts[1]}"
    return parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources() -> list[Path]:
    files = [ROOT / "scheduler.py"] if (ROOT / "scheduler.py").exists() else []
    for package in ("tagging", "core", "storage", "cards", "bots", "admin"):
        files.extend((ROOT / package).rglob("*.py"))
    return sorted(files)


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PROJECT:
        return None
    if parts[0] == "bots" and len(parts) > 1:
        return f"bots.{parts[1]}"
    return parts[0]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_respect_floors(path: Path) -> None:
    floor = _floor(path)
    allowed = ALLOWED.get(floor, set()) | {floor}
    for module in _imports(path):
        target = _target(module)
        if target is not None:
            assert target in allowed, f"{path.relative_to(ROOT)} ({floor}) imports {module}"
        top = module.split(".")[0]
        if top in CONFINED:
            home = CONFINED[top]
            assert floor == home, f"{path.relative_to(ROOT)} imports {module}, which belongs in {home}/"


def test_layout_test_sees_every_floor() -> None:
    floors = {_floor(p) for p in _sources()}
    assert {"tagging", "core", "admin"} <= floors
