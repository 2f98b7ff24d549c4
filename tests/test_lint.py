"""The Python sources pass ruff (configured in pyproject.toml); ruff comes with the test extra."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["cvg", "tests", "benchmarks", "tools"]


def test_ruff_finds_nothing():
    if subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", *SOURCES], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_workflow_is_snakemake_lint_clean_and_snakefmt_formatted():
    lint = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s", "Snakefile"], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0 and "in a good condition" in lint.stdout + lint.stderr, lint.stdout[-3000:] + lint.stderr[-3000:]
    if subprocess.run([sys.executable, "-m", "snakefmt", "--version"], capture_output=True).returncode:
        pytest.skip("snakefmt is not installed (pip install -e '.[test]')")
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
