"""Decoding MP3/OGG/WAV/FLAC to mono float32, and the typed errors for unusable clips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicpop.features.audio import (
    AudioError,
    EmptyAudio,
    SilentAudio,
    TooShortAudio,
    UndecodableAudio,
    load_audio,
    load_audio_rates,
)

RATE = 22_050


def _tone(
    seconds: float, freq: float = 440.0, rate: int = RATE, stereo: bool = False
) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.4 * np.sin(2 * np.pi * freq * t)
    if not stereo:
        return left.astype(np.float32)
    return np.stack([left, 0.5 * left], axis=1).astype(np.float32)


def _dominant_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.argmax(spectrum) * rate / len(signal))


@pytest.mark.parametrize(
    ("suffix", "fmt"), [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")]
)
def test_formats_decode_to_mono_float32_at_requested_rate(
    tmp_path: Path, suffix: str, fmt: str
) -> None:
    path = tmp_path / f"tone{suffix}"
    sf.write(path, _tone(2.0, stereo=True), RATE, format=fmt)
    for rate in (16_000, 44_100):
        signal = load_audio(path, rate)
        assert signal.dtype == np.float32 and signal.ndim == 1
        # MP3 encoders pad the start/end; allow a few frames
        assert abs(len(signal) - 2.0 * rate) < 0.06 * rate
        assert abs(_dominant_hz(signal, rate) - 440.0) < 2.0
        # channel mean of (x, 0.5 x) has peak 0.75 * 0.4
        assert 0.25 < np.abs(signal).max() < 0.35


def test_rates_share_one_decode(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(1.5), RATE, subtype="FLOAT")
    native, low = load_audio_rates(path, [RATE, 8_000])
    np.testing.assert_array_equal(native, _tone(1.5))  # no resampling at the native rate
    assert len(low) == 12_000


def test_undecodable_files_raise_typed_errors_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    good = tmp_path / "good.mp3"
    sf.write(good, _tone(3.0), RATE, format="MP3")
    corrupt = tmp_path / "corrupt.mp3"
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    corrupt.write_bytes(data[:2000] + rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(RATE * 2, np.float32), RATE)
    short = tmp_path / "short.wav"
    sf.write(short, _tone(0.5), RATE)
    cases = [
        (empty, EmptyAudio, "empty"),
        (text, UndecodableAudio, "not decodable"),
        (corrupt, UndecodableAudio, "not decodable"),
        (silent, SilentAudio, "silent"),
        (short, TooShortAudio, "0.50 s"),
        (tmp_path / "missing.wav", UndecodableAudio, "cannot read"),
    ]
    for path, error, words in cases:
        with pytest.raises(error) as info:
            load_audio(path, 16_000, min_seconds=1.0)
        assert isinstance(info.value, AudioError)
        assert str(path) in str(info.value) and words in str(info.value)
        assert info.value.path == str(path)
    assert len(load_audio(short, 16_000, min_seconds=0.25)) == 8_000


@pytest.mark.integration
def test_real_audio_matches_essentia_monoloader(shared_data: Path) -> None:
    import essentia.standard as es

    audio = shared_data / "audio"
    for name, seconds in [
        ("Kevin_MacLeod_-_Vibe_Ace.ogg", 61.46),
        ("vibe_ace_preview_1.mp3", 30.0),
        ("vibe_ace_preview_2.mp3", 30.0),
    ]:
        ours = load_audio(audio / name, 44_100)
        assert abs(len(ours) / 44_100 - seconds) < 0.05
        reference = es.MonoLoader(filename=str(audio / name), sampleRate=44_100)()
        n = min(len(ours), len(reference))
        assert abs(len(ours) - len(reference)) <= 1
        assert np.corrcoef(ours[:n], reference[:n])[0, 1] > 0.9999
