import os

import pytest
import torch
import torch.distributed as dist

from cvg.models.discriminators import d_hinge_loss, g_hinge_loss
from cvg.models.layers import FrameNorm, recompute_frame_stats, set_norm_eval_stats
from cvg.models.presets import PRESETS, build_baseline, build_discriminators, build_generator, get_preset, summarize
from tests.conftest import needs_cuda, one_and_two_workers


def inputs_for(preset, index, batch=2, frames=None):
    spec = preset.levels[index - 1]
    z = torch.randn(batch, preset.z_dim)
    label = torch.randint(0, preset.n_classes, (batch,), device=z.device) if preset.n_classes else None
    if index == 1:
        return (z, label), spec.frames
    prev = preset.levels[index - 2]
    window = frames or spec.window
    cond = torch.rand(batch, 3, window, prev.resolution, prev.resolution) * 2 - 1
    return (z, label, cond), window * spec.temporal_factor


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_with_correct_shapes_at_reduced_width(name):
    torch.manual_seed(0)
    full = get_preset(name)
    preset = get_preset(name, width=4 / max(n.g_ch for n in full.nets))  # a few channels per unit
    # paper resolutions run the same code on meta tensors (shapes only) to keep CPU time small
    device = "meta" if preset.levels[-1].resolution > 64 else "cpu"
    with torch.device(device):
        for level in preset.levels:
            g = build_generator(preset, preset.levels, level.index)
            args, frames = inputs_for(preset, level.index)
            video = g(*args)
            assert video.shape == (2, 3, frames, level.resolution, level.resolution)
            if device == "cpu":
                assert video.abs().max() <= 1
            ds = build_discriminators(preset, preset.levels, level.index)
            assert set(ds) == ({"spatial", "temporal"} if level.index == 1 else {"spatial", "temporal", "matching"})
            for name, d in ds.items():
                scores = d(video, args[2], args[1]) if name == "matching" else d(video, args[1])
                assert scores.shape[0] == 2 and scores.ndim == 2


@pytest.mark.parametrize("name", ["bdd256"])
def test_summary_covers_paper_presets(name):
    rows = summarize(get_preset(name))
    by_level = {}
    for r in rows:
        by_level.setdefault(r["level"], []).append(r)
        assert r["params"] > 0 and r["activations_per_sample"] > 0
    assert len(by_level) == len(get_preset(name).levels)
    assert {r["network"] for r in by_level[2]} == {"G", "D_spatial", "D_temporal", "D_matching"}


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    preset = get_preset("tiny")
    for index in (1, 2):
        g = build_generator(preset, preset.levels, index)
        ds = build_discriminators(preset, preset.levels, index)
        args, _ = inputs_for(preset, index)
        fake = g(*args)
        label = args[1]
        scores = [d(fake, args[2], label) if k == "matching" else d(fake, label) for k, d in ds.items()]
        g_hinge_loss(scores).backward()  # not detached: flows into G and every D
        for module in (g, ds):
            missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, f"level {index}: no gradient for {missing}"


def test_spectral_norm_bounds_top_singular_value():
    torch.manual_seed(0)
    preset = get_preset("tiny")
    g = build_generator(preset, preset.levels, 2)
    args, _ = inputs_for(preset, 2)
    for _ in range(30):  # power iterations converge during training-mode forwards
        g(*args)
    g.eval()
    for name, module in g.named_modules():
        if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
            w = module.weight.detach().flatten(1)
            assert torch.linalg.matrix_norm(w, ord=2) <= 1.0 + 0.05, name


def test_matching_discriminator_sees_the_condition():
    torch.manual_seed(0)
    preset = get_preset("tiny")
    md = build_discriminators(preset, preset.levels, 2)["matching"]
    (_, label, cond), frames = inputs_for(preset, 2)
    video = torch.rand(2, 3, frames, 16, 16) * 2 - 1
    pair = md.pair(video, cond)
    assert torch.equal(pair[:, :3], cond.repeat_interleave(2, dim=2))  # x^{l-1} is literally in the input
    other = torch.rand_like(cond) * 2 - 1
    assert not torch.allclose(md(video, cond, label), md(video, other, label))
    # spatial and temporal discriminators do not see it
    ds = build_discriminators(preset, preset.levels, 2)
    assert "cond" not in ds["temporal"].forward.__code__.co_varnames


def test_no_md_ablation_drops_the_matching_discriminator():
    preset = get_preset("tiny")
    assert set(build_discriminators(preset, preset.levels, 2, matching=False)) == {"spatial", "temporal"}


@pytest.mark.parametrize("refine", [False, True])
def test_upsampling_level_is_fully_convolutional_in_time(refine):
    torch.manual_seed(0)
    preset = get_preset("tiny")
    g = build_generator(preset, preset.levels, 2, refine=refine)
    if refine:
        g.refine_gain.data.fill_(1.0)  # as if trained: the network's correction is live
    (z, label, cond), _ = inputs_for(preset, 2, frames=8)
    for _ in range(3):
        g(z, label, cond)  # training-mode passes populate running statistics
    g.eval()
    set_norm_eval_stats(g, "stationary")
    long_cond = torch.rand(2, 3, 20, 8, 8) * 2 - 1
    radius = sum(block.temporal_convs for block in g.blocks)  # each kernel-3 temporal conv reaches one frame further
    w = 8  # window of conditioning frames -> 16 output frames
    with torch.no_grad():
        long = g(z, label, long_cond)
        assert long.shape == (2, 3, 40, 16, 16)  # 4x longer input -> 4x longer output
        for start in (0, 5, 12):
            window = g(z, label, long_cond[:, :, start : start + w])
            middle = slice(radius, 2 * w - radius)  # frames untouched by the window's zero padding
            ref = long[:, :, 2 * start : 2 * start + 2 * w][:, :, middle]
            assert window[:, :, middle].numel() > 0
            assert (window[:, :, middle] - ref).abs().max() < 1e-5
        # and the border frames do differ, so the comparison above is not vacuous
        assert (g(z, label, long_cond[:, :, 5 : 5 + w])[:, :, :1] - long[:, :, 10:11]).abs().max() > 1e-4


def test_frame_norm_statistics_are_per_frame_and_recomputable():
    norm = FrameNorm(2)
    x = torch.randn(8, 2, 3, 4, 4) + torch.arange(3.0).view(1, 1, 3, 1, 1) * 5  # frame t has mean 5t
    norm.momentum = None
    norm(x)
    assert torch.allclose(norm.running_mean[:, 0], torch.tensor([0.0, 5.0, 10.0]), atol=0.5)
    norm.eval()
    with pytest.raises(RuntimeError, match="statistics for 3 frames but got frames 0..5"):
        norm(torch.randn(1, 2, 6, 4, 4))
    recompute_frame_stats(norm, lambda: norm(torch.randn(4, 2, 6, 4, 4)), passes=5)
    assert norm.running_mean.shape == (6, 2) and not norm.training
    assert norm(torch.randn(1, 2, 6, 4, 4)).shape == (1, 2, 6, 4, 4)
    state = norm.state_dict()
    fresh = FrameNorm(2)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.running_mean, norm.running_mean)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_frame_norm_training_statistics_match_a_float64_reference(device):
    """Training mode normalises each (timestep, channel) by its population mean and variance
    over batch and space, and with a cumulative momentum keeps exactly those as running
    statistics (from sums of x and x² on the CPU, by ``torch.var_mean`` on CUDA, where inductor
    failed to build the sums' kernel; docs/gpu_runs.md)."""
    norm = FrameNorm(3, momentum=None).to(device)
    x = torch.randn(5, 3, 4, 6, 7, generator=torch.Generator().manual_seed(0)) * 3 + 2
    y = norm(x.to(device)).cpu()
    norm.cpu()
    ref = x.double()
    mean, var = ref.mean((0, 3, 4), keepdim=True), ref.var((0, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(y.double(), (ref - mean) / (var + norm.eps).sqrt(), rtol=0, atol=1e-5)
    torch.testing.assert_close(norm.running_mean.double(), mean[0, :, :, 0, 0].t(), rtol=0, atol=1e-6)
    torch.testing.assert_close(norm.running_var.double(), var[0, :, :, 0, 0].t(), rtol=1e-6, atol=1e-6)


def _synchronised_norm_rank(rank: int, world: int, port: int, device: str, queue) -> None:
    """One worker: its share of a fixed batch through a FrameNorm, a non-linear loss backward."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    x = torch.randn(8, 4, 3, 6, 6, generator=torch.Generator().manual_seed(0)).to(device) * 2 + 1
    norm = FrameNorm(4).to(device)
    part = x.chunk(world)[rank].clone().requires_grad_()
    y = norm(part)
    y.pow(3).sum().backward()
    queue.put((rank, *(t.detach().cpu().numpy() for t in (y, part.grad, norm.running_mean, norm.running_var))))
    if world > 1:
        dist.destroy_process_group()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_synchronised_frame_norm_on_two_workers_equals_one_worker(device):
    """Two gloo workers each holding half the batch normalise, back-propagate and update their
    running statistics exactly as one worker holding all of it (the statistics are all-reduced
    with autograd, so the gradient flows through the other worker's share too). On CUDA both
    workers share the one GPU (gloo moves CUDA tensors; NCCL refuses two ranks on one device)."""
    results = {}
    for world, got in one_and_two_workers(_synchronised_norm_rank, device).items():
        outputs, grads = (torch.cat([torch.from_numpy(g[i]) for g in got]) for i in (1, 2))
        results[world] = (outputs, grads, torch.from_numpy(got[0][3]), torch.from_numpy(got[0][4]))
    for name, one, two in zip(("output", "input gradient", "running mean", "running var"), results[1], results[2]):
        torch.testing.assert_close(two, one, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    assert results[1][1].abs().max() > 1  # the gradient compared is not ~0


@pytest.mark.parametrize("momentum", [0.1, None])
def test_compiled_frame_norm_updates_its_running_statistics_in_one_graph(momentum):
    """The running-statistics update is one opaque op (cvg::update_running_stats): a compiled
    norm captures it without a graph break (fullgraph=True fails on one) and its buffers move
    exactly as eager's do, growth to a longer clip included."""
    eager, compiled = FrameNorm(2, momentum=momentum), FrameNorm(2, momentum=momentum)
    run = torch.compile(compiled, backend="aot_eager", fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    for frames in (3, 3, 5, 5):
        x = torch.randn(4, 2, frames, 4, 4, generator=gen) * 2 + 1
        assert torch.equal(run(x), eager(x))
    for name in ("running_mean", "running_var", "batches_tracked"):
        assert torch.equal(getattr(compiled, name), getattr(eager, name)), name
    assert int(compiled.batches_tracked) == 4 and compiled.running_mean.shape == (5, 2)


def test_orthogonal_init_is_skipped_only_within_its_context():
    """A resumed level is built inside ``skipped_orthogonal_init`` (its checkpoint overwrites every
    weight): there the layers keep torch's default init, outside they are orthogonal again."""
    from cvg.models.layers import conv2d, skipped_orthogonal_init

    def orthogonality_error(layer):
        w = layer.parametrizations.weight.original.flatten(1)  # (out, in * k * k), rows orthonormal
        return (w @ w.t() - torch.eye(w.shape[0])).abs().max().item()

    torch.manual_seed(0)
    assert orthogonality_error(conv2d(8, 16)) < 1e-5
    with pytest.raises(RuntimeError, match="inside"), skipped_orthogonal_init():
        assert orthogonality_error(conv2d(8, 16)) > 0.5
        raise RuntimeError("inside")
    assert orthogonality_error(conv2d(8, 16)) < 1e-5  # restored, also after an error


def test_baseline_generates_full_video_directly():
    preset = get_preset("tiny")
    g, ds = build_baseline(preset, frames=8, resolution=16)
    video = g(torch.randn(2, preset.z_dim), torch.tensor([0, 1]))
    assert video.shape == (2, 3, 8, 16, 16)
    assert set(ds) == {"spatial", "temporal"}


def test_hinge_losses():
    real, fake = [torch.full((2, 3), 2.0)], [torch.full((2, 3), -2.0)]
    assert d_hinge_loss(real, fake) == 0  # both margins satisfied
    assert d_hinge_loss([torch.zeros(2, 3), torch.zeros(2, 5)], [torch.zeros(2, 3), torch.zeros(2, 5)]) == 2
    assert g_hinge_loss([torch.ones(2, 3), -torch.ones(2, 1)]) == pytest.approx(-0.5)


def test_cli_model_summary(capsys):
    from cvg.cli import main

    assert main(["model", "summary", "demo"]) == 0
    out = capsys.readouterr().out
    assert "D_matching" in out and "total parameters" in out
    assert main(["model", "summary", "nope"]) == 2


class SilentConv(torch.nn.Module):
    """Stands in for the output conv: a 3x3 conv to RGB of zero weights and bias, so the head's
    logits are zeros for any input."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(3, channels, 3, 3))
        self.register_buffer("bias", torch.zeros(3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, self.bias, padding=1)


def test_refine_corrects_the_naive_upsampling_of_its_input():
    """refine=True: output = tanh(gain * head logits + atanh(naive upsampling)), gain starting at
    0: untrained (or with a silent head) it is exactly the naive upsampling (frames repeated,
    bilinear); the paper's generator is not."""
    from cvg.pyramid import naive_upsample

    torch.manual_seed(0)
    preset = get_preset("tiny")
    (z, label, cond), _ = inputs_for(preset, 2, frames=4)
    cond = cond.clamp(-0.9, 0.9)
    refine = build_generator(preset, preset.levels, 2, refine=True)
    paper = build_generator(preset, preset.levels, 2)
    with torch.no_grad():
        base = naive_upsample(cond, 2, 2)
        assert (refine(z, label, cond) - base).abs().max() < 1e-5  # gain 0 at initialisation
        refine.refine_gain.data.fill_(1.0)
        assert (refine(z, label, cond) - base).abs().max() > 0.05  # the head's correction is live
        for g in (refine, paper):
            g.head.conv = SilentConv(g.head.conv.in_channels)
        assert (refine(z, label, cond) - base).abs().max() < 1e-5
        assert paper(z, label, cond).abs().max() < 1e-6  # from scratch: a silent head outputs grey


def test_every_generator_takes_one_call_signature():
    """G(z, label, lower, frames): level 1 from noise alone, an upsampling level from x^{l-1};
    a missing or surplus lower-level video, or a length it cannot make, is named."""
    preset = get_preset("tiny")
    g1, g2 = (build_generator(preset, preset.levels, i) for i in (1, 2))
    (z, label, cond), frames = inputs_for(preset, 2)
    with torch.no_grad():
        assert g1(z, label, None, frames=5).shape[2] == 5
        assert g2(z, label, cond).shape[2] == frames == g2(z, label, cond, frames=frames).shape[2]
        with pytest.raises(ValueError, match="noise alone"):
            g1(z, label, cond)
        with pytest.raises(ValueError, match="pass lower"):
            g2(z, label)
        with pytest.raises(ValueError, match="upsample to"):
            g2(z, label, cond, frames=frames + 1)
