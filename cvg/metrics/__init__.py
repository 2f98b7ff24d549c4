"""I3D metrics (FVD, FID, IS), PSD analysis and metric tables. The two clip-length constants
live here, free of torch, for the config checks."""

MIN_FRAMES = 9  # I3D's shortest input: its last temporal pooling needs two steps after 8x downsampling
SHORT_CLIP_FRAMES = 16  # the FVD convention's length, which shorter clips are stretched to (metrics.short_clips: repeat)
