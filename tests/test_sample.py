import re

import pytest
import torch

from cvg.config import build_config
from cvg.models.layers import set_norm_eval_stats
from cvg.models.presets import build_generator, get_preset
from cvg.cascade import CascadeSampler, temporal_halo, unroll
from cvg.metrics.i3d import exact_fp32_convolutions
from tests.conftest import needs_cuda, tiny_raw_config


def trained_like(g, *args, passes=3):
    for _ in range(passes):  # training-mode passes populate running statistics
        g(*args)
    return g.eval()


def tiny_cascade(tmp_path):
    """The tiny preset's two generators with populated running statistics, and their config."""
    torch.manual_seed(0)
    raw = tiny_raw_config(tmp_path)
    raw["model"] = {"preset": "tiny"}
    cfg = build_config(raw)
    preset = get_preset("tiny")
    gens = [build_generator(preset, cfg.levels, i, 3) for i in (1, 2)]
    trained_like(gens[0], torch.randn(2, preset.z_dim), torch.tensor([0, 1]))
    trained_like(gens[1], torch.randn(2, preset.z_dim), torch.tensor([0, 1]), torch.rand(2, 3, 2, 16, 16) * 2 - 1)
    return cfg, gens


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("mode", ["stationary", "per_frame_recomputed"])
def test_chunked_unrolling_equals_full_application(mode, refine, device):
    # on CUDA in full fp32: cuDNN's default TF32 alone differs between chunk sizes by more than 1e-5
    torch.manual_seed(0)
    preset = get_preset("tiny")
    g = build_generator(preset, preset.levels, 2, refine=refine).to(device)
    if refine:
        g.refine_gain.data.fill_(1.0)  # as if trained: the network's correction is live
    z, label = torch.randn(2, preset.z_dim, device=device), torch.tensor([0, 1], device=device)
    with exact_fp32_convolutions():
        trained_like(g, z, label, torch.rand(2, 3, 2, 8, 8, device=device) * 2 - 1)
        cond = torch.rand(2, 3, 50, 8, 8, device=device) * 2 - 1
        if mode == "stationary":
            set_norm_eval_stats(g, "stationary")
        else:
            from cvg.models.layers import recompute_frame_stats

            recompute_frame_stats(g, lambda: g(torch.randn_like(z), label, torch.rand_like(cond) * 2 - 1), passes=4)
            g.eval()
        full = unroll(g, cond, z, label, chunk=None)
        assert full.shape == (2, 3, 100, 16, 16)
        for chunk in (4, 7, 16):
            assert (unroll(g, cond, z, label, chunk=chunk) - full).abs().max() <= 1e-5
    assert temporal_halo(g) >= 1


def test_cascade_sampler_unrolls_every_level(tmp_path):
    cfg, gens = tiny_cascade(tmp_path)
    sampler = CascadeSampler(cfg, gens)
    sampler.prepare_norms("stationary", 0, level1_frames=4, batch=2)
    videos, labels = sampler.sample(3, sigma=1.0, chunk=2, seed=1)
    assert [tuple(v.shape) for v in videos] == [(3, 3, 4, 16, 16), (3, 3, 8, 32, 32)]
    again, _ = sampler.sample(3, sigma=1.0, chunk=None, seed=1)
    assert (again[-1] - videos[-1]).abs().max() <= 1e-5  # chunked == full
    with pytest.raises(RuntimeError, match="statistics for 4 frames"):  # prepared for another length
        sampler.sample(2, level1_frames=40, chunk=8, seed=2)
    sampler.prepare_norms("stationary", 0, level1_frames=40, batch=2)
    long, _ = sampler.sample(2, level1_frames=40, chunk=8, seed=2)  # 10x the trained length
    assert long[-1].shape[2] == 80
    made, fed = [], []  # level-2 statistics must come from level-1 samples, not arbitrary inputs
    hooks = [gens[0].register_forward_hook(lambda m, args, out: made.append(out)),
             gens[1].register_forward_pre_hook(lambda m, args: fed.append(args[2]))]
    sampler.prepare_norms("recompute", 3, level1_frames=40, batch=2)
    for h in hooks:
        h.remove()
    assert len(fed) == 3 and all(any(torch.equal(c, v) for v in made) for c in fed)
    long2, _ = sampler.sample(2, level1_frames=40, chunk=8, seed=2)
    assert long2[-1].shape == (2, 3, 80, 32, 32) and torch.isfinite(long2[-1]).all()
    quantized, _ = sampler.sample(2, level1_frames=40, chunk=8, seed=2, uint8_top=True)
    from cvg.pyramid import quantize

    assert quantized[-1].dtype == torch.uint8 and torch.equal(quantized[-1], quantize(long2[-1]))


@pytest.mark.parametrize("mode", ["stationary", "recompute"])
def test_prepared_cascade_treats_each_example_alone(tmp_path, mode):
    """Once its norms are prepared, the frozen cascade maps every example independently of the
    others in its batch: the training loop makes x̂^{l-1} one micro-batch at a time and relies
    on getting the whole batch's output. (Compared in float64: in float32 the convolutions sum
    in a batch-size-dependent order, ~1e-5 apart.)"""
    cfg, gens = tiny_cascade(tmp_path)
    sampler = CascadeSampler(cfg, gens)
    sampler.prepare_norms(mode, 3, level1_frames=4, batch=2)
    for g in gens:
        g.double()
    gen = torch.Generator().manual_seed(3)
    zs, label = [torch.randn(5, g.z_dim, generator=gen, dtype=torch.float64) for g in gens], torch.tensor([0, 1, 2, 0, 1])
    whole = sampler.from_noise(zs, label)[-1]
    parts = torch.cat([sampler.from_noise([z[c] for z in zs], label[c])[-1] for c in (slice(0, 2), slice(2, 4), slice(4, 5))])
    torch.testing.assert_close(parts, whole, rtol=1e-10, atol=1e-12)


def test_upsampling_levels_fed_real_level1_clips(tmp_path):
    """The *_on_real variants: level 1 is the given clips (stored exactly), the upsampling levels
    or bilinear upsampling act on them, and the trained levels really read them."""
    import h5py
    import numpy as np

    from cvg.pyramid import naive_upsample, to_uint8, to_unit_range
    from cvg.sample import write_samples

    cfg, gens = tiny_cascade(tmp_path)
    sampler = CascadeSampler(cfg, gens)
    sampler.prepare_norms("stationary", 0, level1_frames=4, batch=2)
    clips = np.random.default_rng(0).integers(0, 256, (5, 4, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1])

    cascade = write_samples(cfg, sampler, tmp_path / "c.h5", 99, 2, 1.0, 2, 4, 0, level1=(clips, labels))
    bilinear = write_samples(cfg, CascadeSampler(cfg, gens[:1]), tmp_path / "b.h5", 99, 2, 1.0, 2, 4, 0, level1=(clips, labels))
    with h5py.File(cascade) as c, h5py.File(bilinear) as b:
        assert np.array_equal(c["level1"][:], clips) and np.array_equal(b["level1"][:], clips)
        assert np.array_equal(c["label"][:], labels) and c["level2"].shape == (5, 8, 32, 32, 3)
        expected = to_uint8(naive_upsample(to_unit_range(torch.from_numpy(clips)), 2, 2)).numpy()
        assert np.array_equal(b["level2"][:], expected)
        out = c["level2"][:]
    other = write_samples(cfg, sampler, tmp_path / "o.h5", 99, 2, 1.0, 2, 4, 0, level1=(255 - clips, labels))
    with h5py.File(other) as o:
        assert np.abs(o["level2"][:].astype(int) - out).mean() > 1  # conditioned on the real clips


def test_cascade_cut_at_a_level_is_the_cascade_below_and_bilinear_above(tmp_path):
    """cascade_to_level{k}: the same samples as the cascade up to level k (same noise), the
    levels above the bilinear upsampling of level k; what the metric table's per-level rows use."""
    import h5py
    import numpy as np

    from cvg.config import load_config
    from cvg.pyramid import naive_upsample, to_uint8, to_unit_range
    from cvg.sample import build_sampler, write_samples
    from cvg.variants import PATTERN, scored_variants, trained_levels, variant_names
    from tests.conftest import REPO

    cfg = load_config(REPO / "config" / "demo.yaml")  # 3 levels
    assert variant_names(3) == ["cascade", "untrained", "bilinear", "cascade_to_level2", "cascade_on_real", "bilinear_on_real",
                                "cascade_to_level2_on_real", "cascade_windows"]
    assert "cascade_to_level2" not in variant_names(2)
    assert [trained_levels(v, 3) for v in ("cascade", "untrained", "bilinear_on_real", "cascade_to_level2_on_real")] == [3, 1, 1, 2]
    assert all(re.fullmatch(PATTERN, v) for v in variant_names(4) if v != "cascade")  # the baselines' rule's wildcard
    bad = ("cascade", "untrained_on_real", "cascade_windows_on_real", "bilinear_level1", "cascade_to_level")
    assert not any(re.fullmatch(PATTERN, v) for v in bad)
    # scored: on-real rows with a held-out split, the training setup when asked, no untrained row for refining levels
    assert scored_variants(3, heldout=False, training_setup=False) == ["cascade", "untrained", "bilinear", "cascade_to_level2"]
    assert scored_variants(2, heldout=True, training_setup=True, refine=True) == ["cascade", "bilinear", "cascade_on_real", "bilinear_on_real",
                                                                                  "cascade_windows"]
    with pytest.raises(ValueError, match="cascade_to_level3"):  # not an intermediate level
        build_sampler(cfg, ["1.pt", "2.pt", "3.pt"], "cascade_to_level3")
    with pytest.raises(ValueError, match="levels 1..2, got 1"):
        build_sampler(cfg, ["1.pt"], "cascade_to_level2")

    torch.manual_seed(0)
    preset = get_preset("demo", width=0.25)
    gens = [build_generator(preset, cfg.levels, i, 6) for i in (1, 2, 3)]  # the paper's generators: far from bilinear
    z, label = torch.randn(2, preset.z_dim), torch.tensor([0, 1])
    trained_like(gens[0], z, label)
    for g, size in zip(gens[1:], (16, 32)):
        trained_like(g, z, label, torch.rand(2, 3, 2, size, size) * 2 - 1)
    written = {}
    for name, levels in (("cascade", gens), ("cut", gens[:2])):
        sampler = CascadeSampler(cfg, levels)
        sampler.prepare_norms("stationary", 0, level1_frames=8, batch=2)
        with h5py.File(write_samples(cfg, sampler, tmp_path / f"{name}.h5", 3, 2, 1.0, 4, 8, 7)) as h5:
            written[name] = {k: h5[k][:] for k in ("level1", "level2", "level3", "label")}
            assert h5.attrs["trained_levels"] == len(levels)
    full, cut = written["cascade"], written["cut"]
    for k in ("label", "level1", "level2"):
        assert np.array_equal(full[k], cut[k]), k
    top = cfg.levels[2]
    from_stored = to_uint8(naive_upsample(to_unit_range(torch.from_numpy(cut["level2"])), top.temporal_factor, top.spatial_factor)).numpy()
    assert cut["level3"].shape == full["level3"].shape == (3, 32, 64, 64, 3)
    assert np.abs(cut["level3"].astype(int) - from_stored).max() <= 1  # level 2 upsampled (before its uint8 rounding)
    assert np.abs(cut["level3"].astype(int) - full["level3"]).mean() > 5  # level 3 not applied


def test_untrained_refining_levels_skip_the_costly_statistics_passes(tmp_path, monkeypatch):
    """The untrained baseline with ``refine``: its upsampling levels (gate 0) output exactly the
    naive upsampling of level 1, so ``prepare_norms`` gives them one pass on a blank input
    instead of ``passes`` passes over sampled lower levels; a level whose gate has moved is
    still recomputed from the lower levels' samples."""
    from cvg.models.generators import REFINE_CLAMP
    from cvg.pyramid import naive_upsample
    from cvg.cascade import is_inert_refiner

    cfg, gens = tiny_cascade(tmp_path)
    preset = get_preset("tiny")
    torch.manual_seed(1)
    fresh = build_generator(preset, cfg.levels, 2, 3, refine=True)
    assert is_inert_refiner(fresh) and not is_inert_refiner(gens[1]) and not is_inert_refiner(gens[0])

    sampler = CascadeSampler(cfg, [gens[0], fresh])
    lower_draws = []
    real_sample = CascadeSampler.sample
    monkeypatch.setattr(CascadeSampler, "sample", lambda self, *a, **k: lower_draws.append(k.get("levels")) or real_sample(self, *a, **k))
    sampler.prepare_norms("recompute", 5, level1_frames=4, batch=2)
    assert lower_draws == []  # no lower-level sampling for the inert level
    videos, _ = sampler.sample(3, seed=4)
    bound = REFINE_CLAMP  # the gate's base is clamped inside tanh's range
    torch.testing.assert_close(videos[1], naive_upsample(videos[0], 2, 2).clamp(-bound, bound), rtol=0, atol=1e-6)
    assert torch.isfinite(videos[1]).all()

    with torch.no_grad():
        fresh.refine_gain.fill_(0.1)  # trained: its statistics now shape its output
    assert not is_inert_refiner(fresh)
    lower_draws.clear()
    sampler.prepare_norms("recompute", 5, level1_frames=4, batch=2)
    assert lower_draws == [1] * 5


def test_norm_records_prepare_later_levels_exactly_as_one_pass_would(tmp_path):
    """``cvg norms`` prepares each level once for every variant: a sampler given level 1's
    record (saved and loaded as the workflow does) prepares level 2 bit for bit as the joint
    preparation does, and samples the same; records of other settings or levels are refused."""
    import copy

    from cvg.sample import read_norm_records
    from cvg.train.loop import save_atomic

    cfg, gens = tiny_cascade(tmp_path)
    joint = CascadeSampler(cfg, copy.deepcopy(gens))
    records = joint.prepare_norms("recompute", 3, level1_frames=6, batch=2, seed=5)
    assert [r["level"] for r in records] == [1, 2]
    save_atomic(records[0], tmp_path / "norms" / "level1.pt")
    given = read_norm_records([tmp_path / "norms" / "level1.pt"])  # weights_only load

    level1_only = CascadeSampler(cfg, copy.deepcopy(gens[:1]))
    assert level1_only.prepare_norms("recompute", 3, level1_frames=6, batch=2, seed=5, given=given)[0] is given[0]
    chained = CascadeSampler(cfg, copy.deepcopy(gens))
    again = chained.prepare_norms("recompute", 3, level1_frames=6, batch=2, seed=5, given=given)
    for name, value in records[1]["buffers"].items():
        assert torch.equal(again[1]["buffers"][name], value), name
    assert torch.equal(again[1]["rng"], records[1]["rng"])
    a, _ = joint.sample(3, seed=7)
    b, _ = chained.sample(3, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))

    with pytest.raises(ValueError, match="passes"):  # statistics prepared with other settings
        CascadeSampler(cfg, copy.deepcopy(gens)).prepare_norms("recompute", 4, level1_frames=6, batch=2, seed=5, given=given)
    with pytest.raises(ValueError, match="level 2's, expected level 1's"):
        CascadeSampler(cfg, copy.deepcopy(gens)).prepare_norms("recompute", 3, level1_frames=6, batch=2, seed=5, given=records[1:])


def test_the_training_setup_upsamples_random_windows_at_the_training_lengths(tmp_path):
    """cascade_windows (the paper's training-length rows): level 1 at its training length, level
    2 on a random 2-frame window of it -> 4 frames, each level's BN statistics recomputed at
    those lengths; the window is a real crop of level 1's output and differs across samples."""
    from cvg.models.layers import FrameNorm
    from cvg.pyramid import crop_windows, window_starts

    cfg, gens = tiny_cascade(tmp_path)
    sampler = CascadeSampler(cfg, gens)
    sampler.prepare_window_norms(passes=3, batch=4, seed=0)
    for level, g in ((1, gens[0]), (2, gens[1])):  # per-timestep statistics of the training length
        lengths = {m.running_mean.shape[0] for m in g.modules() if isinstance(m, FrameNorm)}
        assert lengths == {cfg.level(level).window_out}, (level, lengths)
    videos, labels = sampler.sample_windows(6, seed=1)
    assert videos[0].shape == (6, 3, 4, 16, 16) and videos[1].shape == (6, 3, 4, 32, 32)
    again, _ = sampler.sample_windows(6, seed=1)
    assert torch.equal(videos[1], again[1])  # seeded
    gen = torch.Generator().manual_seed(1)
    label = sampler._labels(6, gen)
    zs = [torch.randn(6, g.z_dim, generator=gen) for g in gens]
    level1 = gens[0](zs[0], label, frames=4)
    starts = window_starts(6, 4, 2, gen)
    assert len(set(starts.tolist())) > 1
    expected = gens[1](zs[1], label, crop_windows(level1, starts, 2))
    assert torch.allclose(videos[1], expected, atol=1e-6)


def test_each_variant_name_says_what_its_sampler_is():
    """cvg.variants.Variant: the one place that decides what a variant's sampler reads."""
    from cvg.variants import Variant, variant_names

    spec = {name: Variant.parse(name, 3) for name in variant_names(3)}
    assert (spec["cascade"].trained, spec["bilinear"].trained, spec["cascade_to_level2_on_real"].trained) == (3, 1, 2)
    assert [n for n, v in spec.items() if v.fresh] == ["untrained"]
    assert [n for n, v in spec.items() if v.windows] == ["cascade_windows"]
    assert all(v.on_real == n.endswith("_on_real") for n, v in spec.items())
    with pytest.raises(ValueError, match="unknown sample variant 'cascade_to_level3'"):
        Variant.parse("cascade_to_level3", 3)  # the top level is the cascade itself
