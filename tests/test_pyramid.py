import numpy as np
import torch

from cvg.pyramid import build_pyramid, pyramid_step, spatial_downsample, temporal_subsample, to_uint8, to_unit_range, uint8_pyramid_step, window_bounds


def test_temporal_subsample_keeps_every_kth_frame():
    x = torch.arange(12.0).view(1, 1, 12, 1, 1)
    assert temporal_subsample(x, 4).flatten().tolist() == [0, 4, 8]


def test_spatial_downsample_is_antialiased_bilinear():
    x = torch.rand(2, 3, 4, 32, 32)
    y = spatial_downsample(x, 4)
    assert y.shape == (2, 3, 4, 8, 8)
    assert torch.allclose(spatial_downsample(torch.full((1, 3, 2, 16, 16), 0.3), 4), torch.tensor(0.3))
    # a 1-pixel checkerboard is above Nyquist after 4x downsampling: the antialiasing filter
    # must flatten it to grey (plain bilinear sampling would alias it to a pattern)
    checker = ((torch.arange(32)[:, None] + torch.arange(32)[None]) % 2).float().view(1, 1, 1, 32, 32)
    inner = spatial_downsample(checker, 4)[..., 1:-1, 1:-1]
    assert torch.allclose(inner, torch.tensor(0.5), atol=0.02)


def test_build_pyramid_matches_operator():
    rng = np.random.default_rng(0)
    top = rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    levels = build_pyramid(top, [1, 2, 2], [1, 4, 2])
    assert [lv.shape for lv in levels] == [(4, 8, 8, 3), (8, 32, 32, 3), (16, 64, 64, 3)]
    assert np.array_equal(levels[1], uint8_pyramid_step(levels[2], 2, 2))
    assert np.array_equal(levels[0], uint8_pyramid_step(levels[1], 2, 4))


def test_uint8_step_is_the_float_operator_rounded():
    """The shard writer's step (channels-last frames) against ``pyramid_step`` on contiguous ones."""
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (2, 8, 32, 32, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, 32, dtype=np.float32)[None, None, :, None, None], (1, 8, 32, 32, 3))
    for frames in (noise, ramp.round().astype(np.uint8)):
        for tf, sf in ((2, 2), (1, 4), (2, 1)):
            ours = uint8_pyramid_step(frames, tf, sf)
            x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float()
            ref = pyramid_step(x, tf, sf).round().clamp(0, 255).permute(0, 2, 3, 4, 1).numpy()
            assert ours.dtype == np.uint8 and ours.shape == ref.shape
            assert np.array_equal(ours, ref)


def test_build_pyramid_of_a_stack_equals_its_clips_one_by_one():
    """The shard writer pyramids all clips of a video in one call."""
    rng = np.random.default_rng(1)
    clips = rng.integers(0, 256, (3, 8, 32, 32, 3), dtype=np.uint8)
    stacked = build_pyramid(clips, [1, 2], [1, 2])
    assert [lv.shape for lv in stacked] == [(3, 4, 16, 16, 3), (3, 8, 32, 32, 3)]
    for i, clip in enumerate(clips):
        assert all(np.array_equal(s[i], one) for s, one in zip(stacked, build_pyramid(clip, [1, 2], [1, 2])))


def test_unit_range_roundtrip_and_layout():
    frames = torch.randint(0, 256, (2, 5, 8, 8, 3), dtype=torch.uint8)
    x = to_unit_range(frames)
    assert x.shape == (2, 3, 5, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), frames)


def test_window_bounds_align_levels():
    low, high = window_bounds(3, 4, 2)
    assert (low.start, low.stop, high.start, high.stop) == (3, 7, 6, 14)
    x_high = torch.arange(20.0).view(1, 1, 20, 1, 1)
    x_low = pyramid_step(x_high, 2, 1)
    assert torch.equal(x_low[:, :, low], temporal_subsample(x_high[:, :, high], 2))
