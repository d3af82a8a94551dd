"""The AST-exact front end: Kaldi fbank as the Audio Spectrogram Transformer computes it.

A pretrained AST (Gong et al. 2021; ``transformers.ASTModel``) must see what it was trained on,
which is not :mod:`features.mel`'s log-mel. AST's input is ``torchaudio.compliance.kaldi.fbank``
with ``window_type="hanning"``, 128 mel bins and the other Kaldi defaults, cut or zero-padded to
1024 frames, then normalised with the AudioSet statistics as ``(x - mean) / (2 * std)``. This
module computes it in NumPy (float64 inside, float32 out; torchaudio is not a dependency):

1. mono float samples at 16 kHz, **in [-1, 1] as they are**. Kaldi's command-line tools read
   16-bit integers, but AST's own data loader (``torchaudio.load``, normalised floats) and
   ``transformers.ASTFeatureExtractor`` (its ``waveform * 2**15`` line is commented out) feed
   floats in [-1, 1], and the AudioSet mean and std below were computed that way; scaling by
   2**15 would shift every value by ``ln(2**30) = 20.8`` (2.3 standard deviations);
2. frames of 400 samples (25 ms) every 160 (10 ms) without padding ("snip edges"):
   ``n_frames = 1 + (n - 400) // 160``; no dither;
3. per frame: remove the DC offset (the frame's mean); pre-emphasis
   ``y[i] = x[i] - 0.97 x[i-1]`` with ``x[-1] = x[0]``; a symmetric Hann window of 400
   (Kaldi's ``hanning``: ``0.5 - 0.5 cos(2 pi n / 399)``); zero-pad to 512; power spectrum;
4. 128 triangular filters on the Kaldi mel scale ``1127 ln(1 + f / 700)`` from 20 Hz to the
   Nyquist frequency, triangles *in mel* (not in Hz), peak 1, no area normalisation; the
   Nyquist bin has weight 0;
5. ``ln(max(mel, 1.1920929e-07))`` (float32 epsilon);
6. :func:`ast_input`: cut to 1024 frames or pad with zeros (before normalisation, as AST does),
   then ``(x + 4.2677393) / (2 * 4.5689974)``.

AST's original data loader also subtracts the whole clip's mean sample before step 2;
``ASTFeatureExtractor`` does not, and neither does this module (step 3 removes each frame's DC
anyway). :func:`ast_windows` cuts a longer clip into 1024-frame (10.24 s) windows.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

#: AudioSet statistics of AST's fbank (the defaults of ``transformers.ASTFeatureExtractor``).
AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974


@dataclass(frozen=True)
class FbankConfig:
    """Every parameter of the AST front end (defaults: AST / ``ASTFeatureExtractor``).

    ``high_freq`` 0 means the Nyquist frequency (Kaldi's convention for values <= 0).
    """

    sample_rate: int = 16_000
    frame_length: int = 400
    frame_shift: int = 160
    n_fft: int = 512
    n_mels: int = 128
    low_freq: float = 20.0
    high_freq: float = 0.0
    preemphasis: float = 0.97
    log_floor: float = 1.1920928955078125e-07
    target_frames: int = 1024
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD


def _kaldi_mel(hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=4)
def kaldi_mel_banks(config: FbankConfig) -> np.ndarray:
    """Kaldi's mel filters (``get_mel_banks``), ``(n_fft // 2 + 1, n_mels)`` float64.

    Parameters
    ----------
    config : FbankConfig
        Front-end parameters.

    Returns
    -------
    np.ndarray
        Weights to right-multiply a power spectrum with; triangles in mel space, the last
        (Nyquist) row zero.
    """
    nyquist = config.sample_rate / 2
    high = config.high_freq if config.high_freq > 0 else nyquist + config.high_freq
    if not 0 <= config.low_freq < high <= nyquist:
        raise ValueError(f"bad fbank band {config.low_freq}-{high} Hz for {config.sample_rate} Hz")
    mel_low, mel_high = _kaldi_mel(config.low_freq), _kaldi_mel(high)
    delta = (mel_high - mel_low) / (config.n_mels + 1)
    left = mel_low + delta * np.arange(config.n_mels)  # (n_mels,)
    centre, right = left + delta, left + 2 * delta
    n_bins = config.n_fft // 2
    mel = _kaldi_mel(config.sample_rate / config.n_fft * np.arange(n_bins))[:, None]  # (bins, 1)
    up = (mel - left) / (centre - left)  # (bins, n_mels)
    down = (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.vstack([banks, np.zeros((1, config.n_mels))])  # (bins + 1, n_mels)


@functools.lru_cache(maxsize=4)
def _window(length: int) -> np.ndarray:
    return np.hanning(length)  # symmetric: 0.5 - 0.5 cos(2 pi n / (length - 1))


def kaldi_fbank(signal_16k: np.ndarray, config: FbankConfig | None = None) -> np.ndarray:
    """Kaldi log-mel filterbank features as AST computes them (steps 1-5 of the module doc).

    Parameters
    ----------
    signal_16k : np.ndarray
        Mono signal ``(n_samples,)`` at ``config.sample_rate``, samples in [-1, 1].
    config : FbankConfig, optional
        Front-end parameters; AST's when omitted.

    Returns
    -------
    np.ndarray
        ``(n_frames, n_mels)`` float32, ``n_frames = 1 + (n_samples - 400) // 160``; not
        normalised, not padded.

    Raises
    ------
    ValueError
        The signal is not 1-D or is shorter than one frame.
    """
    c = config or FbankConfig()
    x = np.asarray(signal_16k, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"kaldi_fbank expects a mono 1-D signal, got shape {x.shape}")
    if len(x) < c.frame_length:
        raise ValueError(f"signal of {len(x)} samples is shorter than one frame ({c.frame_length})")
    frames = np.lib.stride_tricks.sliding_window_view(x, c.frame_length)[:: c.frame_shift]
    frames = frames.astype(np.float64)  # (T, 400), a copy
    frames -= frames.mean(axis=1, keepdims=True)  # DC offset
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)  # x[i-1], x[-1] = x[0]
    frames -= c.preemphasis * previous
    spectrum = np.fft.rfft(frames * _window(c.frame_length), n=c.n_fft, axis=1)  # (T, 257)
    power = spectrum.real**2 + spectrum.imag**2  # (T, 257)
    mel = power @ kaldi_mel_banks(c)  # (T, n_mels)
    return np.log(np.maximum(mel, c.log_floor)).astype(np.float32)


def normalise_fbank(fbank: np.ndarray, config: FbankConfig | None = None) -> np.ndarray:
    """Cut or zero-pad ``(n_frames, n_mels)`` to ``target_frames``, then AudioSet-normalise.

    Parameters
    ----------
    fbank : np.ndarray
        Output of :func:`kaldi_fbank` (or a slice of it).
    config : FbankConfig, optional
        ``target_frames``, ``mean`` and ``std``.

    Returns
    -------
    np.ndarray
        ``(target_frames, n_mels)`` float32: ``(x - mean) / (2 * std)``, padded frames included
        (a zero frame becomes ``-mean / (2 std)``, as in AST).
    """
    c = config or FbankConfig()
    out = np.zeros((c.target_frames, fbank.shape[1]), dtype=np.float32)
    n = min(c.target_frames, fbank.shape[0])
    out[:n] = fbank[:n]
    return ((out - np.float32(c.mean)) / np.float32(2 * c.std)).astype(np.float32)


def ast_input(signal_16k: np.ndarray, config: FbankConfig | None = None) -> np.ndarray:
    """AST's input for one clip: the first 1024 frames (10.24 s), normalised.

    Equal to ``ASTFeatureExtractor()(signal_16k, sampling_rate=16000)["input_values"][0]``.

    Parameters
    ----------
    signal_16k : np.ndarray
        Mono signal at 16 kHz in [-1, 1].
    config : FbankConfig, optional
        Front-end parameters; AST's when omitted.

    Returns
    -------
    np.ndarray
        ``(1024, 128)`` float32, time first (AST's layout).
    """
    c = config or FbankConfig()
    needed = (c.target_frames - 1) * c.frame_shift + c.frame_length  # samples of 1024 frames
    return normalise_fbank(kaldi_fbank(np.asarray(signal_16k)[:needed], c), c)


def window_starts(n_frames: int, window: int) -> list[int]:
    """Frame offsets of ``ceil(n_frames / window)`` evenly spaced windows covering every frame.

    The first starts at 0 and the last ends at ``n_frames``; windows overlap when
    ``n_frames`` is not a multiple of ``window``, and a clip shorter than one window gives
    ``[0]`` (the window is then zero-padded).
    """
    n = max(1, math.ceil(n_frames / window))
    if n == 1:
        return [0]
    return [int(s) for s in np.linspace(0, n_frames - window, n).round()]


def ast_windows(signal_16k: np.ndarray, config: FbankConfig | None = None) -> np.ndarray:
    """A clip as AST windows of ``target_frames`` (10.24 s) covering it, each normalised.

    Frames do not depend on each other, so window ``i`` is exactly what
    ``ASTFeatureExtractor`` returns for the samples
    ``[160 s_i, 160 (s_i + 1023) + 400)``, ``s_i`` being the window's first frame
    (:func:`window_starts`): a 30 s clip (2998 frames) gives three windows starting at frames
    0, 987 and 1974.

    Parameters
    ----------
    signal_16k : np.ndarray
        Mono signal at 16 kHz in [-1, 1], at least one frame (25 ms) long.
    config : FbankConfig, optional
        Front-end parameters; AST's when omitted.

    Returns
    -------
    np.ndarray
        ``(W, target_frames, n_mels)`` float32.
    """
    c = config or FbankConfig()
    fbank = kaldi_fbank(signal_16k, c)
    starts = window_starts(fbank.shape[0], c.target_frames)
    return np.stack([normalise_fbank(fbank[s : s + c.target_frames], c) for s in starts])


def compute(signal_16k: np.ndarray) -> dict[str, np.ndarray]:
    """The ``ast_fbank`` extractor: ``{"ast_fbank": (W, 1024, 128) float16}`` (:func:`ast_windows`)."""
    return {"ast_fbank": ast_windows(signal_16k).astype(np.float16)}


def parameters() -> dict[str, object]:
    """Everything that determines :func:`compute`'s output (the front end's settings)."""
    return asdict(FbankConfig())
