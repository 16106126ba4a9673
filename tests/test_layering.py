"""genlib is the core: it never imports Streamlit (pages depend on genlib, never the reverse)."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

GENLIB = Path(__file__).resolve().parent.parent / "genlib"
IMPORT = re.compile(r"^\s*(?:import\s+streamlit\b|from\s+streamlit\b)|importlib\.import_module\(\s*['\"]streamlit",
                    re.MULTILINE)


def test_the_pattern_catches_streamlit_imports():
    for line in ("import streamlit as st", "    from streamlit import session_state", "import streamlit.components.v1",
                 "importlib.import_module('streamlit')"):
        assert IMPORT.search(line), line
    for line in ("# streamlit is not used here", "import streamlitish", "x = 'import streamlit'"):
        assert not IMPORT.search(line), line


def test_no_genlib_source_imports_streamlit():
    files = sorted(GENLIB.rglob("*.py"))
    assert len(files) >= 10 and GENLIB / "families" / "autoencoders" / "model.py" in files
    offenders = [f"{p.relative_to(GENLIB.parent)}:{m.group(0).strip()}"
                 for p in files for m in IMPORT.finditer(p.read_text())]
    assert not offenders, offenders


def test_importing_all_of_genlib_loads_no_streamlit():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import genlib
        names = [m.name for m in pkgutil.walk_packages(genlib.__path__, "genlib.") if m.name != "genlib.__main__"]
        for name in names:
            importlib.import_module(name)
        assert "genlib.cli" in sys.modules and "genlib.background" in sys.modules and "genlib.evaluation" in sys.modules
        bad = sorted(m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))
        print(len(names), "modules;", "streamlit loaded:" if bad else "no streamlit", bad[:3])
        sys.exit(1 if bad else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=GENLIB.parent, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no streamlit" in proc.stdout
