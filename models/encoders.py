"""Pretrained-encoder front ends for MP2/MP3: a clip as a sequence of segment tokens.

A pretrained encoder reads a clip in fixed segments: MusiCNN in 3 s patches (a 30 s preview gives
10), AST in 10.24 s windows (3). :class:`SegmentEncoder` turns the segments' embeddings into
tokens (layer norm, a linear projection to the transformer width, learned segment positions),
puts [CLS] and any extra tokens (MP2's region token) in front, and runs a few pre-norm blocks of
``models.blocks``; its output ``(B, 1 + E + S, D)`` is the interface of
``models.blocks.SpectrogramEncoder``, so MP2 and MP3 use either unchanged. The region token
therefore meets the audio in these blocks, above the pretrained network.

The segment embeddings come either precomputed (``backbone=None``: input ``(B, S, E_in)``, e.g.
MusiCNN's per-patch 200-d embeddings from the feature store; the encoder is then frozen by
construction) or from a backbone run on every segment inside the forward pass (input
``(B, S, *segment_shape)``), frozen or fine-tuned (``freeze_backbone``), with its own learning
rate (:meth:`SegmentEncoder.param_groups`). Backbones: :class:`MusicnnBackbone` (front-end patches
``(187, 96)`` -> penultimate 200-d) and :class:`ASTBackbone` (a ``transformers.ASTModel``, fbank
windows ``(1024, 128)`` -> its pooled output). Loading weights is the caller's job (no I/O here).

Reads bottom-up: the backbones, the config, then the encoder. Shapes: ``B`` batch, ``S``
segments per clip, ``E_in`` segment-embedding width, ``D`` model width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Block, EncoderConfig, SpectrogramEncoder, init_weights
from .musicnn import Musicnn


class MusicnnBackbone(nn.Module):
    """MusiCNN as a segment backbone: patches ``(N, T, 96)`` -> penultimate embeddings ``(N, 200)``.

    With ``bn_eval`` (default) its batch norms keep the pretrained running statistics in
    training mode too (small fine-tuning batches would otherwise overwrite them); their scale
    and shift still train. The tag classifier lies above the embedding and never trains.
    """

    def __init__(self, musicnn: Musicnn, bn_eval: bool = True) -> None:
        super().__init__()
        self.musicnn = musicnn
        musicnn.classifier.requires_grad_(False)  # the tag layer is not on the embedding's path
        self.bn_eval = bn_eval
        self.out_dim = musicnn.config.backend_units

    def train(self, mode: bool = True) -> MusicnnBackbone:
        super().train(mode)
        if self.bn_eval:
            for m in self.musicnn.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.musicnn(x).embedding  # (N, 200)


class ASTBackbone(nn.Module):
    """A ``transformers.ASTModel`` as a segment backbone: windows ``(N, 1024, 128)`` -> ``(N, H)``.

    The window embedding is AST's pooled output, the mean of its [CLS] and distillation tokens
    after the final layer norm (``pooler_output``), ``H = config.hidden_size`` (768 for
    AST-base).
    """

    def __init__(self, ast_model: nn.Module) -> None:
        super().__init__()
        self.ast = ast_model
        self.out_dim = int(ast_model.config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ast(input_values=x).pooler_output  # (N, H)


@dataclass
class SegmentEncoderConfig:
    """Hyper-parameters of the segment-token encoder.

    Attributes
    ----------
    segment_dim : int
        Width of a segment embedding (MusiCNN: 200; AST-base: 768); with a backbone it must
        equal the backbone's ``out_dim``.
    n_segments : int
        Reference segments per clip (10 MusiCNN patches or 3 AST windows for a 30 s preview):
        the positional table's length; other counts are interpolated.
    dim, n_layers, n_heads : int
        Width, depth and heads of the blocks above the segments.
    mlp_ratio : float
        Hidden width of the MLPs as a multiple of ``dim``.
    dropout : float
        Dropout in the blocks.
    freeze_backbone : bool
        Keep the backbone's weights fixed (no gradient, eval mode) or fine-tune them.
    backbone_lr_scale : float
        The backbone's learning rate as a fraction of the rest's (fine-tuning only).
    """

    segment_dim: int = 200
    n_segments: int = 10
    dim: int = 96
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    freeze_backbone: bool = True
    backbone_lr_scale: float = 0.1

    @classmethod
    def musicnn(cls, **overrides: Any) -> SegmentEncoderConfig:
        """MusiCNN patches of a 30 s clip: 10 segments of 200."""
        return cls(**{"segment_dim": 200, "n_segments": 10, **overrides})

    @classmethod
    def ast(cls, hidden_size: int = 768, **overrides: Any) -> SegmentEncoderConfig:
        """AST windows of a 30 s clip: 3 segments of ``hidden_size``."""
        return cls(**{"segment_dim": hidden_size, "n_segments": 3, **overrides})


class SegmentEncoder(nn.Module):
    """Segment embeddings -> tokens -> [CLS] + extra tokens + segments -> pre-norm blocks.

    ``forward(x, extra)`` with ``x`` the segment embeddings ``(B, S, E_in)`` (no backbone) or
    the segments' inputs ``(B, S, ...)`` (with a backbone), ``extra`` optional tokens
    ``(B, E, D)``; returns the normalised sequence ``(B, 1 + E + S, D)``, [CLS] first.
    """

    def __init__(self, config: SegmentEncoderConfig, backbone: nn.Module | None = None) -> None:
        super().__init__()
        c = config
        if backbone is not None and int(backbone.out_dim) != c.segment_dim:
            raise ValueError(
                f"backbone gives {backbone.out_dim}-d segments, config.segment_dim is {c.segment_dim}"
            )
        self.config = config
        self.backbone = backbone
        self.segment_norm = nn.LayerNorm(c.segment_dim)
        self.segment_proj = nn.Linear(c.segment_dim, c.dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.dim, c.n_segments))  # (1, D, S_ref)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.dim, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(c.dim)
        for m in (self.segment_norm, self.segment_proj, self.blocks, self.ln_f):
            m.apply(init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if backbone is not None and c.freeze_backbone:
            backbone.requires_grad_(False)

    @property
    def backbone_frozen(self) -> bool:
        """True when the backbone is absent (precomputed inputs) or frozen."""
        return self.backbone is None or self.config.freeze_backbone

    def train(self, mode: bool = True) -> SegmentEncoder:
        super().train(mode)
        if self.backbone is not None and self.config.freeze_backbone:
            self.backbone.eval()
        return self

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups: the new layers at ``lr``, a fine-tuned backbone lower.

        Parameters
        ----------
        lr : float
            Learning rate of everything but the backbone.

        Returns
        -------
        list of dict
            ``[{"params": [...], "lr": lr}]`` plus, when the backbone is fine-tuned,
            ``{"params": [...], "lr": lr * backbone_lr_scale}``; frozen parameters are left out.
        """
        own = [p for n, p in self.named_parameters() if not n.startswith("backbone.")]
        groups = [{"params": own, "lr": lr}]
        if not self.backbone_frozen:
            assert self.backbone is not None
            tuned = [p for p in self.backbone.parameters() if p.requires_grad]
            groups.append({"params": tuned, "lr": lr * self.config.backbone_lr_scale})
        return groups

    def segment_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, S, E_in)`` embeddings of the segments (the input itself without a backbone)."""
        if self.backbone is None:
            return x  # (B, S, E_in)
        B, S = x.shape[:2]
        flat = x.reshape(B * S, *x.shape[2:])  # (B*S, ...)
        if self.config.freeze_backbone:
            with torch.no_grad():
                emb = self.backbone(flat)  # (B*S, E_in)
        else:
            emb = self.backbone(flat)  # (B*S, E_in)
        return emb.view(B, S, -1)  # (B, S, E_in)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        seg = self.segment_proj(self.segment_norm(self.segment_embeddings(x)))  # (B, S, D)
        S = seg.shape[1]
        pos = self.pos_embed
        if S != pos.shape[2]:
            pos = F.interpolate(pos, size=S, mode="linear", align_corners=False)  # (1, D, S)
        seg = seg + pos.transpose(1, 2)  # (B, S, D)
        tokens = [self.cls_token.expand(B, -1, -1)]  # [(B, 1, D)]
        if extra is not None:
            tokens.append(extra)  # (B, E, D)
        h = self.drop(torch.cat([*tokens, seg], dim=1))  # (B, 1+E+S, D)
        for block in self.blocks:
            h = block(h)  # (B, 1+E+S, D)
        return self.ln_f(h)


#: Encoder types of MP2/MP3 and the backbone class each accepts (None: the scratch encoder,
#: which reads log-mel spectrograms and takes no backbone).
ENCODER_TYPES: dict[str, type[nn.Module] | None] = {
    "scratch": None,
    "musicnn": MusicnnBackbone,
    "ast": ASTBackbone,
}


def build_encoder(
    encoder_type: str,
    scratch: EncoderConfig,
    segments: SegmentEncoderConfig,
    backbone: nn.Module | None = None,
) -> SpectrogramEncoder | SegmentEncoder:
    """The encoder MP2/MP3 use for ``encoder_type`` (see :data:`ENCODER_TYPES`).

    Parameters
    ----------
    encoder_type : {"scratch", "musicnn", "ast"}
        ``scratch``: :class:`~models.blocks.SpectrogramEncoder` on log-mel spectrograms;
        ``musicnn`` / ``ast``: :class:`SegmentEncoder` on segment embeddings, or on segments
        through ``backbone``.
    scratch : EncoderConfig
        The scratch encoder's configuration.
    segments : SegmentEncoderConfig
        The segment encoder's configuration.
    backbone : nn.Module, optional
        :class:`MusicnnBackbone` or :class:`ASTBackbone` holding pretrained weights; None for
        precomputed segment embeddings (and always for ``scratch``).

    Returns
    -------
    SpectrogramEncoder or SegmentEncoder
        Either returns ``(B, 1 + E + N, D)`` from ``forward(x, extra)``; ``.config.dim`` is D.
    """
    if encoder_type not in ENCODER_TYPES:
        raise ValueError(
            f"encoder_type must be one of {sorted(ENCODER_TYPES)}, not {encoder_type!r}"
        )
    expected = ENCODER_TYPES[encoder_type]
    if expected is None:
        if backbone is not None:
            raise ValueError("the scratch encoder takes no backbone")
        return SpectrogramEncoder(scratch)
    if backbone is not None and not isinstance(backbone, expected):
        raise ValueError(
            f"encoder_type {encoder_type!r} needs a {expected.__name__}, got {type(backbone).__name__}"
        )
    return SegmentEncoder(segments, backbone)
