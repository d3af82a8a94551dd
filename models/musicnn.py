"""MusiCNN and the VGG baseline of Pons & Serra (2019), ported from the ``musicnn`` package.

Pure torch, no I/O: the pretrained weights (MSD and MagnaTagATune, 50 tags each) are converted
from the TensorFlow checkpoints inside the ``musicnn`` wheel by
``musicpop.features.musicnn_weights``, which also maps every TensorFlow variable to the names
below. Reads bottom-up: the conv/batch-norm/pool blocks, the config, MusiCNN, then the VGG.

Input: a batch of front-end patches ``(B, T, M)``, ``T`` frames of 16 ms (3 s = 187 frames) by
``M = 96`` mel bands of ``log10(10000 x + 1)`` (``features.musicnn_frontend``). Output: a
:class:`TaggerOutput` with the tag logits ``(B, 50)`` (``sigmoid`` gives the probabilities the
original reports) and the embedding: for MusiCNN the *penultimate* layer of the original
(``bn_dense``: dense 1506 -> 200, ReLU, batch norm; 200 values per patch), for the VGG the
flattened last pooling layer (``pool5``; 256 values for a 3 s patch).

Port details (each checked against TensorFlow, ``tests/test_musicnn.py``): TensorFlow's layout
is ``(B, T, M, C)``, ours ``(B, C, T, M)``; batch norm runs in eval mode with epsilon 1e-3 and
comes *after* the ReLU; the timbral convs (7 x 38 and 7 x 67, valid) see the input padded by 3
frames on each side; the temporal convs (128/64/32 x 1) pad like TensorFlow's ``same`` (the odd
frame at the end); every front-end branch is max-pooled over all its frequency rows; the mid-end
adds residuals; the back end interleaves max- and mean-pooled features
(``[max_0, mean_0, max_1, mean_1, ...]``, 1506 values) as TensorFlow's flatten of
``concat([max, mean], axis=2)`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class TaggerOutput(NamedTuple):
    """Tag logits ``(B, n_tags)`` and the embedding ``(B, D)`` of each input patch."""

    logits: torch.Tensor
    embedding: torch.Tensor


def tf_same_padding(kernel: int) -> tuple[int, int]:
    """Padding ``(before, after)`` of TensorFlow's ``same`` for stride 1 (odd frame after)."""
    total = kernel - 1
    return total // 2, total - total // 2


class FrequencyPooledConv(nn.Module):
    """Conv over (time, mel) -> ReLU -> batch norm -> max over every remaining mel row.

    The time axis is padded with zeros by ``time_padding`` frames before and after (the input is
    already batch-normalised, so zeros are the normalised mean, as in the original).
    """

    def __init__(
        self,
        out_channels: int,
        kernel: tuple[int, int],
        time_padding: tuple[int, int],
        eps: float,
    ) -> None:
        super().__init__()
        self.time_padding = time_padding
        self.conv = nn.Conv2d(1, out_channels, kernel_size=kernel)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 0, *self.time_padding))  # (B, 1, T + pad, M)
        x = self.bn(F.relu(self.conv(x)))  # (B, C, T, M')
        return x.amax(dim=3)  # (B, C, T)


class MidEndConv(nn.Module):
    """Mid-end layer: a conv over 7 frames and every channel (valid, after padding 3) -> ReLU -> BN."""

    def __init__(self, in_channels: int, out_channels: int, eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=7)
        self.bn = nn.BatchNorm1d(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (3, 3))  # (B, C_in, T + 6)
        return self.bn(F.relu(self.conv(x)))  # (B, C_out, T)


@dataclass
class MusicnnConfig:
    """Hyper-parameters of MusiCNN (defaults: the ``MSD_musicnn`` / ``MTT_musicnn`` models).

    Attributes
    ----------
    n_mels : int
        Mel bands of the input (96); the timbral kernels span 40% and 70% of them.
    n_tags : int
        Output tags (50 for both the MSD and the MTT models).
    timbral_filters, temporal_filters : int
        Filters of each timbral (``int(1.6 * 128)``) and temporal (``int(1.6 * 32)``) branch.
    temporal_kernels : tuple of int
        Lengths in frames of the three temporal branches.
    midend_filters : int
        Filters of the three mid-end layers (64; ``MSD_musicnn_big``: 512).
    backend_units : int
        Width of the penultimate dense layer, i.e. of the embedding (200; big: 500).
    dropout : float
        Dropout before each dense layer (training only).
    bn_eps : float
        Batch-norm epsilon (TensorFlow's default, 1e-3).
    """

    n_mels: int = 96
    n_tags: int = 50
    timbral_filters: int = 204
    temporal_filters: int = 51
    temporal_kernels: tuple[int, ...] = (128, 64, 32)
    midend_filters: int = 64
    backend_units: int = 200
    dropout: float = 0.5
    bn_eps: float = 1e-3

    @property
    def frontend_channels(self) -> int:
        """Channels the front end hands to the mid-end (561 by default)."""
        return 2 * self.timbral_filters + len(self.temporal_kernels) * self.temporal_filters

    @property
    def pooled_features(self) -> int:
        """Features of each of max- and mean-pooling in the back end (753 by default)."""
        return self.frontend_channels + 3 * self.midend_filters


class Musicnn(nn.Module):
    """MusiCNN: musically motivated front end, dense mid-end, temporal-pooling back end.

    ``forward(x)`` takes patches ``(B, T, M)`` (any ``T`` >= 1; the pretrained models saw 187
    frames) and returns :class:`TaggerOutput` ``(logits (B, n_tags), embedding (B, 200))``.
    """

    def __init__(self, config: MusicnnConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input_bn = nn.BatchNorm2d(1, eps=c.bn_eps)
        self.timbral = nn.ModuleList(
            FrequencyPooledConv(c.timbral_filters, (7, int(share * c.n_mels)), (3, 3), c.bn_eps)
            for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(
            FrequencyPooledConv(c.temporal_filters, (k, 1), tf_same_padding(k), c.bn_eps)
            for k in c.temporal_kernels
        )
        self.midend = nn.ModuleList(
            MidEndConv(
                c.frontend_channels if i == 0 else c.midend_filters, c.midend_filters, c.bn_eps
            )
            for i in range(3)
        )
        self.pool_bn = nn.BatchNorm1d(2 * c.pooled_features, eps=c.bn_eps)
        self.dense = nn.Linear(2 * c.pooled_features, c.backend_units)
        self.dense_bn = nn.BatchNorm1d(c.backend_units, eps=c.bn_eps)
        self.classifier = nn.Linear(c.backend_units, c.n_tags)
        self.dropout = nn.Dropout(c.dropout)

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """Timbral and temporal branches, concatenated: ``(B, T, M)`` -> ``(B, 561, T)``."""
        x = self.input_bn(x.unsqueeze(1))  # (B, 1, T, M)
        branches = [block(x) for block in (*self.timbral, *self.temporal)]  # [(B, C_i, T)]
        return torch.cat(branches, dim=1)  # (B, 561, T)

    def midend_features(self, x: torch.Tensor) -> torch.Tensor:
        """Front end and the three mid-end layers, densely concatenated: ``(B, 753, T)``."""
        front = self.frontend(x)  # (B, 561, T)
        h1 = self.midend[0](front)  # (B, 64, T)
        h2 = self.midend[1](h1) + h1  # (B, 64, T)
        h3 = self.midend[2](h2) + h2  # (B, 64, T)
        return torch.cat([front, h1, h2, h3], dim=1)  # (B, 753, T)

    def forward(self, x: torch.Tensor) -> TaggerOutput:
        h = self.midend_features(x)  # (B, 753, T)
        pooled = torch.stack([h.amax(dim=2), h.mean(dim=2)], dim=2)  # (B, 753, 2)
        pooled = self.pool_bn(pooled.flatten(1))  # (B, 1506): max_0, mean_0, max_1, ...
        emb = self.dense_bn(F.relu(self.dense(self.dropout(pooled))))  # (B, 200)
        logits = self.classifier(self.dropout(emb))  # (B, n_tags)
        return TaggerOutput(logits, emb)


@dataclass
class MusicnnVGGConfig:
    """Hyper-parameters of the VGG baseline shipped with musicnn (``MSD_vgg``, ``MTT_vgg``).

    Attributes
    ----------
    n_mels, n_frames : int
        Input size; the dense layer fixes it (96 x 187, i.e. 3 s patches).
    n_tags : int
        Output tags (50).
    filters : int
        Filters of each of the five 3 x 3 conv layers (128).
    conv_dropout, dense_dropout : float
        Dropout after pooling layers 1-4 and before the dense layer (training only).
    bn_eps : float
        Batch-norm epsilon (1e-3).
    """

    n_mels: int = 96
    n_frames: int = 187
    n_tags: int = 50
    filters: int = 128
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    bn_eps: float = 1e-3

    #: (pool size, stride) of the max-pooling after each conv, (time, mel).
    pools: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
        ((4, 1), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((2, 2), (2, 2)),
        ((4, 4), (4, 4)),
    )

    @property
    def embedding_dim(self) -> int:
        """Size of the flattened ``pool5`` (256 for 187 x 96 inputs)."""
        t, m = self.n_frames, self.n_mels
        for (kt, km), (st, sm) in self.pools:
            t, m = (t - kt) // st + 1, (m - km) // sm + 1
        return t * m * self.filters


class ConvBNPool(nn.Module):
    """3 x 3 'same' conv -> ReLU -> batch norm -> max-pool (valid)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        pool: tuple[tuple[int, int], tuple[int, int]],
        eps: float,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)
        self.pool = nn.MaxPool2d(kernel_size=pool[0], stride=pool[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn(F.relu(self.conv(x))))  # (B, C, T', M')


class MusicnnVGG(nn.Module):
    """The five-layer VGG tagger of the ``musicnn`` package.

    ``forward(x)`` takes patches ``(B, 187, 96)`` and returns :class:`TaggerOutput`
    ``(logits (B, n_tags), embedding (B, 256))``, the embedding being ``pool5`` flattened in
    TensorFlow's (time, mel, channel) order.
    """

    def __init__(self, config: MusicnnVGGConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input_bn = nn.BatchNorm2d(1, eps=c.bn_eps)
        self.convs = nn.ModuleList(
            ConvBNPool(1 if i == 0 else c.filters, c.filters, pool, c.bn_eps)
            for i, pool in enumerate(c.pools)
        )
        self.conv_dropout = nn.Dropout(c.conv_dropout)
        self.dense_dropout = nn.Dropout(c.dense_dropout)
        self.classifier = nn.Linear(c.embedding_dim, c.n_tags)

    def forward(self, x: torch.Tensor) -> TaggerOutput:
        h = self.input_bn(x.unsqueeze(1))  # (B, 1, T, M)
        for i, block in enumerate(self.convs):
            h = block(self.conv_dropout(h) if i > 0 else h)  # (B, C, T_i, M_i)
        emb = h.permute(0, 2, 3, 1).flatten(1)  # (B, T5 * M5 * C), TensorFlow's order
        logits = self.classifier(self.dense_dropout(emb))  # (B, n_tags)
        return TaggerOutput(logits, emb)
