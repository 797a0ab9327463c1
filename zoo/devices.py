"""The device a command runs on: ``auto`` (CUDA when present, else CPU), or a torch device name."""

from __future__ import annotations

import torch

from zoo.errors import RunError


def resolve_device(name: str) -> torch.device:
    """``name`` as a torch device (``auto``: CUDA when present); a clear :class:`RunError` otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise RunError(f"train.device={name!r} is not a device: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"train.device={name!r} but CUDA is not available here; use device=\"auto\" or \"cpu\"")
    return device
