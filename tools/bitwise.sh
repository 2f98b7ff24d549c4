#!/bin/bash
# Does a change keep behaviour? Runs the same short demo-shaped DAG (tools/bitwise.yaml: data,
# three levels of training, BN statistics, every sample variant, the metric table) at two commits
# and compares every checkpoint, training state, BN-statistics file, sample file and table by
# sha256 (logs and timings excepted). Exit status 0 when all are identical.
#
#   tools/bitwise.sh REF_BEFORE REF_AFTER      # from the checkout, its environment active
#
# Each commit runs from its own clone under $BITWISE_DIR (default /tmp/cvg-bitwise) with
# PYTHONPATH on that clone, so the installed environment serves both. A few CPU minutes each.
set -euo pipefail
if [ $# -ne 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -eq 2 ] && exit 0 || exit 2
fi
repo=$(git rev-parse --show-toplevel)
work=${BITWISE_DIR:-/tmp/cvg-bitwise}
rm -rf "$work" && mkdir -p "$work"
for side in before after; do
    ref=$([ $side = before ] && echo "$1" || echo "$2")
    tree="$work/$side"
    git clone -q "$repo" "$tree" && git -C "$tree" checkout -q "$ref"
    cp "$repo/tools/bitwise.yaml" "$tree/config/bitwise.yaml"
    echo "$side: $(git -C "$tree" log -1 --format='%h %s' | cut -c1-90)"
    (cd "$tree" && PYTHONPATH="$tree" snakemake -c1 results/bitwise/metrics.csv results/bitwise/train/level3.pt > "$work/$side.log" 2>&1) \
        || { echo "the DAG failed at $ref: $work/$side.log"; exit 1; }
done
artefacts() {
    (cd "$1/results/bitwise" && find . -type f \( -name '*.pt' -o -name '*.h5' -o -name '*.npz' -o -name 'metrics*.csv' \) \
        ! -path '*/logs/*' | sort)
}
diff <(artefacts "$work/before") <(artefacts "$work/after") > /dev/null || { echo "the two runs made different files"; diff <(artefacts "$work/before") <(artefacts "$work/after"); exit 1; }
(cd "$work/before/results/bitwise" && artefacts "$work/before" | xargs sha256sum) > "$work/before.sha256"
n=$(wc -l < "$work/before.sha256")
if (cd "$work/after/results/bitwise" && sha256sum --quiet -c "$work/before.sha256"); then
    echo "all $n artefacts identical"
else
    echo "differences above (of $n artefacts)"; exit 1
fi
