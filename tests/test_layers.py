"""The import rules of ARCHITECTURE.md, checked on the source: a package imports only the
packages below it, so the tree keeps reading as the architecture."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Which core packages each core package may import (besides itself). Keep in step with
#: the table in ARCHITECTURE.md.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "agreement": {"errors"},
    # store.config registers the demo model provider when MLflow is configured, and the
    # model helpers read the data folder: the two form the base layer together.
    "models": {"errors", "store"},
    "store": {"errors", "models"},
    "labeling": {"errors", "store"},
    "io": {"errors", "store", "labeling"},
    "optimization": {"errors", "store", "models", "labeling", "agreement", "io"},
    "views": {"errors", "store", "models", "labeling", "agreement", "io", "optimization"},
    "cli": {"errors", "store", "models", "labeling", "agreement", "io", "optimization", "views"},
}


def _core_imports(path: Path) -> set[str]:
    """Top-level core packages a module imports (``core.x...`` -> ``x``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "core":
                names = [f"core.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "core" and len(parts) > 1:
                found.add(parts[1])
    return found


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT / "core").parts
    return rel[0].removesuffix(".py")


def test_each_core_package_imports_only_the_layers_below_it():
    offenders = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        pkg = _package_of(path)
        if pkg in {"__init__", "_lazy"}:
            continue  # the package front re-exports; _lazy is its helper
        assert pkg in ALLOWED, f"{pkg} (from {path}) has no row in ALLOWED / ARCHITECTURE.md"
        # _lazy (the lazy package-front helper) is stdlib-only, so any front may use it.
        bad = _core_imports(path) - ALLOWED[pkg] - {pkg, "_lazy"}
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports core.{', core.'.join(sorted(bad))}")
    assert offenders == []


def test_core_never_imports_the_app():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "core").rglob("*.py")
        if any(
            isinstance(n, (ast.Import, ast.ImportFrom))
            and any(
                (getattr(n, "module", None) or "").split(".")[0] == "app"
                or a.name.split(".")[0] == "app"
                for a in n.names
            )
            for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        )
    ]
    assert offenders == []


def test_the_layer_check_sees_a_forbidden_import(tmp_path):
    # The rule must be able to fail: a labeling module importing the optimizer is caught.
    bad = tmp_path / "bad.py"
    bad.write_text("from core.optimization.engine import run_alignment\nimport core.views.runs\n")
    assert _core_imports(bad) == {"optimization", "views"}
    assert _core_imports(bad) - ALLOWED["labeling"] == {"optimization", "views"}
