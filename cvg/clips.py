"""Clip-length facts of the I3D metrics that the config checks need too (torch-free)."""

MIN_FRAMES = 9  # I3D's shortest input: its last temporal pooling needs two steps after 8x downsampling
SHORT_CLIP_FRAMES = 16  # the FVD convention's length, which shorter clips are stretched to (metrics.short_clips: repeat)


def as_lengths(frames: int | list[int]) -> list[int]:
    """``metrics.frames`` as a list of clip lengths (an integer is one length)."""
    return [frames] if isinstance(frames, int) else list(frames)
