"""The style gate: ``ruff check`` (rules in ``ruff.toml``) finds nothing in the repository."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff is not installed: scripts/setup.sh installs it (pip install ruff)")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check found problems (fix: ruff check --fix .):\n{proc.stdout[-6000:]}"


def test_ruff_would_catch_a_problem(tmp_path):
    """The gate can fail: the same configuration flags an unused import."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(REPO / "ruff.toml"),
                           str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "F401" in proc.stdout
