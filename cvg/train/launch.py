"""Launching a level's training: in this process, under torchrun, or as a SLURM job (submitit).

* ``local``: one process here (CPU or one GPU).
* ``torchrun``: one process per GPU of this node (``train.procs`` CPU processes without GPUs),
  torch.distributed over NCCL or gloo; what a Snakemake job on a SLURM node runs.
* ``slurm``: submitit submits a job of ``nodes`` x ``tasks_per_node`` tasks (one per GPU) with
  the level's SLURM resources; each task exports torch.distributed's variables
  (TorchDistributedEnvironment). On the time-limit signal the job is requeued (Checkpointable)
  and resumes from the last periodic checkpoint. ``cvg train`` waits for the job to finish.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import submitit
import torch

from cvg.config import Config
from cvg.devices import device_type
from cvg.experiment import check_batch, load_experiment
from cvg.train.loop import train_level


def _train(config_path: str, level: int, data_index: str, out: str, work: str, prev: list[str], device: str | None, stop_requested=None) -> str | None:

    result = train_level(load_experiment(config_path), level, data_index, out, work, prev, device=device, stop_requested=stop_requested)
    return str(result) if result else None


class SlurmTrainJob(submitit.helpers.Checkpointable):
    """A requeueable training job: every (re)start resumes from work_dir/latest.pt.

    SLURM sends USR2 ``signal_delay_s`` before the time limit (and on preemption). Instead of
    letting submitit requeue from inside the signal handler, mid-step, the handler only raises
    a flag; the loop finishes the step, all ranks agree, the state of that step is saved, and
    then submitit's handler requeues the job, which resumes at exactly that step.
    """

    def __call__(self, config_path, level, data_index, out, work, prev, device=None):
        env = submitit.helpers.TorchDistributedEnvironment()
        env.export(set_cuda_visible_devices=False)
        requeue = signal.getsignal(signal.SIGUSR2)  # installed by submitit
        stop = threading.Event()
        signal.signal(signal.SIGUSR2, lambda signum, frame: stop.set())
        result = _train(config_path, level, data_index, out, work, prev, device, stop_requested=stop.is_set)
        if result is None and stop.is_set():
            if env.rank == 0 and callable(requeue):
                requeue(signal.SIGUSR2, None)  # checkpoint() + requeue + exit
            time.sleep(600)  # other ranks: wait to be ended by the requeue
        return result


def slurm_executor(config: Config, level: int, folder: Path) -> submitit.AutoExecutor:
    s = config.slurm(level)
    executor = submitit.AutoExecutor(folder=folder, slurm_max_num_timeout=s.max_requeues)
    params = {
        "nodes": s.nodes,
        "tasks_per_node": s.tasks,
        "cpus_per_task": s.cpus_per_task,
        "mem_gb": s.mem_gb,
        "timeout_min": s.time_min,
        "slurm_signal_delay_s": s.signal_delay_s,
        "name": f"cvg-{config.name}-level{level}",
    }
    if s.gpus_per_node:
        params["gpus_per_node"] = s.gpus_per_node
    if s.partition:
        params["slurm_partition"] = s.partition
    if s.account:
        params["slurm_account"] = s.account
    executor.update_parameters(**params)
    return executor


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_forwarding_signals(cmd: list[str]) -> int:
    """Run ``cmd`` (torchrun), passing SIGTERM / SIGINT on to it: its workers then save the step
    they are in and exit with a failure status, which is returned."""
    proc = subprocess.Popen(cmd)
    previous = {sig: signal.signal(sig, lambda signum, frame: proc.send_signal(signum)) for sig in STOP_SIGNALS}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class forward_stop_to_job:
    """While waiting for a SLURM job: SIGTERM / SIGINT here send SIGTERM to the job's processes
    (``scancel --signal=TERM``), which save their step and fail; the wait then ends with that failure."""

    def __init__(self, job_id: str):
        self.job_id = job_id

    def __enter__(self):
        self._previous = {sig: signal.signal(sig, self._forward) for sig in STOP_SIGNALS}
        return self

    def _forward(self, signum, frame):
        print(f"received {signal.Signals(signum).name}: asking SLURM job {self.job_id} to save its step and stop", flush=True)
        subprocess.run(["scancel", "--signal=TERM", str(self.job_id)], check=False)  # the job steps, not the batch shell (srun would abort them)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def launch(config_path: str, level: int, data_index: str, out: str, work: str, prev: list[str], launcher: str | None = None, device: str | None = None) -> int:
    config = load_experiment(config_path)
    launcher = launcher or config.train(level).launcher
    Path(work).mkdir(parents=True, exist_ok=True)
    if launcher == "local":
        _train(config_path, level, data_index, out, work, prev, device)  # Interrupted: the CLI's exit status
        return 0
    if launcher == "torchrun":
        procs = torch.cuda.device_count() if device_type(device) == "cuda" else config.train(level).procs
        check_batch(config, level, procs, config_path)  # before any process starts
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}", "-m", "cvg.cli",
               "train", "--config", config_path, "--level", str(level), "--index", data_index, "--out", out, "--work", work,
               "--launcher", "local"] + (["--device", device] if device else []) + (["--prev", *prev] if prev else [])
        return run_forwarding_signals(cmd)
    if launcher == "slurm":
        with submitit.helpers.clean_env():  # inside a SLURM job (e.g. a Snakemake job): do not inherit its variables
            executor = slurm_executor(config, level, Path(work) / "submitit")
            job = executor.submit(SlurmTrainJob(), str(Path(config_path).resolve()), level, str(Path(data_index).resolve()),
                                  str(Path(out).resolve()), str(Path(work).resolve()), [str(Path(p).resolve()) for p in prev], device)
        print(f"submitted SLURM job {job.job_id} for level {level}; logs in {Path(work) / 'submitit'}", flush=True)
        with forward_stop_to_job(job.job_id):
            job.results()  # raises with the job's traceback if it failed
        if not Path(out).exists():
            raise RuntimeError(f"SLURM job {job.job_id} finished without writing {out}")
        return 0
    raise ValueError(f"unknown launcher {launcher!r} (local, torchrun, slurm)")
