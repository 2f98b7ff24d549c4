"""The ``cvg`` command. Every stage of the Snakemake DAG is one subcommand, so a rule's shell
line stays one call and every stage can also be run by hand.

Each subcommand imports its stage when it runs, after the arguments are parsed, so ``cvg --help``
and a mistyped option answer at once instead of after importing torch (seconds). Everywhere else
in the package imports sit at the top of the module."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _config(path: str):
    from cvg.experiment import load_experiment

    return load_experiment(path)


def cmd_config_validate(args) -> int:
    cfg = _config(args.config)
    print(f"{args.config}: valid (experiment {cfg.name!r}, dataset {cfg.dataset.kind} at {cfg.dataset.root})")
    print(f"  decode at {cfg.decode_fps:g} fps (data.fps {cfg.data.fps:g} / stride {cfg.data.stride})")
    for lv in cfg.levels:
        window = "full clips" if lv.window is None else f"windows {lv.window}->{lv.window_out} frames"
        print(f"  level {lv.index}: {lv.frames}/{lv.resolution}x{lv.resolution}, stride {lv.stride}, {window}")
    print(f"  {cfg.bytes_per_clip() / 2**20:.2f} MiB per clip pyramid, {cfg.clips_per_shard()} clips per shard")
    return 0


def cmd_demo_render(args) -> int:
    from cvg.data.demo import DemoSpec, render_dataset

    cfg = _config(args.config)
    opts = dict(cfg.dataset.options.get("demo", {}))
    per_class = opts.pop("videos_per_class", {"train": 24, "test": 8})
    spec = DemoSpec(**opts)
    out = Path(args.out or cfg.dataset.root)
    files = render_dataset(out, per_class, spec, workers=args.workers)
    print(f"demo dataset: {len(files)} videos under {out}")
    return 0


def cmd_data_manifest(args) -> int:
    from cvg.data.shards import shard_keys, write_manifest
    from cvg.data.sources import EMPTY_CLASS

    cfg = _config(args.config)
    manifest = write_manifest(cfg, args.manifest, args.classes)
    empty = manifest[manifest["missing_reason"].str.startswith(EMPTY_CLASS)]
    if len(empty):
        folders = "class folder" if len(empty) == 1 else "class folders"
        print(f"warning: {len(empty)} {folders} with no videos, left out (listed in the data stage's failures.csv): "
              + ", ".join(f"{split}/{name}" for split, name in zip(empty["split"], empty["video_id"])), file=sys.stderr)
    missing = int((manifest["missing_reason"] != "").sum()) - len(empty)
    print(f"{len(manifest)} videos ({missing} listed but missing) in {len(shard_keys(manifest))} shards -> {args.manifest}")
    return 0


def cmd_data_shard(args) -> int:
    from cvg.data.shards import write_shard

    cfg = _config(args.config)
    clips, failed = write_shard(cfg, args.manifest, args.split, args.shard, args.out, args.failures, args.workers)
    print(f"{args.out}: {clips} clips, {failed} videos failed (see {args.failures})")
    return 0


def cmd_data_index(args) -> int:
    from cvg.data.shards import write_index

    cfg = _config(args.config) if args.config else None
    index = write_index(args.shards, args.shard_failures, args.classes, args.index, args.counts, args.failures, cfg)
    print(f"{args.index}: {len(index)} clips from {len(args.shards)} shards")
    return 0


def cmd_model_summary(args) -> int:
    from cvg.models.presets import get_preset, summarize

    preset = get_preset(args.preset, args.width)
    print(f"{preset.name}: {preset.description} (width x{args.width:g})")
    print(f"{'level':>5}  {'network':<11} {'frames/res':>10} {'parameters':>14} {'activations/sample':>19}")
    total = 0
    for row in summarize(preset):
        total += row["params"]
        print(f"{row['level']:>5}  {row['network']:<11} {row['shape']:>10} {row['params']:>14,} {row['activations_per_sample']:>19,}")
    print(f"total parameters: {total:,}")
    return 0


def gibibytes(text: str) -> float:
    """``32G``, ``32GB``, ``32GiB`` or ``32`` -> 32.0 (GiB, as torch.cuda reports a GPU's memory)."""
    number = text.strip().upper().removesuffix("IB").removesuffix("B").removesuffix("G")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (e.g. 32G)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a memory size: {text!r} (must be positive)")
    return value


def cmd_plan(args) -> int:
    import json

    from cvg.atomic import write_text
    from cvg.errors import InputError
    from cvg.plan import format_plan, plan

    config = _config(args.config)
    gpu = args.gpu_mem or config.slurm(1).gpu_mem_gb
    if gpu is None:
        raise InputError(f"{args.config} names no GPU memory (slurm.defaults.gpu_mem_gb): pass --gpu-mem, e.g. --gpu-mem 32")
    plans = plan(config, float(gpu), args.precision, args.levels, tuple(args.micro_batches))
    print(format_plan(config, plans, float(gpu)))
    if args.modules:
        for p in plans:
            account = p.accounts[min(p.accounts)]
            print(f"\nlevel {p.level}, micro-batch {account.micro_batch}: peak {account.peak_gib:.2f} GiB counted (in the {account.peak_phase})")
            print("  " + ", ".join(f"{k} {v / 2**30:.2f}" for k, v in account.by_category.items()) + " GiB")
            for name, nbytes in account.modules(top=args.modules):
                print(f"  {name:<40} {nbytes / 2**30:6.2f} GiB")
    if args.json:
        write_text(args.json, json.dumps({"config": config.name, "gpu_mem_gib": float(gpu), "levels": [p.to_dict() for p in plans]}, indent=2))
    return 0


def cmd_train(args) -> int:
    from cvg.train.launch import launch

    work = args.work or str(Path(args.out).parent / f"level{args.level}.work")
    return launch(args.config, args.level, args.index, args.out, work, args.prev or [], args.launcher, args.device)


def cmd_sample(args) -> int:
    from cvg.devices import device_type
    from cvg.sample import sample_stage

    cfg = _config(args.config)
    out, n = sample_stage(cfg, args.checkpoints, args.variant, args.out, args.index, args.n, args.norms, device_type(args.device), args.grid or ())
    print(f"{out}: {n} samples ({args.variant})" + "".join(f"; grid {g}" for g in args.grid or ()))
    return 0


def cmd_norms(args) -> int:
    from cvg.devices import device_type
    from cvg.sample import norms_stage

    cfg = _config(args.config)
    record = norms_stage(cfg, args.checkpoints, args.prev or [], args.out, device_type(args.device))
    settings = record["settings"]
    print(f"{args.out}: level {len(args.checkpoints)}'s BN statistics ({settings['mode']}, {settings['passes']} passes)")
    return 0


def cmd_metrics(args) -> int:
    from cvg.devices import device_type
    from cvg.metrics.run import evaluate

    cfg = _config(args.config)
    samples = dict(item.split("=", 1) for item in args.samples)
    table = evaluate(cfg, args.index, samples, args.out, args.cache, device_type(args.device), args.paired, args.n_boot, args.markdown)
    if args.markdown:
        print(Path(args.markdown).read_text())
    else:
        print(table.pivot_table(index="model", columns="metric", values="value").to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_per_class(args) -> int:
    from cvg.devices import device_type
    from cvg.metrics.per_class import per_class_scores
    from cvg.sample import prepared_sampler

    cfg = _config(args.config)
    device = device_type(args.device)
    sampler = prepared_sampler(cfg, args.checkpoints, "cascade", device, args.norms)
    per_class_scores(cfg, sampler, args.index, args.out, args.cache, args.markdown, device)
    print(Path(args.markdown).read_text() if args.markdown else Path(args.out).read_text())
    return 0


def cmd_psd(args) -> int:
    from cvg.atomic import write_csv
    from cvg.metrics.run import psd_stage
    from cvg.plots import psd_figure

    cfg = _config(args.config)
    table = psd_stage(cfg, args.index, dict(item.split("=", 1) for item in args.samples), args.frames, args.n)
    write_csv(table, args.out)
    if args.plot:
        psd_figure(table, args.plot)
    print(f"{args.out}: PSD at frames {sorted(set(table['frame']))} of real and {len(args.samples)} generated sets")
    return 0


def cmd_losses(args) -> int:
    from cvg.atomic import write_csv
    from cvg.plots import loss_figure
    from cvg.train.loop import training_logs

    losses = training_logs(args.checkpoints)
    write_csv(losses, args.csv)
    if args.plot:
        loss_figure(losses, args.plot)
    print(f"{args.csv}: {len(losses)} log rows of {losses['level'].nunique()} levels")
    return 0


def cmd_table(args) -> int:
    from cvg.tables import render

    table = render(args.number, dict(item.split("=", 1) for item in args.metrics), args.csv, args.markdown)
    print(f"{args.markdown}: table {args.number}, {len(table)} rows")
    return 0


def cmd_strip(args) -> int:
    from cvg.metrics.run import strip_clips
    from cvg.plots import frame_strip

    cfg = _config(args.config)
    rows = strip_clips(cfg, args.index, args.samples, args.classes)
    frame_strip(rows, args.out, args.frames)
    print(f"{args.out}: {len(rows)} rows of {args.frames} frames (real clips above, samples below)")
    return 0


def cmd_score(args) -> int:
    from cvg.atomic import write_json
    from cvg.metrics.score import format_card, score

    card = score(args.real, args.fake, frames=args.frames, stride=args.stride, device=args.device, batch_size=args.batch_size,
                 n_boot=args.bootstrap, seed=args.seed, workers=args.workers, use_cache=not args.no_cache)
    print(format_card(card))
    if args.json:
        write_json(args.json, card)
        print(f"card: {args.json}")
    return 0


def cmd_generate(args) -> int:
    from cvg.devices import device_type
    from cvg.generate import generate, load_cascade

    device = device_type(args.device)
    cascade = load_cascade(args.config, args.model, args.levels, device)
    records = generate(cascade, args.out, n=args.n, seed=args.seed, classes=args.classes, frames=args.frames, sigma=args.sigma,
                       fps=args.fps, grid=args.grid, device=device)
    first = records[0]
    print(f"{args.out}: {len(records)} videos of {first['frames']} frames at {first['size'][0]}x{first['size'][1]}, "
          f"{first['fps']:g} fps (levels 1..{first['levels']}, sigma {args.sigma:g}); samples.json lists their seeds and classes")
    return 0


def cmd_export(args) -> int:
    from cvg.devices import device_type
    from cvg.generate import export, from_results

    cascade = from_results(args.config, levels=args.levels, device=device_type(args.device))
    path = export(cascade, args.out)
    print(f"{path}: {len(cascade.generators)} levels of {cascade.config.name!r}, {cascade.n_classes} classes, "
          f"{path.stat().st_size / 2**20:.1f} MiB (sha256 of the content inside, checked at load)")
    return 0


def _options() -> dict[str, argparse.ArgumentParser]:
    """Options several subcommands share, each declared once (argparse parents)."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", required=True, help="experiment YAML, e.g. config/demo.yaml")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    index = argparse.ArgumentParser(add_help=False)
    index.add_argument("--index", required=True, help="results/NAME/data/index.csv")
    norms = argparse.ArgumentParser(add_help=False)
    norms.add_argument("--norms", nargs="*", help="BN statistics of the first levels from `cvg norms` (one file per level, in order); "
                       "those levels take no statistics passes. Default: every level is prepared here")
    samples = argparse.ArgumentParser(add_help=False)
    samples.add_argument("--samples", nargs="+", required=True, help="NAME=samples.h5 pairs")
    return {"config": config, "device": device, "index": index, "norms": norms, "samples": samples}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvg",
        description="Cascaded Video Generation: data pyramid, greedy GAN levels, cascade sampling, metrics.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    opt = _options()

    config = sub.add_parser("config", help="inspect experiment configs").add_subparsers(dest="action", required=True)
    p = config.add_parser("validate", help="validate a config against the schema and print its pyramid")
    p.add_argument("config", help="experiment YAML, e.g. config/demo.yaml")
    p.set_defaults(func=cmd_config_validate)

    demo = sub.add_parser("demo", help="the embedded demo dataset").add_subparsers(dest="action", required=True)
    p = demo.add_parser("render", help="render the procedural demo videos to H.264 MP4 files")
    p.add_argument("--config", required=True, help="a config whose dataset.kind is demo")
    p.add_argument("--out", help="output directory (default: dataset.root)")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.set_defaults(func=cmd_demo_render)

    data = sub.add_parser("data", help="manifest, pyramid shards, index").add_subparsers(dest="action", required=True)
    p = data.add_parser("manifest", parents=[opt["config"]], help="list the dataset's videos and assign them to shards")
    p.add_argument("--manifest", required=True, help="output CSV")
    p.add_argument("--classes", required=True, help="output CSV of label ids and names")
    p.set_defaults(func=cmd_data_manifest)

    p = data.add_parser("shard", parents=[opt["config"]], help="decode one shard's videos and write their pyramids to HDF5")
    p.add_argument("--manifest", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", required=True, help="output .h5 shard")
    p.add_argument("--failures", required=True, help="output CSV of videos skipped, with reasons")
    p.add_argument("--workers", type=int, help="decoding processes (default: data.workers)")
    p.set_defaults(func=cmd_data_shard)

    p = data.add_parser("index", help="merge shards into the clip index, class counts and failures report")
    p.add_argument("--config", help="check that every shard is this config's data (its stage fingerprint)")
    p.add_argument("--shards", nargs="+", required=True)
    p.add_argument("--shard-failures", nargs="+", required=True)
    p.add_argument("--classes", required=True)
    p.add_argument("--index", required=True, help="output: the clip index CSV")
    p.add_argument("--counts", required=True)
    p.add_argument("--failures", required=True)
    p.set_defaults(func=cmd_data_index)
    p = sub.add_parser("plan", help="peak GPU memory, fitting micro-batch and FLOPs of every level's training step",
                       description="The pre-flight before a cluster run: each level's training step accounted on fake tensors (no memory "
                       "is allocated, seconds per level on a CPU): peak GPU memory at micro-batch 1, 2, 4 and 8, the largest that fits, "
                       "TFLOP per example and, where benchmarks/ has a measured GPU throughput, the time per step and per level.")
    p.add_argument("config", help="experiment YAML, e.g. config/bdd100k.yaml")
    p.add_argument("--gpu-mem", type=gibibytes, help="memory per GPU: 32G, 40GB or 32 (GiB; default: the config's slurm gpu_mem_gb)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="default: each level's train.precision")
    p.add_argument("--levels", type=int, nargs="+", help="only these levels (default: all)")
    p.add_argument("--micro-batches", type=int, nargs="+", default=[1, 2, 4, 8], help="micro-batches to account (default: 1 2 4 8)")
    p.add_argument("--modules", type=int, default=0, metavar="N", help="also print the N modules holding most memory at the peak")
    p.add_argument("--json", help="write the plan as JSON here")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("train", parents=[opt["config"], opt["device"], opt["index"]], help="train one cascade level (greedy: levels 1..L-1 frozen)")
    p.add_argument("--level", type=int, required=True, help="1-based level to train")
    p.add_argument("--out", required=True, help="final checkpoint, e.g. results/NAME/train/level2.pt")
    p.add_argument("--work", help="resumable state (latest.pt, log.csv, samples/); default OUT's folder/levelL.work")
    p.add_argument("--prev", nargs="*", help="final checkpoints of levels 1..L-1, in order")
    p.add_argument("--launcher", choices=["local", "torchrun", "slurm"], help="default: train.launcher of the config")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", parents=[opt["config"], opt["device"], opt["norms"]],
                       help="sample the frozen cascade (every level, unrolled over the whole video)")
    p.add_argument("--checkpoints", nargs="+", required=True, help="final checkpoints of levels 1..L")
    p.add_argument("--variant", default="cascade",
                   help="cascade (default); untrained: trained level 1 + untrained upsampling levels; bilinear: level 1 upsampled"
                   " bilinearly; cascade_to_levelK: trained levels 1..K, the levels above upsampled bilinearly (1 < K < L);"
                   " VARIANT_on_real (not untrained): that sampler applied to real held-out level-1 clips;"
                   " cascade_windows: the training setup (each upsampling level on random windows of the level below)")
    p.add_argument("--index", help="results/NAME/data/index.csv (the *_on_real variants read their level-1 clips there)")
    p.add_argument("--out", required=True, help="HDF5 of uint8 samples of every level")
    p.add_argument("--grid", nargs="*", help="MP4 / GIF files of a few samples, levels stacked (Fig. 15 layout)")
    p.add_argument("--n", type=int, help="number of samples (default: sample.n_samples)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("norms", parents=[opt["config"], opt["device"]],
                       help="prepare one level's BN statistics for sampling (sample.bn), once for every sample variant")
    p.add_argument("--checkpoints", nargs="+", required=True, help="final checkpoints of levels 1..K; K is the level prepared")
    p.add_argument("--prev", nargs="*", help="`cvg norms` files of levels 1..K-1, in order")
    p.add_argument("--out", required=True, help="statistics file, e.g. results/NAME/samples/norms/levelK.pt")
    p.set_defaults(func=cmd_norms)

    p = sub.add_parser("metrics", parents=[opt["config"], opt["device"], opt["index"], opt["samples"]],
                       help="FVD / FID / IS of samples against real clips (I3D, TF-Hub weights)")
    p.add_argument("--out", required=True, help="tidy CSV")
    p.add_argument("--cache", required=True, help="folder for cached real-data I3D outputs")
    p.add_argument("--paired", help="CSV of FVD / FID differences of the cascade and its paired baselines, "
                                    "with bootstrap intervals over the scored clips")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for --paired (default 1000)")
    p.add_argument("--markdown", help="the table (and paired differences with a verdict each) as Markdown")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("per-class", parents=[opt["config"], opt["device"], opt["index"], opt["norms"]],
                       help="IS / FID / FVD of the class-conditional cascade class by class (appendix E)")
    p.add_argument("--checkpoints", nargs="+", required=True, help="level1.pt ... levelL.pt")
    p.add_argument("--out", required=True, help="CSV: group, class, label, frames, n_samples, n_real, IS, IS_std, FID, FVD, protocol")
    p.add_argument("--markdown", help="the table beside the paper's numbers, and group means, as Markdown")
    p.add_argument("--cache", help="folder for cached real-data I3D outputs")
    p.set_defaults(func=cmd_per_class)

    p = sub.add_parser("generate", parents=[opt["device"]], help="MP4s from a trained cascade (an experiment's results or an exported file)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="an experiment whose levels are trained under results/ (e.g. config/demo.yaml)")
    source.add_argument("--model", help="a file written by `cvg export`")
    p.add_argument("--out", required=True, help="folder for sample_0000.mp4 ... and samples.json")
    p.add_argument("--n", type=int, default=8, help="videos (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sample i is drawn from seed + i")
    p.add_argument("--class", dest="classes", nargs="+", help="class names or indices, used in turn (default: drawn per sample)")
    p.add_argument("--frames", type=int, help="frames of each video at the last level (default: the sampling stage's length); "
                                              "level 1 and the upsampling levels are unrolled to reach it")
    p.add_argument("--sigma", type=float, default=1.0, help="noise scale (the paper: 0.5 for figures, 1 for metrics)")
    p.add_argument("--levels", type=int, help="stop after level K (default: every level)")
    p.add_argument("--fps", type=float, help="frame rate of the MP4s (default: the last level's, from data.fps and its stride)")
    p.add_argument("--grid", action="store_true", help="also grid.mp4: every sample's levels stacked")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", parents=[opt["config"], opt["device"]],
                       help="one file holding a trained cascade: generators, BN statistics, classes, config, fingerprints")
    p.add_argument("--out", required=True, help="the file, e.g. demo.cvg")
    p.add_argument("--levels", type=int, help="only levels 1..K (default: every level)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("score", parents=[opt["device"]], help="FVD / FID / IS of any videos against real ones, under the reference FVD protocol",
                       description="FVD, FID and IS of FAKE against REAL under the reference FVD protocol (cvg/metrics/score.py). "
                                   "REAL and FAKE: a folder (searched recursively for .mp4 .avi .mov .mkv .webm .gif), a glob, "
                                   "a text file listing paths, a .npy / .npz / HDF5 file of uint8 (N, T, H, W, 3) clips, or a cvg samples file.")
    p.add_argument("real", help="the reference videos")
    p.add_argument("fake", help="the videos to score")
    p.add_argument("--frames", type=int, default=16, help="frames per clip, from the first (default 16, the reference's)")
    p.add_argument("--stride", type=int, default=1, help="take every STRIDE-th frame (default 1)")
    p.add_argument("--json", help="write the card (scores, intervals, protocol, skipped files) to this JSON file")
    p.add_argument("--batch-size", type=int, default=8, help="clips per I3D forward pass")
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples for the FVD interval (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.add_argument("--workers", type=int, default=4, help="videos decoded at once")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cached I3D outputs of REAL")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("psd", parents=[opt["config"], opt["index"], opt["samples"]],
                       help="power spectral density of real and generated frames over time (appendix D)")
    p.add_argument("--frames", type=int, nargs="+", default=[0, 9, 23, 47], help="0-based frame indices (paper: 1, 10, 24, 48)")
    p.add_argument("--n", type=int, default=48, help="videos per source")
    p.add_argument("--out", required=True, help="CSV: source, frame, frequency, mean, std")
    p.add_argument("--plot", help="also draw the figure (SVG): one panel per frame, log power per source")
    p.set_defaults(func=cmd_psd)

    p = sub.add_parser("losses", help="every level's training log in one CSV, and the loss curves")
    p.add_argument("--checkpoints", nargs="+", required=True, help="results/NAME/train/levelL.pt (their levelL.work/log.csv are read)")
    p.add_argument("--csv", required=True)
    p.add_argument("--plot", help="figure of the losses (SVG or PNG)")
    p.set_defaults(func=cmd_losses)

    p = sub.add_parser("table", help="a paper table: the published numbers beside ours")
    p.add_argument("--number", type=int, required=True, choices=[1, 2, 3, 4, 5])
    p.add_argument("--metrics", nargs="+", required=True, help="EXPERIMENT=results/EXPERIMENT/metrics.csv pairs")
    p.add_argument("--csv", required=True)
    p.add_argument("--markdown", required=True)
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("strip", parents=[opt["config"], opt["index"]], help="PNG of frames: real held-out clips above samples of the same classes")
    p.add_argument("--samples", required=True, help="samples HDF5 (e.g. results/NAME/samples/cascade.h5)")
    p.add_argument("--out", required=True, help="PNG")
    p.add_argument("--classes", type=int, default=3, help="one real and one generated clip of each of the first N classes")
    p.add_argument("--frames", type=int, default=6, help="frames shown per clip, evenly spaced")
    p.set_defaults(func=cmd_strip)

    model = sub.add_parser("model", help="network presets").add_subparsers(dest="action", required=True)
    p = model.add_parser("summary", help="parameters and activations per sample of every network of a preset")
    p.add_argument("preset", help="kinetics128, kinetics128_w3, bdd128, bdd256, ucf101, demo or tiny")
    p.add_argument("--width", type=float, default=1.0, help="scale every channel count (e.g. 0.25)")
    p.set_defaults(func=cmd_model_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # before any import of torch: `--help` and usage errors answer at once

    from cvg.errors import CvgError
    from cvg.train.loop import Interrupted

    try:
        return args.func(args)
    except Interrupted as exc:
        print(f"cvg: {exc}", file=sys.stderr)
        return exc.exit_status
    except CvgError as exc:  # cvg's own errors name the file or key and what to do; anything else is a bug: its traceback shows
        print(f"cvg: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
