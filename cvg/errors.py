"""The errors cvg expects and explains. Each names the file, key or setting at fault and what to
do; the ``cvg`` command prints one as a single line and exits with status 2. Any other exception
is a bug, and shows its traceback."""

from __future__ import annotations


class CvgError(Exception):
    """Base of every error cvg raises on purpose (config, data, checkpoint, stale state, requests)."""


class InputError(CvgError, ValueError):
    """A request cvg cannot serve as given: a missing input, an option that does not fit the run
    (a sample variant of another cascade, too few checkpoints, BN statistics prepared otherwise)."""


class ToolMissing(CvgError, FileNotFoundError):
    """An external tool or its data is not installed (ffmpeg, the I3D weights)."""
