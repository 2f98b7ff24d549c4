"""Greedy training of one cascade level: data stream, frozen lower levels, checkpoints with
exact resume, DistributedDataParallel, logging and sample grids.

State that makes a run resumable lives in ``work_dir`` (undeclared in Snakemake, so it is not
deleted before a rerun): ``latest.pt`` (atomic, every ``checkpoint_every`` steps), ``log.csv``
and ``samples/``. The declared artefact is only the final ``level{l}.pt``.

Resume is exact on CPU: every random draw of a step comes from a generator seeded by
(seed, level, step, sub-step), the data order by (seed, epoch) and windows by
(seed, epoch, item), so a run killed after checkpoint k and resumed replays steps k+1.. with the
same draws, data and model state: the final weights are bitwise equal to an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from cvg.cascade import CascadeSampler, level_grid
from cvg.checkpoint import CheckpointError, check_stamp, load_checkpoint, load_generator, save_atomic
from cvg.config import Config
from cvg.data.shards import index_fingerprints
from cvg.data.windows import PyramidWindows
from cvg.devices import device_type
from cvg.errors import CvgError, InputError
from cvg.fingerprint import Fingerprints, StaleError
from cvg.models.layers import skipped_orthogonal_init
from cvg.plan import preflight
from cvg.pyramid import crop_windows, window_starts
from cvg.seeding import keyed_generator
from cvg.train.evaluate import LevelEvaluator, Selection
from cvg.train.level import Level, take_rows
from cvg.video_io import encode_video


class NonFiniteLossError(CvgError, FloatingPointError):
    pass


# -- distributed ------------------------------------------------------------------------------
def init_distributed(device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun / submitit's environment variables."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_type(device) == "cuda"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def agree(flag: bool, world: int, device: torch.device) -> bool:
    """True on every rank when any rank says so (stop requests must stop all ranks at one step)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# -- data -------------------------------------------------------------------------------------
def epoch_batches(n_items: int, global_batch: int, seed: int, epoch: int) -> list[np.ndarray]:
    if n_items < global_batch:
        raise ValueError(f"the training split has {n_items} clips, fewer than one batch of {global_batch}")
    order = np.random.default_rng([seed, epoch]).permutation(n_items)
    return [order[i * global_batch : (i + 1) * global_batch] for i in range(n_items // global_batch)]


class BatchStream:
    """Endless (epoch, position) -> batch stream; each process gets its contiguous slice of
    every global batch. Restartable at any (epoch, position)."""

    def __init__(self, dataset: PyramidWindows, global_batch: int, seed: int, rank: int, world: int, num_workers: int):
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} is not divisible by the {world} processes")
        self.dataset, self.global_batch, self.seed = dataset, global_batch, seed
        self.local = global_batch // world
        self.rank, self.num_workers = rank, num_workers
        self.epoch, self.position = 0, 0
        self._iter = None

    def _start(self) -> None:
        self.dataset.set_epoch(self.epoch)
        batches = epoch_batches(len(self.dataset), self.global_batch, self.seed, self.epoch)[self.position :]
        mine = [b[self.rank * self.local : (self.rank + 1) * self.local].tolist() for b in batches]
        self._iter = iter(DataLoader(self.dataset, batch_sampler=mine, num_workers=self.num_workers))

    def next(self) -> dict[str, torch.Tensor]:
        while True:
            if self._iter is None:
                self._start()
            batch = next(self._iter, None)
            if batch is not None:
                self.position += 1
                return batch
            self.epoch, self.position, self._iter = self.epoch + 1, 0, None


# -- checkpoints --------------------------------------------------------------------------------
class Interrupted(RuntimeError):
    """Training stopped by SIGTERM / SIGINT after checkpointing the step it was in."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal: a failure


class StopSignals:
    """While active, SIGTERM and SIGINT only raise a flag: the loop finishes its step, saves it
    and stops (``Interrupted``), so scancel, a time limit or Ctrl-C lose no finished step. A
    second signal more than ``REPEAT_S`` after the first ends the process at once, as without the handler."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    REPEAT_S = 2.0  # a repeat sooner is the same request delivered twice (a terminal's Ctrl-C, and Snakemake forwarding it)

    def __init__(self):
        self.received: int | None = None
        self.at = 0.0
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:
            if time.monotonic() - self.at < self.REPEAT_S:
                return
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second request: do what the signal did before
            os.kill(os.getpid(), signum)
            return
        self.received, self.at = signum, time.monotonic()
        print(f"received {signal.Signals(signum).name}: finishing this step, then saving it", flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


class WorkState:
    """A level's resumable state in its work folder: ``latest.pt`` and, beside it, the one before
    (``previous.pt``), both stamped with the training stage's fingerprint and verified by their
    content digest when read (``load_checkpoint``). A state of another fingerprint is never
    resumed: the folder is moved aside as ``level{l}.work.stale-<date>`` and training starts
    afresh; an unreadable or altered ``latest.pt`` falls back to ``previous.pt``.

    ``good`` is the last state known sound (verified when read, or written by this run): only it
    is ever rotated into ``previous.pt``, so a damaged ``latest.pt`` never becomes the fallback
    (it is kept aside as ``latest.pt.damaged`` when the next save replaces it)."""

    def __init__(self, work_dir: Path, fps: Fingerprints, stage: str):
        self.work_dir, self.fps, self.stage = work_dir, fps, stage
        self.latest, self.previous = work_dir / "latest.pt", work_dir / "previous.pt"
        self.loaded_from: Path | None = None
        self.good: Path | None = None

    def load(self, device) -> dict | None:
        state, path = None, None
        for path in (self.latest, self.previous):
            if not path.exists():
                continue
            try:
                state = load_checkpoint(path, device)
            except CheckpointError as exc:
                other = self.previous if path == self.latest else None
                print(f"{exc}; " + (f"falling back to {other}" if other and other.exists() else "no earlier state to fall back to"), flush=True)
                continue
            break
        if state is None:
            if self.latest.exists() or self.previous.exists():
                self.move_aside("its checkpoints are unreadable or damaged")
            return None
        try:
            check_stamp(self.fps, state, self.stage, path)
        except StaleError as exc:
            self.move_aside(str(exc))
            return None
        self.loaded_from = self.good = path
        return state

    def move_aside(self, why: str) -> Path:
        label = self.fps.fingerprint(self.stage)
        target = self.work_dir.with_name(f"{self.work_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.work_dir, target)
        self.work_dir.mkdir(parents=True)
        print(f"starting {self.stage} afresh (fingerprint {label}): {why}. The old state is kept in {target}", flush=True)
        self.good = None
        return target

    def save(self, state: dict) -> None:
        """Write ``latest.pt``; the state it replaces becomes ``previous.pt`` only if it is sound."""
        upcoming = self.work_dir / "next.pt"  # written in full first: the rotation is then two renames
        save_atomic({**state, "stamp": self.fps.stamp(self.stage).to_json()}, upcoming)
        if self.latest.exists():
            if self.good == self.latest:
                os.replace(self.latest, self.previous)
            else:  # unverified or damaged: keep it for inspection, never as the fallback
                os.replace(self.latest, self.latest.with_name(self.latest.name + ".damaged"))
        os.replace(upcoming, self.latest)
        self.good = self.latest


def n_classes_from(index_path: Path, config: Config) -> int:
    if not config.dataset.conditional:
        return 0
    classes = index_path.parent / "classes.csv"
    if classes.exists():
        return len(pd.read_csv(classes))
    labels = pd.read_csv(index_path)["label"]
    return int(labels.max()) + 1 if (labels >= 0).any() else 0


# -- monitoring -----------------------------------------------------------------------------------
def write_grid(videos: list[torch.Tensor], path: Path) -> np.ndarray:
    """PNG: per sample, its levels stacked (as in the sample videos), time left to right; returns the image."""
    frames = level_grid(videos)  # (T, L*H, n*W, 3), samples side by side
    width = videos[-1].shape[-1]
    samples = np.split(frames, frames.shape[2] // width, axis=2)  # n x (T, L*H, W, 3)
    rows = [np.concatenate(list(sample), axis=1) for sample in samples]  # n x (L*H, T*W, 3)
    image = np.concatenate(rows, axis=0)
    encode_video(image[None], path, fps=1)
    return image


def training_logs(checkpoints: list[str | os.PathLike]) -> pd.DataFrame:
    """The ``log.csv`` of each level's work folder (``levelL.pt`` -> ``levelL.work/log.csv``), with a level column."""
    logs = []
    for path in map(Path, checkpoints):
        log = path.with_suffix(".work") / "log.csv"
        if not log.is_file():
            raise InputError(f"training log not found: {log} (the work folder of {path})")
        logs.append(pd.read_csv(log).assign(level=int(path.stem.removeprefix("level"))))
    return pd.concat(logs, ignore_index=True)


class CsvLog:
    """A per-step CSV log that a resumed run continues: the rows after the resumed step are dropped."""

    FIELDS = ["step", "epoch", "loss_d", "loss_g", "samples_per_s", "seconds"]

    def __init__(self, path: Path, resume_step: int, fields: list[str] | None = None):
        self.path, self.fields = path, fields or self.FIELDS
        rows = []
        if path.exists() and resume_step > 0:  # keep what the checkpoint covers, drop the rest
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)


EVAL_FIELDS = ["step", "fvd", "best_step", "best_fvd"]


def resume_state(work: WorkState, rank: int, world: int, device) -> dict | None:
    """The state to resume from (None: a fresh start). Rank 0 decides (and moves a stale folder
    aside); the other ranks then load the same file."""
    code = torch.zeros(1)
    state = None
    if rank == 0:
        state = work.load(device)
        if state is not None:
            code += 1 if work.loaded_from == work.latest else 2
    if world > 1:
        code = code.to(device)
        dist.all_reduce(code)
        if rank != 0 and int(code.item()):
            state = load_checkpoint(work.latest if int(code.item()) == 1 else work.previous, device)
    return state


# -- the loop ------------------------------------------------------------------------------------
class Trainer:
    """One level's training run, as the algorithm reads: ``__init__`` sets it up (data, the frozen
    lower levels, the level's networks, the state to resume), then every ``step`` is D steps and a
    G step on one global batch, followed by ``log``, ``monitor``, ``evaluate`` and ``checkpoint``
    at their cadences; ``finish`` writes the level's artefact."""

    def __init__(self, config: Config, index: int, data_index, out_path, work_dir, prev_checkpoints=(), device: str | None = None,
                 progress: bool = True):
        self.rank, self.world, self.device = init_distributed(device)
        self.config, self.index, self.spec, self.t = config, index, config.level(index), config.train(index)
        if len(prev_checkpoints) != index - 1:
            raise ValueError(f"level {index} needs the checkpoints of levels 1..{index - 1}, got {len(prev_checkpoints)}")
        self.data_index, self.out_path, self.work_dir = Path(data_index), Path(out_path), Path(work_dir)
        self.fps = index_fingerprints(config, self.data_index)  # the index must be this config's data
        self.stage = f"train{index}"
        self.work = WorkState(self.work_dir, self.fps, self.stage)
        dataset = PyramidWindows(config, self.data_index, index, split="train", seed=self.t.seed)
        self.n_classes = n_classes_from(self.data_index, config)
        preflight(config, index, self.device, self.world)  # refuse a step that would not fit this GPU, before allocating
        torch.manual_seed(self.t.seed * 1000 + index)  # initialisation: same on every rank and every run
        self.frozen = self._frozen_levels(prev_checkpoints)
        state = resume_state(self.work, self.rank, self.world, self.device)
        with skipped_orthogonal_init() if state is not None else nullcontext():  # the checkpoint overwrites every weight
            self.level = Level(config, index, self.n_classes, self.device)
        self.step_count = 0
        self.stream = BatchStream(dataset, self.t.batch_size, self.t.seed, self.rank, self.world, self.t.num_workers)
        self.selection = Selection()
        if state is not None:
            self.restore(state)
        lead = self.rank == 0
        self.evaluator = self.eval_log = None
        if self.t.eval_every and lead:
            self.evaluator = LevelEvaluator(config, index, self.data_index, self.fps, self.device, self.t.eval_samples, self.work_dir / "eval_cache")
            self.eval_log = CsvLog(self.work_dir / "eval.csv", self.step_count, EVAL_FIELDS)
        self.level.wrap(self.world, self.t.compile, verbose=lead)
        self.local = slice(self.rank * self.stream.local, (self.rank + 1) * self.stream.local)
        self.log_file = CsvLog(self.work_dir / "log.csv", self.step_count) if lead else None
        # TensorBoard beside the CSV log (`tensorboard --logdir results/NAME/train`); a resumed run drops the events after its step
        self.board = SummaryWriter(str(self.work_dir / "tensorboard"), purge_step=self.step_count + 1 if self.step_count else None) if lead else None
        self.bar = tqdm(total=self.t.steps, initial=self.step_count, desc=f"level {index}", unit="step", disable=not progress or not lead)
        self.tick, self.tick_step = time.perf_counter(), self.step_count

    def _frozen_levels(self, prev_checkpoints) -> CascadeSampler | None:
        """Levels 1..l-1, with BN prepared exactly as for sampling: x̂^{l-1} as inference makes it."""
        if self.index == 1:
            return None
        frozen = CascadeSampler(self.config, [load_generator(self.config, p, self.device, self.fps) for p in prev_checkpoints], self.device)
        s = self.config.sample
        frozen.prepare_norms(s.bn, s.bn_passes, self.config.level(1).frames, s.batch_size, s.seed)
        return frozen

    # -- resumable state ----------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything a resumed run needs to replay the next steps exactly."""
        return {"level": self.level.state_dict(), "step": self.step_count, "epoch": self.stream.epoch, "position": self.stream.position,
                "torch_rng": torch.get_rng_state(), "selection": self.selection.to_dict()}

    def restore(self, state: dict) -> None:
        self.level.load_state_dict(state["level"])
        self.step_count, self.stream.epoch, self.stream.position = int(state["step"]), int(state["epoch"]), int(state["position"])
        torch.set_rng_state(state["torch_rng"])
        if "selection" in state:
            self.selection = Selection(**state["selection"])
        if self.rank == 0:
            print(f"level {self.index}: resuming at step {self.step_count} from {self.work.loaded_from} (content digest verified)", flush=True)

    def final_state(self, chosen: Selection) -> dict:
        """The level's artefact: its generator (the moving average where configured) and D,
        what they were trained under, and which step they are and why."""
        level = self.level
        return {"G": level.G_final.state_dict(), "D": level.D.state_dict(), "ema": self.t.ema, "index": self.index, "n_classes": self.n_classes,
                "step": self.step_count, "selection": json.dumps(chosen.to_dict()), "config": self.config.to_json(),
                "spec": json.dumps(asdict(self.spec)), "stamp": self.fps.stamp(self.stage).to_json()}

    # -- one step -------------------------------------------------------------------------------------
    def _batch(self):
        batch = self.stream.next()
        real = batch["video"].to(self.device, non_blocking=True)
        cond = batch["cond"].to(self.device, non_blocking=True) if "cond" in batch else None
        label = batch["label"].to(self.device) if self.n_classes else None
        return real, cond, label

    def fake_conditioning(self, sub: int, label) -> torch.Tensor | None:
        """x̂^{l-1}: the frozen cascade's output, cropped to this step's random windows. Made one
        micro-batch at a time: the frozen levels' full-length outputs are what is large (eval-mode
        norms, so each example's output is the same however the batch is split)."""
        if self.frozen is None:
            return None
        t, local = self.t, self.local
        gen = keyed_generator(t.seed, self.index, self.step_count, sub, 1)
        zs = [torch.randn(t.batch_size, g.z_dim, generator=gen)[local].to(self.device) for g in self.frozen.generators]
        starts = window_starts(t.batch_size, self.config.level(self.index - 1).frames, self.spec.window, gen)[local]
        return torch.cat([
            crop_windows(self.frozen.from_noise([z[c] for z in zs], take_rows(label, c))[-1], starts[c], self.spec.window)
            for c in self.level.micro_batches(len(starts))
        ])

    def step(self) -> torch.Tensor:
        """``train.d_steps`` discriminator updates, one generator update; returns (loss_d, loss_g)."""
        t, level, frames = self.t, self.level, self.spec.window_out
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
            for sub in range(t.d_steps):
                real, real_cond, label = self._batch()
                draws = level.draws(self.step_count, sub, t.batch_size, self.local, frames, pairs=2)
                loss_d = level.update_D(real, real_cond, self.fake_conditioning(sub, label), label, draws)
            draws = level.draws(self.step_count, t.d_steps, t.batch_size, self.local, frames, pairs=1)
            loss_g = level.update_G(self.fake_conditioning(t.d_steps, label), label, draws, real, real_cond)
        self.step_count += 1
        level.update_ema(self.step_count)
        losses = torch.stack([loss_d.float(), loss_g.float()])
        if not torch.isfinite(losses).all():
            good = self.work.good
            raise NonFiniteLossError(
                f"level {self.index}: non-finite loss at step {self.step_count} (D {losses[0].item()}, G {losses[1].item()}); "
                f"the last verified state is {good if good is not None else 'the initial one (no checkpoint yet)'}: "
                "lower the learning rates or check the data, then rerun to resume from it"
            )
        self.bar.update(1)
        return losses

    # -- at their cadences ------------------------------------------------------------------------------
    def due(self, every: int) -> bool:
        return self.step_count % every == 0 or self.step_count == self.t.steps

    def log(self, losses: torch.Tensor) -> None:
        """A row of log.csv, TensorBoard scalars and the progress bar's numbers (rank 0)."""
        now, step = time.perf_counter(), self.step_count
        rate = (step - self.tick_step) * self.t.batch_size * (self.t.d_steps + 1) / max(now - self.tick, 1e-9)
        loss_d, loss_g = losses[0].item(), losses[1].item()
        self.log_file.append({"step": step, "epoch": self.stream.epoch, "loss_d": f"{loss_d:.5f}", "loss_g": f"{loss_g:.5f}",
                              "samples_per_s": f"{rate:.2f}", "seconds": f"{now - self.tick:.3f}"})
        for name, value in (("loss_d", loss_d), ("loss_g", loss_g), ("samples_per_s", rate)):
            self.board.add_scalar(f"level{self.index}/{name}", value, step)
        self.bar.set_postfix(loss_d=f"{loss_d:.3f}", loss_g=f"{loss_g:.3f}", samples_s=f"{rate:.1f}")
        self.tick, self.tick_step = now, step

    def monitor(self) -> None:
        """A grid of fixed-noise samples, as a PNG and in TensorBoard (rank 0)."""
        path = self.work_dir / "samples" / f"step{self.step_count:07d}.png"
        grid = write_sample_grid(self.level, self.frozen, path, self.n_classes, self.device)
        self.board.add_image(f"level{self.index}/samples", grid, self.step_count, dataformats="HWC")

    def evaluate(self) -> bool:
        """Score the level now (rank 0); keep its state as ``best.pt`` when it is the best so far;
        return, on every rank, whether to stop early (``train.early_stop`` evaluations without improvement)."""
        stop = False
        if self.rank == 0:
            t, sel, step = self.t, self.selection, self.step_count
            fvd = self.evaluator.score(self.level.G_final, self.frozen, self.n_classes)
            sel.evaluations, sel.last_fvd = sel.evaluations + 1, fvd
            if fvd < sel.fvd:
                sel.step, sel.fvd, sel.since_best = step, fvd, 0
                sel.why = f"lowest FVD ({fvd:.2f}, {t.eval_samples} samples) of the evaluations every {t.eval_every} steps"
                save_atomic(self.final_state(sel), self.work_dir / "best.pt")
            else:
                sel.since_best += 1
            self.eval_log.append({"step": step, "fvd": f"{fvd:.4f}", "best_step": sel.step, "best_fvd": f"{sel.fvd:.4f}"})
            self.board.add_scalar(f"level{self.index}/eval_fvd", fvd, step)
            print(f"level {self.index}: step {step} FVD {fvd:.2f} (best {sel.fvd:.2f} at step {sel.step})", flush=True)
            stop = bool(t.early_stop) and sel.since_best >= t.early_stop
            if stop:  # recorded in the final checkpoint, which takes the selection as it stands then
                sel.why += f"; training stopped early after {sel.since_best} evaluations without improvement"
        return agree(stop, self.world, self.device)

    def checkpoint(self) -> None:
        """``latest.pt`` (the one before kept as ``previous.pt``), written by rank 0 while the others wait."""
        if self.rank == 0:
            self.work.save(self.state())
        barrier(self.world)

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()

    def finish(self) -> Path | None:
        """The level's artefact (rank 0): the best-scoring step's generator where training evaluated
        (with why it was chosen and how many were scored), else the last step's."""
        self.close()
        if self.rank == 0:
            best = self.work_dir / "best.pt"
            if self.t.eval_every and best.exists():
                save_atomic({**load_checkpoint(best), "selection": json.dumps(self.selection.to_dict())}, self.out_path)
            else:
                save_atomic(self.final_state(self.selection if self.t.eval_every else Selection(step=self.step_count)), self.out_path)
        barrier(self.world)
        return self.out_path if self.rank == 0 else None

    # -- the run ----------------------------------------------------------------------------------------
    def finished(self) -> bool:
        t = self.t
        return self.step_count >= t.steps or bool(t.early_stop and self.selection.since_best >= t.early_stop)  # (a resumed early stop)

    def run(self, stop_after: int | None = None, stop_requested=None) -> Path | None:
        """Train to ``train.steps`` (or an early stop) and return ``finish()``. A stop request
        (``stop_requested()`` or SIGTERM / SIGINT) checkpoints the step it came in and returns None
        (a signal raises ``Interrupted``); ``stop_after`` steps end the run without the artefact."""
        t, lead, steps_done = self.t, self.rank == 0, 0
        with StopSignals() as signals:
            while not self.finished():
                losses = self.step()
                steps_done += 1
                if lead and self.due(t.log_every):
                    self.log(losses)
                if lead and self.due(t.sample_every):
                    self.monitor()
                early = bool(t.eval_every) and self.step_count % t.eval_every == 0 and self.evaluate()
                asked = (stop_requested is not None and bool(stop_requested())) or signals.received is not None
                stop = self.step_count < t.steps and agree(asked, self.world, self.device)
                if self.due(t.checkpoint_every) or stop or early:  # due() includes the last step: a failed final save resumes there
                    self.checkpoint()
                if early:
                    print(f"level {self.index}: early stop at step {self.step_count}: {self.selection.since_best} evaluations without "
                          f"improvement (best FVD {self.selection.fvd:.2f} at step {self.selection.step})", flush=True)
                    break
                if stop:
                    self.close()
                    print(f"level {self.index}: stop requested, state of step {self.step_count} saved to {self.work.latest}", flush=True)
                    if signals.received is not None:
                        name = signal.Signals(signals.received).name
                        raise Interrupted(signals.received, f"level {self.index}: stopped by {name} after step {self.step_count}; "
                                          f"its state is in {self.work.latest}: rerun to resume there")
                    return None
                if stop_after is not None and steps_done >= stop_after:
                    self.close()
                    return None
            return self.finish()


def train_level(config: Config, index: int, data_index: str | os.PathLike, out_path: str | os.PathLike, work_dir: str | os.PathLike,
                prev_checkpoints: list[str] = (), device: str | None = None, stop_after: int | None = None, progress: bool = True,
                stop_requested=None) -> Path | None:
    """Train level ``index`` to ``train.steps`` (resuming from ``work_dir/latest.pt``).

    ``stop_after`` ends the process's work after that many steps *without* writing the final
    checkpoint (tests use it to interrupt a run). ``stop_requested()`` is polled after every
    step (all ranks agree on it): when true, the state of that step is checkpointed and the
    function returns None, so a preempted or timed-out job resumes exactly there.
    Returns the final checkpoint path on rank 0.
    """
    trainer = Trainer(config, index, data_index, out_path, work_dir, prev_checkpoints, device, progress)
    return trainer.run(stop_after, stop_requested)


@torch.no_grad()
def write_sample_grid(level: Level, frozen: CascadeSampler | None, path: Path, n_classes: int, device, n: int = 4) -> np.ndarray:
    """Fixed-noise samples of the level being trained (with the frozen levels' outputs above)."""
    gen = torch.Generator().manual_seed(1234)
    label = (torch.arange(n) % n_classes).to(device) if n_classes else None
    g = level.G_final
    was_training = g.training
    g.eval()
    try:
        if frozen is None:
            videos = [g(torch.randn(n, level.preset.z_dim, generator=gen).to(device), label)]
        else:
            lower, _ = frozen.sample(n, labels=label, generator=gen)
            cond = lower[-1][:, :, : level.spec.window]
            videos = [cond, g(torch.randn(n, level.preset.z_dim, generator=gen).to(device), label, cond)]
        return write_grid(videos, path)
    finally:
        g.train(was_training)
