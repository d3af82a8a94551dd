"""The runner end to end on small synthetic data: signal is found, noise is not, runs repeat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SYNTHETIC_SET, synthetic_data, write_catalog, write_synthetic_tables
from sklearn.base import clone

from musicpop.benchmark.config import BenchmarkConfig, load_config
from musicpop.benchmark.data import BenchmarkData, load_benchmark_data
from musicpop.benchmark.metrics import METRICS
from musicpop.benchmark.registry import MODELS, SUITES, ModelRun, resolve_suite
from musicpop.benchmark.report import terminal_table
from musicpop.benchmark.results import Results
from musicpop.benchmark.runner import run_suite
from musicpop.features.errors import DataError

pytestmark = pytest.mark.slow
LIGHTGBM = f"lightgbm[{SYNTHETIC_SET}]"


def small_config(tmp: Path, tracking_uri: str, **overrides) -> BenchmarkConfig:
    settings = {
        "dataset": "synthetic",
        "suite": "classical",
        "features": SYNTHETIC_SET,
        "n_folds": 3,
        "n_trials": 3,
        "bootstrap": 300,
        "tracking_uri": tracking_uri,
        "results_dir": tmp / "results",
        "models": {"lightgbm": {"max_estimators": 100}},
    }
    settings.update(overrides)
    return load_config("quick", **settings)


@pytest.fixture(scope="module")
def signal_data() -> BenchmarkData:
    return synthetic_data(n_songs=90, n_features=6, signal=True, seed=0)


@pytest.fixture(scope="module")
def signal_run(
    tmp_path_factory: pytest.TempPathFactory, signal_data: BenchmarkData, tracking_uri: str
) -> Results:
    return run_suite(small_config(tmp_path_factory.mktemp("signal"), tracking_uri), signal_data)


def test_lightgbm_beats_region_mean_on_planted_signal(signal_run: Results) -> None:
    r = signal_run
    assert r.value(LIGHTGBM, "log1p_charted_sum", "spearman") > r.value(
        "region_mean", "log1p_charted_sum", "spearman"
    )
    assert r.value(LIGHTGBM, "log1p_charted_sum", "spearman", "baseline_diff_ci_low") > 0
    assert r.value(LIGHTGBM, "log1p_charted_sum", "rmse", "baseline_diff_ci_high") < 0
    assert r.best_classical == LIGHTGBM
    # the oracle knows the noise-free appeal: nothing classical beats it
    assert r.value("oracle", "log1p_charted_sum", "rmse") < r.value(
        LIGHTGBM, "log1p_charted_sum", "rmse"
    )
    assert r.models[LIGHTGBM].tuned and not r.models["region_mean"].tuned


def test_lightgbm_does_not_beat_region_mean_on_noise(tmp_path: Path, tracking_uri: str) -> None:
    import optuna

    data = synthetic_data(n_songs=90, n_features=6, signal=False, seed=1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = small_config(
        tmp_path,
        tracking_uri,
        suite="region_mean,lightgbm",
        optuna_storage=storage,
        inner_folds=2,
    )
    r = run_suite(config, data)
    assert r.value(LIGHTGBM, "log1p_charted_sum", "spearman", "baseline_diff_ci_low") <= 0
    assert r.value(LIGHTGBM, "log1p_charted_sum", "rmse", "baseline_diff_ci_high") >= 0
    # the studies live in the RDB storage: one per outer fold plus the final model's
    studies = optuna.get_all_study_names(storage)
    assert len(studies) == 4 and all(r.run_id in name for name in studies)
    assert len(optuna.load_study(study_name=studies[0], storage=storage).trials) == 3


def test_same_config_twice_gives_identical_metrics(
    tmp_path: Path, signal_data: BenchmarkData, signal_run: Results, tracking_uri: str
) -> None:
    again = run_suite(small_config(tmp_path, tracking_uri), signal_data)
    pd.testing.assert_frame_equal(again.split, signal_run.split)
    a, b = signal_run.metrics, again.metrics
    assert a[["model", "target", "metric"]].equals(b[["model", "target", "metric"]])
    for column in ("value", "ci_low", "ci_high", "diff", "diff_ci_low", "diff_ci_high"):
        np.testing.assert_allclose(a[column], b[column], rtol=0, atol=1e-9, equal_nan=True)


def test_every_row_is_predicted_out_of_fold_by_every_model(signal_run: Results) -> None:
    n = len(signal_run.split)
    assert set(signal_run.predictions) == {"global_mean", "region_mean", LIGHTGBM, "oracle"}
    for pred in signal_run.predictions.values():
        assert len(pred) == n and list(pred.index) == list(range(n))
        np.testing.assert_array_equal(pred["fold"], signal_run.split["test_fold"])


def test_report_files(signal_run: Results) -> None:
    out = signal_run.results_dir
    assert out is not None and out.name == "synthetic"
    summary = pd.read_csv(out / "summary.csv")
    assert {"model", "kind", "target", "metric", "value", "ci_low", "ci_high", "diff"} <= set(
        summary.columns
    )
    scalar_metrics = [m for m in METRICS.values() if not m.curve]
    assert len(summary) == 4 * 2 * len(scalar_metrics)  # models x targets x metrics
    md = (out / "summary.md").read_text()
    assert "git commit" in md and "song-grouped 3-fold" in md and LIGHTGBM in md
    assert (out / "pred_vs_true_log1p_charted_sum.png").stat().st_size > 1000
    assert (out / "region_spearman_log1p_debut.png").is_file()
    assert (out / f"feature_importance_lightgbm_{SYNTHETIC_SET}.png").is_file()
    assert "<table" in (out / "report.html").read_text()
    pd.testing.assert_frame_equal(pd.read_csv(out / "split.csv"), signal_run.split)
    table = terminal_table(signal_run)
    assert "region_mean" in table and "spearman" in table and "[" in table


def test_predictions_csv_recomputes_the_headline_metrics(signal_run: Results) -> None:
    """predictions.csv holds what an outside reader needs: the within-region metrics recomputed
    from it with scipy and numpy alone match summary.csv."""
    from scipy.stats import spearmanr

    out = signal_run.results_dir
    assert out is not None
    rows = pd.read_csv(out / "predictions.csv")
    summary = pd.read_csv(out / "summary.csv").set_index(["model", "target", "metric"])
    assert len(rows) == len(signal_run.split) and (rows["test_fold"] >= 0).all()
    for target in ("log1p_charted_sum", "log1p_debut"):
        truth, pred = rows[target], rows[f"{LIGHTGBM}:{target}"]
        # Spearman in every (fold, region) cell, averaged with weights proportional to its rows
        cells = [
            (spearmanr(part[target], part[f"{LIGHTGBM}:{target}"])[0], len(part))
            for _, part in rows.groupby(["test_fold", "region"])
        ]
        rho = np.average([c for c, _ in cells], weights=[n for _, n in cells])
        assert rho == pytest.approx(summary.loc[(LIGHTGBM, target, "spearman_region"), "value"])
        # 1 - SSE / squared deviations from each region's mean truth
        centred = truth - truth.groupby(rows["region"]).transform("mean")
        r2 = 1 - ((truth - pred) ** 2).sum() / (centred**2).sum()
        assert r2 == pytest.approx(summary.loc[(LIGHTGBM, target, "r2_region"), "value"])


def test_temporal_split_run(tmp_path: Path, signal_data: BenchmarkData, tracking_uri: str) -> None:
    config = small_config(
        tmp_path, tracking_uri, suite="global_mean,region_mean", split="temporal", bootstrap=50
    )
    r = run_suite(config, signal_data)
    tested = r.split["test_fold"] == 0
    assert 0 < tested.sum() < len(r.split)
    assert set(r.predictions["region_mean"].index) == set(np.flatnonzero(tested))
    assert "temporal" in (r.results_dir / "summary.md").read_text()


@pytest.mark.parametrize("name", sorted(n for n, s in MODELS.items() if s.family != "deep"))
def test_registered_models_follow_the_estimator_contract(
    name: str, signal_data: BenchmarkData
) -> None:
    spec = MODELS[name]
    run = ModelRun(spec, SYNTHETIC_SET if spec.estimator.inputs else None)
    X, y = signal_data.X(run), signal_data.y(run)
    est = spec.estimator()
    if name == "lightgbm":
        est.set_params(n_estimators=20, num_threads=1)
    assert clone(est).get_params() == est.get_params()  # scikit-learn's contract holds
    assert not [k for k in vars(est) if k.endswith("_")]  # __init__ only stores parameters
    assert est.fit(X.iloc[:200], y.iloc[:200]) is est
    pred = est.predict(X.iloc[200:])
    assert pred.index.equals(X.index[200:])
    assert list(pred.columns) == list(y.columns)
    assert np.isfinite(pred.to_numpy()).all()


def test_suites_and_config() -> None:
    names = [run.name for run in resolve_suite("all")]
    assert names == [
        "global_mean",
        "region_mean",
        "lightgbm[essentia]",
        "oracle",
        "lightgbm[musicnn]",
        "mp2",
        "mp3",
        "mp2_musicnn",
    ]
    runs = resolve_suite("lightgbm, region_mean,lightgbm[mel],lightgbm", features="musicnn")
    assert [r.name for r in runs] == ["lightgbm[musicnn]", "region_mean", "lightgbm[mel]"]
    with pytest.raises(DataError, match="unknown suite or model 'nope'"):
        resolve_suite("nope")
    with pytest.raises(DataError, match="reads no feature set"):
        resolve_suite("region_mean[essentia]")
    for suite in SUITES.values():
        assert {entry.split("[")[0] for entry in suite} <= set(MODELS)
    quick, full = load_config("quick"), load_config("full")
    assert quick.n_trials < full.n_trials and quick.bootstrap < full.bootstrap
    assert full.models["mp2"]["config"]["encoder"]["dim"] == 768
    assert quick.tracking_uri == "sqlite:///mlflow.db" and quick.optuna_storage is None
    assert quick.config_hash() == load_config("quick", results_dir="elsewhere").config_hash()
    assert quick.config_hash() != load_config("quick", seed=1).config_hash()


def test_user_config_overrides_profile(tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(
        'n_trials = 2\nsplit = "temporal"\n[models.lightgbm]\nnum_leaves = 7\nfeatures = "mel"\n'
    )
    config = load_config("quick", user, seed=4)
    assert (config.n_trials, config.split, config.seed) == (2, "temporal", 4)
    assert config.model_params("lightgbm") == {"max_estimators": 200, "num_leaves": 7}
    assert [r.name for r in config.model_runs()][2] == "lightgbm[mel]"
    user.write_text("n_trails = 2\n")
    with pytest.raises(DataError, match=r"mine.toml: unknown setting\(s\) n_trails"):
        load_config("quick", user)
    with pytest.raises(DataError, match="split must be one of"):
        load_config("quick", split="random")


def test_missing_data_dir_is_a_clear_error(tmp_path: Path, tracking_uri: str) -> None:
    config = small_config(tmp_path, tracking_uri, data_dir=tmp_path / "nothing")
    with pytest.raises(DataError, match=r"popularity.parquet: not found"):
        load_benchmark_data(config, config.model_runs())


def test_inputs_come_through_the_feast_service(tmp_path: Path, tracking_uri: str) -> None:
    """The real path: popularity entity rows -> Feast ``essentia_v1`` -> the model inputs."""
    from musicpop.features import store

    data_dir = tmp_path / "data"
    ids = write_synthetic_tables(data_dir, tracks=16, regions=2, features=4, clips=1, seed=0)
    write_catalog(data_dir, ids, versions=2)  # tracks 2k and 2k+1 are versions of one song
    store.apply(data_dir)
    config = small_config(tmp_path, tracking_uri, data_dir=data_dir, dataset="feast", features=None)
    runs = resolve_suite("lightgbm,mp2")
    data = load_benchmark_data(config, runs)

    popularity = pd.read_parquet(data_dir / "popularity.parquet")
    weekly = popularity[popularity.period == "weekly"].set_index(["track_id", "region"])
    assert len(data.frame) == len(weekly) == 32
    X = data.X(runs[0])
    assert [c for c in X.columns if c.startswith("lowlevel")] == [
        f"lowlevel.descriptor_{j // 2}.{s}" for j, s in enumerate(["mean", "stdev"] * 2)
    ]
    assert "sum" not in X.columns  # services serve inputs only
    assert data.feature_service(runs[0]) == "essentia_v1"
    essentia = pd.read_parquet(data_dir / "features" / "essentia.parquet").set_index("track_id")
    row = data.frame.iloc[5]
    assert X.iloc[5]["lowlevel.descriptor_1.mean"] == pytest.approx(
        essentia.loc[row.track_id, "lowlevel.descriptor_1.mean"]
    )
    assert row["log1p_charted_sum"] == pytest.approx(
        np.log1p(weekly.loc[(row.track_id, row.region), "sum"])
    )
    assert row["song_id"] == f"song{ids.index(row.track_id) // 2}"
    assert [c for c in data.frame.columns if c.startswith("curve_")] == [
        f"curve_{h:02d}" for h in range(8)
    ]
    # the deep model's spectrograms come through the mel service's references
    clips = data.X(runs[1])["clips"]
    assert clips.map(len).eq(1).all() and clips.iloc[0][0].shape == (8, 10)
    assert data.ground_truth is None and len(data.fingerprint) == 64


def test_two_part_targets(tmp_path: Path, tracking_uri: str) -> None:
    """P(charts) on every row; size given charting on the charted rows only."""
    from musicpop.features import store
    from musicpop.features.layout import DataLayout

    data_dir = tmp_path / "data"
    ids = write_synthetic_tables(data_dir, tracks=40, regions=2, features=4, clips=1, seed=2)
    write_catalog(data_dir, ids)
    layout = DataLayout(data_dir)
    pop = layout.popularity.read()
    uncharted = (pop["track_id"].isin(ids[::3])) & (pop["region"] == "gb")
    pop["charted"] = ~uncharted
    pop.loc[uncharted, "sum"] = 0.0
    pop["sum_floor"] = pop["sum"]
    pop["reentry"] = False
    layout.popularity.write(pop)
    store.apply(data_dir)
    config = small_config(
        tmp_path,
        tracking_uri,
        data_dir=data_dir,
        dataset="two-part",
        features=None,
        suite="region_mean,lightgbm",
        two_part=True,
        n_trials=1,
        bootstrap=50,
        models={"lightgbm": {"max_estimators": 50, "min_child_samples": 3}},
    )
    assert config.targets == ["log1p_charted_sum", "log1p_debut", "charted"]
    data = load_benchmark_data(config, config.model_runs())
    weekly = pop[pop["period"] == "weekly"]
    assert len(data.frame) == len(weekly) and data.frame["charted"].sum() == (~uncharted).sum() / 2
    assert data.frame.loc[data.frame["charted"] == 0, "log1p_charted_sum"].isna().all()
    results = run_suite(config, data)
    rows = results.metrics.set_index(["model", "target", "metric"])
    n_charted = int(data.frame["charted"].sum())
    assert rows.loc[("region_mean", "log1p_charted_sum", "rmse"), "n_rows"] == n_charted
    assert rows.loc[("region_mean", "charted", "rmse"), "n_rows"] == len(data.frame)
    # P(charts) per region: every us row charted; a third of the gb tracks did not
    region_p = results.predictions["region_mean"]["charted"]
    us = (data.frame["region"] == "us").to_numpy()
    assert (region_p[us] == 1.0).all() and region_p[~us].between(0.4, 0.9).all()
