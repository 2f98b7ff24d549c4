"""The sample variants: one vocabulary for the samples files, the metric table's rows, the
rules' wildcard and the paired comparisons.

* ``cascade``: every trained level (the model);
* ``untrained``: trained level 1 with freshly initialised upsampling levels;
* ``bilinear``: trained level 1, naively (bilinearly) upsampled to the top;
* ``cascade_to_level{k}``: trained levels 1..k, the levels above bilinear (1 < k < L);
* ``{v}_on_real`` (every one but ``untrained``): the same sampler fed real held-out level-1 clips
  instead of generated ones, so what the upsampling levels add is scored apart from level 1;
* ``cascade_windows``: the training setup, each upsampling level on random windows of the level
  below (the paper's training-length rows).

What each variant is (``Variant``: the trained levels it reads, fresh upsampling levels, real
level-1 input, the training setup) is decided here, once; the sampling stage builds the sampler
it describes (``cvg.sample.build_sampler``, which loads checkpoints, above this module), the
fingerprints take the levels it reads, and the rules the checkpoints it needs.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from cvg.errors import InputError

BASE_VARIANTS = ("cascade", "untrained", "bilinear")
WINDOWS = "cascade_windows"
ON_REAL = "_on_real"
PARTIAL = re.compile(r"cascade_to_level(\d+)")
# every variant name but ``cascade`` (whose rule also draws the sample grid), as a regular
# expression: the wildcard constraint of the rule that samples the others
PATTERN = rf"untrained|bilinear(?:{ON_REAL})?|cascade{ON_REAL}|cascade_to_level[0-9]+(?:{ON_REAL})?|{WINDOWS}"

# (model, baseline) pairs whose samples are paired (the same level-1 noise, or the same real
# level-1 clips): the whole upsampling stack against its baselines ...
STACK_PAIRS = (("cascade", "untrained"), ("cascade", "bilinear"), (f"cascade{ON_REAL}", f"bilinear{ON_REAL}"))
# ... and, along each chain bilinear -> cascade_to_level2 -> ... -> cascade (first, suffix, last),
# every level against the cascade one level shorter: what that upsampling level adds
LEVEL_CHAINS = (("bilinear", "", "cascade"), (f"bilinear{ON_REAL}", ON_REAL, f"cascade{ON_REAL}"))


def variant_names(n_levels: int) -> list[str]:
    """Every sample variant of an ``n_levels`` cascade, in table order."""
    own = [*BASE_VARIANTS, *(f"cascade_to_level{k}" for k in range(2, n_levels))]
    return own + [f"{v}{ON_REAL}" for v in own if v != "untrained"] + ([WINDOWS] if n_levels > 1 else [])


def scored_variants(n_levels: int, heldout: bool, training_setup: bool, refine: bool = False) -> list[str]:
    """The variants the metric table scores: the ``*_on_real`` ones where held-out real clips are
    configured (``metrics.heldout_split``), the training setup where ``metrics.training_setup``,
    and ``untrained`` unless the upsampling levels refine (``model.refine``: untrained, they *are*
    the bilinear upsampling, so the row would repeat ``bilinear``'s)."""
    return [v for v in variant_names(n_levels)
            if (heldout or not v.endswith(ON_REAL)) and (training_setup or v != WINDOWS) and not (refine and v == "untrained")]


@dataclass(frozen=True)
class Variant:
    """What a sample variant is: the spec the sampling stage builds its sampler from."""

    name: str
    trained: int  # trained levels 1..k read from their checkpoints; the levels above are upsampled naively
    fresh: bool  # the upsampling levels freshly initialised instead (``untrained``)
    on_real: bool  # level 1 is held-out real clips, not generated
    windows: bool  # the training setup: each upsampling level on random windows of the level below

    @classmethod
    def parse(cls, name: str, n_levels: int) -> "Variant":
        """The variant called ``name`` in an ``n_levels`` cascade (a clear error for any other name)."""
        if name not in variant_names(n_levels):
            raise InputError(f"unknown sample variant {name!r} for a {n_levels}-level cascade; variants: {', '.join(variant_names(n_levels))}")
        base = name.removesuffix(ON_REAL)
        partial = PARTIAL.fullmatch(base)
        trained = n_levels if base in ("cascade", WINDOWS) else int(partial.group(1)) if partial else 1
        return cls(name, trained, fresh=base == "untrained", on_real=name.endswith(ON_REAL), windows=base == WINDOWS)


def trained_levels(name: str, n_levels: int) -> int:
    """How many trained levels (1..k) a variant reads: all for ``cascade``, k for
    ``cascade_to_level{k}``, only level 1 for ``untrained`` and ``bilinear``; so retraining a
    level leaves the samples that ignore it alone."""
    return Variant.parse(name, n_levels).trained


def paired_comparisons(models) -> list[tuple[str, str]]:
    """The (model, baseline) pairs of ``STACK_PAIRS`` and ``LEVEL_CHAINS`` among ``models``."""
    models = set(models)
    pairs = list(STACK_PAIRS)
    for first, suffix, last in LEVEL_CHAINS:
        partial = sorted((int(m.group(1)), m.group(0)) for name in models if (m := re.fullmatch(rf"cascade_to_level(\d+){suffix}", name)))
        chain = [first, *(name for _, name in partial), last]
        pairs += [(upper, lower) for lower, upper in itertools.pairwise(chain) if (upper, lower) not in pairs]
    return [(model, baseline) for model, baseline in pairs if model in models and baseline in models]
