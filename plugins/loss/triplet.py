"""Triplet margin loss with in-batch negative mining.

Row ``i`` of ``text`` and ``molecule`` is a positive pair; every other row of the other modality
is a negative. Per anchor ``i`` with positive distance ``d_p`` and negative distances ``d_n``:

``mining="hard"``
    batch-hard (Hermans et al., 2017; VSE++): ``relu(d_p - min_j d_n + margin)``, averaged
    over anchors.
``mining="semihard"``
    FaceNet: the closest negative that is farther than the positive (``d_p < d_n``); anchors
    without one fall back to their farthest negative (as in TF-Addons'
    ``triplet_semihard_loss``). Averaged over anchors.
``mining="all"``
    batch-all: the mean of ``relu(d_p - d_n + margin)`` over all violating (non-zero)
    triplets; zero when none violates.

``directions="both"`` averages text->molecule and molecule->text anchors. Cosine distance is
``1 - cos`` (inputs are L2-normalised inside); euclidean is the plain L2 distance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.api import check_pair_batch

DISTANCES = ("cosine", "euclidean")
MININGS = ("hard", "semihard", "all")
DIRECTIONS = ("both", "text_to_molecule")


class TripletLoss(nn.Module):
    """``(text [B, d], molecule [B, d]) -> scalar`` triplet loss with in-batch negatives."""

    def __init__(
        self,
        embed_dim: int | None = None,
        margin: float = 0.2,
        distance: str = "cosine",
        mining: str = "hard",
        directions: str = "both",
    ) -> None:
        super().__init__()
        for name, value, choices in (
            ("distance", distance, DISTANCES),
            ("mining", mining, MININGS),
            ("directions", directions, DIRECTIONS),
        ):
            if value not in choices:
                raise ValueError(f"triplet: {name}={value!r} must be one of {', '.join(choices)}")
        if margin < 0:
            raise ValueError(f"triplet: margin={margin} must be >= 0")
        self.margin, self.distance, self.mining, self.directions = margin, distance, mining, directions

    def distances(self, text: Tensor, molecule: Tensor) -> Tensor:
        """``[B, B]`` distances, text rows against molecule columns."""
        with torch.autocast(text.device.type, enabled=False):  # fp32: bf16 ties break semi-hard mining
            text, molecule = text.float(), molecule.float()
            if self.distance == "cosine":
                return 1.0 - F.normalize(text, dim=-1) @ F.normalize(molecule, dim=-1).T
            sq = (text.pow(2).sum(-1, keepdim=True) + molecule.pow(2).sum(-1) - 2.0 * text @ molecule.T)
            return sq.clamp_min(1e-12).sqrt()  # clamp: finite gradient at zero distance

    def forward(self, text: Tensor, molecule: Tensor) -> Tensor:
        check_pair_batch("triplet", text, molecule)
        dist = self.distances(text, molecule)
        loss = self._mine(dist)
        if self.directions == "both":
            loss = 0.5 * (loss + self._mine(dist.T))
        return loss

    def _mine(self, dist: Tensor) -> Tensor:
        """Loss with rows as anchors and columns as candidates (the diagonal is positive)."""
        eye = torch.eye(len(dist), dtype=torch.bool, device=dist.device)
        pos = dist.diagonal().unsqueeze(1)  # [B, 1]
        if self.mining == "hard":
            hardest = dist.masked_fill(eye, float("inf")).amin(dim=1, keepdim=True)
            return F.relu(pos - hardest + self.margin).mean()
        if self.mining == "semihard":
            farther = (dist > pos) & ~eye
            semihard = dist.masked_fill(~farther, float("inf")).amin(dim=1, keepdim=True)
            farthest = dist.masked_fill(eye, float("-inf")).amax(dim=1, keepdim=True)
            neg = torch.where(farther.any(dim=1, keepdim=True), semihard, farthest)
            return F.relu(pos - neg + self.margin).mean()
        losses = F.relu(pos - dist + self.margin).masked_fill(eye, 0.0)
        violating = (losses > 0).sum()
        return losses.sum() / violating.clamp_min(1)
