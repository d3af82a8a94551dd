"""MP3: encoder-decoder predicting the log1p stream curve over the H periods since debut.

Reads bottom-up: the curve decoder, the config, then the model. Pure torch, no I/O.
The encoder is MP2's (``models.blocks.SpectrogramEncoder``) and can start from MP2's
fine-tuned weights (``MP3.load_encoder``). Targets are standardised by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DecoderBlock, EncoderConfig, init_weights, masked_mse
from .encoders import SegmentEncoderConfig, build_encoder


class CurveDecoder(nn.Module):
    """Transformer decoder over ``H`` learned period queries, conditioned on region.

    Each region's query set is ``period_queries + region_embedding``; the queries attend to each
    other (within the region) and to the clip's encoder tokens; a linear head reads two values
    per period: the log1p streams and the logit that the track is on the chart then.
    """

    def __init__(
        self,
        dim: int,
        horizon: int,
        n_regions: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
    ) -> None:
        super().__init__()
        self.period_queries = nn.Parameter(torch.zeros(1, 1, horizon, dim))  # (1, 1, H, D)
        self.region_emb = nn.Embedding(n_regions, dim)
        self.blocks = nn.ModuleList(
            DecoderBlock(dim, n_heads, mlp_ratio, dropout) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 2)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.period_queries, std=0.02)
        nn.init.normal_(self.region_emb.weight, std=0.02)

    def forward(self, memory: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        B = memory.shape[0]
        emb = self.region_emb(region)  # (B, R, D) or (R, D)
        if emb.dim() == 2:
            emb = emb[None].expand(B, -1, -1)  # (B, R, D)
        q = self.period_queries + emb[:, :, None, :]  # (B, R, H, D)
        for block in self.blocks:
            q = block(q, memory)  # (B, R, H, D)
        return self.head(self.ln_f(q))  # (B, R, H, 2)


@dataclass
class MP3Config:
    """Hyper-parameters of MP3 (see docs/models.md for what each variant costs).

    Attributes
    ----------
    n_regions : int
        Size of the region vocabulary (the estimator sets it from its region list).
    horizon : int
        Periods ``H`` of the curve (the estimator sets it from the ``curve_*`` columns).
    n_decoder_layers, decoder_heads : int
        Depth and heads of the curve decoder.
    smoothness_weight : float
        Weight of the smoothness regulariser (mean squared second difference of the predicted
        curve); 0 turns it off.
    presence_weight : float
        Weight of the on-chart term: binary cross-entropy of the per-period on-chart logit
        against "the period is observed" (under the ``missing`` null policy a NaN period is off
        the chart), over the (track, region) pairs that have targets; 0 turns it off.
    init_from_mp2 : bool
        Start the encoder from MP2's fine-tuned encoder weights when the caller has them.
    encoder : EncoderConfig
        The shared spectrogram encoder (must match MP2's to load its weights).
    encoder_type : {"scratch", "musicnn", "ast"}
        As in :class:`~models.mp2.MP2Config` (default ``scratch``).
    segments : SegmentEncoderConfig
        The segment encoder (``musicnn`` / ``ast`` only; must match MP2's to load its weights).
    """

    n_regions: int = 1
    horizon: int = 26
    n_decoder_layers: int = 2
    decoder_heads: int = 4
    smoothness_weight: float = 0.0
    presence_weight: float = 0.2
    init_from_mp2: bool = True
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    encoder_type: Literal["scratch", "musicnn", "ast"] = "scratch"
    segments: SegmentEncoderConfig = field(default_factory=SegmentEncoderConfig)


class MP3(nn.Module):
    """Encoder-decoder predicting the standardised log1p curve ``(H,)`` per region.

    ``forward(x, region, targets)``: ``x`` log-mel ``(B, M, T)``; ``region`` ``(B,)`` region
    indices, or None for every region (from one encoder pass). ``preds`` is ``(B, H, 2)``
    (``(B, R, H, 2)`` for every region): ``[..., 0]`` the standardised log1p curve, ``[..., 1]``
    the on-chart logit. ``targets`` is ``(B, H)`` (``(B, R, H)``), NaN where unobserved: masked
    out of the MSE, and read as "off the chart" by the on-chart term where the row has any
    observed period. Returns ``(preds, loss)``; loss is None without targets.
    """

    shares_encoder = True

    def __init__(self, config: MP3Config, backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = build_encoder(c.encoder_type, c.encoder, c.segments, backbone)
        e = self.encoder.config
        self.decoder = CurveDecoder(
            e.dim,
            c.horizon,
            c.n_regions,
            c.n_decoder_layers,
            c.decoder_heads,
            e.mlp_ratio,
            e.dropout,
        )

    def load_encoder(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Initialise the encoder from MP2's (``MP2.encoder.state_dict()``); shapes must match."""
        self.encoder.load_state_dict(state_dict)

    def predict_all_regions(self, x: torch.Tensor) -> torch.Tensor:
        """Curves and on-chart logits for every region, ``(B, R, H, 2)``, one encoder pass."""
        memory = self.encoder(x)  # (B, 1+N, D)
        regions = torch.arange(self.config.n_regions, device=x.device)  # (R,)
        return self.decoder(memory, regions)  # (B, R, H, 2)

    def forward(
        self,
        x: torch.Tensor,
        region: torch.Tensor | None,
        targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if region is None:
            preds = self.predict_all_regions(x)  # (B, R, H, 2)
        else:
            memory = self.encoder(x)  # (B, 1+N, D)
            preds = self.decoder(memory, region[:, None]).squeeze(1)  # (B, H, 2)
        if targets is None:
            return preds, None
        curve, logit = preds[..., 0], preds[..., 1]  # (..., H) each
        loss = masked_mse(curve, targets)
        if self.config.smoothness_weight > 0:
            d2 = curve[..., 2:] - 2 * curve[..., 1:-1] + curve[..., :-2]  # (..., H-2)
            loss = loss + self.config.smoothness_weight * d2.pow(2).mean()
        if self.config.presence_weight > 0:
            observed = ~torch.isnan(targets)  # (..., H)
            has_row = observed.any(dim=-1, keepdim=True).expand_as(observed)  # (..., H)
            bce = F.binary_cross_entropy_with_logits(logit, observed.float(), reduction="none")
            bce = torch.where(has_row, bce, torch.zeros_like(bce))  # (..., H)
            loss = loss + self.config.presence_weight * bce.sum() / has_row.sum().clamp(min=1)
        return preds, loss
