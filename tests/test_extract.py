"""`extract_features`: outputs, cache, bad clips in a batch, and resuming after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import write_tone_clip

from musicpop.benchmark.cli import main as cli_main
from musicpop.features.audio import load_audio
from musicpop.features.extract import (
    FALLBACK_TIMESTAMP,
    ExtractionCache,
    cache_key,
    decoder_parameters,
    extract_features,
    extractor_fingerprint,
)
from musicpop.features.feature_sets import ESSENTIA_EXTRACTOR, decode_array
from musicpop.features.lowlevel import LOWLEVEL_COLUMNS
from musicpop.features.mel import MelConfig, log_mel, n_frames_for

RATE = 22_050
REPO = Path(__file__).resolve().parents[1]
CLASSIC = ["essentia", "mel"]  # the sets these tests check (the default MusiCNN sets need 3 s)


def _track(i: int) -> str:
    return f"{i:022d}"


def _clip(path: Path, seconds: float = 2.0, freq: float = 330.0, seed: int = 0) -> Path:
    return write_tone_clip(path, seconds, freq, seed, rate=RATE)


def _write_tables(
    data_dir: Path, clips: list[tuple[str, int, Path]], release: dict[str, str]
) -> None:
    tracks = sorted({t for t, _, _ in clips} | set(release))
    first_clip = {t: str(p) for t, c, p in sorted(clips, key=lambda r: r[1], reverse=True)}
    pd.DataFrame(
        {
            "track_id": tracks,
            "song_id": [f"song{t[-3:]}" for t in tracks],
            "title": tracks,
            "artist": "someone",
            "audio_path": [first_clip.get(t) for t in tracks],
            "release_date": pd.to_datetime([release.get(t) for t in tracks]).date,
        }
    ).to_parquet(data_dir / "catalog.parquet")
    pd.DataFrame(
        {"track_id": [t for t, _, _ in clips], "clip_id": [c for _, c, _ in clips]}
    ).assign(audio_path=[str(p) for _, _, p in clips]).to_parquet(data_dir / "clips.parquet")


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    """Three tracks with audio (one with two clips), four formats, dates of every kind."""
    audio = tmp_path / "audio"
    audio.mkdir()
    clips = [
        (_track(1), 0, _clip(audio / "a0.wav", freq=220.0, seed=1)),
        (_track(1), 1, _clip(audio / "a1.mp3", freq=230.0, seed=2)),
        (_track(2), 0, _clip(audio / "b0.flac", freq=880.0, seed=3)),
        (_track(3), 0, _clip(audio / "c0.ogg", freq=1760.0, seed=4)),
    ]
    _write_tables(tmp_path, clips, release={_track(1): "2019-05-03"})
    pd.DataFrame(
        {
            "region": ["us", "gb", "us"],
            "period": "weekly",
            "chart_date": pd.to_datetime(["2020-01-17", "2020-01-10", "2020-01-10"]).date,
            "track_id": [_track(3), _track(3), _track(1)],
            "rank": [1, 2, 3],
            "streams": np.array([10, 20, 30], dtype=np.int64),
            "title": "a title",
            "artist": "someone",
            "source_file": "charts.csv",
        }
    ).to_parquet(tmp_path / "streams.parquet")
    return tmp_path


def _cached(data_dir: Path, path: str) -> dict:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    fingerprint = extractor_fingerprint(ESSENTIA_EXTRACTOR, decoder_parameters())
    cache = ExtractionCache(
        data_dir / "cache" / "extract" / "essentia_lowlevel", ESSENTIA_EXTRACTOR
    )
    result = cache.load(cache_key(digest, fingerprint))
    assert result is not None
    return result


def _decoded(row: pd.Series) -> np.ndarray:
    return decode_array(row["array"], row["dtype"], row["shape"])


def test_extracts_every_clip_and_a_rerun_extracts_nothing(tiny_dir: Path) -> None:
    report = extract_features(tiny_dir, workers=1, sets=CLASSIC, progress=False)
    assert (report.clips, report.tracks, report.extracted, report.cached, report.failed) == (
        4,
        3,
        4,
        0,
        0,
    )
    assert report.rows == {"essentia": 3, "mel": 4}
    lowlevel = pd.read_parquet(tiny_dir / "features" / "essentia.parquet")
    assert list(lowlevel.columns) == ["track_id", "event_timestamp", *LOWLEVEL_COLUMNS]
    assert (lowlevel[list(LOWLEVEL_COLUMNS)].dtypes == np.float64).all()
    assert lowlevel["track_id"].tolist() == [_track(1), _track(2), _track(3)]
    stamps = dict(zip(lowlevel["track_id"], lowlevel["event_timestamp"], strict=True))
    assert stamps[_track(1)] == pd.Timestamp("2019-05-03", tz="UTC")  # release date
    assert stamps[_track(2)] == FALLBACK_TIMESTAMP  # neither release nor chart date
    assert stamps[_track(3)] == pd.Timestamp("2020-01-10", tz="UTC")  # first chart date

    # a track's row is the mean over its clips' cached results
    clips = pd.read_parquet(tiny_dir / "clips.parquet")
    a_paths = clips.loc[clips["track_id"] == _track(1), "audio_path"]
    expected = np.nanmean([_cached(tiny_dir, p)["lowlevel"] for p in a_paths], axis=0)
    row = lowlevel.loc[lowlevel["track_id"] == _track(1), list(LOWLEVEL_COLUMNS)].to_numpy()[0]
    np.testing.assert_allclose(row, expected, rtol=1e-12, equal_nan=True)
    assert np.isfinite(row).mean() > 0.9

    mel = pd.read_parquet(tiny_dir / "features" / "mel.parquet")
    assert list(mel.columns) == [
        "track_id",
        "clip_id",
        "event_timestamp",
        "array",
        "dtype",
        "shape",
    ]
    assert not mel.duplicated(["track_id", "clip_id"]).any() and len(mel) == 4
    for clip, row in zip(clips.itertuples(), mel.itertuples(), strict=True):
        assert (row.track_id, row.clip_id) == (clip.track_id, clip.clip_id)
        stored = _decoded(mel.loc[row.Index])
        direct = log_mel(load_audio(clip.audio_path, 16_000), MelConfig())
        assert stored.dtype == np.float16 and stored.shape == direct.shape
        np.testing.assert_allclose(stored.astype(np.float32), direct, atol=2.0**-7)

    info = json.loads((tiny_dir / "features" / "essentia.json").read_text())
    import essentia

    assert info["fingerprint"]["parameters"]["essentia_version"] == essentia.__version__
    assert info["fingerprint"]["parameters"]["parameters"]["lowLevelFrameSize"] == 2048
    assert info["columns"] == list(LOWLEVEL_COLUMNS)
    mel_info = json.loads((tiny_dir / "features" / "mel.json").read_text())
    assert mel_info["fingerprint"]["parameters"]["n_mels"] == 128
    errors = pd.read_parquet(tiny_dir / "extract_errors.parquet")
    assert list(errors.columns) == ["path", "error_type", "message"] and errors.empty

    again = extract_features(tiny_dir, workers=1, sets=CLASSIC, progress=False)
    assert (again.extracted, again.cached) == (0, 4)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tiny_dir / "features" / "essentia.parquet"), lowlevel
    )
    pd.testing.assert_frame_equal(pd.read_parquet(tiny_dir / "features" / "mel.parquet"), mel)

    # another decoding setting is another cache key: every clip is extracted again
    other = extract_features(tiny_dir, workers=1, sets=CLASSIC, max_seconds=1.5, progress=False)
    assert (other.extracted, other.cut) == (4, 4)
    assert "4 clips longer than 1.5 s cut" in other.summary()
    shorter = pd.read_parquet(tiny_dir / "features" / "mel.parquet")
    assert all(
        _decoded(row).shape[1] < _decoded(mel.loc[i]).shape[1] for i, row in shorter.iterrows()
    )


def test_bad_clips_are_listed_and_every_good_one_is_extracted(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    good_mp3 = _clip(audio / "good.mp3", seconds=3.0, seed=1)
    corrupt = audio / "corrupt.mp3"
    data = good_mp3.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes()
    corrupt.write_bytes(data[:2000] + noise)
    zero = audio / "zero.mp3"
    zero.write_bytes(b"")
    text = audio / "readme.mp3"
    text.write_text("not an mp3 at all\n" * 40)
    short = _clip(audio / "short.wav", seconds=0.5)
    silent = audio / "silent.flac"
    sf.write(silent, np.zeros(RATE * 2, np.float32), RATE)
    missing = audio / "missing.ogg"
    good_ogg = _clip(audio / "good.ogg", seconds=2.0, freq=500.0, seed=2)
    bad = {
        corrupt: "UndecodableAudio",
        zero: "EmptyAudio",
        text: "UndecodableAudio",
        short: "TooShortAudio",
        silent: "SilentAudio",
        missing: "UnreadableAudio",
    }
    paths = [good_mp3, *bad, good_ogg]
    _write_tables(tmp_path, [(_track(i), 0, p) for i, p in enumerate(paths)], release={})

    report = extract_features(tmp_path, workers=2, sets=CLASSIC, progress=False)
    assert report.failed == len(bad) and report.rows["mel"] == 2
    assert "extract_errors.parquet" in report.summary()
    errors = pd.read_parquet(tmp_path / "extract_errors.parquet")
    assert dict(zip(errors["path"], errors["error_type"], strict=True)) == {
        str(p): kind for p, kind in bad.items()
    }
    assert all(
        path in message for path, message in zip(errors["path"], errors["message"], strict=True)
    )
    lowlevel = pd.read_parquet(tmp_path / "features" / "essentia.parquet")
    assert lowlevel["track_id"].tolist() == [_track(0), _track(len(paths) - 1)]
    # failures are cached too: nothing is decoded again
    assert extract_features(tmp_path, workers=2, sets=CLASSIC, progress=False).extracted == 0


def test_cli_prints_a_summary_and_one_line_errors(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["features", "extract", "--data-dir", str(tiny_dir), "--workers", "1"]) == 0
    assert "4 clips of 3 tracks: 4 extracted" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["features", "extract", "--data-dir", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(empty) in err and "benchmark ingest audio" in err


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_completes_without_duplicates(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    clips = [
        (_track(i // 2), i % 2, _clip(audio / f"{i}.wav", seconds=4.0, freq=200.0 + 50 * i, seed=i))
        for i in range(10)
    ]
    _write_tables(tmp_path, clips, release={})
    cache = tmp_path / "cache" / "extract"
    code = (
        "import sys; from musicpop.features.extract import extract_features; "
        "extract_features(sys.argv[1], workers=2, progress=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        # kill once 3 clips have their low-level entry (every default feature set has its own
        # cache folder, so counting all entries would not say how many clips are done)
        while len(list(cache.glob("essentia_lowlevel/*.npz"))) < 3:
            assert proc.poll() is None, "extraction ended before it could be killed"
            assert time.monotonic() < deadline, "no clip finished within 120 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole job: the main process and its workers
        proc.wait()
    done_before = len(list(cache.glob("essentia_lowlevel/*.npz")))
    assert 3 <= done_before < 10
    assert not (tmp_path / "features" / "mel.parquet").exists()

    report = extract_features(tmp_path, workers=2, progress=False)
    assert report.cached == done_before and report.extracted == 10 - done_before
    assert report.failed == 0 and not list(cache.glob("*/.*.tmp"))
    mel = pd.read_parquet(tmp_path / "features" / "mel.parquet")
    assert len(mel) == 10 and not mel.duplicated(["track_id", "clip_id"]).any()
    assert all(_decoded(row).shape[0] == 128 for _, row in mel.iterrows())
    lowlevel = pd.read_parquet(tmp_path / "features" / "essentia.parquet")
    assert lowlevel["track_id"].tolist() == [_track(i) for i in range(5)]
    assert np.isfinite(lowlevel[list(LOWLEVEL_COLUMNS)].to_numpy()).mean() > 0.9


def test_scheduler_comes_from_configuration(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from musicpop.features.errors import DataError
    from musicpop.features.extract import SCHEDULER_ENV

    monkeypatch.setenv(SCHEDULER_ENV, "yarn://cluster:1")
    with pytest.raises(DataError, match="yarn://cluster:1"):
        extract_features(tiny_dir, workers=1, progress=False)
    monkeypatch.setenv(SCHEDULER_ENV, "processes")
    assert extract_features(tiny_dir, workers=1, progress=False).scheduler == "processes"


@pytest.mark.integration
def test_real_audio_extracts_through_the_pool(shared_data: Path, tmp_path: Path) -> None:
    audio = shared_data / "audio"
    clips = [
        (_track(1), 0, audio / "vibe_ace_preview_1.mp3"),
        (_track(1), 1, audio / "vibe_ace_preview_2.mp3"),
        (_track(2), 0, audio / "Kevin_MacLeod_-_Vibe_Ace.ogg"),
    ]
    _write_tables(tmp_path, clips, release={})
    report = extract_features(tmp_path, workers=2, progress=False)  # every default set
    assert (report.extracted, report.failed) == (3, 0)
    assert report.rows == {"essentia": 2, "mel": 3, "musicnn": 2, "musicnn_patches": 3}
    assert report.cut == 1  # the 61 s OGG is cut to the default 60 s
    mel = pd.read_parquet(tmp_path / "features" / "mel.parquet")
    ogg_frames = n_frames_for(60 * 16_000, MelConfig())
    assert [shape[1] for shape in mel["shape"]] == [2998, 2998, ogg_frames]
    lowlevel = pd.read_parquet(tmp_path / "features" / "essentia.parquet")
    assert lowlevel["rhythm.bpm"].between(120, 140).all()
