"""I3D metrics (FVD, FID, IS), PSD analysis and metric tables. The clip-length constants and
``as_lengths`` live here, free of torch, for the config checks."""

MIN_FRAMES = 9  # I3D's shortest input: its last temporal pooling needs two steps after 8x downsampling
SHORT_CLIP_FRAMES = 16  # the FVD convention's length, which shorter clips are stretched to (metrics.short_clips: repeat)


def as_lengths(frames: int | list[int]) -> list[int]:
    """``metrics.frames`` as a list of clip lengths (an integer is one length)."""
    return [frames] if isinstance(frames, int) else list(frames)
