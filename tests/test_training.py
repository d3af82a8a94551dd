"""MP2/MP3 estimators: fit/predict on tiny synthetic spectrograms with planted attributes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from musicpop.benchmark.perf.training import main as throughput_main
from musicpop.features.errors import DataError
from musicpop.models.augment import AugmentConfig
from musicpop.models.blocks import EncoderConfig
from musicpop.models.estimators.deep import (
    MP2Estimator,
    MP3Estimator,
    TrainingConfig,
    covering_crops,
)
from musicpop.models.mp2 import MP2Config
from musicpop.models.mp3 import MP3Config

N_MELS = 32
ENC = EncoderConfig(n_mels=N_MELS, n_frames=48, dim=32, n_layers=1, n_heads=2)
OFF = AugmentConfig(time_mask=0, freq_mask=0, roll=False, different_clip=False)


def train_cfg(epochs: int, **kw: float) -> TrainingConfig:
    base = {
        "batch_size": 8,
        "lr": 3e-3,
        "warmup_epochs": 0.5,
        "val_fraction": 0.0,
        "cpu_threads": 1,
    }
    return TrainingConfig(epochs=epochs, **{**base, **kw})  # type: ignore[arg-type]


def make_tracks(
    n: int, seed: int, frames: tuple[int, ...] = (120,), noise: float = 0.3
) -> tuple[dict[str, list[np.ndarray]], np.ndarray]:
    """Tracks whose brightness ``a`` in [0, 1] tilts the spectrum; returns clips and ``a``."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    ramp = np.linspace(-1, 1, N_MELS)[:, None]
    spectrograms = {}
    for i in range(n):
        clips = []
        for length in frames:
            base = -4.0 + 3.0 * (a[i] - 0.5) * ramp  # (M, 1)
            clip = base + noise * rng.standard_normal((N_MELS, length))
            clips.append(clip.astype(np.float16))
        spectrograms[f"t{seed}_{i:03d}"] = clips
    return spectrograms, a


def rows(spectrograms: dict, regions: list[str]) -> pd.DataFrame:
    """One row per (track, region); ``clips`` holds the track's arrays, as the runner gives them."""
    tracks = list(spectrograms)
    X = pd.DataFrame(
        [(t, f"song_{t}", r) for t in tracks for r in regions],
        columns=["track_id", "song_id", "region"],
    )
    X["clips"] = X["track_id"].map(spectrograms)
    return X


def test_mp2_overfits_16_clips() -> None:
    rng = np.random.default_rng(0)
    spectrograms = {}
    for i in range(16):  # each clip has its own spectral fingerprint
        profile = rng.normal(0, 1.5, (N_MELS, 1))
        spectrograms[f"c{i}"] = [(profile + 0.1 * rng.normal(size=(N_MELS, 96))).astype("f4")]
    X = rows(spectrograms, ["us"])
    y = pd.DataFrame(
        {"log1p_charted_sum": rng.normal(12, 2, 16), "log1p_debut": rng.normal(9, 1, 16)}
    )
    est = MP2Estimator(
        config=MP2Config(encoder=ENC),
        regions=["us"],
        seed=0,
        training=train_cfg(60, lr=5e-3),
        augment=OFF,
        progress=False,
    ).fit(X, y)
    first, last = est.history_[0]["train_loss"], est.history_[-1]["train_loss"]
    assert last < 0.1 * first, (first, last)
    pred = est.predict(X)
    assert list(pred.columns) == ["log1p_charted_sum", "log1p_debut"] and pred.index.equals(X.index)
    assert np.corrcoef(pred["log1p_charted_sum"], y["log1p_charted_sum"])[0, 1] > 0.9


@pytest.mark.parametrize("conditioning", ["token", "joint"])
def test_mp2_region_changes_prediction_for_same_audio(conditioning: str) -> None:
    spectrograms, a = make_tracks(24, seed=1)
    X = rows(spectrograms, ["us", "gb"])
    sign = np.where(X["region"] == "us", 1.0, -1.0)
    a_row = np.repeat(a, 2)
    y = pd.DataFrame({"log1p_charted_sum": 10 + 2 * sign * a_row, "log1p_debut": 8 + sign * a_row})
    est = MP2Estimator(
        config=MP2Config(encoder=ENC, conditioning=conditioning),  # type: ignore[arg-type]
        regions=["us", "gb"],
        training=train_cfg(25),
        augment=AugmentConfig(time_mask=0, freq_mask=0, roll=True, different_clip=False),
        progress=False,
    ).fit(X, y)
    pred = est.predict(X)
    us, gb = (X["region"] == "us").to_numpy(), (X["region"] == "gb").to_numpy()
    assert np.corrcoef(pred["log1p_charted_sum"][us], a)[0, 1] > 0.8
    assert np.corrcoef(pred["log1p_charted_sum"][gb], a)[0, 1] < -0.8
    gap = pred["log1p_charted_sum"].to_numpy()[us] - pred["log1p_charted_sum"].to_numpy()[gb]
    assert np.abs(gap).mean() > 0.5


def curves_for(a: np.ndarray, region: np.ndarray, horizon: int) -> np.ndarray:
    """Bright tracks debut high and decay fast; dull ones start low and grow (log1p units)."""
    h = np.arange(horizon)[None, :]
    a = a[:, None]
    return 8 + 3 * a * np.exp(-h / 2) + (1 - a) * h / 3 + 0.5 * region[:, None]


def test_mp3_learns_curve_shape_from_planted_attribute() -> None:
    H = 8
    spectrograms, a = make_tracks(48, seed=2)
    X = rows(spectrograms, ["us", "gb"])
    reg = (X["region"] == "gb").to_numpy().astype(float)
    a_row = np.repeat(a, 2)
    curves = curves_for(a_row, reg, H)
    # "missing" null policy: bright tracks stay on the chart longer (3..8 periods), then NaN
    weeks = 3 + np.round(5 * a_row).astype(int)
    charted = np.arange(H)[None, :] < weeks[:, None]
    observed = np.where(charted, curves, np.nan)
    y = pd.DataFrame(observed, columns=[f"curve_{i:02d}" for i in range(H)])
    # the scalar targets MP3 is asked for are derived from its curve, not fitted separately
    y["log1p_charted_sum"] = np.log1p(np.where(charted, np.expm1(curves), 0.0).sum(axis=1))
    y["log1p_debut"] = curves[:, 0]
    train = X["track_id"].isin(list(spectrograms)[:36]).to_numpy()
    est = MP3Estimator(
        config=MP3Config(encoder=ENC, n_decoder_layers=1, decoder_heads=2),
        regions=["us", "gb"],
        training=train_cfg(30),
        augment=AugmentConfig(time_mask=0, freq_mask=0, roll=True, different_clip=False),
        progress=False,
    ).fit(X[train].reset_index(drop=True), y[train].reset_index(drop=True))
    test_X = X[~train]
    pred = est.predict(test_X)
    curve_cols = [f"curve_{i:02d}" for i in range(H)]
    c = pred[curve_cols].to_numpy()
    truth, seen = curves[~train], charted[~train]
    rmse = np.sqrt(np.mean((c - truth)[seen] ** 2))
    region_mean = y[train][curve_cols].groupby(X["region"][train].to_numpy()).mean()
    baseline = region_mean.loc[test_X["region"]].to_numpy()
    base_rmse = np.sqrt(np.mean((baseline - truth)[seen] ** 2))
    assert rmse < 0.5 * base_rmse, (rmse, base_rmse)
    # sum and debut come from the curve through features.targets.curve_statistics, weighted by
    # the on-chart probabilities: closer to the real sum than summing every period
    np.testing.assert_allclose(pred["log1p_debut"], pred["curve_00"], rtol=1e-6)
    true_sum = np.log1p(np.where(seen, np.expm1(truth), 0.0).sum(axis=1))
    naive_sum = np.log1p(np.expm1(c).sum(axis=1))
    derived_err = np.abs(pred["log1p_charted_sum"].to_numpy() - true_sum).mean()
    assert derived_err < 0.5 * np.abs(naive_sum - true_sum).mean()
    assert (pred["log1p_charted_sum"].to_numpy() <= naive_sum + 1e-9).all()


class Recorder(MP2Estimator):
    """An MP2 fit that records the epochs it runs, and dies after ``stop_after`` if set."""

    stop_after: int | None = None

    def _end_epoch(self, epoch: int, record: dict[str, float]) -> None:
        self.epochs_run = [*getattr(self, "epochs_run", []), epoch]
        if epoch == self.stop_after:
            raise KeyboardInterrupt


class StopAfter(Recorder):
    stop_after = 1


def test_interrupted_fit_resumes_from_checkpoint(tmp_path: Path) -> None:
    spectrograms, a = make_tracks(12, seed=4, frames=(80, 60))
    X = rows(spectrograms, ["us"])
    y = pd.DataFrame({"log1p_charted_sum": 10 + a, "log1p_debut": 8 - a})
    kw = {
        "config": MP2Config(encoder=ENC),
        "regions": ["us"],
        "seed": 3,
        "training": train_cfg(4),
        "augment": AugmentConfig(time_mask=8, freq_mask=4, roll=True, different_clip=True),
        "progress": False,
    }
    reference = MP2Estimator(**kw).fit(X, y)
    with pytest.raises(KeyboardInterrupt):
        StopAfter(**kw, checkpoint_dir=tmp_path).fit(X, y)
    assert (tmp_path / "checkpoint.pt").exists()
    resumed = Recorder(**kw, checkpoint_dir=tmp_path).fit(X, y)
    assert resumed.epochs_run == [2, 3]
    assert len(resumed.history_) == 4
    for got, want in zip(resumed.history_, reference.history_, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)
    pd.testing.assert_frame_equal(resumed.predict(X), reference.predict(X), rtol=1e-5)
    # the estimator holds parameters and learned state, never data: it pickles small
    loaded = pickle.loads(pickle.dumps(resumed))
    assert "clips" not in vars(loaded)
    pd.testing.assert_frame_equal(loaded.predict(X), reference.predict(X), rtol=1e-5)
    assert (tmp_path / "checkpoint.pt").stat().st_size < 5_000_000
    # a finished checkpoint is reused as is; another setting starts afresh with a warning
    again = Recorder(**kw, checkpoint_dir=tmp_path).fit(X, y)
    assert not hasattr(again, "epochs_run") and again.history_ == resumed.history_
    with pytest.warns(UserWarning, match="another configuration"):
        MP2Estimator(**{**kw, "seed": 9}, checkpoint_dir=tmp_path).fit(X, y)


def test_variable_clip_lengths_and_validation_split() -> None:
    spectrograms, _ = make_tracks(10, seed=5, frames=(30, 131))  # shorter and longer than a crop
    spectrograms["odd"] = [spectrograms["t5_000"][1][:, :77]]
    X = rows(spectrograms, ["us", "gb"])
    y = pd.DataFrame({"log1p_charted_sum": np.arange(len(X), dtype=float), "log1p_debut": 1.0})
    y.loc[0, "log1p_debut"] = 2.0
    est = MP2Estimator(
        config=MP2Config(encoder=ENC),
        regions=["us", "gb", "fr"],
        training=train_cfg(2, val_fraction=0.3),
        augment=AugmentConfig(),
        progress=False,
    )
    X["song_id"] = [f"s{i % 6}" for i in range(len(X) // 2) for _ in range(2)]  # 11 tracks
    est.fit(X, y)
    assert len(est.validation_songs_) == 2  # 30% of 6 songs, whole songs only
    assert all("val_loss" in r for r in est.history_)
    pred = est.predict(X.iloc[::-1])
    assert pred.index.equals(X.index[::-1]) and np.isfinite(pred.to_numpy()).all()
    # the region list may hold regions without training rows
    fr = est.predict(X.assign(region="fr"))
    assert np.isfinite(fr.to_numpy()).all()


def test_settings_may_be_tables_over_the_defaults() -> None:
    """The runner passes TOML tables: they override the dataclasses' defaults field by field."""
    spectrograms, a = make_tracks(4, seed=8)
    X = rows(spectrograms, ["us"])
    y = pd.DataFrame({"log1p_charted_sum": a, "log1p_debut": a})
    tiny = {"n_mels": 8, "n_frames": 48, "dim": 16, "n_layers": 1, "n_heads": 2}
    est = MP2Estimator(
        config={"conditioning": "token", "encoder": tiny},
        training={"epochs": 2, "batch_size": 4, "cpu_threads": 1},
        augment={"roll": False},
        progress=False,
    ).fit(X, y)
    assert est.config_.conditioning == "token" and est.config_.encoder.dim == 16
    assert est.config_.encoder.n_mels == N_MELS  # always taken from the data
    assert est.config_.encoder.stride == 16 and est.training_.lr == TrainingConfig().lr
    assert not est.augment_.roll and est.augment_.different_clip
    assert len(est.history_) == 2 and est.regions_ == ["us"]


def test_covering_crops_cover_the_clip() -> None:
    clip = np.arange(3 * 130).reshape(3, 130).astype(np.float32)
    crops = covering_crops(clip, 48)
    assert len(crops) == 3 and all(c.shape == (3, 48) for c in crops)
    covered = np.unique(np.concatenate([c[0] for c in crops]))
    np.testing.assert_array_equal(covered, clip[0])
    short = covering_crops(clip[:, :20], 48)
    assert len(short) == 1 and short[0].shape == (3, 48)


def test_bad_input_gives_one_clear_error() -> None:
    spectrograms, _ = make_tracks(3, seed=6)
    X = rows(spectrograms, ["us"])
    y = pd.DataFrame({"log1p_charted_sum": [1.0, 2.0, 3.0], "log1p_debut": [1.0, 2.0, 3.0]})
    est = MP2Estimator(
        config=MP2Config(encoder=ENC), regions=["us"], training=train_cfg(1), progress=False
    )
    with pytest.raises(DataError, match="no clip arrays"):
        est.fit(X.assign(clips=None), y)
    with pytest.raises(DataError, match="no scalar target"):
        est.fit(X, y[[]])
    with pytest.raises(DataError, match="not in the model's region list"):
        est.fit(X.assign(region="jp"), y)
    est.fit(X, y)
    with pytest.raises(DataError, match="not in the model's region list"):
        est.predict(X.assign(region="jp"))
    with pytest.raises(DataError, match="same n_mels"):
        bad = rows({**spectrograms, "t6_000": [np.zeros((N_MELS + 1, 60), "f4")]}, ["us"])
        MP2Estimator(config=MP2Config(encoder=ENC), training=train_cfg(1)).fit(bad, y)
    with pytest.raises(DataError, match="unknown setting"):
        MP2Estimator(config={"encoder": {"width": 3}}, regions=["us"]).fit(X, y)
    with pytest.raises(DataError, match="curve_00"):
        MP3Estimator(
            config=MP3Config(encoder=ENC), regions=["us"], training=train_cfg(1), progress=False
        ).fit(X, y)


def test_mp3_starts_from_mp2_encoder() -> None:
    spectrograms, a = make_tracks(6, seed=7)
    X = rows(spectrograms, ["us"])
    y2 = pd.DataFrame({"log1p_charted_sum": a, "log1p_debut": a})
    mp2 = MP2Estimator(
        config=MP2Config(encoder=ENC), regions=["us"], training=train_cfg(1), progress=False
    ).fit(X, y2)
    y3 = pd.DataFrame(curves_for(a, np.zeros(6), 4), columns=[f"curve_{i:02d}" for i in range(4)])
    common = {"regions": ["us"], "progress": False}
    mp3 = MP3Estimator(
        config=MP3Config(encoder=ENC),
        training=train_cfg(1, lr=0.0),
        encoder_state_dict=mp2.encoder_state_dict_,
        **common,  # type: ignore[arg-type]
    ).fit(X, y3)
    assert mp3.encoder_from_mp2_
    for k, v in mp2.encoder_state_dict_.items():  # lr 0: the encoder is still MP2's
        np.testing.assert_allclose(mp3.encoder_state_dict_[k].numpy(), v.numpy(), atol=1e-6)
    off = MP3Estimator(
        config=MP3Config(encoder=ENC, init_from_mp2=False),
        training=train_cfg(1),
        encoder_state_dict=mp2.encoder_state_dict_,
        **common,  # type: ignore[arg-type]
    ).fit(X, y3)
    assert not off.encoder_from_mp2_


def test_throughput_script_prints_a_row_per_variant(capsys: pytest.CaptureFixture[str]) -> None:
    before = torch.get_num_threads()
    assert (
        throughput_main(["--sizes", "quick", "--devices", "cpu", "--steps", "1", "--threads", "1"])
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith(("MP2", "MP3"))]
    assert len(rows) == 4 and all("quick" in r and "cpu" in r for r in rows)
    assert all(float(r.split()[-1]) > 0 for r in rows)  # samples/s
    assert torch.get_num_threads() == before
