"""The log-mel front end against librosa (an independent implementation) and its definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from musicpop.features.mel import MelConfig, log_mel, mel_filterbank, n_frames_for

librosa = pytest.importorskip("librosa")

# Largest |ours - librosa| in log units seen on noise, tones and real music is about 6e-4
# (float32 FFT vs librosa's float64); the stated tolerance leaves a 3x margin.
LOG_TOLERANCE = 2e-3


def _librosa_log_mel(signal: np.ndarray, config: MelConfig) -> np.ndarray:
    """The module's definition written with librosa: frame t windows samples [160 t, 160 t + 400).

    librosa centres the 400-sample window inside the 512-point frame (offset 56), so padding the
    signal by 56 zeros on each side puts frame t's window on the same samples; zero-padding
    placement changes only the phase, not the power.
    """
    pad = (config.n_fft - config.win_length) // 2
    padded = np.pad(signal.astype(np.float64), (pad, pad))
    power = (
        np.abs(
            librosa.stft(
                padded,
                n_fft=config.n_fft,
                hop_length=config.hop_length,
                win_length=config.win_length,
                window="hann",
                center=False,
            )
        )
        ** 2
    )
    mel = librosa.feature.melspectrogram(
        S=power,
        sr=config.sample_rate,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=True,
        norm=None,
    )
    return np.log(np.maximum(mel, config.log_floor))


def _test_signal(seconds: float = 3.0, rate: int = 16_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    tones = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (110.0, 440.0, 2_500.0, 7_000.0))
    envelope = np.where((t % 1.0) < 0.7, 1.0, 1e-4)  # includes near-silent stretches
    return ((tones + 0.05 * rng.normal(size=t.size)) * envelope).astype(np.float32)


def test_matches_librosa_within_stated_tolerance() -> None:
    config = MelConfig()
    signal = _test_signal()
    ours = log_mel(signal, config)
    reference = _librosa_log_mel(signal, config)
    assert ours.shape == reference.shape == (128, n_frames_for(len(signal), config))
    assert np.abs(ours - reference).max() < LOG_TOLERANCE


def test_filterbank_equals_librosa_htk() -> None:
    config = MelConfig()
    reference = librosa.filters.mel(
        sr=16_000, n_fft=512, n_mels=128, fmin=0.0, fmax=8_000.0, htk=True, norm=None
    )
    np.testing.assert_allclose(mel_filterbank(config), reference.T, atol=1e-6)


def test_shape_dtype_and_layout() -> None:
    config = MelConfig()
    for n in (400, 559, 560, 16_000):
        mel = log_mel(np.ones(n, np.float32) * 0.1, config)
        assert mel.shape == (128, 1 + (n - 400) // 160)
        assert mel.dtype == np.float32 and mel.flags.c_contiguous
    assert n_frames_for(30 * 16_000, config) == 2998
    with pytest.raises(ValueError, match="shorter than one window"):
        log_mel(np.zeros(399, np.float32), config)
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 1000), np.float32), config)


def test_tone_lands_in_the_right_band_and_silence_hits_the_floor() -> None:
    config = MelConfig()
    t = np.arange(16_000) / 16_000
    mel = log_mel((0.5 * np.sin(2 * np.pi * 1_000.0 * t)).astype(np.float32), config)
    centres = 700.0 * (
        10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 130)[1:-1] / 2595) - 1
    )
    peak_band = int(np.argmax(mel.mean(axis=1)))
    assert abs(centres[peak_band] - 1_000.0) < 60.0
    silent = log_mel(np.zeros(4_000, np.float32), config)
    np.testing.assert_allclose(silent, np.log(np.float32(config.log_floor)))


def test_float16_storage_error_is_small() -> None:
    mel = log_mel(_test_signal(), MelConfig())
    stored = mel.astype(np.float16).astype(np.float32)
    # float16 keeps 11 significant bits: |log-mel| < 16 gives errors <= 2^-7
    assert np.abs(stored - mel).max() <= 2.0**-7


@pytest.mark.integration
def test_real_audio_matches_librosa(shared_data: Path) -> None:
    from musicpop.features.audio import load_audio

    config = MelConfig()
    signal = load_audio(shared_data / "audio" / "vibe_ace_preview_2.mp3", 16_000)[: 10 * 16_000]
    ours = log_mel(signal, config)
    assert np.abs(ours - _librosa_log_mel(signal, config)).max() < LOG_TOLERANCE
