"""Essentia low-level descriptors: a fixed column set, sensible values, and real audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicpop.features.lowlevel import LOWLEVEL_COLUMNS, _key_encoding, extract_lowlevel

RATE = 44_100


def _click_track(bpm: float, seconds: float = 8.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    signal = np.zeros(int(seconds * RATE), np.float32)
    burst = rng.normal(0, 0.5, 400) * np.exp(-np.arange(400) / 80)
    for start in np.arange(0.0, seconds - 0.1, 60.0 / bpm):
        i = int(start * RATE)
        signal[i : i + 400] += burst.astype(np.float32)
    return signal


def _tone_noise(seconds: float = 4.0, freq: float = 330.0, seed: int = 0) -> np.ndarray:
    """The synthetic comparison clip: a tone plus noise, nothing like music."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.1 * rng.normal(size=t.size)).astype(np.float32)


def test_column_set_is_fixed_and_named() -> None:
    assert len(LOWLEVEL_COLUMNS) == len(set(LOWLEVEL_COLUMNS)) == 350
    for name in (
        "lowlevel.spectral_centroid.mean",
        "lowlevel.mfcc.mean.0",
        "lowlevel.mfcc.stdev.12",
        "rhythm.bpm",
        "tonal.key_strength",
        "tonal.key_sin",
        "tonal.key_major",
        "tonal.hpcp.mean.35",
        "rhythm.beats_count",
    ):
        assert name in LOWLEVEL_COLUMNS
    assert all(c.split(".")[0] in {"lowlevel", "rhythm", "tonal"} for c in LOWLEVEL_COLUMNS)


def test_every_clip_gets_the_same_columns_and_floats() -> None:
    silence_then_tone = np.concatenate([np.zeros(RATE, np.float32), _tone_noise(1.5)])
    for signal in (_tone_noise(), _click_track(100.0, 3.0), silence_then_tone):
        values = extract_lowlevel(signal)
        assert list(values) == list(LOWLEVEL_COLUMNS)
        assert all(isinstance(v, float) for v in values.values())


def test_descriptors_follow_the_signal() -> None:
    clicks = extract_lowlevel(_click_track(120.0))
    assert abs(clicks["rhythm.bpm"] - 120.0) < 2.0
    assert abs(clicks["rhythm.beat_interval.mean"] - 0.5) < 0.02
    low, high = (
        extract_lowlevel(_tone_noise(freq=200.0)),
        extract_lowlevel(_tone_noise(freq=3000.0)),
    )
    assert high["lowlevel.spectral_centroid.mean"] > low["lowlevel.spectral_centroid.mean"]


def test_key_encoding_on_the_circle_of_fifths() -> None:
    assert _key_encoding("A", "minor") == pytest.approx((*_key_encoding("C", "major")[:2], 0.0))
    sin, cos, major = _key_encoding("G", "major")
    assert (sin, cos, major) == pytest.approx((0.5, math.sqrt(3) / 2, 1.0))
    assert _key_encoding("Bb", "major") == pytest.approx(_key_encoding("A#", "major"))
    assert all(math.isnan(v) for v in _key_encoding("H", "")[:3])


@pytest.mark.integration
def test_two_cuts_of_one_recording_are_nearer_each_other_than_to_a_synthetic_clip(
    shared_data: Path, tmp_path: Path
) -> None:
    from musicpop.features.audio import load_audio

    audio = shared_data / "audio"
    synthetic = tmp_path / "synthetic.wav"
    sf.write(synthetic, _tone_noise(10.0, seed=3), RATE)
    paths = [
        audio / "vibe_ace_preview_1.mp3",
        audio / "vibe_ace_preview_2.mp3",
        audio / "Kevin_MacLeod_-_Vibe_Ace.ogg",
        synthetic,
    ]
    rows = []
    for path in paths:
        values = extract_lowlevel(load_audio(path, RATE))
        assert list(values) == list(LOWLEVEL_COLUMNS)
        rows.append([values[c] for c in LOWLEVEL_COLUMNS])
    x = np.array(rows)
    usable = np.isfinite(x).all(axis=0) & (x.std(axis=0) > 0)
    z = (x[:, usable] - x[:, usable].mean(axis=0)) / x[:, usable].std(axis=0)
    between_cuts = np.linalg.norm(z[0] - z[1])
    assert between_cuts < np.linalg.norm(z[0] - z[3])
    assert between_cuts < np.linalg.norm(z[1] - z[3])
    assert np.linalg.norm(z[0] - z[2]) < np.linalg.norm(z[2] - z[3])
