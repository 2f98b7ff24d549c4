"""Names of the sample variants the metrics table scores, and which trained levels each one
reads. Torch-free, so the workflow can use it when it builds the DAG."""

from __future__ import annotations

import re

BASE_VARIANTS = ("cascade", "untrained", "bilinear")
WINDOWS = "cascade_windows"  # the training setup: each upsampling level on random windows of the level below
ON_REAL = "_on_real"
PARTIAL = re.compile(r"cascade_to_level(\d+)")


def variant_names(n_levels: int) -> list[str]:
    """Every sample variant of an ``n_levels`` cascade: the base ones, ``cascade_to_level{k}``
    for each intermediate level k, each of those ``*_on_real``, and the training setup
    (``cascade_windows``, scored where ``metrics.training_setup`` asks)."""
    own = [*BASE_VARIANTS, *(f"cascade_to_level{k}" for k in range(2, n_levels))]
    return own + [f"{v}{ON_REAL}" for v in own if v != "untrained"] + ([WINDOWS] if n_levels > 1 else [])


def trained_levels(variant: str, n_levels: int) -> int:
    """How many trained levels (1..k) a variant reads: all for ``cascade``, k for
    ``cascade_to_level{k}``, only level 1 for ``untrained`` and ``bilinear``; so retraining a
    level leaves the samples that ignore it alone."""
    if variant not in variant_names(n_levels):
        raise ValueError(f"unknown sample variant {variant!r} for a {n_levels}-level cascade; variants: {', '.join(variant_names(n_levels))}")
    variant = variant.removesuffix(ON_REAL)
    partial = PARTIAL.fullmatch(variant)
    return n_levels if variant in ("cascade", WINDOWS) else int(partial.group(1)) if partial else 1


def table_name(variant: str) -> str:
    """The metrics table's name for a variant's samples: ``untrained_upsampling`` and
    ``bilinear_level1`` say what was done to level 1; ``*_on_real_level1`` whose level 1 it is."""
    if variant.endswith(ON_REAL):
        return f"{variant}_level1"
    return {"untrained": "untrained_upsampling", "bilinear": "bilinear_level1"}.get(variant, variant)
