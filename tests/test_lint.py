"""The Python sources pass ruff (configured in pyproject.toml); ruff comes with the test extra."""
import re
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
    files = ["Snakefile", "workflow/Snakefile", "workflow/rules"]
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_the_workflow_has_the_snakemake_workflows_layout(tmp_path):
    """workflow/Snakefile with rules/, envs/, schemas/ and report/; every rule has a log and the
    project's conda environment (workflow/envs/cvg.yaml is envs/cvg.yaml)."""
    workflow = ROOT / "workflow"
    assert (workflow / "Snakefile").is_file() and (ROOT / "Snakefile").read_text().count('include: "workflow/Snakefile"') == 1
    for sub in ("rules", "envs", "schemas", "report"):
        assert (workflow / sub).is_dir(), sub
    assert (workflow / "envs" / "cvg.yaml").read_text() == (ROOT / "envs" / "cvg.yaml").read_text()
    for smk in sorted((workflow / "rules").glob("*.smk")):
        blocks = re.split(r"^(?:rule|checkpoint) ", smk.read_text(), flags=re.M)[1:]
        assert bool(blocks) == (smk.name != "common.smk"), smk.name  # helpers in common.smk, rules in the stage files
        for block in blocks:
            assert "\n    log:" in block and "\n    conda:\n        ENV" in block, f"{smk.name}: rule {block.split(':')[0]}"

    # the entry point keeps the default target: a bare `snakemake` plans the whole demo
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path)],
                         capture_output=True, text=True)
    assert dry.returncode == 0 and re.search(r"^all\s+1$", dry.stdout, re.M) and re.search(r"^train_level\s+3$", dry.stdout, re.M), dry.stdout[-2000:]
