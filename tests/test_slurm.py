"""Against a real SLURM cluster (.ci/slurm-up.sh starts a single-node one); skipped without sbatch."""

import copy
import shutil
import subprocess
import time

import pytest
import yaml

from cvg.train.launch import SlurmTrainJob, launch, slurm_executor
from cvg.train.loop import load_checkpoint
from tests.test_train import tiny_data  # noqa: F401  (module-scoped fixture)

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(shutil.which("sbatch") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0, reason="no SLURM cluster"),
]

SLURM = {"nodes": 1, "gpus_per_node": 0, "tasks_per_node": 2, "cpus_per_task": 1, "mem_gb": 3, "time_min": 10, "signal_delay_s": 30}


def write_config(tmp_path, raw, train=None, slurm=None):
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(train or {})
    raw["slurm"] = {"defaults": {**SLURM, **(slurm or {})}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_two_task_submitit_job_trains_with_ddp(tiny_data, tmp_path):  # noqa: F811
    root, raw = tiny_data
    cfg = write_config(tmp_path, raw, train={"steps": 3, "batch_size": 4})
    assert launch(str(cfg), 1, str(root / "data" / "index.csv"), str(tmp_path / "level1.pt"), str(tmp_path / "work"), [], "slurm", "cpu") == 0
    assert load_checkpoint(tmp_path / "level1.pt")["step"] == 3
    logs = sorted((tmp_path / "work" / "submitit").glob("*_log.out"))
    assert len(logs) == 2  # one per task (rank)
    accounting = subprocess.run(["sacct", "-n", "-X", "-o", "JobName%40,NTasks,State"], capture_output=True, text=True).stdout
    assert "cvg-tiny-level1" in accounting


def test_job_stopped_at_time_limit_is_requeued_and_resumes(tiny_data, tmp_path):  # noqa: F811
    root, raw = tiny_data
    cfg_path = write_config(
        tmp_path, raw, train={"steps": 400, "batch_size": 4, "checkpoint_every": 1000, "sample_every": 1000},
        slurm={"time_min": 10, "tasks_per_node": 1, "signal_delay_s": 1, "max_requeues": 3},
    )
    from cvg.config import load_config

    cfg = load_config(cfg_path)
    work = tmp_path / "work"
    job = slurm_executor(cfg, 1, work / "submitit").submit(
        SlurmTrainJob(), str(cfg_path), 1, str(root / "data" / "index.csv"), str(tmp_path / "level1.pt"), str(work), [], "cpu"
    )
    log = work / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 3):
        time.sleep(0.1)
    assert log.exists(), "the job never started training"
    # the signal SLURM sends signal_delay_s before the time limit (deterministic here; submitit
    # classes it as a timeout since a 10-minute job has no guaranteed walltime)
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    job.result()  # waits through the requeue; raises if the job failed
    out = (work / "submitit" / f"{job.job_id}_0_log.out").read_text()
    err = (work / "submitit" / f"{job.job_id}_0_log.err").read_text()
    assert "this job is timed-out" in err and "stop requested, state of step" in out
    stopped_at = int(out.split("stop requested, state of step ")[1].split()[0])
    assert 0 < stopped_at < 400
    assert load_checkpoint(tmp_path / "level1.pt")["step"] == 400
    steps = [int(line.split(",")[0]) for line in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, 401))  # resumed at the step it stopped: no step lost or repeated


def test_sigterm_while_waiting_for_the_job_stops_it_at_a_saved_step(tiny_data, tmp_path):  # noqa: F811
    """SIGTERM to `cvg train --launcher slurm` (Snakemake cancelling its job) is passed to the
    SLURM job, whose ranks save the step they are in and fail; so does the command."""
    import os
    import signal
    import sys

    root, raw = tiny_data
    cfg_path = write_config(tmp_path, raw, train={"steps": 400, "batch_size": 4, "checkpoint_every": 1000, "sample_every": 1000},
                            slurm={"tasks_per_node": 1})
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "cvg.cli", "train", "--config", str(cfg_path), "--level", "1", "--index", str(root / "data" / "index.csv"),
           "--out", str(tmp_path / "level1.pt"), "--work", str(work), "--launcher", "slurm", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ})
    log = work / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0, output[-3000:]
    assert "asking SLURM job" in output
    stopped_at = int(load_checkpoint(work / "latest.pt")["step"])
    assert 0 < stopped_at < 400 and not (tmp_path / "level1.pt").exists()
