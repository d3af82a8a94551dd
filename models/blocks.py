"""Shared spectrogram-transformer blocks (AST-style encoder) used by MP2 and MP3.

Reads bottom-up: attention and MLP, the pre-norm encoder and decoder blocks, the patch and
positional embeddings, the encoder config, then the encoder itself. Pure torch, no I/O.

Shapes: ``B`` batch, ``M`` mel bins, ``T`` frames, ``F``/``P`` patch-grid rows/columns
(frequency/time), ``N = F*P`` patches, ``D`` model width, ``R`` regions, ``H`` curve periods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        B, T, D = x.shape
        S = context.shape[1]
        h = self.n_heads
        q = self.q(x).view(B, T, h, D // h).transpose(1, 2)  # (B, h, T, D/h)
        k, v = self.kv(context).split(D, dim=2)  # (B, S, D) each
        k = k.view(B, S, h, D // h).transpose(1, 2)  # (B, h, S, D/h)
        v = v.view(B, S, h, D // h).transpose(1, 2)  # (B, h, S, D/h)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)  # (B, h, T, D/h)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Position-wise feed-forward network with GELU."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden)
        self.proj = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (..., D)


class Block(nn.Module):
    """Pre-norm transformer encoder block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, S, D)
        x = x + self.mlp(self.ln_2(x))  # (B, S, D)
        return x


class DecoderBlock(nn.Module):
    """Pre-norm transformer decoder block over per-region query sets.

    Self-attention runs within each region's ``H`` queries; cross-attention lets all ``R*H``
    queries of a clip attend to the clip's encoder tokens at once, so the encoder's keys and
    values are computed once per clip however many regions are decoded.
    """

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, n_heads, dropout)
        self.ln_3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, R, H, D = q.shape
        s = q.reshape(B * R, H, D)  # (B*R, H, D)
        s = s + self.self_attn(self.ln_1(s))  # (B*R, H, D)
        c = s.reshape(B, R * H, D)  # (B, R*H, D)
        c = c + self.cross_attn(self.ln_2(c), memory)  # (B, R*H, D)
        c = c + self.mlp(self.ln_3(c))  # (B, R*H, D)
        return c.view(B, R, H, D)


def patch_grid(n_mels: int, n_frames: int, patch_size: int, stride: int) -> tuple[int, int]:
    """Size ``(F, P)`` of the patch grid that a ``(n_mels, n_frames)`` input gives.

    Parameters
    ----------
    n_mels, n_frames : int
        Input height (mel bins) and width (frames).
    patch_size, stride : int
        Square patch side and the stride between patches (both axes).

    Returns
    -------
    tuple of int
        Patch rows (frequency) and columns (time).
    """
    if n_mels < patch_size or n_frames < patch_size:
        raise ValueError(
            f"input of {n_mels} mel bins x {n_frames} frames is smaller than one "
            f"{patch_size}x{patch_size} patch"
        )
    return (n_mels - patch_size) // stride + 1, (n_frames - patch_size) // stride + 1


class PatchEmbed(nn.Module):
    """AST patch embedding: a ``patch_size`` square conv with ``stride`` over the log-mel image."""

    def __init__(self, out_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, out_dim, kernel_size=patch_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x.unsqueeze(1))  # (B, out_dim, F, P)
        return x


class PositionalEmbedding(nn.Module):
    """Learned positional embeddings on the patch grid of the reference input size.

    Inputs of another length (or height) get the grid resized by bilinear interpolation,
    so a model trained on 4 s crops also reads 3 s or 10 s inputs.
    """

    def __init__(self, dim: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.weight = nn.Parameter(torch.zeros(1, dim, *grid))  # (1, dim, F, P)
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, grid: tuple[int, int]) -> torch.Tensor:
        w = self.weight
        if tuple(grid) != self.grid:
            w = F.interpolate(
                w, size=grid, mode="bilinear", align_corners=False
            )  # (1, dim, F', P')
        return w


@dataclass
class EncoderConfig:
    """Hyper-parameters of the shared spectrogram encoder.

    Attributes
    ----------
    n_mels : int
        Mel bins of the input (AST front end: 128).
    n_frames : int
        Reference input length in 10 ms frames: the positional grid is learned for this length
        and training crops have it; other lengths are interpolated.
    patch_size : int
        Side of the square patches (AST: 16).
    stride : int
        Patch stride on both axes (AST: 10, an overlap of 6; 16 means no overlap, ~2.5x fewer
        tokens and ~6x less attention compute).
    dim, n_layers, n_heads : int
        Transformer width, depth and heads (AST-base: 768, 12, 12).
    mlp_ratio : float
        Hidden width of the MLPs as a multiple of ``dim``.
    dropout : float
        Dropout in attention and MLP outputs.
    pos_mode : {"add", "concat"}
        ``add``: positional embeddings (width ``dim``) are added to the patch embeddings (AST);
        ``concat``: patches are projected to ``dim - pos_dim`` and ``pos_dim`` positional
        channels are concatenated to them.
    pos_dim : int
        Positional channels in ``concat`` mode.
    """

    n_mels: int = 128
    n_frames: int = 400
    patch_size: int = 16
    stride: int = 16
    dim: int = 96
    n_layers: int = 3
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    pos_mode: Literal["add", "concat"] = "add"
    pos_dim: int = 32


class SpectrogramEncoder(nn.Module):
    """AST-style encoder: patches + positions, a [CLS] token, optional extra tokens, blocks.

    ``forward(x, extra)`` returns the normalised token sequence ``(B, 1 + E + N, D)``:
    [CLS] first, then the ``E`` extra tokens (e.g. MP2's region token), then the patches.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if config.pos_mode not in ("add", "concat"):
            raise ValueError(f"pos_mode must be 'add' or 'concat', not {config.pos_mode!r}")
        if config.pos_mode == "concat" and not 0 < config.pos_dim < config.dim:
            raise ValueError(f"pos_dim {config.pos_dim} must lie in (0, dim={config.dim})")
        self.config = config
        c = config
        patch_dim = c.dim if c.pos_mode == "add" else c.dim - c.pos_dim
        pos_dim = c.dim if c.pos_mode == "add" else c.pos_dim
        self.patch_embed = PatchEmbed(patch_dim, c.patch_size, c.stride)
        self.pos_embed = PositionalEmbedding(
            pos_dim, patch_grid(c.n_mels, c.n_frames, c.patch_size, c.stride)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(
            Block(c.dim, c.n_heads, c.mlp_ratio, c.dropout) for _ in range(c.n_layers)
        )
        self.ln_f = nn.LayerNorm(c.dim)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        p = self.patch_embed(x)  # (B, Dp, F, P)
        pos = self.pos_embed(tuple(p.shape[2:]))  # (1, Dq, F, P)
        if self.config.pos_mode == "add":
            p = p + pos  # (B, D, F, P)
        else:
            p = torch.cat([p, pos.expand(B, -1, -1, -1)], dim=1)  # (B, D, F, P)
        p = p.flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = [self.cls_token.expand(B, -1, -1)]  # [(B, 1, D)]
        if extra is not None:
            tokens.append(extra)  # (B, E, D)
        h = self.drop(torch.cat([*tokens, p], dim=1))  # (B, 1+E+N, D)
        for block in self.blocks:
            h = block(h)  # (B, 1+E+N, D)
        return self.ln_f(h)


def init_weights(module: nn.Module) -> None:
    """ViT/AST initialisation: truncated normal (std 0.02) linear weights, zero biases."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def masked_mse(preds: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries of ``targets`` that are not NaN.

    Parameters
    ----------
    preds, targets : torch.Tensor
        Same shape; NaN targets (unobserved) add nothing to the loss or its gradient.

    Returns
    -------
    torch.Tensor
        Scalar loss; 0 (still differentiable) when nothing is observed.
    """
    mask = ~torch.isnan(targets)
    diff = torch.where(mask, preds - torch.nan_to_num(targets), torch.zeros_like(preds))
    return diff.pow(2).sum() / mask.sum().clamp(min=1)


def pairwise_ranking_loss(
    preds: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Pairwise logistic ranking loss (Yu et al. 2017) within groups (regions).

    For every pair ``(i, j)`` in one group whose observed targets differ, the loss is
    ``softplus(-sign(y_i - y_j) * (p_i - p_j))``, averaged over pairs and target columns.

    Parameters
    ----------
    preds, targets : torch.Tensor
        ``(N, K)``; NaN targets are skipped.
    groups : torch.Tensor
        ``(N,)`` integer group of each row; only rows of one group are compared.

    Returns
    -------
    torch.Tensor
        Scalar loss (0 when no pair qualifies).
    """
    same = groups[:, None] == groups[None, :]  # (N, N)
    dp = preds[:, None, :] - preds[None, :, :]  # (N, N, K)
    dy = targets[:, None, :] - targets[None, :, :]  # (N, N, K)
    valid = same[..., None] & ~torch.isnan(dy) & (dy != 0)  # (N, N, K)
    loss = F.softplus(-torch.sign(torch.nan_to_num(dy)) * dp)  # (N, N, K)
    n = valid.sum()
    return torch.where(valid, loss, torch.zeros_like(loss)).sum() / n.clamp(min=1)


def cosine_with_warmup(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0.

    Parameters
    ----------
    step : int
        Optimiser step (0-based).
    warmup_steps, total_steps : int
        Length of the warm-up and of the whole schedule.

    Returns
    -------
    float
        The factor to multiply the base learning rate by.
    """
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
