"""Augmentations of log-mel batches ``(B, M, T)`` for spectrogram-transformer training.

Each augmentation is a function of the batch and a ``torch.Generator`` (so a seeded run draws
the same augmentations again) and is switched on by a strength in ``AugmentConfig`` (0 = off).
They work in the raw log-mel units (natural log of mel power), before input normalisation.
Drawing another clip of the same track each epoch needs the clip list, so the estimator's
dataset does it (``AugmentConfig.different_clip``). Pure torch, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def time_mask(
    x: torch.Tensor, max_width: int, n_masks: int, generator: torch.Generator
) -> torch.Tensor:
    """SpecAugment time masks: ``n_masks`` spans of up to ``max_width`` frames set to the mean."""
    B, _, T = x.shape
    max_width = min(max_width, T)
    fill = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    t = torch.arange(T)[None, :]  # (1, T)
    for _ in range(n_masks):
        width = torch.randint(0, max_width + 1, (B, 1), generator=generator)  # (B, 1)
        start = (torch.rand((B, 1), generator=generator) * (T - width + 1)).long()  # (B, 1)
        mask = (t >= start) & (t < start + width)  # (B, T)
        x = torch.where(mask[:, None, :].to(x.device), fill, x)  # (B, M, T)
    return x


def freq_mask(
    x: torch.Tensor, max_width: int, n_masks: int, generator: torch.Generator
) -> torch.Tensor:
    """SpecAugment frequency masks: ``n_masks`` bands of <= ``max_width`` bins set to the mean."""
    B, M, _ = x.shape
    max_width = min(max_width, M)
    fill = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    f = torch.arange(M)[None, :]  # (1, M)
    for _ in range(n_masks):
        width = torch.randint(0, max_width + 1, (B, 1), generator=generator)  # (B, 1)
        start = (torch.rand((B, 1), generator=generator) * (M - width + 1)).long()  # (B, 1)
        mask = (f >= start) & (f < start + width)  # (B, M)
        x = torch.where(mask[:, :, None].to(x.device), fill, x)  # (B, M, T)
    return x


def roll_time(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Circular shift of each example along time by a random number of frames."""
    B, M, T = x.shape
    shifts = torch.randint(0, T, (B,), generator=generator)  # (B,)
    idx = (torch.arange(T)[None, :] - shifts[:, None]) % T  # (B, T)
    idx = idx[:, None, :].expand(B, M, T).to(x.device)  # (B, M, T)
    return torch.gather(x, 2, idx)  # (B, M, T)


def random_gain(x: torch.Tensor, max_gain: float, generator: torch.Generator) -> torch.Tensor:
    """Add a uniform random offset in ``[-max_gain, max_gain]`` (log units) per example."""
    B = x.shape[0]
    g = (torch.rand((B, 1, 1), generator=generator) * 2 - 1) * max_gain  # (B, 1, 1)
    return x + g.to(x.device, x.dtype)


def pitch_shift(x: torch.Tensor, max_bins: float, generator: torch.Generator) -> torch.Tensor:
    """Shift each example up or down the mel axis by up to ``max_bins`` (fractional, linear).

    Bins shifted in from outside the spectrum take the example's lowest value (silence).
    """
    B, M, T = x.shape
    shift = (torch.rand((B, 1), generator=generator) * 2 - 1) * max_bins  # (B, 1)
    src = torch.arange(M, dtype=torch.float32)[None, :] - shift  # (B, M) source bin of each bin
    lo = src.floor().long()  # (B, M)
    w = (src - lo).to(x.device, x.dtype)[:, :, None]  # (B, M, 1)
    valid = ((src >= 0) & (src <= M - 1)).to(x.device)[:, :, None]  # (B, M, 1)
    lo_c = lo.clamp(0, M - 1).to(x.device)[:, :, None].expand(B, M, T)  # (B, M, T)
    hi_c = (lo + 1).clamp(0, M - 1).to(x.device)[:, :, None].expand(B, M, T)  # (B, M, T)
    y = (1 - w) * torch.gather(x, 1, lo_c) + w * torch.gather(x, 1, hi_c)  # (B, M, T)
    floor = x.amin(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    return torch.where(valid, y, floor)


def timbre(
    x: torch.Tensor, max_tilt: float, max_eq: float, generator: torch.Generator
) -> torch.Tensor:
    """Random spectral tilt and smooth EQ curve added along the mel axis.

    The tilt is a line from ``-a/2`` at the lowest bin to ``+a/2`` at the highest with
    ``a`` uniform in ``[-max_tilt, max_tilt]``; the EQ is a sum of three random low-frequency
    cosines with total amplitude up to ``max_eq`` (log units).
    """
    B, M, _ = x.shape
    f = torch.linspace(0, 1, M)[None, :]  # (1, M)
    tilt = (torch.rand((B, 1), generator=generator) * 2 - 1) * max_tilt  # (B, 1)
    curve = tilt * (f - 0.5)  # (B, M)
    amp = (torch.rand((B, 3), generator=generator) * 2 - 1) * max_eq / 3  # (B, 3)
    phase = torch.rand((B, 3), generator=generator) * 2 * math.pi  # (B, 3)
    k = torch.arange(1, 4, dtype=torch.float32)  # (3,)
    waves = torch.cos(math.pi * k[None, :, None] * f[:, None, :] + phase[:, :, None])  # (B, 3, M)
    curve = curve + (amp[:, :, None] * waves).sum(dim=1)  # (B, M)
    return x + curve[:, :, None].to(x.device, x.dtype)


@dataclass
class AugmentConfig:
    """Which augmentations run in training, and how strong (0 / False = off).

    Attributes
    ----------
    time_mask, n_time_masks : int
        SpecAugment: up to ``n_time_masks`` spans of at most ``time_mask`` frames.
    freq_mask, n_freq_masks : int
        SpecAugment: up to ``n_freq_masks`` bands of at most ``freq_mask`` mel bins.
    roll : bool
        Circular time shift of each crop.
    gain : float
        Random gain, max offset in log-mel units (natural log; 1.0 is about +-4.3 dB).
    pitch_shift : float
        Max shift along the mel axis in bins.
    timbre_tilt, timbre_eq : float
        Max spectral tilt across the band and max random EQ amplitude, log units.
    different_clip : bool
        Draw a random clip of the track each epoch (where it has several) instead of clip 0.
    """

    time_mask: int = 40
    n_time_masks: int = 2
    freq_mask: int = 16
    n_freq_masks: int = 2
    roll: bool = True
    gain: float = 0.0
    pitch_shift: float = 0.0
    timbre_tilt: float = 0.0
    timbre_eq: float = 0.0
    different_clip: bool = True


def augment_batch(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Apply the augmentations that ``config`` switches on to a log-mel batch.

    Parameters
    ----------
    x : torch.Tensor
        ``(B, M, T)`` log-mel crops (raw log units).
    config : AugmentConfig
        Switches and strengths.
    generator : torch.Generator
        CPU generator all random draws come from (seed it for repeatable runs).

    Returns
    -------
    torch.Tensor
        Augmented batch of the same shape and dtype.
    """
    if x.dim() != 3:
        raise ValueError(f"expected a (batch, n_mels, n_frames) tensor, got shape {tuple(x.shape)}")
    if config.roll:
        x = roll_time(x, generator)
    if config.pitch_shift > 0:
        x = pitch_shift(x, config.pitch_shift, generator)
    if config.timbre_tilt > 0 or config.timbre_eq > 0:
        x = timbre(x, config.timbre_tilt, config.timbre_eq, generator)
    if config.gain > 0:
        x = random_gain(x, config.gain, generator)
    if config.time_mask > 0 and config.n_time_masks > 0:
        x = time_mask(x, config.time_mask, config.n_time_masks, generator)
    if config.freq_mask > 0 and config.n_freq_masks > 0:
        x = freq_mask(x, config.freq_mask, config.n_freq_masks, generator)
    return x
