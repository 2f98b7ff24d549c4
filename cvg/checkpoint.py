"""Checkpoint files: safe loading, atomic saving, stamps, and a trained level's generator.

One module for every reader and writer of ``.pt`` files (training's ``latest.pt`` and final
``level{l}.pt``, BN statistics, sampling): loads are ``torch.load(weights_only=True)`` (tensors
and plain containers only), saves go through ``cvg.atomic`` (a temp file renamed in place, a
clear error naming the file on a full disk). A checkpoint carries its stage's stamp
(``cvg.fingerprint``), and ``load_generator`` refuses one of another fingerprint than the config
it is loaded under, naming the settings that differ.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from cvg.atomic import atomic_path
from cvg.config import Config
from cvg.fingerprint import Fingerprints, read_stamp
from cvg.models.layers import skipped_orthogonal_init
from cvg.models.presets import build_generator, get_preset


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint)."""


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically; a refused write raises ``WriteError`` naming ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Safe load: tensors and plain containers only (weights_only=True); a missing, truncated or
    corrupt file raises an error that names it."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {reason})") from None


def check_stamp(fps: Fingerprints, state: dict, stage: str, path: str | os.PathLike) -> None:
    """``StaleError`` unless the checkpoint ``state`` read from ``path`` is the config's ``stage``."""
    fps.check(read_stamp(state), stage, str(path))


def load_generator(config: Config, path: str | os.PathLike, device="cpu", fps: Fingerprints | None = None) -> torch.nn.Module:
    """A trained level's generator (eval mode) from its final checkpoint; with ``fps`` the
    checkpoint must be that config's ``train{l}`` stage. Built without orthogonal init, which the
    checkpoint's tensors (loaded strictly) overwrite at once: it costs ~14 s for a paper-width
    level 1 on a CPU, at every start of every rank of a later level's job and of sampling."""
    state = load_checkpoint(path, device)
    if fps is not None:
        check_stamp(fps, state, f"train{int(state['index'])}", path)
    preset = get_preset(config.model.preset, config.model.width)
    with skipped_orthogonal_init():
        g = build_generator(preset, config.levels, int(state["index"]), int(state["n_classes"]), refine=config.model.refine)
    g = g.to(device)
    g.load_state_dict(state["G"])
    return g.eval()


def checkpoint_stamp_of(path: str | os.PathLike):
    """The stamp of a checkpoint file (None when it has none)."""
    return read_stamp(load_checkpoint(Path(path)))
