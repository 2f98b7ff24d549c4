"""Results a careful user can trust, tried as one would: a config's ``extends`` resolved the same
way at every entry point, dry runs and runs refused by the lock that write nothing, and the
base-most experiment owning what ablations share."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cvg.checkpoint import load_checkpoint
from cvg.config import read_raw
from cvg.data.demo import DemoSpec, render_dataset
from cvg.experiment import build_experiment, load_experiment
from tests.conftest import REPO, tiny_raw_config
from tests.test_pipeline import tiny_experiment
from tests.test_workflow import planned_jobs, snakemake


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    render_dataset(root / "videos", {"train": 1}, DemoSpec(frames=20, width=48, height=40), workers=2)
    return root / "videos"


def dump(path: Path, raw: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the digest of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def base_and_child(tmp_path: Path, videos: Path) -> Path:
    """configs/base.yaml (a tiny folder experiment) and configs/ablations/child.yaml extending it
    with a relative path, changing one level-2 setting."""
    base = tiny_raw_config(videos)
    base["train"] = {"defaults": {"batch_size": 4, "steps": 2}}
    base["metrics"]["n_real"] = 64
    dump(tmp_path / "configs" / "base.yaml", base)
    return dump(tmp_path / "configs" / "ablations" / "child.yaml",
                {"extends": "../base.yaml", "name": "child", "train": {"levels": [{}, {"lr_g": 3.0e-4}]}})


def test_extends_is_resolved_alike_by_every_entry_point(videos, tmp_path):
    child = base_and_child(tmp_path, videos)
    expected = load_experiment(child)  # cvg config validate's reading
    assert expected.metrics.n_real == 64 and expected.train(2).lr_g == 3.0e-4 and expected.train(1).batch_size == 4

    # --configfile: a real run of the first data job; the snapshot the jobs read is the resolved config
    snakemake(tmp_path, "results/child/data/manifest.csv", "--configfile", str(child))
    snapshot = tmp_path / "results" / "child" / "config.yaml"
    assert "extends" not in yaml.safe_load(snapshot.read_text())
    assert snapshot.read_text() == expected.to_yaml()
    assert load_experiment(snapshot) == expected  # what every job loads

    # --config on top of --configfile: keys over the resolved file
    snakemake(tmp_path, "results/child2/data/manifest.csv", "--configfile", str(child), "--config", "name=child2")
    raw = read_raw(child)
    raw["name"] = "child2"
    assert (tmp_path / "results" / "child2" / "config.yaml").read_text() == build_experiment(raw).to_yaml()

    # cvg config validate shows the same experiment
    out = subprocess.run([Path(sys.executable).parent / "cvg", "config", "validate", str(child)], capture_output=True, text=True)
    assert out.returncode == 0 and "experiment 'child'" in out.stdout, out.stderr


def test_cyclic_and_missing_bases_are_named_before_any_job(videos, tmp_path):
    dump(tmp_path / "a.yaml", {"extends": "b.yaml", "name": "a"})
    dump(tmp_path / "b.yaml", {"extends": "a.yaml", "name": "b"})
    out = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "a.yaml"), check=False)
    assert out.returncode != 0 and "extends itself (cycle" in out.stdout + out.stderr, out.stdout[-2000:]
    dump(tmp_path / "c.yaml", {"extends": "gone/base.yaml", "name": "c"})
    out = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "c.yaml"), check=False)
    assert out.returncode != 0 and f"{tmp_path / 'c.yaml'}: extends {tmp_path / 'gone/base.yaml'}, which does not exist" in out.stdout + out.stderr


def test_dry_runs_and_runs_refused_by_the_lock_write_nothing(videos, tmp_path):
    raw = tiny_raw_config(videos)
    cfg = dump(tmp_path / "tiny.yaml", raw)
    snakemake(tmp_path, "results/tiny/data/index.csv", "-n", "--configfile", str(cfg))
    assert not (tmp_path / "results").exists()  # a dry run of a fresh experiment writes no snapshot
    snakemake(tmp_path, "results/tiny/data/manifest.csv", "--configfile", str(cfg))
    before = tree_digest(tmp_path / "results")
    assert "tiny/config.yaml" in before and "tiny/provenance.json" in before

    raw["data"]["clips_per_video"] = 2  # an edited config, dry-run: the snapshot the jobs read stays
    dump(cfg, raw)
    out = snakemake(tmp_path, "results/tiny/data/index.csv", "-n", "--configfile", str(cfg))
    assert "manifest" in out.stdout and tree_digest(tmp_path / "results") == before

    # a run that holds the lock (stopped mid-job), and a second run with the edited config, refused
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "results/tiny/data/index.csv", "--configfile", str(dump(tmp_path / "first.yaml", tiny_raw_config(videos))), "--forcerun", "manifest"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any((tmp_path / ".snakemake" / "locks").glob("*")):
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended before holding its lock"
            time.sleep(0.02)
        os.killpg(first.pid, signal.SIGSTOP)
        held = tree_digest(tmp_path / "results")
        refused = snakemake(tmp_path, "results/tiny/data/index.csv", "--configfile", str(cfg), "--forcerun", "manifest", check=False)
        assert refused.returncode != 0 and "cannot be locked" in refused.stdout + refused.stderr, refused.stdout[-2000:]
        assert tree_digest(tmp_path / "results") == held
    finally:
        os.killpg(first.pid, signal.SIGCONT)
        first.wait(timeout=300)
    assert first.returncode == 0, first.stdout.read()[-3000:]


def test_an_ablation_that_sorts_before_its_base_reads_the_base_level_1(tmp_path):
    """The base-most experiment owns what both compute alike, whatever the names' order."""
    demo = read_raw(REPO / "config" / "demo.yaml")
    levels = demo["train"]["levels"]
    levels[1] = {**levels[1], "lr_g": levels[1].get("lr_g", 1e-4) * 2}
    child = dump(tmp_path / "aaa_ablation.yaml", {"extends": str(REPO / "config" / "demo.yaml"), "name": "aaa_ablation",
                                                   "train": {"levels": levels}})
    out = snakemake(tmp_path, "results/aaa_ablation/train/level3.pt", "-n", "--configfile", str(child))
    trained = {w for rule, w in planned_jobs(out.stdout) if rule == "train_level"}
    assert trained == {"dataset=demo, level=1", "dataset=aaa_ablation, level=2", "dataset=aaa_ablation, level=3"}, out.stdout[-3000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_sent_to_snakemake_alone_saves_the_running_training_step(videos, tmp_path, sig):
    """Snakemake waits for running jobs on SIGTERM; the workflow forwards the stop to its
    training jobs, which save the step they are on and fail, so the run ends promptly."""
    raw = tiny_experiment(videos.parent)
    raw["train"]["defaults"].update(steps=100_000, checkpoint_every=100_000, sample_every=100_000, log_every=1)
    cfg = dump(tmp_path / "tiny.yaml", raw)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "results/tiny/train/level1.pt", "--configfile", str(cfg)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    log = tmp_path / "results/tiny/train/level1.work/log.csv"
    deadline = time.monotonic() + 300
    while not (log.exists() and log.read_text().count("\n") >= 4):
        assert run.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    os.kill(run.pid, sig)  # snakemake's process only, as `kill PID` or a supervisor would
    try:
        output = run.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        raise AssertionError("snakemake kept waiting for the training job") from None
    assert run.returncode != 0
    latest = tmp_path / "results/tiny/train/level1.work/latest.pt"
    saved = int(load_checkpoint(latest)["step"])
    assert 3 <= saved < 100_000 and not (tmp_path / "results/tiny/train/level1.pt").exists()
    said = (tmp_path / "results/tiny/logs/train/level1.log").read_text()
    assert f"stopped by {signal.Signals(sig).name} after step {saved}" in said, said[-2000:] + output[-2000:]


def test_the_cli_says_cvg_errors_in_one_line_and_lets_bugs_show_their_traceback(tmp_path, capsys, monkeypatch):
    from cvg import cli

    assert cli.main(["config", "validate", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"cvg: error: config file {tmp_path / 'missing.yaml'} does not exist"
    assert cli.main(["generate", "--model", str(tmp_path / "missing.cvg"), "--out", str(tmp_path / "s")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    monkeypatch.setattr(cli, "cmd_config_validate", lambda args: {}["mistyped key"])  # a bug, not a user error
    with pytest.raises(KeyError, match="mistyped key"):
        cli.main(["config", "validate", str(tmp_path / "missing.yaml")])
