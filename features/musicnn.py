"""MusiCNN front end (as the ``musicnn`` package computes it) and per-clip MusiCNN outputs.

The front end of ``musicnn.extractor.batch_data`` (musicnn 0.1.0), without TensorFlow or librosa:

1. mono float32 at 16 kHz (``librosa.load(sr=16000)``; here :func:`features.audio.load_audio`,
   the same libsndfile decoding and libsoxr HQ resampling that librosa >= 0.10 uses);
2. ``librosa.feature.melspectrogram(y, sr=16000, hop_length=256, n_fft=512, n_mels=96)``:
   centred frames (``n_fft // 2`` samples of padding on each side: zeros, librosa >= 0.10's
   ``pad_mode="constant"``; librosa < 0.10 reflected the signal, ``pad_mode="reflect"``), a
   periodic Hann window of 512, power spectrum, 96 Slaney-style mel filters from 0 to 8 kHz with
   Slaney area normalisation (librosa's default ``htk=False, norm="slaney"``), float32 throughout
   as librosa does it (window times frame and the FFT in float64, the spectrum stored complex64);
3. ``.astype(np.float16)`` then ``np.log10(10000 * x + 1)``;
4. non-overlapping patches of 187 frames (3 s), ``range(0, n_frames - 187 + 1, 187)``; a
   trailing partial patch is dropped.

Step 3 is where the original breaks today. Under the NumPy it was written for (1.x, value-based
casting) ``10000 * x`` with ``x`` a float16 *array* and ``10000`` a Python int promotes to
float32 (float16 cannot hold the scalar's type, uint16), so the mel power is merely *rounded* to
float16 (round to nearest even, 11 significant bits; values below 2**-24 flush to zero) and the
log is taken in float32. Under NumPy >= 2 (NEP 50) the Python int is weak, the product stays
float16 and overflows to inf for every mel power above 6.55, so every loud clip gets the same
output. :func:`musicnn_logmel` does what NumPy 1.x did: round to float16, return to float32, then
``log10(10000 x + 1)`` in float32 (checked against musicnn's own code under NumPy 1.26 in
``tools/musicnn_reference.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .musicnn_weights import PretrainedTagger


@dataclass(frozen=True)
class MusicnnFrontendConfig:
    """Every parameter of the MusiCNN front end (defaults: musicnn 0.1.0's ``configuration``).

    ``patch_hop`` 187 gives the package's default non-overlapping patches; ``pad_mode`` is
    ``"constant"`` (librosa >= 0.10) or ``"reflect"`` (librosa 0.7-0.9, what the models were
    trained with; it changes only the first and last frame).
    """

    sample_rate: int = 16_000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    fmin: float = 0.0
    fmax: float = 8_000.0
    patch_frames: int = 187
    patch_hop: int = 187
    pad_mode: str = "constant"

    @property
    def min_samples(self) -> int:
        """Shortest signal that gives one patch (47,616 samples, 2.976 s)."""
        return (self.patch_frames - 1) * self.hop_length


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    hz = np.asanyarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(
        hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
        hz / f_sp,
    )


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asanyarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


@functools.lru_cache(maxsize=4)
def musicnn_filterbank(config: MusicnnFrontendConfig) -> np.ndarray:
    """Slaney mel filters with area normalisation, ``(n_fft // 2 + 1, n_mels)`` float32.

    Equal to ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax).T`` (computed in float64,
    returned float32).

    Parameters
    ----------
    config : MusicnnFrontendConfig
        Front-end parameters.

    Returns
    -------
    np.ndarray
        Weights to right-multiply a ``(n_frames, n_fft // 2 + 1)`` power spectrum with.
    """
    fft_hz = np.linspace(0.0, config.sample_rate / 2, 1 + config.n_fft // 2)
    mels = np.linspace(
        _hz_to_mel_slaney(config.fmin), _hz_to_mel_slaney(config.fmax), config.n_mels + 2
    )
    edges = _mel_to_hz_slaney(mels)  # (n_mels + 2,)
    widths = np.diff(edges)  # (n_mels + 1,)
    ramps = edges[:, None] - fft_hz[None, :]  # (n_mels + 2, n_bins)
    rising = -ramps[:-2] / widths[:-1, None]  # (n_mels, n_bins)
    falling = ramps[2:] / widths[1:, None]  # (n_mels, n_bins)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # Slaney: constant area
    return np.ascontiguousarray(weights.astype(np.float32).T)  # (n_bins, n_mels)


@functools.lru_cache(maxsize=4)
def _window(n_fft: int) -> np.ndarray:
    n = np.arange(n_fft)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)  # periodic Hann, float64


def musicnn_logmel(
    signal_16k: np.ndarray, config: MusicnnFrontendConfig | None = None
) -> np.ndarray:
    """The musicnn log-mel representation ``log10(10000 * float16(mel) + 1)`` of a signal.

    Parameters
    ----------
    signal_16k : np.ndarray
        Mono signal ``(n_samples,)`` at ``config.sample_rate``, samples in [-1, 1].
    config : MusicnnFrontendConfig, optional
        Front-end parameters; musicnn's when omitted.

    Returns
    -------
    np.ndarray
        ``(n_frames, n_mels)`` float32 with ``n_frames = 1 + n_samples // hop_length``
        (time first, as musicnn lays it out).

    Raises
    ------
    ValueError
        The signal is not 1-D or is shorter than ``n_fft // 2 + 1`` samples.
    """
    c = config or MusicnnFrontendConfig()
    y = np.asarray(signal_16k, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"musicnn_logmel expects a mono 1-D signal, got shape {y.shape}")
    if len(y) <= c.n_fft // 2:
        raise ValueError(f"signal of {len(y)} samples is too short for an FFT of {c.n_fft}")
    padded = np.pad(y, c.n_fft // 2, mode=c.pad_mode)  # type: ignore[call-overload]
    frames = np.lib.stride_tricks.sliding_window_view(padded, c.n_fft)[:: c.hop_length]
    spectrum = np.fft.rfft(frames * _window(c.n_fft), axis=1).astype(np.complex64)  # (T, 257)
    power = np.abs(spectrum) ** 2  # (T, 257) float32
    mel = power @ musicnn_filterbank(c)  # (T, n_mels) float32
    rounded = mel.astype(np.float16).astype(np.float32)  # NumPy 1.x semantics, see module doc
    return np.log10(np.float32(10_000) * rounded + np.float32(1))


def musicnn_patches(logmel: np.ndarray, config: MusicnnFrontendConfig | None = None) -> np.ndarray:
    """Cut a ``(n_frames, n_mels)`` representation into patches as musicnn does.

    Parameters
    ----------
    logmel : np.ndarray
        Output of :func:`musicnn_logmel`.
    config : MusicnnFrontendConfig, optional
        ``patch_frames`` (187) and ``patch_hop`` (187: no overlap).

    Returns
    -------
    np.ndarray
        ``(P, patch_frames, n_mels)`` float32, ``P = (n_frames - patch_frames) // patch_hop + 1``.

    Raises
    ------
    ValueError
        Fewer frames than one patch (a clip shorter than about 2.98 s).
    """
    c = config or MusicnnFrontendConfig()
    n_frames = logmel.shape[0]
    if n_frames < c.patch_frames:
        raise ValueError(
            f"{n_frames} frames ({n_frames * c.hop_length / c.sample_rate:.2f} s) are fewer "
            f"than one {c.patch_frames}-frame patch"
        )
    starts = range(0, n_frames - c.patch_frames + 1, c.patch_hop)
    return np.stack([logmel[s : s + c.patch_frames] for s in starts])  # (P, 187, M)


def musicnn_input(
    signal_16k: np.ndarray, config: MusicnnFrontendConfig | None = None
) -> np.ndarray:
    """Front-end patches ``(P, 187, 96)`` of a 16 kHz signal (:func:`musicnn_logmel`, then patches)."""
    return musicnn_patches(musicnn_logmel(signal_16k, config), config)


def musicnn_outputs(
    signal_16k: np.ndarray,
    tagger: PretrainedTagger,
    config: MusicnnFrontendConfig | None = None,
) -> dict[str, Any]:
    """Tags and embeddings of one clip with a pretrained tagger (CPU or the tagger's device).

    Parameters
    ----------
    signal_16k : np.ndarray
        Mono float32 signal at 16 kHz, at least ``config.min_samples`` long (2.98 s).
    tagger : PretrainedTagger
        From :func:`features.musicnn_weights.load_tagger`.
    config : MusicnnFrontendConfig, optional
        Front-end parameters; musicnn's when omitted.

    Returns
    -------
    dict
        ``tags`` ``(n_tags,)`` float32: tag probabilities averaged over the patches (as
        ``musicnn.tagger.top_tags`` averages the taggram); ``tag_names``: the column names
        (``msd_tag_instrumental``, ...); ``embedding`` ``(D,)`` float32: the mean of the patch
        embeddings (MusiCNN's 200-d penultimate layer); ``patch_embeddings`` ``(P, D)`` and
        ``patch_tags`` ``(P, n_tags)``, float32, one row per 3 s patch.
    """
    patches = musicnn_input(signal_16k, config)  # (P, 187, 96)
    param = next(tagger.model.parameters())
    with torch.inference_mode():
        x = torch.from_numpy(patches).to(device=param.device, dtype=param.dtype)
        logits, emb = tagger.model(x)  # (P, n_tags), (P, D)
        probs = torch.sigmoid(logits)
    patch_tags = probs.float().cpu().numpy()
    patch_embeddings = emb.float().cpu().numpy()
    return {
        "tags": patch_tags.mean(axis=0),
        "tag_names": tagger.feature_names,
        "embedding": patch_embeddings.mean(axis=0),
        "patch_embeddings": patch_embeddings,
        "patch_tags": patch_tags,
    }
