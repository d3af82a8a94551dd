"""MP2: spectrogram transformer with region conditioning, regressing log1p sum and debut.

Reads bottom-up: the region-joint head, the config, then the model. Pure torch, no I/O.
Targets are standardised by the caller; the model predicts ``K`` standardised columns
(``log1p_charted_sum``, ``log1p_debut``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from .blocks import (
    EncoderConfig,
    init_weights,
    masked_mse,
    pairwise_ranking_loss,
)
from .encoders import SegmentEncoderConfig, build_encoder


class JointHead(nn.Module):
    """MLP over ``[pooled clip representation ; region embedding]`` -> ``K`` targets."""

    def __init__(self, dim: int, region_dim: int, hidden: int, n_targets: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim + region_dim, hidden), nn.GELU(), nn.Linear(hidden, n_targets)
        )

    def forward(self, pooled: torch.Tensor, region_emb: torch.Tensor) -> torch.Tensor:
        z = torch.cat([pooled, region_emb], dim=-1)  # (..., D + Dr)
        return self.net(z)  # (..., K)


@dataclass
class MP2Config:
    """Hyper-parameters of MP2 (see docs/models.md for what each variant costs).

    Attributes
    ----------
    n_regions : int
        Size of the region vocabulary (the estimator sets it from its region list).
    n_targets : int
        Regression heads (log1p sum, log1p debut).
    conditioning : {"token", "joint"}
        ``token``: a learned region token sits beside [CLS] in the encoder, so the audio is
        read in the light of the region, at one encoder pass per (clip, region).
        ``joint``: the region embedding is joined to the pooled [CLS] output in the head, so
        one encoder pass per clip predicts every region (``predict_all_regions``).
    region_dim : int
        Width of the region embedding in ``joint`` mode (``token`` mode uses the encoder width).
    head_hidden : int
        Hidden width of the ``joint`` head.
    ranking_weight : float
        Weight of the pairwise ranking loss (Yu et al. 2017) added to the MSE; 0 turns it off.
    encoder : EncoderConfig
        The shared spectrogram encoder (``encoder_type="scratch"``).
    encoder_type : {"scratch", "musicnn", "ast"}
        ``scratch`` (default): the spectrogram encoder trained from scratch on log-mel input
        ``(B, M, T)``; ``musicnn`` / ``ast``: ``models.encoders.SegmentEncoder`` over pretrained
        segment embeddings ``(B, S, E)``, or over segments run through the ``backbone`` given to
        :class:`MP2` (MusiCNN patches ``(B, S, 187, 96)``, AST windows ``(B, S, 1024, 128)``).
    segments : SegmentEncoderConfig
        The segment encoder (``musicnn`` / ``ast`` only).
    """

    n_regions: int = 1
    n_targets: int = 2
    conditioning: Literal["token", "joint"] = "joint"
    region_dim: int = 32
    head_hidden: int = 128
    ranking_weight: float = 0.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    encoder_type: Literal["scratch", "musicnn", "ast"] = "scratch"
    segments: SegmentEncoderConfig = field(default_factory=SegmentEncoderConfig)


class MP2(nn.Module):
    """Spectrogram transformer predicting standardised log1p sum and debut per region.

    ``forward(x, region, targets)``: ``x`` log-mel ``(B, M, T)``; ``region`` ``(B,)`` region
    indices, or None for every region (``preds`` then ``(B, R, K)``); ``targets`` the same
    shape as ``preds`` with NaN where unobserved. Returns ``(preds, loss)``; loss is None
    without targets.
    """

    def __init__(self, config: MP2Config, backbone: nn.Module | None = None) -> None:
        super().__init__()
        if config.conditioning not in ("token", "joint"):
            raise ValueError(
                f"conditioning must be 'token' or 'joint', not {config.conditioning!r}"
            )
        self.config = config
        c = config
        self.encoder = build_encoder(c.encoder_type, c.encoder, c.segments, backbone)
        D = self.encoder.config.dim
        if c.conditioning == "token":
            self.region_emb = nn.Embedding(c.n_regions, D)
            self.head = nn.Linear(D, c.n_targets)
        else:
            self.region_emb = nn.Embedding(c.n_regions, c.region_dim)
            self.head = JointHead(D, c.region_dim, c.head_hidden, c.n_targets)
        for m in (self.region_emb, self.head):
            m.apply(init_weights)
        nn.init.normal_(self.region_emb.weight, std=0.02)

    @property
    def shares_encoder(self) -> bool:
        """True when one encoder pass per clip serves every region (``joint`` mode)."""
        return self.config.conditioning == "joint"

    def predict_all_regions(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions for every region, ``(B, R, K)``; one encoder pass in ``joint`` mode."""
        B = x.shape[0]
        R = self.config.n_regions
        if self.config.conditioning == "joint":
            pooled = self.encoder(x)[:, 0]  # (B, D)
            pooled = pooled[:, None, :].expand(B, R, -1)  # (B, R, D)
            emb = self.region_emb.weight[None].expand(B, R, -1)  # (B, R, Dr)
            return self.head(pooled, emb)  # (B, R, K)
        out = [self._token_forward(x, torch.full((B,), r, device=x.device)) for r in range(R)]
        return torch.stack(out, dim=1)  # (B, R, K)

    def _token_forward(self, x: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        extra = self.region_emb(region)[:, None, :]  # (B, 1, D)
        h = self.encoder(x, extra)  # (B, 2+N, D)
        return self.head(h[:, 0])  # (B, K)

    def forward(
        self,
        x: torch.Tensor,
        region: torch.Tensor | None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if region is None:
            preds = self.predict_all_regions(x)  # (B, R, K)
        elif self.config.conditioning == "joint":
            pooled = self.encoder(x)[:, 0]  # (B, D)
            preds = self.head(pooled, self.region_emb(region))  # (B, K)
        else:
            preds = self._token_forward(x, region)  # (B, K)
        if targets is None:
            return preds, None
        loss = masked_mse(preds, targets)
        if self.config.ranking_weight > 0:
            K = preds.shape[-1]
            if region is None:
                B, R = preds.shape[:2]
                groups = torch.arange(R, device=x.device).repeat(B)  # (B*R,)
            else:
                groups = region  # (B,)
            rank = pairwise_ranking_loss(preds.reshape(-1, K), targets.reshape(-1, K), groups)
            loss = loss + self.config.ranking_weight * rank
        return preds, loss
