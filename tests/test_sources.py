"""Each adapter against a small fake tree with the real dataset's layout and real videos."""


import numpy as np
import pytest

from cvg.config import build_config
from cvg.data.demo import DemoSpec, render_clip
from cvg.data.sources import DatasetError, list_videos
from tests.conftest import copy_video, tiny_raw_config


def config_for(root, kind, splits, **dataset):
    raw = tiny_raw_config(root)
    raw["dataset"] = {"kind": kind, "root": str(root), **dataset}
    raw["data"]["splits"] = splits
    return build_config(raw)


def test_ucf101_official_split_lists(tmp_path, clip_mp4):
    root = tmp_path / "ucf101"
    for cls, group in [("ApplyEyeMakeup", "g08"), ("ApplyEyeMakeup", "g01"), ("Basketball", "g02")]:
        copy_video(clip_mp4, root / "UCF-101" / cls / f"v_{cls}_{group}_c01.avi")
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Basketball\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nBasketball/v_Basketball_g02_c01.avi 2\n"
    )
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    entries = list_videos(config_for(root, "ucf101", ["train", "test"], ucf101_split=1))
    assert [(e.split, e.label_name, e.video_id) for e in entries] == [
        ("train", "ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01"),
        ("train", "Basketball", "v_Basketball_g02_c01"),
        ("test", "ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01"),
    ]
    assert all(not e.missing_reason for e in entries)
    with pytest.raises(DatasetError, match="trainlist02.txt"):
        list_videos(config_for(root, "ucf101", ["train"], ucf101_split=2))


def test_kinetics600_annotations_and_missing_clips(tmp_path, clip_mp4):
    root = tmp_path / "k600"
    copy_video(clip_mp4, root / "train" / "abseiling" / "aaa111_000010_000020.mp4")
    ann = root / "annotations"
    ann.mkdir(parents=True)
    (ann / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,aaa111,10,20,train\n"
        "juggling,bbb222,0,10,train\n"
    )
    entries = list_videos(config_for(root, "kinetics600", ["train"], annotations=str(ann)))
    assert [(e.label_name, e.video_id) for e in entries] == [("abseiling", "aaa111_000010_000020"), ("juggling", "bbb222_000000_000010")]
    assert entries[0].missing_reason == "" and "not downloaded" in entries[1].missing_reason


def test_bdd100k_mov_files(tmp_path, clip_mp4):
    from cvg.video_io import decode_video, encode_video

    root = tmp_path / "bdd"
    frames = decode_video(clip_mp4, 25, 32)
    for split, name in [("train", "00a0f008-3c67908e"), ("train", "00a2e3ca-5c856cde"), ("val", "b1c9c847-3bda4659")]:
        encode_video(frames, root / "videos" / split / f"{name}.mov", fps=30)
    entries = list_videos(config_for(root, "bdd100k", ["train", "val"], conditional=False))
    assert sorted((e.split, e.video_id, e.label_name) for e in entries) == [
        ("train", "00a0f008-3c67908e", ""), ("train", "00a2e3ca-5c856cde", ""), ("val", "b1c9c847-3bda4659", "")]
    assert decode_video(entries[0].path, 30, 16).shape[0] == len(frames)


def test_folder_and_manifest(tmp_path, clip_mp4):
    root = tmp_path / "folder"
    copy_video(clip_mp4, root / "train" / "cats" / "a.mp4")
    copy_video(clip_mp4, root / "train" / "dogs" / "b.mp4")
    (root / "train" / "notes.txt").write_text("ignored")
    entries = list_videos(config_for(root, "folder", ["train"]))
    assert [(e.label_name, e.video_id) for e in entries] == [("cats", "cats__a"), ("dogs", "dogs__b")]

    (root / "list.csv").write_text("path,label,split\ntrain/cats/a.mp4,cats,train\ntrain/dogs/b.mp4,dogs,test\n")
    entries = list_videos(config_for(root, "manifest", ["train", "test"], annotations=str(root / "list.csv")))
    assert [(e.split, e.label_name) for e in entries] == [("train", "cats"), ("test", "dogs")]


def test_missing_or_empty_dataset_gives_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match=f"expected a directory at {tmp_path / 'nowhere'}"):
        list_videos(config_for(tmp_path / "nowhere", "bdd100k", ["train"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no videos"):
        list_videos(config_for(tmp_path / "empty", "folder", ["train"]))


def test_demo_spec_sizes_and_determinism():
    """The demo's object and texture scales are settings (level 1 must be able to draw them)."""
    small = DemoSpec(frames=4, width=48, height=48, object_size=[0.05, 0.06])
    large = DemoSpec(frames=4, width=48, height=48, object_size=[0.3, 0.32])
    assert large.object_size == (0.3, 0.32)  # YAML lists become a hashable tuple
    np.testing.assert_array_equal(render_clip(0, 1, "train", large), render_clip(0, 1, "train", large))
    flat = DemoSpec(frames=4, width=48, height=48, object_size=[1e-3, 1e-3])  # background alone
    covered = [(render_clip(0, 1, "train", s) != render_clip(0, 1, "train", flat)).any(-1).mean() for s in (small, large)]
    assert covered[1] > 5 * covered[0] > 0
    with pytest.raises(ValueError, match="demo.grating_frequency"):
        DemoSpec(grating_frequency=[0.2, 0.1])


def test_demo_detail_grating_adds_fine_texture():
    """``detail_frequency`` puts the second grating at fine scales: a large share of the frames'
    energy moves above 0.05 cycles per pixel; left unset, the clips are exactly those of before."""

    def high_band_power(frames: np.ndarray) -> float:
        x = frames.astype(np.float32).mean(-1)
        x -= x.mean(axis=(1, 2), keepdims=True)
        power = np.abs(np.fft.rfft2(x)) ** 2
        fy = np.abs(np.fft.fftfreq(x.shape[1]))[:, None]
        fx = np.fft.rfftfreq(x.shape[2])[None, :]
        return float(power[:, np.hypot(fx, fy) > 0.05].sum() / power.sum())

    base = DemoSpec(frames=4, width=64, height=64, object_size=[1e-3, 1e-3])
    detail = DemoSpec(frames=4, width=64, height=64, object_size=[1e-3, 1e-3], detail_frequency=[0.5, 0.7])
    plain, fine = (np.stack([render_clip(c, i, "train", s) for c in range(6) for i in range(2)]) for s in (base, detail))
    assert high_band_power(fine.reshape(-1, 64, 64, 3)) > 0.3  # measured 0.58
    assert high_band_power(plain.reshape(-1, 64, 64, 3)) < 0.15  # measured 0.07
    with pytest.raises(ValueError, match="demo.detail_frequency"):
        DemoSpec(detail_frequency=[0.7, 0.5])
    np.testing.assert_array_equal(render_clip(2, 0, "train", DemoSpec(frames=4)), render_clip(2, 0, "train", DemoSpec(frames=4, detail_frequency=None)))


def test_demo_rings_follow_each_shape():
    """``ring_period`` paints concentric rings on the shapes (dark every ``period`` pixels out
    from each shape's centre), leaves the background alone, and unset leaves the clips exactly
    those of before."""
    from cvg.data.demo import ring_shading

    yy, xx = np.mgrid[0:32, 0:64].astype(np.float32)
    shade = ring_shading(xx, yy, 10.0, 16.0, 8.0)
    ray = shade[16, 10:58]  # from the centre outwards
    np.testing.assert_allclose(ray[[0, 8, 16, 24, 32, 40]], 0.3, atol=1e-6)
    np.testing.assert_allclose(ray[[4, 12, 20, 28]], 1.0, atol=1e-6)
    assert shade.min() >= 0.3 - 1e-6 and shade.max() <= 1.0 + 1e-6

    size = dict(frames=2, width=96, height=96, object_size=[0.25, 0.25])
    ringed, plain = render_clip(0, 3, "train", DemoSpec(**size, ring_period=8.0)), render_clip(0, 3, "train", DemoSpec(**size))
    flat = render_clip(0, 3, "train", DemoSpec(frames=2, width=96, height=96, object_size=[1e-3, 1e-3]))  # background alone
    on_shapes = (plain != flat).any(-1)
    changed = (ringed != plain).any(-1)
    off_shapes = np.abs(ringed.astype(int) - plain)[~on_shapes]
    assert changed.any() and off_shapes.max() <= 2  # only the shapes change (their faint antialiased rims round differently)
    assert changed[on_shapes].mean() > 0.8
    with pytest.raises(ValueError, match="demo.ring_period"):
        DemoSpec(ring_period=0)
    np.testing.assert_array_equal(plain, render_clip(0, 3, "train", DemoSpec(**size, ring_period=None)))
