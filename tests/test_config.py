
import pytest
import yaml

from cvg.config import ConfigError, build_config, level_strides, load_config
from tests.conftest import REPO, raw_config


@pytest.mark.parametrize("name", ["demo", "bdd100k", "bdd100k_2level", "bdd100k_2level_nomd", "kinetics600", "kinetics600_nomd", "kinetics600_w3", "ucf101"])
def test_shipped_configs_are_valid(name):
    cfg = load_config(REPO / "config" / f"{name}.yaml")
    assert cfg.name == name
    for prev, lv in zip(cfg.levels, cfg.levels[1:]):
        assert lv.frames == prev.frames * lv.temporal_factor
        assert lv.resolution == prev.resolution * lv.spatial_factor
        assert lv.stride * lv.temporal_factor == prev.stride


def test_paper_scale_bdd100k_pyramid():
    cfg = load_config(REPO / "config" / "bdd100k.yaml")
    assert [(lv.frames, lv.resolution, lv.stride) for lv in cfg.levels] == [(12, 64, 8), (24, 128, 4), (48, 256, 2)]
    assert [lv.window_out for lv in cfg.levels[1:]] == [12, 12]


def test_enum_error_names_key_and_allowed_values():
    raw = raw_config("demo")
    raw["dataset"]["kind"] = "youtube"
    with pytest.raises(ConfigError) as info:
        build_config(raw, "demo.yaml")
    msg = str(info.value)
    assert "dataset.kind" in msg and "'youtube'" in msg and "'ucf101'" in msg and "'bdd100k'" in msg


def test_unknown_key_and_wrong_type_are_named():
    raw = raw_config("demo")
    raw["data"]["fsp"] = 25
    raw["levels"][0]["frames"] = "eight"
    with pytest.raises(ConfigError) as info:
        build_config(raw, "x.yaml")
    msg = str(info.value)
    assert "data:" in msg and "fsp" in msg
    assert "levels.0.frames" in msg


def test_inconsistent_levels_are_rejected():
    raw = raw_config("demo")
    raw["levels"][1]["frames"] = 12
    with pytest.raises(ConfigError, match=r"levels.1.frames=12 must equal levels.0.frames \(8\) x temporal_factor \(2\)"):
        build_config(raw)
    raw = raw_config("demo")
    raw["levels"][2]["stride"] = 2
    with pytest.raises(ConfigError, match="levels.2.stride=2"):
        build_config(raw)
    raw = raw_config("demo")
    raw["levels"][1]["window"] = 9
    with pytest.raises(ConfigError, match="window=9 exceeds"):
        build_config(raw)


def test_defaults_are_filled(tmp_path):
    raw = raw_config("demo")
    del raw["data"]["workers"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).data.workers == 2


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_level_strides():
    assert level_strides(2, [1, 2, 2]) == [8, 4, 2]
    assert level_strides(1, [1, 2]) == [2, 1]


def test_extends_deep_merges_and_ablation_configs_differ_only_where_stated(tmp_path):
    base, nomd, w3 = (load_config(REPO / "config" / f"{n}.yaml") for n in ("kinetics600", "kinetics600_nomd", "kinetics600_w3"))
    assert w3.level(2).window == 3 and base.level(2).window == 6
    assert nomd.level(2).window == 3 and nomd.model.matching is False and w3.model.matching is True
    assert nomd.model.preset == w3.model.preset == "kinetics128_w3"
    assert nomd.train(2) == base.train(2) and nomd.dataset == base.dataset
    (tmp_path / "a.yaml").write_text("extends: b.yaml\nname: a\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "a.yaml")


@pytest.mark.parametrize("name, preset", [("bdd100k", "bdd256"), ("kinetics600", "kinetics128"), ("ucf101", "ucf101")])
def test_paper_configs_use_the_paper_models(name, preset):
    cfg = load_config(REPO / "config" / f"{name}.yaml")
    assert cfg.model.preset == preset and cfg.train(1).batch_size == 512


def test_sampling_and_metric_jobs_take_one_gpu_on_one_node():
    """slurm.eval: the training jobs' partition, account, CPUs and memory, on one node with at
    most one GPU (sampling and I3D use one device), unless the config says otherwise."""
    raw = raw_config("bdd100k")
    cfg = build_config(raw)
    train, ev = cfg.slurm(1), cfg.slurm_eval()
    assert train.nodes > 1 and train.gpus_per_node == 8
    assert (ev.nodes, ev.gpus_per_node, ev.tasks) == (1, 1, 1)
    assert (ev.partition, ev.account, ev.cpus_per_task, ev.mem_gb) == (train.partition, train.account, train.cpus_per_task, train.mem_gb)
    raw["slurm"]["eval"] = {"gpus_per_node": 2, "time_min": 30}
    ev = build_config(raw).slurm_eval()
    assert (ev.gpus_per_node, ev.time_min) == (2, 30)
    assert load_config(REPO / "config" / "demo.yaml").slurm_eval().gpus_per_node == 0  # a CPU experiment stays on CPU


def test_the_demo_spends_its_training_budget_on_level_1():
    """The demo's time split (config/demo.yaml, docs/demo_tuning.md): level 1, whose samples the
    classifier judges, takes most of the training work (generated and real samples through G and
    D, weighted by their pixels); the whole stays within the work that trained in under 7 minutes
    on 2 CPU cores, so the first command keeps to its time."""
    cfg = load_config(REPO / "config" / "demo.yaml")
    work = [t.steps * t.batch_size * (t.d_steps + 1) * lv.window_out * lv.resolution**2
            for lv, t in ((lv, cfg.train(lv.index)) for lv in cfg.levels)]
    assert work[0] > sum(work[1:]), work
    assert sum(work) <= 60e6, work
    assert cfg.model.refine and cfg.metrics.classifier_steps > 0
