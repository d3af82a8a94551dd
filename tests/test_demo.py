"""The demo dataset generator and its synthesiser, on a tiny demo (8 songs, 2 regions, 12 weeks)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from musicpop.features.demo import REGIONS, make_demo
from musicpop.features.errors import DataError
from musicpop.features.identifiers import TRACK_ID_RE
from musicpop.features.synth import SAMPLE_RATE, VARIANTS, SongAttributes, encode_mp3, render_clip

TINY = {"songs": 8, "regions": 2, "weeks": 12, "top_n": 5, "seed": 3, "workers": 1}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo") / "data", progress=lambda _: None, **TINY)


@pytest.fixture(scope="module")
def truth(tiny_demo: Path) -> pd.DataFrame:
    return pd.read_parquet(tiny_demo / "ground_truth.parquet")


def _chart_rows(data: Path) -> pd.DataFrame:
    frames = []
    for path in sorted((data / "raw" / "charts").rglob("*.csv")):
        frame = pd.read_csv(path, skiprows=1)
        frame["region"] = path.parent.name
        frames.append(frame)
    rows = pd.concat(frames, ignore_index=True)
    rows["track_id"] = rows["URL"].str.rsplit("/", n=1).str[-1]
    return rows


def test_same_seed_gives_identical_bytes(tiny_demo: Path, tmp_path: Path) -> None:
    """Also with two rendering processes: the bytes do not depend on the worker count."""
    again = make_demo(tmp_path / "again", progress=lambda _: None, **{**TINY, "workers": 2})
    first, second = _digests(tiny_demo), _digests(again)
    assert len(first) > 20
    assert first == second


def test_other_seed_gives_other_data(tiny_demo: Path, tmp_path: Path) -> None:
    other = make_demo(tmp_path / "o", progress=lambda _: None, audio=False, **{**TINY, "seed": 4})
    ours, theirs = _digests(tiny_demo), _digests(other)
    assert not (other / "raw" / "audio").exists()
    for name in ("raw/catalog.csv", "ground_truth.parquet"):
        assert ours[name] != theirs[name]
    assert not set(_chart_rows(tiny_demo)["track_id"]) & set(_chart_rows(other)["track_id"])


def test_complete_demo_is_not_regenerated(tiny_demo: Path) -> None:
    messages: list[str] = []
    clip = next((tiny_demo / "raw" / "audio").glob("*.mp3"))
    before = clip.stat().st_mtime_ns
    make_demo(tiny_demo, progress=messages.append, **TINY)
    assert clip.stat().st_mtime_ns == before
    assert any("nothing to do" in m for m in messages)
    assert json.loads((tiny_demo / "raw" / "demo.json").read_text())["songs"] == TINY["songs"]


def test_interrupted_run_resumes_with_the_same_bytes(tmp_path: Path) -> None:
    small = {**TINY, "songs": 2, "weeks": 3, "regions": 1}
    out = make_demo(tmp_path / "d", progress=lambda _: None, **small)
    clips = sorted((out / "raw" / "audio").glob("*.mp3"))
    digests = _digests(out)
    kept = clips[0].stat().st_mtime_ns
    clips[-1].unlink()  # as if killed while rendering the last clip, before the marker
    (out / "raw" / "demo.json").unlink()
    make_demo(out, progress=lambda _: None, **small)
    assert _digests(out) == digests
    assert clips[0].stat().st_mtime_ns == kept  # finished clips are not rendered again


def test_changed_parameters_regenerate_and_drop_stale_files(tmp_path: Path) -> None:
    small = {**TINY, "songs": 3, "weeks": 4}
    out = make_demo(tmp_path / "d", progress=lambda _: None, **{**small, "regions": 2})
    assert (out / "raw" / "charts" / "gb").is_dir()
    make_demo(out, progress=lambda _: None, **{**small, "regions": 1})
    assert not list((out / "raw" / "charts" / "gb").glob("*.csv"))
    assert len(list((out / "raw" / "charts" / "us").glob("*.csv"))) == 4
    assert json.loads((out / "raw" / "demo.json").read_text())["regions"] == 1


def test_chart_files_follow_the_old_spotifycharts_format(
    tiny_demo: Path, shared_data: Path
) -> None:
    real = (
        shared_data / "charts/spotifycharts-weekly-2019-2021/us/2019-01-04--2019-01-11us.csv"
    ).read_bytes()
    files = sorted((tiny_demo / "raw" / "charts").rglob("*.csv"))
    assert len(files) == TINY["regions"] * TINY["weeks"]
    for path in files:
        raw = path.read_bytes()
        assert raw.splitlines()[:2] == real.splitlines()[:2]  # note line and header, byte for byte
        assert raw.endswith(b"\n") and b"\r" not in raw and not raw.startswith(b"\xef\xbb\xbf")
        start, end = path.stem[:10], path.stem[12:22]
        assert path.stem[10:12] == "--" and path.stem[22:] == path.parent.name
        assert (pd.Timestamp(end) - pd.Timestamp(start)).days == 7
        frame = pd.read_csv(path, skiprows=1)
        assert list(frame.columns) == ["Position", "Track Name", "Artist", "Streams", "URL"]
        assert 1 <= len(frame) <= TINY["top_n"]
        assert frame["Position"].tolist() == list(range(1, len(frame) + 1))
        assert frame["Streams"].is_monotonic_decreasing and (frame["Streams"] > 0).all()
        assert frame["URL"].str.match(r"^https://open\.spotify\.com/track/[0-9A-Za-z]{22}$").all()
    # quoting like the real files: spaced or special fields in quotes, plain words bare
    text = b"".join(p.read_bytes() for p in files).decode()
    assert ',"' in text
    assert '""' in text  # a title with a quote is escaped by doubling


def test_track_ids_are_valid_and_consistent(tiny_demo: Path, truth: pd.DataFrame) -> None:
    catalog = pd.read_csv(tiny_demo / "raw" / "catalog.csv", dtype=str)
    assert list(catalog.columns[:4]) == ["path", "track_id", "song_id", "release_date"]
    assert catalog["track_id"].str.fullmatch(TRACK_ID_RE.pattern[1:-1]).all()
    assert set(catalog["track_id"]) == set(truth["track_id"])
    charted = set(_chart_rows(tiny_demo)["track_id"])
    assert charted <= set(truth["track_id"]) and len(charted) >= 5
    for rel in catalog["path"]:
        assert (tiny_demo / "raw" / rel).is_file()
    clips = sorted(p.name for p in (tiny_demo / "raw" / "audio").glob("*.mp3"))
    assert clips == sorted(Path(rel).name for rel in catalog["path"])
    # versions share a song, second clips share a track
    versions = truth.drop_duplicates("track_id").groupby("song_id")["version"].apply(set)
    assert {"original", "remastered"} in versions.tolist()
    assert {"original", "live"} in versions.tolist()
    assert catalog["track_id"].duplicated().any()
    assert any(name.endswith("_1.mp3") for name in clips)
    assert truth["seasonal"].any()


def test_audio_decodes_with_the_right_length(tiny_demo: Path, truth: pd.DataFrame) -> None:
    for path in sorted((tiny_demo / "raw" / "audio").glob("*.mp3"))[:3]:
        samples, rate = sf.read(path)
        assert rate == SAMPLE_RATE
        assert abs(len(samples) / rate - 30.0) < 0.2
        assert 0.01 < np.sqrt(np.mean(samples**2)) < 0.7


def test_synth_makes_attributes_audible() -> None:
    base = SongAttributes(
        tempo=120, mode=1, key=0, brightness=0.5, density=0.5, loudness=-12, timbre=1
    )
    changes = {
        "dark": {"brightness": 0.1},
        "bright": {"brightness": 0.9},
        "quiet": {"loudness": -18},
        "loud": {"loudness": -8},
    }
    rendered = {
        name: render_clip(replace(base, **change), seed=1, seconds=6)
        for name, change in changes.items()
    }

    def centroid(x: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(x))
        freqs = np.fft.rfftfreq(x.size, 1.0 / SAMPLE_RATE)
        return float((spectrum * freqs).sum() / spectrum.sum())

    def rms_db(x: np.ndarray) -> float:
        return float(20 * np.log10(np.sqrt(np.mean(x**2))))

    assert centroid(rendered["bright"]) > 1.5 * centroid(rendered["dark"])
    assert rms_db(rendered["loud"]) - rms_db(rendered["quiet"]) > 6.0
    clip = render_clip(base, seed=1, seconds=6)
    assert clip.dtype == np.float32 and clip.shape == (6 * SAMPLE_RATE,)
    assert np.array_equal(clip, render_clip(base, seed=1, seconds=6))
    assert not np.array_equal(clip, render_clip(base, seed=1, seconds=6, start_bar=8))
    for variant in VARIANTS:
        assert np.abs(render_clip(base, seed=1, seconds=2, variant=variant)).max() < 1.0
    mp3 = encode_mp3(clip)
    assert mp3 == encode_mp3(clip)
    assert mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0  # an MPEG audio frame sync


def test_tempo_sets_the_onset_grid() -> None:
    attrs = SongAttributes(
        tempo=100, mode=0, key=5, brightness=0.5, density=0.1, loudness=-12, timbre=0
    )
    x = render_clip(attrs, seed=2, seconds=12)
    envelope = np.abs(x).reshape(-1, 441).max(axis=1)  # 10 ms frames
    flux = np.maximum(np.diff(envelope), 0.0)
    spectrum = np.abs(np.fft.rfft(flux - flux.mean()))
    freqs = np.fft.rfftfreq(flux.size, 0.01) * 60.0  # per minute
    band = (freqs > 60) & (freqs < 250)
    peak = freqs[band][np.argmax(spectrum[band])]
    assert min(abs(peak - 100.0), abs(peak - 200.0)) < 4.0


def _taste_attribute_r2(truth: pd.DataFrame) -> float:
    """Share of the variance of the noise-free appeal (within region) explained by attributes."""
    songs = truth[~truth["seasonal"] & (truth["version"] == "original")]
    r2 = []
    for _, g in songs.groupby("region"):
        x = g[["tempo", "mode", "brightness", "density", "loudness"]].to_numpy(float)
        x = np.column_stack([np.ones(len(x)), x, x[:, 0] ** 2])
        y = g["appeal"].to_numpy()
        beta, *_ = np.linalg.lstsq(x, y, rcond=None)
        r2.append(1.0 - np.var(y - x @ beta) / np.var(y))
    return float(np.mean(r2))


def test_appeal_follows_the_audio_and_null_breaks_it(tmp_path: Path) -> None:
    """Ground truth only (no audio needed): 60 songs, so the regression has power."""
    size = {**TINY, "songs": 60, "weeks": 8, "audio": False}
    quiet = {"progress": lambda _: None}
    real = pd.read_parquet(make_demo(tmp_path / "a", **quiet, **size) / "ground_truth.parquet")
    null = pd.read_parquet(
        make_demo(tmp_path / "b", null=True, **quiet, **size) / "ground_truth.parquet"
    )
    assert _taste_attribute_r2(real) > 0.95
    assert _taste_attribute_r2(null) < 0.5
    # the audio attributes are the same in both; only the link to popularity differs
    assert (real["tempo"].to_numpy() == null["tempo"].to_numpy()).all()
    # social noise keeps the realised level from being a function of the audio
    original = real[real["version"] == "original"]
    by_region = original.groupby("region")
    share = by_region["taste"].var() / by_region["level"].var()
    assert ((share > 0.3) & (share < 0.9)).all()


def test_regions_have_different_tastes(truth: pd.DataFrame) -> None:
    taste = truth.pivot_table(index="track_id", columns="region", values="taste")
    assert list(taste.columns) == sorted(p.code for p in REGIONS[: TINY["regions"]])
    assert taste.corr().to_numpy()[0, 1] < 0.95


def test_bad_parameters_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="regions"):
        make_demo(tmp_path, songs=2, regions=len(REGIONS) + 1)
    with pytest.raises(DataError, match="songs"):
        make_demo(tmp_path, songs=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        make_demo(tmp_path / "file", songs=1)


def test_charts_ingest_without_skipped_files(tiny_demo: Path, tmp_path: Path) -> None:
    from musicpop.features.charts import ingest_charts

    report = ingest_charts([tiny_demo / "raw" / "charts"], tmp_path)
    assert report.skipped == []
    assert report.files_read == TINY["regions"] * TINY["weeks"]
    assert report.invalid_track_ids == 0 and report.conflicts == 0
    streams = pd.read_parquet(tmp_path / "streams.parquet")
    assert len(streams) == len(_chart_rows(tiny_demo))
    assert set(streams["region"]) == {p.code for p in REGIONS[: TINY["regions"]]}
    assert set(streams["period"]) == {"weekly"}


def test_audio_and_catalog_ingest_with_the_mapping(tiny_demo: Path, truth: pd.DataFrame) -> None:
    from musicpop.features.catalog import ingest_audio
    from musicpop.features.charts import ingest_charts

    data = tiny_demo.parent / "ingested"
    ingest_charts([tiny_demo / "raw" / "charts"], data)
    report = ingest_audio(tiny_demo / "raw" / "audio", data, tiny_demo / "raw" / "catalog.csv")
    assert report.skipped == [] and report.mapping_rows_without_file == 0
    clips = pd.read_parquet(data / "clips.parquet")
    assert len(clips) == len(list((tiny_demo / "raw" / "audio").glob("*.mp3")))
    assert clips.groupby("track_id")["clip_id"].max().max() == 1
    catalog = pd.read_parquet(data / "catalog.parquet").set_index("track_id")
    expected = truth.drop_duplicates("track_id").set_index("track_id")
    assert set(catalog.index) == set(expected.index)
    assert (catalog["song_id"] == expected["song_id"].reindex(catalog.index)).all()
    # the catalog's own title rule groups versions exactly as the demo's song ids do
    from musicpop.features.catalog import song_id

    derived = [song_id(a, t) for a, t in zip(expected["artist"], expected["title"], strict=True)]
    assert derived == expected["song_id"].tolist()
