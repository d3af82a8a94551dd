"""The demo dataset generator and its synthesiser, on a tiny demo (8 songs, 2 regions, 12 weeks),
and, without audio, on larger demos: the null's independence from everything audible, the signal
strength presets, and the temporal split on the demo's targets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import stats

from musicpop.features.demo import (
    LEVEL_VARIANCE,
    REGIONS,
    SIGNALS,
    audio_share,
    make_demo,
    signal_scales,
)
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


# --- signal strength -------------------------------------------------------------------------


def test_signal_presets_and_scales() -> None:
    assert signal_scales(audio_share("strong")) == (1.0, 0.8)  # exactly the original demo
    assert audio_share("strong") == pytest.approx(1 / 1.64)
    assert 0.0 < audio_share("realistic") < audio_share("strong")
    assert audio_share(0.25) == audio_share("0.25") == 0.25
    for share in (0.0, 0.06, 0.5, 1.0):
        a, b = signal_scales(share)
        assert a**2 + b**2 == pytest.approx(LEVEL_VARIANCE)
        assert a**2 / LEVEL_VARIANCE == pytest.approx(share)
    with pytest.raises(DataError, match="unknown signal"):
        audio_share("huge")
    with pytest.raises(DataError, match="between 0 and 1"):
        audio_share(1.5)


@pytest.mark.slow
def test_signal_and_popularity_seed_change_popularity_only(tiny_demo: Path, tmp_path: Path) -> None:
    """The audio is the same bytes at every strength and popularity seed (rendered afresh here);
    charts and truth differ."""
    real = make_demo(
        tmp_path / "r", signal="realistic", popularity_seed=7, progress=lambda _: None, **TINY
    )
    ours, theirs = _digests(tiny_demo), _digests(real)
    audio = {n for n in ours if n.startswith("raw/audio/") and n.endswith(".mp3")}
    assert len(audio) >= TINY["songs"] and all(ours[n] == theirs[n] for n in audio)
    assert ours["ground_truth.parquet"] != theirs["ground_truth.parquet"]
    params = json.loads((real / "raw" / "demo.json").read_text())
    assert params["signal"] == "realistic" and params["audio_share"] == SIGNALS["realistic"]
    assert params["popularity_seed"] == 7


def test_popularity_seed_keeps_songs_ids_and_attributes(tmp_path: Path) -> None:
    quiet = {"progress": lambda _: None, "audio": False}
    small = {"songs": 40, "regions": 2, "weeks": 20, "seed": 5}
    base = pd.read_parquet(make_demo(tmp_path / "a", **quiet, **small) / "ground_truth.parquet")
    other = make_demo(tmp_path / "b", popularity_seed=6, **quiet, **small)
    again = pd.read_parquet(other / "ground_truth.parquet")
    kept = ["song_id", "track_id", "region", "version", "artist", *ATTRIBUTES]
    pd.testing.assert_frame_equal(base[kept], again[kept])
    for column in ("social", "level", "release_date"):
        assert (base[column] != again[column]).mean() > 0.5
    assert not _chart_rows(tmp_path / "a").equals(_chart_rows(other))
    with pytest.raises(DataError, match="popularity_seed"):
        make_demo(tmp_path / "c", popularity_seed=-1, **quiet, **small)


def test_realistic_is_the_default_and_the_share_is_what_the_truth_shows(tmp_path: Path) -> None:
    quiet = {"progress": lambda _: None, "audio": False}
    small = {"songs": 30, "regions": 2, "weeks": 10, "seed": 5}
    realistic = _digests(make_demo(tmp_path / "r", signal="realistic", **quiet, **small))
    assert _digests(make_demo(tmp_path / "d", **quiet, **small)) == realistic
    # the strong preset is the original planted signal, named or as its share
    default = _digests(make_demo(tmp_path / "s", signal="strong", **quiet, **small))
    for signal in (1.0 / 1.64,):
        assert _digests(make_demo(tmp_path / str(signal), signal=signal, **quiet, **small)) == {
            **default,
            "raw/demo.json": _digests(tmp_path / str(signal))["raw/demo.json"],
        }
    # the taste's share of the song-level level, on 400 songs of one region, is the audio share
    for share in (0.1, 0.6):
        out = make_demo(
            tmp_path / f"v{share}", songs=400, regions=1, weeks=4, signal=share, **quiet
        )
        truth = pd.read_parquet(out / "ground_truth.parquet").drop_duplicates("song_id")
        a, _ = signal_scales(share)
        explained = np.var(a * truth["taste"]) / np.var(a * truth["taste"] + truth["social"])
        assert explained == pytest.approx(share, abs=0.07)


# --- the null ----------------------------------------------------------------------------------

ATTRIBUTES = ["tempo", "mode", "key", "brightness", "density", "loudness", "timbre"]
LARGE = {"songs": 400, "regions": 3, "top_n": 100, "audio": False, "progress": lambda _: None}


def _charted_rows(out: Path, horizon: int = 8) -> pd.DataFrame:
    """Complete (track, region) rows of the demo's charts, through the real ingestion, with the
    ground truth and ``y``: region-demeaned log1p charted sum."""
    from musicpop.features.charts import ingest_charts
    from musicpop.features.targets import compute_targets

    ingest_charts([out / "raw" / "charts"], out / "ingested", progress=False)
    pop = compute_targets(pd.read_parquet(out / "ingested" / "streams.parquet"), horizon=horizon)
    pop = pop[pop["complete_horizon"]]
    rows = pop.merge(pd.read_parquet(out / "ground_truth.parquet"), on=["track_id", "region"])
    y = np.log1p(rows["sum"])
    rows["y"] = y - y.groupby(rows["region"]).transform("mean")
    return rows


def _version_contrast_p(rows: pd.DataFrame, value: str, kind: str) -> float:
    """p-value of a one-sample t-test over songs of ``value`` (version minus original, averaged
    over the regions where both have rows): under independence the mean is 0."""
    wide = rows.pivot_table(index=["song_id", "region"], columns="version", values=value)
    if kind not in wide:
        return float("nan")
    diff = (wide[kind] - wide["original"]).dropna().groupby(level="song_id").mean()
    assert len(diff) >= 10  # enough songs for the test to have power
    if diff.std() < 1e-9:  # identical differences (a bare offset): no noise to test against
        return 0.0 if abs(diff.mean()) > 1e-9 else 1.0
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def _attribute_p(rows: pd.DataFrame, value: str) -> dict[str, float]:
    """Spearman p-values of each hidden attribute against the song-level mean of ``value``
    (songs are independent draws, so the p-values are valid under independence)."""
    songs = rows.groupby("song_id").agg({value: "mean", **{a: "first" for a in ATTRIBUTES}})
    return {a: float(stats.spearmanr(songs[a], songs[value]).pvalue) for a in ATTRIBUTES}


def _out_of_fold_association(rows: pd.DataFrame) -> tuple[float, float]:
    """Within-region Spearman and R^2 of a song-grouped 5-fold linear predictor from every
    hidden attribute (and tempo^2), the version kind and the region."""
    from musicpop.benchmark.metrics import METRICS
    from musicpop.benchmark.splits import SongGroupKFold

    x = rows[ATTRIBUTES].astype(float)
    x["tempo2"] = (x["tempo"] - x["tempo"].mean()) ** 2
    x = pd.concat(
        [x, pd.get_dummies(rows[["version", "region"]], drop_first=True, dtype=float)], axis=1
    )
    design = np.column_stack([np.ones(len(x)), ((x - x.mean()) / x.std()).fillna(0.0)])
    y = rows["y"].to_numpy()
    pred = np.zeros(len(rows))
    folds = SongGroupKFold(5, seed=0).song_folds(rows["song_id"])
    for k in range(5):
        beta = np.linalg.lstsq(design[folds != k], y[folds != k], rcond=None)[0]
        pred[folds == k] = design[folds == k] @ beta
    region = rows["region"].to_numpy()
    return (
        METRICS["spearman_region"](y, pred, region, folds),
        METRICS["r2_region"](y, pred, region, folds),
    )


@pytest.mark.slow
def test_null_demo_is_independent_of_everything_audible(tmp_path: Path) -> None:
    """Region-demeaned popularity (ground-truth level, and the charted sum after ingestion) has no
    more than chance association with any hidden attribute or version kind, nor with an
    out-of-fold predictor from all of them. The same tests detect the version offsets of the
    non-null demo at zero audio share and the taste of the strong demo."""
    null = make_demo(tmp_path / "null", null=True, seed=1, **LARGE)
    offsets_only = make_demo(tmp_path / "offsets", signal=0.0, seed=1, **LARGE)
    strong = make_demo(tmp_path / "strong", signal="strong", seed=1, **LARGE)
    alpha = 0.001

    for out, independent in ((null, True), (offsets_only, False)):
        truth = pd.read_parquet(out / "ground_truth.parquet")
        truth["y"] = truth["level"] - truth.groupby("region")["level"].transform("mean")
        rows = _charted_rows(out)
        for frame in (truth, rows):
            for kind in ("live", "remastered"):
                p = _version_contrast_p(frame, "y", kind)
                assert (p > alpha) if independent else (p < 1e-6), (out.name, kind, p)
        if independent:
            for frame in (truth, rows):
                assert min(_attribute_p(frame, "y").values()) > alpha / len(ATTRIBUTES)
            spearman, r2 = _out_of_fold_association(rows)
            assert abs(spearman) < 0.15 and r2 < 0.01, (spearman, r2)
    # the audio itself is the same in all three: only its link to popularity differs
    a, b = (pd.read_parquet(d / "ground_truth.parquet") for d in (null, strong))
    assert (a[ATTRIBUTES].to_numpy() == b[ATTRIBUTES].to_numpy()).all()
    spearman, r2 = _out_of_fold_association(_charted_rows(strong))
    assert spearman > 0.3 and r2 > 0.1
    assert min(_attribute_p(_charted_rows(strong), "y").values()) < 1e-6


# --- temporal split ----------------------------------------------------------------------------


@pytest.mark.slow
def test_temporal_split_runs_on_the_demo_with_a_short_horizon(tmp_path: Path) -> None:
    """On the 52-week demo, complete 26-week windows debut in weeks 0-26, so no training row's
    targets are known before the first test debut; an 8-week horizon leaves a training set."""
    from musicpop.benchmark.splits import temporal_split
    from musicpop.features.charts import ingest_charts
    from musicpop.features.targets import compute_targets

    out = make_demo(tmp_path / "demo", audio=False, progress=lambda _: None)
    ingest_charts([out / "raw" / "charts"], out / "ingested", progress=False)
    streams = pd.read_parquet(out / "ingested" / "streams.parquet")
    truth = pd.read_parquet(out / "ground_truth.parquet").drop_duplicates("track_id")
    song_of = truth.set_index("track_id")["song_id"]
    catalog = truth[["track_id", "release_date"]]

    def kept(horizon: int) -> pd.DataFrame:
        pop = compute_targets(streams, horizon=horizon, catalog=catalog)
        rows = pop[pop["complete_horizon"] & ~pop["left_censored"] & ~pop["reentry"]]
        return rows.reset_index(drop=True)

    long = kept(26)
    with pytest.raises(DataError, match="no training row"):
        temporal_split(
            long["track_id"].map(song_of), long["debut_date"], 0.2, long["event_timestamp"]
        )
    rows = kept(8)
    songs = rows["track_id"].map(song_of)
    fold = temporal_split(songs, rows["debut_date"], 0.2, rows["event_timestamp"])
    assert not set(songs[fold.train]) & set(songs[fold.test])
    assert len(fold.train) > 0.5 * len(rows) and len(fold.test) > 0.1 * len(rows)
    first_test = rows["debut_date"].iloc[fold.test].min()
    known = rows["event_timestamp"].iloc[fold.train].dt.tz_localize(None)
    assert (known <= first_test).all()
    assert (rows["debut_date"].iloc[fold.train] < first_test).all()
