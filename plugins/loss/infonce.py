"""Symmetric InfoNCE (CLIP) loss over in-batch cosine similarities with a learnable temperature.

Row ``i`` of ``text`` and ``molecule`` is a positive pair; every other row of the other modality
is a negative. Both are L2-normalised, ``logits = scale * text @ molecule.T`` and the loss is the
cross-entropy of each row against its diagonal (``directions="text_to_molecule"``), averaged
with the same over columns (molecule->text) for ``directions="both"`` (Radford et al., 2021).

The scale is ``exp(logit_scale)`` with ``logit_scale`` initialised to ``log(1 / temperature)``
and, as in CLIP, capped at 100 (``logit_scale <= log 100``; the cap is applied in the forward
pass, so the parameter stops receiving gradient while above it). ``logit_scale`` is a 0-dim
tensor: timm's optimizer factory then leaves it out of weight decay, like CLIP. With
``learnable=False`` it is a buffer (saved in checkpoints, never trained).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.api import check_pair_batch

DIRECTIONS = ("both", "text_to_molecule")
MAX_LOGIT_SCALE = 100.0


class InfoNCELoss(nn.Module):
    """``(text [B, d], molecule [B, d]) -> scalar`` symmetric InfoNCE with in-batch negatives."""

    def __init__(
        self,
        embed_dim: int | None = None,
        temperature: float = 0.07,
        learnable: bool = True,
        directions: str = "both",
    ) -> None:
        super().__init__()
        if directions not in DIRECTIONS:
            raise ValueError(f"infonce: directions={directions!r} must be one of {', '.join(DIRECTIONS)}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            1.0 / MAX_LOGIT_SCALE <= temperature
        ) or not math.isfinite(temperature):
            raise ValueError(
                f"infonce: temperature={temperature!r} must be a finite number >= {1.0 / MAX_LOGIT_SCALE} "
                f"(the logit scale 1/temperature is capped at {MAX_LOGIT_SCALE:g}, as in CLIP)"
            )
        if not isinstance(learnable, bool):
            raise ValueError(f"infonce: learnable={learnable!r} must be true or false")
        self.directions = directions
        self.learnable = learnable
        init = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)

    @property
    def scale(self) -> Tensor:
        """The (capped) multiplier of the cosine similarities, ``1 / temperature``."""
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    @property
    def temperature(self) -> float:
        """The current temperature, for logging."""
        return float(1.0 / self.scale.detach())

    def logits(self, text: Tensor, molecule: Tensor) -> Tensor:
        """``[B, B]`` scaled cosine similarities, text rows against molecule columns."""
        with torch.autocast(text.device.type, enabled=False):  # fp32 logits: bf16 spacing is 0.5 near 100
            return self.scale * (F.normalize(text.float(), dim=-1) @ F.normalize(molecule.float(), dim=-1).T)

    def forward(self, text: Tensor, molecule: Tensor) -> Tensor:
        check_pair_batch("infonce", text, molecule)
        logits = self.logits(text, molecule).float()  # softmax in fp32 under autocast
        target = torch.arange(len(logits), device=logits.device)
        loss = F.cross_entropy(logits, target)
        if self.directions == "both":
            loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
        return loss
