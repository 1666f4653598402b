"""The README's two quickstart commands exist: `make demo` (three parts) and `make test` parse and
name what they run (a broken Makefile once stopped `make demo` before its first command)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_and_test_parse():
    demo = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr
    for part in ("workflow/demo.yaml", "workflow/demo_ablations.yaml", "workflow/demo_countsplit.yaml"):
        assert part in demo.stdout
    test = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    assert test.returncode == 0 and "pytest" in test.stdout, test.stderr
