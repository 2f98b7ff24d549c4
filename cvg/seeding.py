"""Random generators keyed by integers: a draw that depends only on (seed, level, step, ...)
or (seed, epoch, item) is reproducible in any process, on any rank, after any resume."""

from __future__ import annotations

import numpy as np
import torch


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU torch generator seeded by the integer ``keys`` (mixed by numpy's SeedSequence)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([k & 0xFFFF_FFFF for k in keys]).generate_state(1)[0]))
