"""Option and input checks for components (clear ValueErrors naming the component and the option).

Part of the plugin API (:mod:`zoo.api`); torch is not imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


def check_ints(component: str, minimum: int = 1, **values: int) -> None:
    """Each value is an integer ``>= minimum``."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{component}: {key}={value!r} must be an integer >= {minimum}")


def check_dropout(component: str, dropout: float) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{component}: dropout={dropout!r} must be a number in [0, 1)")


def check_pair_batch(loss: str, text: Tensor, molecule: Tensor) -> None:
    """Row i of ``text`` and ``molecule`` is a positive pair; in-batch negatives need ``B >= 2``."""
    if text.dim() != 2 or text.shape != molecule.shape:
        raise ValueError(
            f"{loss}: expected text and molecule of the same shape [B, d], got "
            f"{tuple(text.shape)} and {tuple(molecule.shape)}"
        )
    if text.shape[0] < 2:
        raise ValueError(f"{loss}: needs a batch of at least 2 pairs for in-batch negatives, got {text.shape[0]}")
