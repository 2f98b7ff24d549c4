"""The Snakemake DAG: dry runs over each dataset config, and the demo's data targets for real."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, copy_video, raw_config


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def fake_tree(kind: str, root: Path, video: Path) -> dict:
    """A minimal tree in the dataset's real layout (annotations point into it)."""
    if kind == "bdd100k":
        copy_video(video, root / "videos" / "train" / "00a0f008-3c67908e.mov")
        copy_video(video, root / "videos" / "val" / "b1c9c847-3bda4659.mov")
        return {}
    if kind == "ucf101":
        copy_video(video, root / "UCF-101" / "Basketball" / "v_Basketball_g01_c01.avi")
        copy_video(video, root / "UCF-101" / "Basketball" / "v_Basketball_g08_c01.avi")
        (root / "ucfTrainTestlist").mkdir(parents=True)
        (root / "ucfTrainTestlist" / "trainlist01.txt").write_text("Basketball/v_Basketball_g08_c01.avi 1\n")
        (root / "ucfTrainTestlist" / "testlist01.txt").write_text("Basketball/v_Basketball_g01_c01.avi\n")
        return {}
    if kind == "kinetics600":
        copy_video(video, root / "train" / "juggling" / "abc_000000_000010.mp4")
        (root / "annotations").mkdir(parents=True)
        (root / "annotations" / "train.csv").write_text("label,youtube_id,time_start,time_end,split\njuggling,abc,0,10,train\n")
        return {"annotations": str(root / "annotations")}
    raise ValueError(kind)


@pytest.mark.parametrize("name", ["bdd100k", "ucf101", "kinetics600", "kinetics600_nomd"])
def test_dry_run_resolves_for_paper_configs(tmp_path, clip_mp4, name):
    raw = raw_config(name)
    root = tmp_path / "data" / name
    raw["dataset"].update(root=str(root), **fake_tree(raw["dataset"]["kind"], root, clip_mp4))
    cfg = write_config(tmp_path / f"{name}.yaml", raw)
    out = snakemake(tmp_path, f"results/{name}/data/index.csv", f"results/{name}/metrics.csv", "-n", "--configfile", str(cfg))
    jobs = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            jobs[parts[0]] = int(parts[1])
    levels = len(raw["levels"])
    assert jobs["manifest"] == 1 and jobs["index"] == 1 and jobs["train_level"] == levels, out.stdout
    # untrained and bilinear baselines, and the cascade cut at each intermediate level
    # (and the training setup's samples where the config scores them)
    setup = 1 if raw.get("metrics", {}).get("training_setup") else 0
    assert jobs["sample"] == 1 and jobs["sample_baseline"] == 2 + (levels - 2) + setup and jobs["metrics"] == 1
    # each level's BN statistics prepared once (sample.bn: recompute), read by every variant
    assert jobs["norms"] == levels, out.stdout


def test_missing_dataset_stops_with_one_clear_message(tmp_path):
    raw = raw_config("bdd100k")
    raw["dataset"]["root"] = str(tmp_path / "nowhere" / "bdd100k")
    cfg = write_config(tmp_path / "bdd100k.yaml", raw)
    out = snakemake(tmp_path, "results/bdd100k/data/index.csv", "-n", "--configfile", str(cfg), check=False)
    assert out.returncode != 0
    assert f"expected it at {tmp_path / 'nowhere' / 'bdd100k'}" in out.stdout + out.stderr
    assert f"set dataset.root in {cfg}" in out.stdout + out.stderr  # the file to edit, not the snapshot


def test_invalid_config_is_rejected_at_load(tmp_path):
    raw = raw_config("demo")
    raw["data"]["compression"] = "zstd"
    cfg = write_config(tmp_path / "demo.yaml", raw)
    out = snakemake(tmp_path, "-n", "--configfile", str(cfg), check=False)
    assert out.returncode != 0
    assert "data.compression: 'zstd' is not allowed; allowed values: None, 'lzf', 'gzip'" in out.stdout + out.stderr


def test_demo_data_targets_run_for_real(tmp_path):
    raw = raw_config("demo")
    raw["dataset"]["demo"]["videos_per_class"] = {"train": 3, "test": 1}
    raw["data"]["shard_size_mb"] = 4  # 9 clips per shard: 2 train shards
    cfg = write_config(tmp_path / "demo.yaml", raw)
    snakemake(tmp_path, "results/demo/data/index.csv", "--configfile", str(cfg))
    assert len(list((tmp_path / "data" / "demo" / "videos").rglob("*.mp4"))) == 24
    index = pd.read_csv(tmp_path / "results" / "demo" / "data" / "index.csv")
    assert index.groupby("split").size().to_dict() == {"test": 6, "train": 18}
    assert len(list((tmp_path / "results" / "demo" / "data" / "shards" / "train").glob("*.h5"))) == 2
    assert pd.read_csv(tmp_path / "results" / "demo" / "data" / "failures.csv").empty
    again = snakemake(tmp_path, "results/demo/data/index.csv", "-n", "--configfile", str(cfg))
    assert "Nothing to be done" in again.stdout + again.stderr
    moved = tmp_path / "moved"  # the whole working directory elsewhere, config file included: nothing reruns
    shutil.copytree(tmp_path, moved, symlinks=True, ignore=shutil.ignore_patterns("moved"))
    there = snakemake(moved, "results/demo/data/index.csv", "-n", "--configfile", str(moved / "demo.yaml"))
    assert "Nothing to be done" in there.stdout + there.stderr, there.stdout[-2000:]
    raw["dataset"]["demo"]["object_size"] = [0.1, 0.12]  # new demo settings: rendered again, then all after it
    changed = snakemake(tmp_path, "results/demo/data/index.csv", "-n", "--configfile", str(write_config(cfg, raw)))
    assert "Params have changed" in changed.stdout and all(f"{rule}  " in changed.stdout for rule in ("demo_videos", "manifest", "index"))


def planned_jobs(stdout: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job in a dry run's output."""
    jobs, rule = [], None
    for line in stdout.splitlines():
        if line.startswith(("rule ", "localrule ", "checkpoint ")):
            rule = line.split()[1].rstrip(":")
        elif rule and line.strip().startswith("wildcards:"):
            jobs.append((rule, line.split("wildcards:", 1)[1].strip()))
            rule = None
    return jobs


@pytest.mark.parametrize("table, trained", [
    (4, {"dataset=kinetics600, level=1", "dataset=kinetics600, level=2", "dataset=kinetics600_w3, level=2"}),
    (3, {"dataset=kinetics600, level=1", "dataset=kinetics600_w3, level=2", "dataset=kinetics600_nomd, level=2",
         "dataset=bdd100k_2level, level=1", "dataset=bdd100k_2level, level=2", "dataset=bdd100k_2level_nomd, level=2"}),
])
def test_ablations_share_the_data_and_levels_of_their_base(tmp_path, clip_mp4, table, trained):
    """An ablation that differs from its base only at level 2 reads the base's data and level 1
    (the same stage fingerprints): Table 4 decodes Kinetics once and trains its level 1 once."""
    fake_tree("kinetics600", tmp_path / "data" / "kinetics600", clip_mp4)
    fake_tree("bdd100k", tmp_path / "data" / "bdd100k", clip_mp4)
    out = snakemake(tmp_path, f"results/tables/table{table}.md", "-n")
    jobs = planned_jobs(out.stdout)
    assert {w for rule, w in jobs if rule == "train_level"} == trained, out.stdout[-3000:]
    assert len([w for rule, w in jobs if rule == "train_level"]) == len(trained)
    manifests = {w for rule, w in jobs if rule == "manifest"}
    assert manifests == ({"dataset=kinetics600"} if table == 4 else {"dataset=kinetics600", "dataset=bdd100k_2level"})
