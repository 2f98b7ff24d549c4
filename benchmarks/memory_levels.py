"""Peak memory of every level's training step by the account (``cvg.plan.account_step``): the
fused norm-ReLU-conv of today's networks against the composed autograd ops it replaced
(``cvg.models.layers.reference_composition``, the same numbers, the earlier memory), per
micro-batch and precision, with the bytes by category. Fake tensors: any machine, any width.

    python benchmarks/memory_levels.py --config config/bdd100k.yaml --micro-batches 1 2 4 --precisions fp32 bf16
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/bdd100k.yaml")
    parser.add_argument("--levels", type=int, nargs="+", help="default: all")
    parser.add_argument("--micro-batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--no-composed", action="store_true", help="only today's fused step")
    args = parser.parse_args()

    from benchmarks.common import report
    from cvg.experiment import load_experiment
    from cvg.memory import GIB
    from cvg.models.layers import reference_composition
    from cvg.plan import account_step

    config = load_experiment(args.config)
    rows = []
    variants = [("fused", contextlib.nullcontext)] + ([] if args.no_composed else [("composed", reference_composition)])
    for index in args.levels or range(1, len(config.levels) + 1):
        for precision in args.precisions:
            for micro in args.micro_batches:
                for name, context in variants:
                    with context():
                        a = account_step(config, index, micro, precision, flops=False)
                    rows.append({"config": config.name, "level": index, "precision": precision, "micro_batch": micro, "ops": name,
                                 "peak_gib": a.peak_gib, "cuda_peak_gib": a.cuda_peak_gib,
                                 **{f"{k.replace(' ', '_')}_gib": v / GIB for k, v in a.by_category.items()}})
    report("memory_levels", rows)


if __name__ == "__main__":
    main()
