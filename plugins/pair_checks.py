"""Input checks shared by the retrieval losses."""

from __future__ import annotations

from torch import Tensor


def check_pair_batch(loss: str, text: Tensor, molecule: Tensor) -> None:
    """Row i of ``text`` and ``molecule`` is a positive pair; in-batch negatives need ``B >= 2``."""
    if text.dim() != 2 or text.shape != molecule.shape:
        raise ValueError(
            f"{loss}: expected text and molecule of the same shape [B, d], got "
            f"{tuple(text.shape)} and {tuple(molecule.shape)}"
        )
    if text.shape[0] < 2:
        raise ValueError(f"{loss}: needs a batch of at least 2 pairs for in-batch negatives, got {text.shape[0]}")
