"""Pretrained encoders in the store and the estimators: the MusiCNN and front-end feature sets,
MP2/MP3 on segment sequences (precomputed, frozen, fine-tuned, AST), provenance, the
instrumental section."""

from __future__ import annotations

import json
import multiprocessing
from concurrent import futures
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import save_tiny_ast
from transformers import ASTModel

from musicpop.benchmark.data import BenchmarkData, FeatureInputs
from musicpop.benchmark.instrumental import instrumental_table, vocal_groups
from musicpop.benchmark.registry import MODELS, SUITES, resolve_suite
from musicpop.features.ast_checkpoint import state_sha256
from musicpop.features.audio import load_audio
from musicpop.features.errors import DataError
from musicpop.features.extract import extract_features, requested_sets
from musicpop.features.fbank import ast_windows
from musicpop.features.feature_sets import (
    FEATURE_SETS,
    decode_array,
    encoder_provenance,
    get_feature_set,
)
from musicpop.features.layout import DataLayout
from musicpop.features.musicnn import musicnn_input, musicnn_outputs
from musicpop.features.musicnn_weights import load_tagger, tag_feature_names
from musicpop.features.pretrained import (
    EMBEDDING_COLUMNS,
    MSD_TAG_COLUMNS,
    musicnn_compute,
    musicnn_parameters,
    process_tagger,
)
from musicpop.models.estimators.deep import MP2Estimator, MP3Estimator, covering_crops

TRAIN = {"epochs": 1, "batch_size": 4, "val_fraction": 0.0, "cpu_threads": 1}


@pytest.fixture(autouse=True)
def weights_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Converted MusiCNN weights in a temporary folder, not the user's cache."""
    folder = tmp_path_factory.getbasetemp() / "musicnn-weights"
    monkeypatch.setenv("MUSICPOP_CACHE_DIR", str(folder))
    return folder


def _rows(clips: dict[str, list[np.ndarray]], regions: tuple[str, ...] = ("us", "gb")):
    X = pd.DataFrame(
        [(t, f"song_{t}", r) for t in clips for r in regions],
        columns=["track_id", "song_id", "region"],
    )
    X["clips"] = X["track_id"].map(clips)
    return X


# --- the feature sets ---------------------------------------------------------------------------


def test_tag_columns_are_the_taggers_and_the_sets_are_declared() -> None:
    assert tag_feature_names("MSD_musicnn") == MSD_TAG_COLUMNS
    musicnn, patches = FEATURE_SETS["musicnn"], FEATURE_SETS["musicnn_patches"]
    assert musicnn.columns == EMBEDDING_COLUMNS + MSD_TAG_COLUMNS and len(musicnn.columns) == 250
    assert "msd_tag_instrumental" in musicnn.columns
    # one extractor computes both sets: one MusiCNN forward pass per clip
    assert musicnn.extractor is patches.extractor
    assert (musicnn.kind, patches.kind) == ("tabular", "clips")
    assert musicnn.encoder == patches.encoder == "MSD_musicnn"
    # the network's raw inputs are large: extracted only when a model asks for them
    for name, dtype in (("musicnn_input", "float16"), ("ast_fbank", "float16")):
        fs = FEATURE_SETS[name]
        assert (fs.kind, fs.default, fs.dtype, fs.encoder) == ("clips", False, dtype, None)
    defaults = {fs.name for fs in requested_sets(DataLayout("nowhere"), None)}
    assert {"essentia", "mel", "musicnn", "musicnn_patches"} <= defaults
    assert not {"musicnn_input", "ast_fbank"} & defaults


def test_extractor_parameters_name_the_weights() -> None:
    tagger = load_tagger("MSD_musicnn")
    parameters = musicnn_parameters()
    assert parameters["model"] == "MSD_musicnn"
    # a hash of the tensors: equal for equal weights whatever file they were loaded from
    assert parameters["weights_sha256"] == state_sha256(tagger.model)
    other = load_tagger("MTT_musicnn")
    assert state_sha256(other.model) != parameters["weights_sha256"]


def _tagger_loads_and_threads(path: str) -> tuple[int, int]:
    """Run in a spawned worker: two clips, then how often the tagger was loaded."""
    signal = load_audio(path, 16_000)
    musicnn_compute(signal)
    musicnn_compute(signal[: 16_000 * 5])
    return process_tagger.cache_info().misses, torch.get_num_threads()


@pytest.mark.slow
def test_a_worker_loads_the_tagger_once(shared_data: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        path = str(shared_data / "audio" / "vibe_ace_preview_1.mp3")
        loads, threads = pool.submit(_tagger_loads_and_threads, path).result()
    assert (loads, threads) == (1, 1)


def _write_clips(data_dir: Path, clips: list[tuple[str, int, Path]]) -> None:
    tracks = sorted({t for t, _, _ in clips})
    pd.DataFrame(
        {
            "track_id": tracks,
            "song_id": tracks,
            "title": tracks,
            "artist": "someone",
            "audio_path": [str(next(p for t2, _, p in clips if t2 == t)) for t in tracks],
            "release_date": pd.to_datetime(["2019-05-03"] * len(tracks)).date,
        }
    ).to_parquet(data_dir / "catalog.parquet")
    pd.DataFrame(
        {
            "track_id": [t for t, _, _ in clips],
            "clip_id": [c for _, c, _ in clips],
            "audio_path": [str(p) for _, _, p in clips],
        }
    ).to_parquet(data_dir / "clips.parquet")


@pytest.mark.slow
def test_extraction_writes_what_the_encoders_compute(shared_data: Path, tmp_path: Path) -> None:
    audio = shared_data / "audio"
    a, b = "0" * 21 + "a", "0" * 21 + "b"
    clips = [(a, 0, audio / "vibe_ace_preview_1.mp3"), (a, 1, audio / "vibe_ace_preview_2.mp3")]
    clips.append((b, 0, audio / "Kevin_MacLeod_-_Vibe_Ace.ogg"))
    _write_clips(tmp_path, clips)
    sets = ["musicnn", "musicnn_patches", "musicnn_input", "ast_fbank"]
    report = extract_features(tmp_path, workers=2, sets=sets, progress=False)
    assert (report.extracted, report.failed) == (3, 0)
    assert report.rows == {"musicnn": 2, "musicnn_patches": 3, "musicnn_input": 3, "ast_fbank": 3}

    tagger = load_tagger("MSD_musicnn")
    signals = [load_audio(p, 16_000)[: 60 * 16_000] for _, _, p in clips]  # cut to 60 s
    direct = [musicnn_outputs(s, tagger) for s in signals]
    table = pd.read_parquet(tmp_path / "features" / "musicnn.parquet").set_index("track_id")
    # a track's row: the embedding and the tags, each the mean over its clips
    expected_a = np.concatenate(
        [np.mean([d[k] for d in direct[:2]], axis=0) for k in ("embedding", "tags")]
    )
    row = table.loc[a, list(FEATURE_SETS["musicnn"].columns)].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(row, expected_a, atol=1e-5)
    assert table.loc[b, "msd_tag_instrumental"] == pytest.approx(
        direct[2]["tags"][MSD_TAG_COLUMNS.index("msd_tag_instrumental")], abs=1e-6
    )

    def stored(name: str) -> list[np.ndarray]:
        frame = pd.read_parquet(tmp_path / "features" / f"{name}.parquet")
        frame = frame.sort_values(["track_id", "clip_id"])
        return [decode_array(r.array, r.dtype, r.shape) for r in frame.itertuples()]

    for got, d in zip(stored("musicnn_patches"), direct, strict=True):
        np.testing.assert_allclose(got, d["patch_embeddings"], atol=1e-5)
    for got, s in zip(stored("musicnn_input"), signals, strict=True):
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, musicnn_input(s).astype(np.float16))
    for got, s in zip(stored("ast_fbank"), signals, strict=True):
        assert got.shape[1:] == (1024, 128)
        np.testing.assert_array_equal(got, ast_windows(s).astype(np.float16))

    info = json.loads((tmp_path / "features" / "musicnn.json").read_text())
    sha = info["fingerprint"]["parameters"]["weights_sha256"]
    assert sha == state_sha256(tagger.model)
    layout = DataLayout(tmp_path)
    assert encoder_provenance(layout, get_feature_set("musicnn_patches")) == {
        "encoder": "MSD_musicnn",
        "encoder_weights_sha256": sha,
        "encoder_frozen": True,
    }
    assert encoder_provenance(layout, get_feature_set("ast_fbank")) == {}
    again = extract_features(tmp_path, workers=1, sets=sets, progress=False)
    assert (again.extracted, again.cached) == (0, 3)


# --- estimators on segment sequences -----------------------------------------------------------


def test_segment_crops_run_along_the_segments() -> None:
    sequence = np.arange(13 * 4).reshape(13, 4)  # (S, E)
    crops = covering_crops(sequence, 5, axis=0)
    assert len(crops) == 3 and all(c.shape == (5, 4) for c in crops)
    covered = np.unique(np.concatenate([c[:, 0] for c in crops]))
    np.testing.assert_array_equal(covered, sequence[:, 0])
    short = covering_crops(sequence[:3], 5, axis=0)  # tiled up to the crop length
    np.testing.assert_array_equal(short[0][:, 0], sequence[[0, 1, 2, 0, 1], 0])


def test_mp2_learns_from_precomputed_patch_embeddings() -> None:
    rng = np.random.default_rng(0)
    appeal = rng.uniform(0, 1, 16)
    direction = rng.normal(size=200)
    clips = {
        f"t{i:02d}": [
            (rng.normal(size=(int(rng.integers(7, 13)), 200)) + 2 * a * direction).astype("f4")
        ]
        for i, a in enumerate(appeal)
    }
    X = _rows(clips, regions=("us",))
    truth = X["track_id"].map(dict(zip(clips, appeal, strict=True)))
    y = pd.DataFrame({"log1p_charted_sum": 5 + 3 * truth, "log1p_debut": 2 + truth}, index=X.index)
    est = MP2Estimator(
        encoder="musicnn",
        config={"conditioning": "token", "segments": {"dim": 32, "n_heads": 2}},
        training={**TRAIN, "epochs": 25, "batch_size": 8, "lr": 3e-3},
        progress=False,
    ).fit(X, y)
    assert est.config_.encoder_type == "musicnn" and est.crop_shape_ == (10, 200)
    assert est.provenance() == {"encoder": "musicnn", "encoder_frozen": True}
    pred = est.predict(X)
    assert np.corrcoef(pred["log1p_charted_sum"], y["log1p_charted_sum"])[0, 1] > 0.9
    # the inputs are not standardised: the segment tokens are layer-normalised
    assert (est.input_mean_, est.input_std_) == (0.0, 1.0)
    with pytest.raises(DataError, match="fitted on"):
        est.predict(_rows({"t00": [np.zeros((10, 100), "f4")]}))
    # MP3 starts from this encoder
    curves = y.assign(curve_00=y["log1p_debut"], curve_01=y["log1p_debut"] - 0.5)
    mp3 = MP3Estimator(
        encoder="musicnn",
        config={"segments": {"dim": 32, "n_heads": 2}},
        training=TRAIN,
        progress=False,
        encoder_state_dict=est.encoder_state_dict_,
    ).fit(X, curves)
    assert mp3.encoder_from_mp2_


def test_pretrained_encoder_settings_that_cannot_work_are_clear_errors() -> None:
    X = _rows({"a": [np.zeros((10, 200), "f4")], "b": [np.ones((10, 200), "f4")]})
    y = pd.DataFrame({"log1p_charted_sum": np.arange(4.0), "log1p_debut": 1.0}, index=X.index)
    with pytest.raises(DataError, match="needs its raw segments"):
        MP2Estimator(encoder="musicnn", frozen=False, training=TRAIN, progress=False).fit(X, y)
    with pytest.raises(DataError, match="encoder must be one of"):
        MP2Estimator(encoder="wav2vec", training=TRAIN, progress=False).fit(X, y)
    with pytest.raises(DataError, match="choose the encoder with the estimator's `encoder`"):
        MP2Estimator(config={"encoder_type": "ast"}, training=TRAIN, progress=False).fit(X, y)
    patches = _rows({"a": [np.zeros((2, 187, 50), "f2")], "b": [np.ones((2, 187, 50), "f2")]})
    with pytest.raises(DataError, match=r"MusiCNN reads \(n_patches, frames, 96\)"):
        MP2Estimator(encoder="musicnn", training=TRAIN, progress=False).fit(patches, y)
    with pytest.raises(DataError, match="needs ast_checkpoint"):
        MP2Estimator(encoder="ast", training=TRAIN, progress=False).fit(patches, y)


@pytest.mark.slow
def test_fine_tuning_musicnn_moves_its_weights_at_a_lower_rate() -> None:
    rng = np.random.default_rng(1)
    clips = {t: [rng.uniform(0, 3, (2, 187, 96)).astype(np.float16)] for t in ("a", "b", "c")}
    X = _rows(clips)
    y = pd.DataFrame(
        {"log1p_charted_sum": rng.normal(size=len(X)), "log1p_debut": 1.0}, index=X.index
    )
    pretrained = load_tagger("MSD_musicnn")
    before = {k: v.clone() for k, v in pretrained.model.state_dict().items()}
    settings = {
        "encoder": "musicnn",
        "config": {"segments": {"n_segments": 2, "dim": 16, "n_heads": 2}},
        "training": {**TRAIN, "batch_size": 3},
        "progress": False,
    }
    tuned = MP2Estimator(frozen=False, **settings).fit(X, y)
    frozen = MP2Estimator(frozen=True, **settings).fit(X, y)
    sha = state_sha256(pretrained.model)
    assert tuned.provenance() == {
        "encoder": "MSD_musicnn",
        "encoder_weights_sha256": sha,
        "encoder_frozen": False,
    }
    assert frozen.provenance()["encoder_frozen"] is True

    def moved(est: MP2Estimator) -> float:
        state = est.model_.encoder.backbone.musicnn.state_dict()
        return max(float((state[k] - before[k]).abs().max()) for k in before if "dense" in k)

    assert moved(tuned) > 0 and moved(frozen) == 0
    groups = tuned.model_.encoder.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert np.isfinite(tuned.predict(X).to_numpy()).all()


def test_ast_backbone_from_a_local_checkpoint(tmp_path: Path) -> None:
    folder = save_tiny_ast(tmp_path / "ast", max_length=64, num_mel_bins=32)
    rng = np.random.default_rng(2)
    X = _rows({t: [rng.normal(size=(3, 64, 32)).astype(np.float16)] for t in ("a", "b", "c")})
    y = pd.DataFrame(
        {"log1p_charted_sum": rng.normal(size=len(X)), "log1p_debut": 1.0}, index=X.index
    )
    est = MP2Estimator(
        encoder="ast",
        frozen=False,
        ast_checkpoint=str(folder),
        config={"conditioning": "token", "segments": {"dim": 16, "n_heads": 2}},
        training=TRAIN,
        progress=False,
    ).fit(X, y)
    assert est.config_.segments.segment_dim == 16 and est.crop_shape_ == (3, 64, 32)
    assert est.provenance() == {
        "encoder": f"ast:{folder}",
        "encoder_weights_sha256": state_sha256(ASTModel.from_pretrained(folder)),
        "encoder_frozen": False,
    }
    assert est.predict(X).shape == (len(X), 2)
    wrong = _rows({"a": [np.zeros((3, 1024, 128), "f2")], "b": [np.zeros((3, 1024, 128), "f2")]})
    with pytest.raises(DataError, match=r"reads \(n_windows, 64, 32\) fbank windows"):
        MP2Estimator(encoder="ast", ast_checkpoint=str(folder), training=TRAIN).fit(
            wrong, y.iloc[:4]
        )


# --- registry, provenance, instrumental section ------------------------------------------------


def test_registry_entries_and_the_probe_family() -> None:
    names = [run.name for run in resolve_suite("all")]
    assert {"lightgbm[musicnn]", "mp2_musicnn"} <= set(names)
    assert "mp2_ast" not in names and "mp3_musicnn" in SUITES["pretrained"]
    runs = {run.name: run for run in resolve_suite("lightgbm,lightgbm[musicnn],mp2_musicnn,mp2")}
    assert runs["lightgbm[essentia]"].family == "classical"
    assert runs["lightgbm[musicnn]"].family == "probe"  # not a candidate for "best classical"
    assert runs["mp2_musicnn"].features == "musicnn_patches"
    assert MODELS["mp3_musicnn"].warm_start_from == "mp2_musicnn"
    assert MODELS["mp2_ast"].features == "ast_fbank" and MODELS["mp2_ast"].params["frozen"] is False


def test_instrumental_section_splits_rows_by_the_tags() -> None:
    rng = np.random.default_rng(3)
    n_songs = 60
    instrumental = rng.random(n_songs) < 0.4
    rows, tags = [], []
    for s in range(n_songs):
        p_instr = rng.uniform(0.15, 0.3) if instrumental[s] else rng.uniform(0.0, 0.05)
        p_female = rng.uniform(0.0, 0.05) if instrumental[s] else rng.uniform(0.1, 0.4)
        for region, offset in (("us", 0.0), ("gb", 2.0)):
            value = 8 + offset - 1.0 * instrumental[s] + 0.3 * rng.normal()
            rows.append((f"t{s}", f"s{s}", region, value, value - 1))
            tags.append((p_instr, p_female, 0.01, 0.01))
    frame = pd.DataFrame(
        rows, columns=["track_id", "song_id", "region", "log1p_charted_sum", "log1p_debut"]
    )
    columns = ["msd_tag_instrumental", "msd_tag_female_vocalists", "msd_tag_male_vocalists"]
    columns.append("msd_tag_female_vocalist")
    tag_frame = pd.DataFrame(tags, columns=columns)
    groups = vocal_groups(tag_frame)
    np.testing.assert_array_equal(groups == "instrumental", np.repeat(instrumental, 2))

    inputs = {"musicnn": FeatureInputs("musicnn", "tabular", "musicnn_v1", columns=tag_frame)}
    data = BenchmarkData(frame=frame, inputs=inputs)
    table = instrumental_table(data, n_resamples=300, seed=0).set_index(
        ["group", "target", "statistic"]
    )
    # region-centred: the regions' offset of 2 cancels, the planted -1 remains
    diff = table.loc[("instrumental - vocal", "log1p_charted_sum", "difference")]
    assert diff["value"] == pytest.approx(-1.0, abs=0.25)
    assert diff["ci_low"] < diff["value"] < diff["ci_high"] < 0
    rho = table.loc[("all", "log1p_charted_sum", "spearman_region")]
    assert rho["ci_high"] < 0
    vocal = table.loc[("vocal", "log1p_charted_sum", "mean")]
    assert (
        vocal["n_songs"] == n_songs - instrumental.sum() and vocal["n_rows"] == 2 * vocal["n_songs"]
    )
    assert instrumental_table(BenchmarkData(frame=frame)) is None  # no musicnn set: no section
