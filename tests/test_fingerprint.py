"""Stage fingerprints: every schema key has a rerun decision, and a change of it changes exactly
the fingerprints of the stages that read it and of everything downstream of them."""

from __future__ import annotations

import copy
import os
import shutil

import pytest

from cvg.config import SLURM_DEFAULTS, build_config, config_schema, read_raw
from cvg.content import content_listing
from cvg.fingerprint import (
    ALSO_READ,
    RERUN_TABLE,
    Fingerprints,
    StaleError,
    canonical_key,
    decision,
    describe_difference,
    fingerprints,
    rerun_table_markdown,
)
from tests.conftest import REPO

# What a change of each key reruns, decided by hand: the first stage that reads it (or None).
# A key added to the schema without a line here fails test_every_schema_key_has_a_decision.
EXPECTED_FIRST = {
    "name": None, "extends": None,
    "dataset.kind": "data", "dataset.root": None, "dataset.conditional": "data", "dataset.ucf101_split": "data",
    "dataset.annotations": None, "dataset.extensions": "data",
    **{f"dataset.demo.{k}": "demo" for k in ("videos_per_class", "frames", "width", "height", "fps", "seed", "crf", "object_size",
                                               "grating_frequency", "detail_frequency", "ring_period", "background", "objects",
                                               "class_colours", "bounce_speed", "orbit_radius", "orbit_speed")},
    **{f"data.{k}": "data" for k in ("fps", "stride", "splits", "clips_per_video", "shard_size_mb", "compression", "scale_flags")},
    "data.workers": None, "data.ffmpeg_threads": None,
    **{f"levels[].{k}": "data" for k in ("frames", "resolution", "temporal_factor", "spatial_factor", "stride")},
    "levels[].window": "train2",
    "model.preset": "train1", "model.width": "train1", "model.matching": "train2", "model.refine": ("train2", "untrained"),
    **{f"train.{k}": "train2" for k in ("steps", "batch_size", "micro_batch", "lr_g", "lr_d", "betas", "d_steps", "ema", "ema_ramp",
                                         "recon", "spectrum", "spectrum_form", "seed", "precision",
                                         "eval_every", "eval_samples", "early_stop")},
    **{f"train.{k}": None for k in ("checkpoint_every", "log_every", "sample_every", "num_workers", "compile", "launcher", "procs")},
    **{f"slurm.{k}": None for k in SLURM_DEFAULTS},
    **{f"sample.{k}": ("train2", "norms1") for k in ("bn", "bn_passes", "batch_size", "seed")},
    "sample.level1_frames": "norms1",
    **{f"sample.{k}": "samples" for k in ("n_samples", "sigma", "grid_sigma", "grid_samples", "chunk")},
    **{f"metrics.{k}": "metrics" for k in ("n_real", "frames", "short_clips", "is_splits", "real_split")},
    "metrics.heldout_split": "on_real", "metrics.seed": "on_real", "metrics.batch_size": None, "metrics.training_setup": "metrics",
    "metrics.classifier_steps": "metrics",
    "metrics.fid_network": "metrics",
    **{f"metrics.per_class.{k}": "per_class" for k in ("groups", "n_samples", "n_real", "frames")},
}


def schema_leaves(node: dict, path: str = "", defs: dict | None = None) -> list[tuple[str, dict]]:
    """Every settable key of the schema as a flattened path (``train.defaults.lr_g``, ``levels[].frames``)."""
    defs = defs if defs is not None else node.get("$defs", {})
    if "$ref" in node:
        node = defs[node["$ref"].split("/")[-1]]
    if node.get("type") == "object" and "properties" in node:
        out = []
        for key, sub in node["properties"].items():
            out += schema_leaves(sub, f"{path}.{key}" if path else key, defs)
        return out
    if node.get("type") == "array" and isinstance(node.get("items"), dict) and node["items"].get("type") == "object" or "$ref" in node.get("items", {}):
        return schema_leaves(node["items"], f"{path}[]", defs)
    return [(path, node)]


def demo_config():
    return build_config(read_raw(REPO / "config" / "demo.yaml"))


def test_every_schema_key_has_a_decision():
    keys = {canonical_key(path.replace("[]", "[0]")) for path, _ in schema_leaves(config_schema())}
    assert keys == set(EXPECTED_FIRST), (sorted(keys - set(EXPECTED_FIRST)), sorted(set(EXPECTED_FIRST) - keys))
    for key in keys:
        stage, why = decision(key)
        assert why, key
        firsts = EXPECTED_FIRST[key] if isinstance(EXPECTED_FIRST[key], tuple) else (EXPECTED_FIRST[key],)
        kinds = {None if f is None else {"samples": "sample", "on_real": "metrics", "train1": "train", "train2": "train",
                                         "norms1": "norms", "untrained": "train"}.get(f, f) for f in firsts}
        assert stage in kinds and kinds <= {stage, *ALSO_READ.get(key, ())}, (key, stage, firsts)


# the stages each first stage reaches in the demo's 3-level DAG, written out independently of the code
def reached(first) -> set[str]:
    samples = {"sample:cascade", "sample:untrained", "sample:bilinear", "sample:cascade_to_level2",
               "sample:cascade_on_real", "sample:bilinear_on_real", "sample:cascade_to_level2_on_real", "sample:cascade_windows"}
    reads_level = {1: samples, 2: {"sample:cascade", "sample:cascade_to_level2", "sample:cascade_on_real", "sample:cascade_to_level2_on_real",
                                   "sample:cascade_windows"},
                   3: {"sample:cascade", "sample:cascade_on_real", "sample:cascade_windows"}}
    evals = {"metrics", "per_class"}
    if isinstance(first, tuple):
        return set().union(*(reached(f) for f in first))
    if first == "untrained":
        return {"sample:untrained"} | evals
    if first is None:
        return set()
    if first == "demo":
        return {"demo"} | reached("data")
    if first == "data":
        return {"data"} | reached("train1")
    if first.startswith("train"):
        i = int(first[5:])
        return {f"train{j}" for j in range(i, 4)} | {f"norms{j}" for j in range(i, 4)} | reads_level[i] | evals
    if first.startswith("norms"):
        i = int(first[5:])
        return {f"norms{j}" for j in range(i, 4)} | reads_level[i] | evals
    if first == "samples":
        return samples | evals
    if first == "on_real":
        return {s for s in samples if s.endswith("_on_real")} | evals
    if first == "metrics":
        return evals
    if first == "per_class":
        return {"per_class"}
    raise AssertionError(first)


def _set(raw: dict, path: str, value) -> None:
    parts = path.replace("[", ".[").split(".")
    node = raw
    for part, nxt in zip(parts[:-1], parts[1:]):
        key = int(part[1:-1]) if part.startswith("[") else part
        if isinstance(node, list):
            while len(node) <= key:
                node.append({})
            node = node[key]
        else:
            node = node.setdefault(key, [] if nxt.startswith("[") else {})
    last = parts[-1]
    node[int(last[1:-1]) if last.startswith("[") else last] = value


def perturbation(key: str, cfg) -> tuple[dict, str]:
    """A valid config that differs from ``cfg`` in ``key`` alone (level 2's entry for per-level keys)."""
    raw = copy.deepcopy(cfg.raw)
    special = {
        # geometry must stay consistent: scale level 3 (data) or move level 2's window (training)
        "levels[].frames": [("levels[2].frames", 48), ("levels[2].temporal_factor", 3), ("levels[1].stride", 3), ("levels[0].stride", 6)],
        "levels[].temporal_factor": [("levels[2].frames", 48), ("levels[2].temporal_factor", 3), ("levels[1].stride", 3), ("levels[0].stride", 6)],
        "levels[].resolution": [("levels[2].resolution", 96), ("levels[2].spatial_factor", 3)],
        "levels[].spatial_factor": [("levels[2].resolution", 96), ("levels[2].spatial_factor", 3)],
        "data.stride": [("data.stride", 2), ("levels[0].stride", 8), ("levels[1].stride", 4), ("levels[2].stride", 2)],
        "levels[].stride": [("data.stride", 2), ("levels[0].stride", 8), ("levels[1].stride", 4), ("levels[2].stride", 2)],
        "levels[].window": [("levels[1].window", 3)],
        "dataset.kind": [("dataset.kind", "folder")],
        "model.preset": [("model.preset", "bdd256")],
        "metrics.per_class.groups": [("metrics.per_class.groups", {"one": ["circle-bounce"]})],
        "dataset.demo.videos_per_class": [("dataset.demo.videos_per_class", {"train": 41, "test": 12})],
        "sample.level1_frames": [("sample.level1_frames", 16)],
        "metrics.per_class.n_real": [("metrics.per_class.n_real", 5)],
        "metrics.per_class.frames": [("metrics.per_class.frames", 12)],
        "dataset.annotations": [("dataset.annotations", "labels.csv")],
        "metrics.training_setup": [("metrics.training_setup", True), ("metrics.short_clips", "repeat")],  # the demo's 8-frame setup
        "metrics.fid_network": [("metrics.fid_network", "i3d-kinetics-600.ckpt")],
        "extends": [],
        "name": [("name", "demo2")],
    }
    if key in special:
        for path, value in special[key]:
            _set(raw, path, value)
        return raw, key
    section, _, leaf = key.partition(".")
    if section in ("train", "slurm"):
        merged = cfg.train(2) if section == "train" else cfg.slurm(2)
        path, current = f"{section}.levels[1].{leaf}", getattr(merged, leaf)
    else:
        path, current = key, _get(raw, key)
    _set(raw, path, _changed(current, key))
    return raw, key


def _get(raw, path):
    node = raw
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _changed(value, key):
    enums = {"data.compression": "lzf", "data.scale_flags": "bilinear", "train.spectrum_form": "batch", "train.precision": "bf16",
             "train.launcher": "torchrun", "sample.bn": "stationary", "metrics.short_clips": "repeat", "model.preset": "bdd256", "metrics.real_split": "test",
             "metrics.heldout_split": "train", "data.splits": ["train", "test", "val"], "dataset.ucf101_split": 2,
             "metrics.frames": 12, "dataset.demo.object_size": [0.1, 0.2], "dataset.demo.grating_frequency": [0.1, 0.2],
             "dataset.demo.detail_frequency": [0.5, 0.9], "dataset.demo.ring_period": 3.0, "dataset.demo.bounce_speed": [1.0, 2.0],
             "dataset.demo.orbit_radius": [0.2, 0.25], "dataset.demo.orbit_speed": [0.1, 0.2],
             "dataset.demo.background": "gratings", "dataset.demo.objects": [1, 2], "dataset.demo.crf": 20,
             "train.betas": [0.5, 0.999], "train.ema": 0.5, "train.ema_ramp": 4.0, "slurm.tasks_per_node": 2,
             "slurm.gpu_mem_gb": 32}
    if key in enums:
        return enums[key]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.8 if value else 0.1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, ".xyz"]
    raise AssertionError(f"no perturbation for {key} = {value!r}")


@pytest.mark.parametrize("key", sorted(EXPECTED_FIRST))
def test_a_change_reruns_exactly_the_stages_that_read_it(key):
    cfg = demo_config()
    before = Fingerprints(cfg, "listing")
    raw, _ = perturbation(key, cfg)
    if key == "extends":
        pytest.skip("resolved before validation: nothing to perturb")
    after = Fingerprints(build_config(raw), "listing")
    common = set(before.stages()) & set(after.stages())
    changed = {s for s in common if before.fingerprint(s) != after.fingerprint(s)}
    expected = reached(EXPECTED_FIRST[key]) & common
    assert changed == expected, (key, sorted(changed ^ expected))


def test_input_listing_is_part_of_the_data_fingerprint(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "v.mp4").write_bytes(b"x")
    first = content_listing(tmp_path)
    (tmp_path / "a" / "w.mp4").write_bytes(b"y")  # a video added
    second = content_listing(tmp_path)
    assert first != second and second.startswith("2 files")
    cfg = demo_config()
    a, b = Fingerprints(cfg, first), Fingerprints(cfg, second)
    assert a.fingerprint("data") != b.fingerprint("data") and a.fingerprint("metrics") != b.fingerprint("metrics")
    assert a.fingerprint("demo") == b.fingerprint("demo")


def test_the_listing_is_the_content_wherever_and_whenever_it_was_written(tmp_path):
    root = tmp_path / "videos"
    for i in range(3):
        (root / f"class{i}").mkdir(parents=True)
        (root / f"class{i}" / "v.mp4").write_bytes(bytes([i]) * 1000)
    first = content_listing(root)
    moved = tmp_path / "scratch" / "videos"
    shutil.copytree(root, moved, copy_function=shutil.copyfile)  # new root, new modification times, same bytes
    assert content_listing(moved) == first
    os.utime(root / "class0" / "v.mp4", ns=(1, 1))  # touched
    assert content_listing(root) == first
    data = bytearray((root / "class1" / "v.mp4").read_bytes())
    data[500] ^= 1  # one bit of one video, same size, the old modification time
    stat = (root / "class1" / "v.mp4").stat()
    (root / "class1" / "v.mp4").write_bytes(bytes(data))
    os.utime(root / "class1" / "v.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert content_listing(root) != first  # its status-change time differs from the cached one: read again
    (root / "class2" / "v.mp4").rename(root / "class2" / "w.mp4")  # renamed: another listing
    assert content_listing(root) != content_listing(moved)


def test_a_stale_stamp_names_the_settings_that_differ():
    cfg = demo_config()
    raw = copy.deepcopy(cfg.raw)
    raw["train"]["levels"][0]["lr_g"] = 5e-4
    old = Fingerprints(build_config(raw), "listing").stamp("train1")
    with pytest.raises(StaleError, match=r"level1\.train\.lr_g: 0\.0005 \(stored\) vs 0\.001 \(config\)"):
        Fingerprints(cfg, "listing").check(old, "train1", "level1.pt")
    with pytest.raises(StaleError, match="records no stage fingerprint"):
        Fingerprints(cfg, "listing").check(None, "train1", "level1.pt")
    assert describe_difference({"a": 1}, {"a": 1}).startswith("no setting differs")


def test_fingerprints_are_stable_and_the_listing_is_computed_once(tmp_path, monkeypatch):
    cfg = demo_config()
    assert fingerprints(cfg).fingerprint("metrics") == fingerprints(cfg).fingerprint("metrics")
    assert Fingerprints(cfg, "x").stamp("data").settings["data.listing"] == "x"


def test_the_readme_states_the_rerun_table():
    """README's "Rerunning a level" section is rendered from RERUN_TABLE (regenerate it with
    `python -c "from cvg.fingerprint import rerun_table_markdown; print(rerun_table_markdown())"`)."""
    text = (REPO / "README.md").read_text()
    assert rerun_table_markdown() in text
    assert len(RERUN_TABLE) >= 20


def test_an_experiment_carries_its_stage_fingerprints():
    """What the workflow's rules call: ``Experiment.fingerprint(stage)``, the same value the stage's
    artefacts record, for every stage of the experiment."""
    from cvg.experiment import Experiment, load_experiment

    exp = load_experiment(REPO / "config" / "demo.yaml")
    assert isinstance(exp, Experiment) and exp.to_yaml() == demo_config().to_yaml()
    assert exp.stages() == fingerprints(exp).stages() and "train3" in exp.stages() and "sample:bilinear" in exp.stages()
    for stage in exp.stages():
        assert exp.fingerprint(stage) == fingerprints(exp).stamp(stage).fingerprint
