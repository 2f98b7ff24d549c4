"""Paper tables: the published numbers beside ours (from each experiment's metrics.csv).

Our rows state their evaluation protocol (clip length given to I3D, sample counts), since the
paper evaluates at several lengths (12, 48, 50 frames) and ours at ``metrics.frames``.
"""

from __future__ import annotations

import os

import pandas as pd

from cvg.atomic import write_csv, write_text
from cvg.variants import WINDOWS

METRICS = ("IS", "FID", "FVD")


def _p(model, frames, IS=None, FID=None, FVD=None, note=""):
    return {"source": "paper", "model": model, "eval_frames": frames, "IS": IS, "FID": FID, "FVD": FVD, "note": note}


TABLES: dict[int, dict] = {
    1: {
        "title": "Table 1: Kinetics-600 128x128 (two-level CVG trained on 12/128x128 windows)",
        "experiments": {"CVG 2-level (ours)": "kinetics600"},
        "paper": [
            _p("DVD-GAN 12/128x128", 12, 77.45, 1.16), _p("DVD-GAN 48/128x128", 48, 81.41, 28.44),
            _p("CVG 2-level", 12, 104.00, 2.09, 591.90), _p("CVG 2-level", 48, 77.36, 14.00, 517.21),
        ],
    },
    2: {
        "title": "Table 2: UCF101 16/128x128 (Inception Score)",
        "experiments": {"CVG 2-level (ours)": "ucf101"},
        "paper": [_p("MoCoGAN", 16, 12.42), _p("VideoGPT", 16, 24.69), _p("TGANv2", 16, 28.87), _p("DVD-GAN", 16, 32.97), _p("CVG", 16, 53.72)],
    },
    3: {
        "title": "Table 3: matching discriminator ablation (upsampling level on 3-frame windows for Kinetics)",
        "experiments": {"Kinetics CVG No MD (ours)": "kinetics600_nomd", "Kinetics CVG (ours)": "kinetics600_w3",
                        "BDD100K CVG No MD (ours)": "bdd100k_2level_nomd", "BDD100K CVG (ours)": "bdd100k_2level"},
        "paper": [
            _p("Kinetics CVG No MD", 6, 50.31, 1.62, 594.99), _p("Kinetics CVG", 6, 48.44, 1.06, 565.95),
            _p("Kinetics CVG No MD", 50, 37.81, 42.29, 1037.79), _p("Kinetics CVG", 50, 49.44, 31.87, 790.97),
            _p("BDD100K CVG No MD", 6, None, 1.36, 211.69), _p("BDD100K CVG", 6, None, 1.07, 144.96),
            _p("BDD100K CVG No MD", 50, None, 26.52, 575.51), _p("BDD100K CVG", 50, None, 18.73, 326.78),
        ],
    },
    4: {
        "title": "Table 4: temporal window of the upsampling level (Kinetics-600, 48 frames)",
        "experiments": {"3-frame windows (ours)": "kinetics600_w3", "6-frame windows (ours)": "kinetics600"},
        "paper": [_p("3-frame windows", 48, 58.21, 31.59, 714.74), _p("6-frame windows", 48, 77.36, 14.00, 517.21)],
    },
    5: {
        "title": "Table 5: BDD100K 3-level 256x256 (trained on 12/256x256 windows)",
        "experiments": {"CVG 3-level (ours)": "bdd100k"},
        "paper": [_p("CVG 3-level", 12, None, 3.66, 541.37), _p("CVG 3-level", 48, None, 21.38, 391.69)],
    },
}


def experiments_of(number: int) -> list[str]:
    return list(TABLES[number]["experiments"].values())


def network_notes(group: pd.DataFrame, number: int | None = None) -> list[str]:
    """Where our networks differ from the paper's, for the row's note: FID on the Kinetics-400
    I3D (the paper's is trained on Kinetics-600); UCF101's IS from the Kinetics-400 I3D (the
    literature's Table 2 numbers use a C3D fine-tuned on UCF101)."""
    nets = dict(zip(group["metric"], group.get("network", pd.Series(["unrecorded"] * len(group), index=group.index))))
    notes = []
    if "(the paper:" in str(nets.get("FID", "")) or nets.get("FID") == "unrecorded":
        notes.append("FID on the Kinetics-400 I3D, not the paper's Kinetics-600 one")
    if number == 2:
        notes.append("IS of the Kinetics-400 I3D, not the C3D fine-tuned on UCF101 behind the literature's numbers: not comparable")
    return notes


def our_rows(label: str, metrics: pd.DataFrame, number: int | None = None) -> list[dict]:
    """One row per evaluated clip length of the experiment's cascade; the note states the
    protocol, and where our networks differ from the paper's."""
    cascade = metrics[metrics["model"] == "cascade"]
    if cascade.empty:
        raise ValueError(f"{label}: metrics table has no 'cascade' rows")
    longest = int(cascade["frames"].max())
    rows = []
    for model, name in (("cascade", label), (WINDOWS, f"{label}, training setup")):
        for frames, group in metrics[metrics["model"] == model].groupby("frames", sort=True):
            values = dict(zip(group["metric"], group["value"]))
            first = group.iloc[0]
            how = ("random windows of the level below at every upsampling level, as trained (the paper's training-length rows)" if model == WINDOWS
                   else f"first {frames} frames of the {longest}-frame unroll" if frames < longest else "the whole unroll")
            note = "; ".join([how, f"{first['protocol']}; n={int(first['n_samples'])}", *network_notes(group, number)])
            rows.append({"source": "ours", "model": name, "eval_frames": int(frames), **{m: values.get(m) for m in METRICS}, "note": note})
    return rows


def render(number: int, metrics_paths: dict[str, str], out_csv: str | os.PathLike, out_md: str | os.PathLike) -> pd.DataFrame:
    spec = TABLES[number]
    rows = list(spec["paper"])
    for label, experiment in spec["experiments"].items():
        rows += our_rows(label, pd.read_csv(metrics_paths[experiment]), number)
    table = pd.DataFrame(rows, columns=["source", "model", "eval_frames", *METRICS, "note"])
    write_csv(table, out_csv)
    write_text(out_md, f"# {spec['title']}\n\n{markdown_table(table)}")
    return table


def markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |\n|" + "---|" * len(table.columns) + "\n"
    return header + "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in table.itertuples(index=False))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "N/A"
    return f"{value:.2f}" if isinstance(value, float) else str(value)
