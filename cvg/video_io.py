"""Video decoding and encoding through ffmpeg (ffmpeg-python builds the command lines).

A system ``ffmpeg`` is used when present (or the one named by $CVG_FFMPEG), otherwise the
static binary shipped by the ``imageio-ffmpeg`` wheel, so ``pip install`` alone suffices.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import ffmpeg
import numpy as np

from cvg.atomic import atomic_path
from cvg.errors import ToolMissing


class DecodeError(RuntimeError):
    """A video that cannot be decoded into the requested clip; the message is the reason."""


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    explicit = os.environ.get("CVG_FFMPEG")
    if explicit:
        if not (Path(explicit).is_file() or shutil.which(explicit)):
            raise ToolMissing(f"$CVG_FFMPEG={explicit!r} is not an executable")
        return explicit
    system = shutil.which("ffmpeg")
    if system:
        return system
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ToolMissing("no ffmpeg found: install ffmpeg or `pip install imageio-ffmpeg`") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def _last_error_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "ffmpeg failed without a message"


_LEVEL = re.compile(r"\[(error|fatal|panic)\]\s*(.*)")
_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class DecodeLog:
    """What ffmpeg said while decoding (run with ``-loglevel level+info``): the container's
    duration, whether the input has a video stream, and its error-level messages."""

    duration: float | None
    has_video: bool | None  # None: ffmpeg did not get as far as describing the input
    errors: tuple[str, ...]

    @classmethod
    def parse(cls, stderr: bytes) -> "DecodeLog":
        lines = stderr.decode("utf-8", "replace").splitlines()
        head, seen_input, duration = [], False, None
        for line in lines:
            if "Input #0" in line:
                seen_input = True
            if "Output #0" in line or "Stream mapping:" in line:
                break
            head.append(line)
            if duration is None and (m := _DURATION.search(line)):
                duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
        has_video = any("Stream #" in ln and "Video:" in ln for ln in head) if seen_input else None
        errors = tuple(m.group(2).strip() for ln in lines if (m := _LEVEL.search(ln)) and m.group(2).strip())
        return cls(duration, has_video, errors)

    def failure(self, returncode: int) -> str | None:
        """The reason to reject the video, or None."""
        if self.has_video is False:
            return "no video stream"
        if returncode != 0:
            if not self.errors:
                return f"ffmpeg: exit status {returncode}"
            return f"ffmpeg: {self.errors[0]}" + (f" ({self.errors[-1]})" if len(self.errors) > 1 else "")
        if self.errors:
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            return f"decode errors: {self.errors[0]}{more}"
        return None

    def expected_frames(self, fps: float, max_frames: int | None) -> int | None:
        if self.duration is None:
            return None
        n = math.floor(self.duration * fps + 1e-6)
        return min(n, max_frames) if max_frames is not None else n


def missing_frames(decoded: int, expected: int | None) -> bool:
    """Fewer frames than the container's duration gives, beyond the fps filter's rounding at the
    ends and a stream a little shorter than the container (2 frames or 5 %)."""
    return expected is not None and decoded < expected - max(2, math.ceil(0.05 * expected))


_PIPE_BYTES = 1 << 20


def _run_to_memory(args: list[str]) -> tuple[bytes, bytes, int]:
    """Run ffmpeg and collect stdout through a 1 MiB pipe in large reads.

    With the default 64 KiB pipe, ffmpeg and the reader take turns every few frames; on a
    loaded machine those context switches cost more than the decoding itself.
    """
    with tempfile.TemporaryFile() as err, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err) as proc:
        if hasattr(fcntl, "F_SETPIPE_SZ"):
            try:
                fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            except OSError:  # above /proc/sys/fs/pipe-max-size: keep the default
                pass
        chunks = []
        while chunk := proc.stdout.read1(_PIPE_BYTES):
            chunks.append(chunk)
        returncode = proc.wait()
        err.seek(0)
        return b"".join(chunks), err.read(), returncode


def decode_video(
    path: str | os.PathLike,
    fps: float,
    resolution: int,
    max_frames: int | None = None,
    threads: int = 1,
    scale_flags: str = "area",
    out: str | os.PathLike | None = None,
) -> np.ndarray:
    """Decode ``path`` to uint8 RGB frames (T, resolution, resolution, 3).

    Frames are resampled to ``fps`` (ffmpeg's fps filter), centre-cropped to a square and
    scaled to ``resolution`` x ``resolution``. Decoding stops after ``max_frames``.
    With ``out``, ffmpeg writes the raw frames to that file (RAM-backed scratch, say) and the
    result is a read-only memory map of it: no pipe, no copy in Python. The caller owns the
    file, also when decoding fails.
    Raises DecodeError with the reason for unreadable files, files without a video stream,
    decode errors (ffmpeg may report them and still exit 0, with garbled frames) and fewer
    frames than the container's duration gives (a truncated file).
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError("file not found")
    if path.stat().st_size == 0:
        raise DecodeError("zero-length file")
    stream = (
        ffmpeg.input(str(path), threads=threads)
        .video.filter("fps", fps=fps)
        .filter("crop", "min(iw,ih)", "min(iw,ih)")  # centre square first: scale only what is kept
        .filter("scale", resolution, resolution, flags=scale_flags)
    )
    out_kwargs = {"format": "rawvideo", "pix_fmt": "rgb24", "threads": threads}
    if max_frames is not None:
        out_kwargs["frames:v"] = max_frames
    target = "pipe:" if out is None else str(out)
    args = stream.output(target, **out_kwargs).global_args("-nostdin", "-nostats", "-loglevel", "level+info", "-y").compile(cmd=ffmpeg_executable())
    if out is None:
        data, stderr, returncode = _run_to_memory(args)
        size = len(data)
    else:
        result = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        stderr, returncode = result.stderr, result.returncode
        size = Path(out).stat().st_size if Path(out).is_file() else 0
    if returncode != 0 and out is not None and b"No space left on device" in stderr:  # the scratch is full, not the video bad
        raise OSError(errno.ENOSPC, f"no space left for decoded frames in {Path(out).parent} (set $CVG_SCRATCH to a larger folder)", str(out))
    log = DecodeLog.parse(stderr)
    reason = log.failure(returncode)
    if reason:
        raise DecodeError(reason)
    frame_bytes = resolution * resolution * 3
    n = size // frame_bytes
    if n == 0:
        raise DecodeError("no video frames decoded")
    expected = log.expected_frames(fps, max_frames)
    if missing_frames(n, expected):
        raise DecodeError(f"truncated: {n} frames decoded, the container's duration ({log.duration:g} s at {fps:g} fps) gives {expected}")
    shape = (n, resolution, resolution, 3)
    if out is None:
        return np.frombuffer(data, np.uint8, count=n * frame_bytes).reshape(shape)
    return np.memmap(out, np.uint8, mode="r", shape=shape)


_OUTPUT_SIZE = re.compile(r"Video: rawvideo[^\n]*?, (\d+)x(\d+)")


def decode_frames(path: str | os.PathLike, max_frames: int) -> np.ndarray:
    """The first ``max_frames`` frames of ``path`` as uint8 RGB (T, H, W, 3) at the video's own
    size: every decoded frame once (no frame-rate conversion), no crop, no scaling (the FVD
    reference's input, ``cvg score``). Fewer frames when the video is shorter. Raises
    ``DecodeError`` with the reason for unreadable files, files without a video stream and
    decode errors."""
    path = Path(path)
    if not path.is_file():
        raise DecodeError("file not found")
    if path.stat().st_size == 0:
        raise DecodeError("zero-length file")
    args = [ffmpeg_executable(), "-nostdin", "-nostats", "-loglevel", "level+info", "-i", str(path), "-map", "0:v:0", "-an",
            "-frames:v", str(max_frames), "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    data, stderr, returncode = _run_to_memory(args)
    reason = DecodeLog.parse(stderr).failure(returncode)
    if reason:
        raise DecodeError(reason)
    size = _OUTPUT_SIZE.search(stderr.decode("utf-8", "replace").split("Output #0", 1)[-1])
    if size is None:
        raise DecodeError("ffmpeg did not state the decoded frame size")
    width, height = int(size.group(1)), int(size.group(2))
    n = len(data) // (width * height * 3)
    if n == 0:
        raise DecodeError("no video frames decoded")
    return np.frombuffer(data, np.uint8, count=n * width * height * 3).reshape(n, height, width, 3)


def encode_video(
    frames: np.ndarray,
    path: str | os.PathLike,
    fps: float,
    codec: str = "libx264",
    crf: int = 18,
) -> Path:
    """Write uint8 (T, H, W, 3) frames to an H.264 MP4 (GIF for .gif, one-frame PNG for .png), atomically."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    t, h, w, _ = frames.shape
    path = Path(path)
    if path.suffix.lower() == ".png" and t != 1:
        raise ValueError(f"a PNG holds one frame, got {t}")
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".png":
            out = source.output(str(tmp), vframes=1)
        elif path.suffix.lower() == ".gif":
            split = source.video.split()
            palette = split[0].filter("palettegen", stats_mode="full")
            out = ffmpeg.filter([split[1], palette], "paletteuse").output(str(tmp), loop=0)
        else:
            if h % 2 or w % 2:
                source = source.filter("pad", "ceil(iw/2)*2", "ceil(ih/2)*2")
            out = source.output(str(tmp), vcodec=codec, pix_fmt="yuv420p", crf=crf, preset="medium", movflags="+faststart")
        try:
            out.global_args("-nostdin", "-loglevel", "error", "-y").run(
                cmd=ffmpeg_executable(), input=frames.tobytes(), capture_stdout=True, capture_stderr=True
            )
        except ffmpeg.Error as exc:
            raise OSError(f"ffmpeg: {_last_error_line(exc.stderr)}") from None  # atomic_path: "cannot write PATH: ffmpeg: ..."
    return path
