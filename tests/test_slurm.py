"""Against a real SLURM cluster (.ci/slurm-up.sh starts a single-node one); skipped without sbatch."""

import copy
import shutil
import subprocess

import pytest
import submitit
import yaml

from cvg.config import build_config
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
    # a 1-minute limit with USR2 sent 50 s before it (SLURM's resolution: up to 60 s earlier):
    # the job is signalled at least once, checkpoints the step it is at, is requeued and resumes
    cfg_path = write_config(
        tmp_path, raw, train={"steps": 40, "batch_size": 4, "checkpoint_every": 1000, "sample_every": 1000},
        slurm={"time_min": 1, "tasks_per_node": 1, "signal_delay_s": 50, "max_requeues": 20},
    )
    from cvg.config import load_config

    cfg = load_config(cfg_path)
    work = tmp_path / "work"
    executor = slurm_executor(cfg, 1, work / "submitit")
    job = executor.submit(SlurmTrainJob(), str(cfg_path), 1, str(root / "data" / "index.csv"), str(tmp_path / "level1.pt"), str(work), [], "cpu")
    job.result()  # waits through the requeues; raises if the job failed
    out = (work / "submitit" / f"{job.job_id}_0_log.out").read_text()
    err = (work / "submitit" / f"{job.job_id}_0_log.err").read_text()
    assert "this job is timed-out" in err and "stop requested, state of step" in out
    assert load_checkpoint(tmp_path / "level1.pt")["step"] == 40
    steps = [int(line.split(",")[0]) for line in (work / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 41))  # resumed at the step it stopped: no step lost or repeated
