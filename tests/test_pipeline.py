"""The DAG beyond the data stage on a tiny experiment: train every level, sample, rerun one
level after a config change, and the same DAG through the SLURM executor."""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pytest
import yaml

from cvg.checkpoint import load_checkpoint
from cvg.data.demo import DemoSpec, render_dataset
from cvg.data.shards import ShardError, open_shard
from cvg.video_io import decode_frames
from tests.conftest import REPO, tiny_raw_config
from tests.test_workflow import snakemake


def tiny_experiment(root, name="tiny"):
    raw = tiny_raw_config(root / "videos")
    raw["name"] = name
    raw["model"] = {"preset": "tiny"}
    raw["train"] = {"defaults": {"batch_size": 4, "steps": 2, "checkpoint_every": 1, "log_every": 1, "sample_every": 2, "num_workers": 0}}
    raw["sample"] = {"n_samples": 4, "batch_size": 2, "chunk": 2, "bn": "recompute", "bn_passes": 2}
    raw["slurm"] = {"defaults": {"gpus_per_node": 0, "tasks_per_node": 1, "cpus_per_task": 1, "mem_gb": 2, "time_min": 10}}
    return raw


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    render_dataset(root / "videos", {"train": 1}, DemoSpec(frames=20, width=48, height=40), workers=2)
    return root


def write(path, raw):
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def jobs_of(dry_run_output: str) -> set[str]:
    return {line.split()[1].rstrip(":") for line in dry_run_output.splitlines() if line.startswith(("rule ", "localrule ", "checkpoint "))}


def test_tiny_dag_trains_samples_and_reruns_only_the_changed_level(videos, tmp_path):
    raw = tiny_experiment(videos)
    cfg = write(tmp_path / "tiny.yaml", raw)
    snakemake(tmp_path, "results/tiny/samples/cascade.h5", "results/tiny/samples/bilinear.h5", "--configfile", cfg)
    with h5py.File(tmp_path / "results/tiny/samples/cascade.h5") as h5:
        assert h5["level1"].shape == (4, 4, 16, 16, 3) and h5["level2"].shape == (4, 8, 32, 32, 3)
    assert (tmp_path / "results/tiny/samples/grid.gif").stat().st_size > 0
    assert (tmp_path / "results/tiny/train/level2.work/log.csv").exists()

    # tracked artifacts: the sample grid and the loss curves are report items of a self-contained report
    targets = ["results/tiny/samples/cascade.h5", "results/tiny/train/losses.svg"]
    snakemake(tmp_path, *targets, "--configfile", cfg)
    snakemake(tmp_path, *targets, "--configfile", cfg, "--report", str(tmp_path / "report.zip"))
    with zipfile.ZipFile(tmp_path / "report.zip") as report:
        names = report.namelist()
    assert any(n.endswith("grid.mp4") for n in names) and any(n.endswith("losses.svg") for n in names), names
    assert (tmp_path / "results/tiny/provenance.json").exists() and (tmp_path / "results/tiny/config.yaml").exists()

    changed = copy.deepcopy(raw)
    changed["train"]["levels"] = [{}, {"lr_g": 2e-4}]  # level 2 only
    cfg2 = write(tmp_path / "tiny2.yaml", changed)
    out = snakemake(tmp_path, "results/tiny/samples/cascade.h5", "results/tiny/samples/bilinear.h5", "-n", "--configfile", cfg2)
    text = out.stdout + out.stderr
    assert "level=2" in text and "level=1" not in text  # level 1's training and BN statistics stay
    # level 2's statistics are prepared again; the bilinear samples read level 1 only
    assert jobs_of(out.stdout) == {"train_level", "norms", "sample"}, out.stdout
    # --until / a target path trains just one level
    one = snakemake(tmp_path, "results/tiny/train/level2.pt", "-n", "--configfile", cfg2)
    assert jobs_of(one.stdout) == {"train_level"}

    # the PSD figure and the frame strip read the real clips metrics.n_real / real_split choose: rerun when they change
    snakemake(tmp_path, "results/tiny/psd.svg", "results/tiny/samples/strip.png", "--configfile", cfg)
    fewer = copy.deepcopy(raw)
    fewer["metrics"]["n_real"] = 3
    out = snakemake(tmp_path, "results/tiny/psd.svg", "results/tiny/samples/strip.png", "-n", "--configfile", write(tmp_path / "fewer.yaml", fewer))
    assert jobs_of(out.stdout) == {"psd", "strip"}, out.stdout[-3000:]

    # the dataset copied to other storage (new root, new modification times, same bytes): nothing reruns
    moved = tmp_path / "scratch" / "videos"
    shutil.copytree(videos / "videos", moved, copy_function=shutil.copyfile)
    relocated = copy.deepcopy(raw)
    relocated["dataset"]["root"] = str(moved)
    cfg3 = write(tmp_path / "tiny3.yaml", relocated)
    out = snakemake(tmp_path, "results/tiny/samples/cascade.h5", "results/tiny/samples/bilinear.h5", "-n", "--configfile", cfg3)
    assert jobs_of(out.stdout) == set(), out.stdout[-3000:]
    first, second = sorted(moved.rglob("*.mp4"))[:2]
    shutil.copyfile(second, first)  # one video's bytes changed: the data and every level after it
    out = snakemake(tmp_path, "results/tiny/samples/cascade.h5", "-n", "--configfile", cfg3)
    assert {"manifest", "train_level", "sample"} <= jobs_of(out.stdout), out.stdout[-3000:]


@pytest.mark.slurm
@pytest.mark.skipif(shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0, reason="no SLURM cluster")
def test_tiny_dag_through_the_slurm_executor(videos, tmp_path):
    raw = tiny_experiment(videos, name="tinyslurm")
    cfg = write(tmp_path / "tinyslurm.yaml", raw)
    before = set(subprocess.run(["sacct", "-n", "-X", "-o", "JobID"], capture_output=True, text=True).stdout.split())
    snakemake(tmp_path, "results/tinyslurm/samples/cascade.h5", "--configfile", cfg, "--profile", str(REPO / "profiles" / "slurm-ci"))
    acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,JobName,State"], capture_output=True, text=True).stdout
    new = [line.split("|") for line in acct.splitlines() if line.split("|")[0] not in before]
    assert all(state == "COMPLETED" for _, _, state in new), new
    # the executor labels each job with its rule in the job comment (kept by the controller for MinJobAge)
    records = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True).stdout.splitlines()
    comments = {r.split()[0].split("=")[1]: r.split("Comment=")[1].split()[0] for r in records if "Comment=" in r}
    train_jobs = sorted(c for jid, c in comments.items() if jid not in before and c.startswith("rule_train_level"))
    assert train_jobs == ["rule_train_level_wildcards_tinyslurm_1", "rule_train_level_wildcards_tinyslurm_2"], comments


def test_changed_data_settings_and_added_videos_rebuild_the_data(videos, tmp_path):
    """A changed data.fps re-decodes every shard and rebuilds the index (its old content would
    otherwise be reused); a video added to the dataset root reruns the manifest."""
    from cvg.config import build_config
    from cvg.fingerprint import fingerprints, read_stamp, read_stamp_file

    root = tmp_path / "data"
    shutil.copytree(videos / "videos", root)
    raw = tiny_experiment(videos)
    raw["dataset"]["root"] = str(root)
    cfg = write(tmp_path / "tiny.yaml", raw)
    snakemake(tmp_path, "results/tiny/data/index.csv", "--configfile", cfg)
    assert jobs_of(snakemake(tmp_path, "results/tiny/data/index.csv", "-n", "--configfile", cfg).stdout) == set()

    changed = copy.deepcopy(raw)
    changed["data"]["fps"] = 20
    cfg2 = write(tmp_path / "tiny2.yaml", changed)
    plan = snakemake(tmp_path, "results/tiny/data/index.csv", "-n", "--configfile", cfg2).stdout
    assert {"manifest", "index"} <= jobs_of(plan), plan  # the shard jobs appear once the manifest (a checkpoint) has run
    snakemake(tmp_path, "results/tiny/data/index.csv", "--configfile", cfg2)
    expected = fingerprints(build_config(changed)).fingerprint("data")
    assert read_stamp_file(tmp_path / "results/tiny/data/index.csv").fingerprint == expected
    for shard in (tmp_path / "results/tiny/data/shards").rglob("*.h5"):
        with h5py.File(shard) as h5:
            assert read_stamp(h5.attrs).fingerprint == expected and h5.attrs["fps"] == 20

    extra = next(root.rglob("*.mp4"))
    shutil.copyfile(extra, extra.with_name("added.mp4"))
    plan = snakemake(tmp_path, "results/tiny/data/index.csv", "-n", "--configfile", cfg2).stdout
    assert "manifest" in jobs_of(plan), plan

    # a damaged shard of an experiment defined by --configfile: the fix command carries it
    shard = next((tmp_path / "results/tiny/data/shards").rglob("*.h5"))
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(ShardError, match=f"rebuild it: snakemake -c2 --configfile {cfg2} --forcerun shard -- {shard}"):
        open_shard(shard)


@pytest.mark.slurm
@pytest.mark.skipif(shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0, reason="no SLURM cluster")
@pytest.mark.parametrize("how", ["scancel", "time limit"])
def test_a_training_job_of_the_slurm_executor_saves_its_step_when_cancelled_or_out_of_time(videos, tmp_path, how):
    """What SLURM delivers to a training step inside a snakemake job: SIGTERM to every process of
    the job (scancel, or the time limit), SIGKILL after KillWait; the step is saved before that."""
    name = "tinyscancel" if how == "scancel" else "tinytimeout"
    raw = tiny_experiment(videos, name=name)
    raw["train"]["defaults"].update(steps=100_000, checkpoint_every=100_000, sample_every=100_000, log_every=1)
    if how == "time limit":
        raw["slurm"]["defaults"]["time_min"] = 1
    cfg = write(tmp_path / f"{name}.yaml", raw)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), f"results/{name}/train/level1.pt",
           "--configfile", cfg, "--profile", str(REPO / "profiles" / "slurm-ci")]
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = tmp_path / f"results/{name}/train/level1.work/log.csv"
    deadline = time.monotonic() + 600
    while not (log.exists() and log.read_text().count("\n") >= 4):
        assert run.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    jobs = subprocess.run(["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True).stdout.splitlines()
    job = next(line.split()[0] for line in jobs if line.split()[1] == f"rule_train_level_wildcards_{name}_1")
    if how == "scancel":
        subprocess.run(["scancel", job], check=True)
    state, deadline = "", time.monotonic() + 300  # SLURM's side; the executor notices at its own polling pace
    while not state.startswith(("CANCELLED", "TIMEOUT")):
        assert time.monotonic() < deadline, f"job {job} still {state}"
        time.sleep(1)
        state = subprocess.run(["sacct", "-j", job, "-X", "-n", "-o", "State"], capture_output=True, text=True).stdout.strip()
    run.send_signal(signal.SIGINT)  # the submitting snakemake: stop waiting for its next status check
    run.communicate(timeout=120)
    saved = int(load_checkpoint(tmp_path / f"results/{name}/train/level1.work/latest.pt")["step"])
    said = (tmp_path / f"results/{name}/logs/train/level1.log").read_text()
    assert saved >= 3 and f"stopped by SIGTERM after step {saved}" in said, said[-3000:]
    assert not (tmp_path / f"results/{name}/train/level1.pt").exists()


def cvg(*args: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(Path(sys.executable).parent / "cvg"), *args], capture_output=True, text=True, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"cvg {args[0]} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def test_generate_and_export_give_the_same_mp4s_from_the_results_and_from_one_file(videos, tmp_path):
    raw = tiny_experiment(videos)
    cfg = write(tmp_path / "tiny.yaml", raw)
    snakemake(tmp_path, "results/tiny/train/level2.pt", "--configfile", cfg)

    # 3 videos of 16 frames (level 1 unrolled to 8 frames, level 2 doubles them) of a chosen class, from the results
    out = cvg("generate", "--config", cfg, "--out", "s1", "--n", "3", "--frames", "16", "--class", "1", "--device", "cpu", cwd=tmp_path)
    records = json.loads((tmp_path / "s1" / "samples.json").read_text())["samples"]
    assert [r["file"] for r in records] == ["sample_0000.mp4", "sample_0001.mp4", "sample_0002.mp4"], out.stdout
    assert all(r["frames"] == 16 and r["label"] == 1 and r["levels"] == 2 and r["size"] == [32, 32] for r in records)
    decoded = decode_frames(tmp_path / "s1" / "sample_0000.mp4", 100)
    assert decoded.shape == (16, 32, 32, 3)

    # exported, then sampled in an empty folder elsewhere: the same files, bit for bit
    cvg("export", "--config", cfg, "--out", "tiny.cvg", "--device", "cpu", cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.move(tmp_path / "tiny.cvg", elsewhere / "tiny.cvg")
    cvg("generate", "--model", "tiny.cvg", "--out", "s2", "--n", "3", "--frames", "16", "--class", "1", "--device", "cpu", cwd=elsewhere)
    for name in ("sample_0000.mp4", "sample_0001.mp4", "sample_0002.mp4"):
        assert (tmp_path / "s1" / name).read_bytes() == (elsewhere / "s2" / name).read_bytes(), name
    assert json.loads((elsewhere / "s2" / "samples.json").read_text())["samples"] == records
    one = cvg("generate", "--model", "tiny.cvg", "--out", "s3", "--n", "1", "--seed", "2", "--frames", "16", "--class", "1",
              "--levels", "2", "--device", "cpu", cwd=elsewhere)  # sample 2 alone: its own seed, whatever --n
    assert (elsewhere / "s3" / "sample_0000.mp4").read_bytes() == (tmp_path / "s1" / "sample_0002.mp4").read_bytes(), one.stdout

    cvg("generate", "--config", cfg, "--out", "d1", "--n", "1", "--device", "cpu", cwd=tmp_path)  # the sampling stage's length:
    cvg("generate", "--model", "tiny.cvg", "--out", "d2", "--n", "1", "--device", "cpu", cwd=elsewhere)  # the exported statistics
    assert (tmp_path / "d1" / "sample_0000.mp4").read_bytes() == (elsewhere / "d2" / "sample_0000.mp4").read_bytes()

    # refused with a message naming the file or what to do
    data = bytearray((elsewhere / "tiny.cvg").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (elsewhere / "bad.cvg").write_bytes(bytes(data))
    bad = cvg("generate", "--model", "bad.cvg", "--out", "s4", cwd=elsewhere, check=False)
    assert bad.returncode == 2 and "bad.cvg" in bad.stderr, bad.stderr[-2000:]
    odd = cvg("generate", "--model", "tiny.cvg", "--out", "s5", "--frames", "15", cwd=elsewhere, check=False)
    assert odd.returncode == 2 and "ask for a multiple of 2" in odd.stderr
    named = cvg("generate", "--model", "tiny.cvg", "--out", "s6", "--class", "no-such-class", cwd=elsewhere, check=False)
    assert named.returncode == 2 and "not a class of this model" in named.stderr
    changed = copy.deepcopy(raw)
    changed["train"]["levels"] = [{}, {"lr_g": 2e-4}]
    untrained = cvg("generate", "--config", write(tmp_path / "tiny2.yaml", changed), "--out", "s7", cwd=tmp_path, check=False)
    assert untrained.returncode == 2 and "snakemake -c2 results/tiny/train/level2.pt" in untrained.stderr, untrained.stderr[-2000:]
