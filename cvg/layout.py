"""The HDF5 layout that pyramid shards and samples files share: one uint8 dataset per pyramid
level, (N, T, H, W, 3), named ``level{k}`` (k = 1 for level 1), and the class of each clip in
``label`` (N,), -1 for data without classes."""

LABEL = "label"


def level_key(index: int) -> str:
    """The dataset of pyramid level ``index`` (1-based, as in the paper)."""
    return f"level{index}"
