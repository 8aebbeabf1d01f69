"""Architecture rules that keep the code base livable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_never_imports_streamlit():
    # A fresh interpreter imports every core module; streamlit must not come along.
    code = (
        "import pkgutil, sys, importlib, core\n"
        "mods = [m.name for m in pkgutil.walk_packages(core.__path__, 'core.')]\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert len(mods) > 5, mods\n"
        "bad = sorted(k for k in sys.modules if k == 'streamlit' or k.startswith('streamlit.'))\n"
        "print(len(mods), 'modules;', 'streamlit loaded' if bad else 'clean')\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "clean" in proc.stdout


def test_core_sources_have_no_streamlit_import_lines():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "core").rglob("*.py")
        if any(
            line.lstrip().startswith(("import streamlit", "from streamlit"))
            for line in p.read_text(encoding="utf-8").splitlines()
        )
    ]
    assert offenders == []
