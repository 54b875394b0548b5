"""Dependency direction of design.md section 2: no import runs back down-to-up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {
    "app",
    "cli",
    "config",
    "scheduler",
    "tagging",
    "learning",
    "core",
    "cards",
    "storage",
    "bots",
    "admin",
    "console",
    "crm",
}

# Which project packages each floor may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "tagging": set(),
    # the learned suggester is a ground floor beside tagging: it may use tagging's normaliser and tokenizer
    "learning": {"tagging"},
    "core": {"tagging", "learning"},
    "storage": {"core", "tagging"},
    "cards": {"core", "tagging"},
    "bots.teams": {"core", "cards", "tagging"},
    "bots.wecom": {"core", "cards", "tagging"},
    "bots.webhook": {"core", "tagging"},
    "scheduler": {"core", "tagging", "learning", "config"},
    "admin": {"core", "cards", "tagging"},
    "console": {"core", "cards", "tagging"},
    # the CLI wires like app.py: it may call every floor, and nothing imports it
    "cli": {
        "app",
        "config",
        "scheduler",
        "tagging",
        "learning",
        "core",
        "cards",
        "storage",
        "bots.teams",
        "bots.wecom",
        "bots.webhook",
        "admin",
        "console",
        "crm",
    },
    "crm": {"core", "cards", "tagging"},
    "crm.dynamics": {"core", "cards", "tagging"},
    "crm.zoho": {"core", "cards", "tagging"},
}
# Third-party packages that must stay inside one floor.
CONFINED = {
    "sqlalchemy": "storage",
    "alembic": "storage",
    "botbuilder": "bots.teams",
    "botframework": "bots.teams",
    "msal": "crm.dynamics",
}


def _floor(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts
    if parts[0] in ("bots", "crm") and len(parts) > 2:
        return f"{parts[0]}.{parts[1]}"
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
    for package in ("tagging", "learning", "core", "storage", "cards", "bots", "admin", "console", "cli", "crm"):
        files.extend((ROOT / package).rglob("*.py"))
    return sorted(files)


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] not in PROJECT:
        return None
    if parts[0] in ("bots", "crm") and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}"
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
    assert {"tagging", "learning", "core", "admin", "console"} <= floors


# Inside core: the shared kernel (types, records, errors, ports, verbs, inbound) stands under every capability package;
# a capability package may use only the capabilities listed here, so the walls between them stay visible.
CORE_KERNEL = {"types", "records", "errors", "ports", "verbs", "inbound", "progress"}
CORE_CAPABILITIES: dict[str, set[str]] = {
    "tags": set(),
    "taxonomy": set(),
    "reports": set(),
    "learning": set(),
    "alerts": {"tags"},
    "chat": {"tags", "alerts", "learning"},
    "importing": {"tags", "alerts", "learning"},
    "wecom_sync": {"tags", "alerts", "taxonomy"},
    "rules": {"tags", "alerts"},
    "console": {"tags"},
    "crm": {"tags"},
}


def _core_sources() -> list[Path]:
    return sorted((ROOT / "core").rglob("*.py"))


@pytest.mark.parametrize("path", _core_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_capabilities_respect_walls(path: Path) -> None:
    rel = path.relative_to(ROOT / "core").with_suffix("").parts
    own = rel[0] if len(rel) > 1 else None  # None: a kernel module
    allowed = CORE_KERNEL if own is None else CORE_KERNEL | CORE_CAPABILITIES[own] | {own}
    for module in _imports(path):
        parts = module.split(".")
        if parts[0] != "core" or len(parts) < 2:
            continue
        assert parts[1] in allowed, (
            f"core/{'/'.join(rel)}.py imports {module}; core.{own or 'kernel'} may use {allowed}"
        )
        if own is None:
            assert parts[1] in CORE_KERNEL, f"kernel module core/{rel[0]}.py imports the capability {module}"


def test_every_core_package_has_walls() -> None:
    packages = {p.name for p in (ROOT / "core").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(CORE_CAPABILITIES), "declare the new core package's allowed capabilities above"


CLI_TOP_LEVEL_OK = {
    "__future__",
    "argparse",
    "importlib",
    "logging",
    "sys",
    "collections",
    "typing",
    "pathlib",
    "datetime",
    "cli",
}


@pytest.mark.parametrize("path", sorted((ROOT / "cli").glob("*.py")), ids=lambda p: p.name)
def test_cli_modules_import_heavy_parts_only_when_a_verb_runs(path: Path) -> None:
    """`kebiao --help` stays fast: a verb module's top level imports the standard library and cli.* only."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks import nothing at run time
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] in CLI_TOP_LEVEL_OK, f"cli/{path.name} imports {name} at module level"


def test_kebiao_help_loads_no_server_parts() -> None:
    """`kebiao --help` parses without importing aiohttp, botbuilder, SQLAlchemy or jieba."""
    import subprocess
    import sys

    probe = (
        "import sys, contextlib, io\n"
        "from cli.main import build_parser\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    build_parser().parse_args(['--help'])\n"
        "heavy = sorted(m for m in ('aiohttp', 'botbuilder', 'sqlalchemy', 'jieba', 'app') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "", f"kebiao --help imported {out.stdout.strip()}"
