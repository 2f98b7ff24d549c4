"""Which device a command runs on: the one rule every stage follows."""

from __future__ import annotations

import torch


def device_type(choice: str | None = None) -> str:
    """``cuda`` when a GPU is available and ``choice`` (``--device``) is not ``cpu``; else ``cpu``."""
    return "cuda" if torch.cuda.is_available() and choice != "cpu" else "cpu"
