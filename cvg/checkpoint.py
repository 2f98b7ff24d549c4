"""Checkpoint files: safe loading, atomic saving, stamps, and a trained level's generator.

One module for every reader and writer of ``.pt`` files (training's ``latest.pt`` and final
``level{l}.pt``, BN statistics, sampling): loads are ``torch.load(weights_only=True)`` (tensors
and plain containers only), saves go through ``cvg.atomic`` (a temp file renamed in place, a
clear error naming the file on a full disk). Every saved file carries a digest of its content
(``DIGEST_KEY``: SHA-256 over every tensor's bytes, dtype and shape and every other value, in
key order), checked on every load: a file altered after it was written (flipped bits, a bad disk or
copy) is refused naming it, before any of it is used. A checkpoint carries its stage's stamp
(``cvg.fingerprint``), and ``load_generator`` refuses one of another fingerprint than the config
it is loaded under, naming the settings that differ.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

from cvg.atomic import atomic_path
from cvg.config import Config
from cvg.errors import CvgError
from cvg.fingerprint import Fingerprints, read_stamp
from cvg.models.layers import skipped_orthogonal_init
from cvg.models.presets import build_generator, get_preset


class CheckpointError(CvgError, RuntimeError):
    """A checkpoint file that cannot be trusted: unreadable (truncated, corrupt), altered after it
    was written (its content digest does not match), or not a cvg checkpoint."""


DIGEST_KEY = "content_sha256"


def content_digest(obj) -> str:
    """SHA-256 of a checkpoint's content: tensors by dtype, shape and bytes, containers in key
    order, other values by ``repr``; the same for the state saved and the state loaded back."""
    h = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            h.update(f"dict {len(value)};".encode())
            for key in sorted(value, key=repr):
                feed(key)
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(f"{type(value).__name__} {len(value)};".encode())
            for item in value:
                feed(item)
        else:
            h.update(f"{type(value).__name__} {value!r};".encode())

    feed(obj)
    return h.hexdigest()


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically, with the digest of its content inside (``DIGEST_KEY``);
    a refused write raises ``WriteError`` naming ``path``."""
    obj = {key: value for key, value in obj.items() if key != DIGEST_KEY}
    with atomic_path(path) as tmp:
        torch.save({**obj, DIGEST_KEY: content_digest(obj)}, tmp)


def _foreign(exc: Exception) -> str | None:
    """What torch's safe loader refused (a global or an operation), when it refused one."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return None
    found = re.search(r"(?:Unsupported|unsupported)[^\n]*", text)
    return found.group(0).strip().rstrip(".") if found else "objects other than tensors and plain containers"


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Safe load: tensors and plain containers only (weights_only=True), the content digest
    checked. A missing, truncated, corrupt or altered file, a file written by anything but
    ``save_atomic``, or a pickle that would run code, raises an error that names it and says which."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except pickle.UnpicklingError as exc:
        refused = _foreign(exc)
        if refused is not None:
            raise CheckpointError(f"{path} is not a cvg checkpoint: it holds objects other than tensors and plain containers "
                                  f"({refused}); refused, as loading them could run code") from None
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {_first_line(exc)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt: {_first_line(exc)})") from None
    if not isinstance(state, dict) or DIGEST_KEY not in state:
        raise CheckpointError(f"{path} has no content digest ({DIGEST_KEY}): not a checkpoint written by cvg, "
                              "or written before cvg stored digests; its content cannot be verified")
    stored = state.pop(DIGEST_KEY)
    actual = content_digest(state)
    if stored != actual:
        raise CheckpointError(f"{path} was altered after it was written: its content digest is {actual[:16]}..., "
                              f"the one stored with it {str(stored)[:16]}... (damaged by the disk, a copy or an edit)")
    return state


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    return generator_from_state(config, state, device)


def generator_from_state(config: Config, state: dict, device="cpu") -> torch.nn.Module:
    """A level's generator (eval mode) from a state holding its ``index``, ``n_classes`` and
    weights ``G`` (a level checkpoint, or a level of an exported cascade)."""
    preset = get_preset(config.model.preset, config.model.width)
    with skipped_orthogonal_init():
        g = build_generator(preset, config.levels, int(state["index"]), int(state["n_classes"]), refine=config.model.refine)
    g = g.to(device)
    g.load_state_dict(state["G"])
    return g.eval()


def checkpoint_stamp_of(path: str | os.PathLike):
    """The stamp of a checkpoint file (None when it has none)."""
    return read_stamp(load_checkpoint(Path(path)))
