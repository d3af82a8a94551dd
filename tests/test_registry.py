"""A newcomer's feature set and model: one declaration each, and every stage picks them up.

The test declares a toy audio feature set (an extractor computing two numbers per clip) and a toy
tabular model the way docs/architecture.md tells a newcomer to, then runs the real stages on a
tiny generated demo: extraction, the Feast store (a view and a service appear), the runner
(inputs come through the new service) and the report (a row for the new model).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicpop.benchmark.config import load_config
from musicpop.benchmark.data import load_benchmark_data
from musicpop.benchmark.registry import MODELS, ModelSpec
from musicpop.benchmark.runner import run_suite, select_runs
from musicpop.features import feature_sets, store
from musicpop.features.catalog import ingest_audio
from musicpop.features.charts import ingest_charts
from musicpop.features.demo import make_demo
from musicpop.features.extract import extract_features
from musicpop.features.targets import build_targets
from musicpop.models.estimators.base import BenchmarkEstimator

pytestmark = pytest.mark.slow


def loudness(signal: np.ndarray) -> dict[str, np.ndarray]:
    """The toy extractor: RMS level and peak of a clip (module level, so a pool can pickle it)."""
    return {"level": np.array([np.sqrt(np.mean(signal**2)), np.abs(signal).max()])}


TOY_SET = feature_sets.FeatureSet(
    name="toy_loudness",
    version=1,
    kind=feature_sets.TABULAR,
    description="RMS level and peak of each track (mean over clips).",
    extractor=feature_sets.Extractor(
        name="toy_loudness",
        version=1,
        sample_rate=16_000,
        compute=loudness,
        parameters=lambda: {"statistics": ["rms", "peak"]},
        outputs=("level",),
    ),
    outputs=("level",),
    columns=("toy.rms", "toy.peak"),
    default=False,
)


class LevelRegression(BenchmarkEstimator):
    """The toy model: per-region least squares on whatever tabular features it is given."""

    inputs = "tabular"

    def __init__(self, ridge: float = 1e-3) -> None:
        self.ridge = ridge

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> LevelRegression:
        self.features_ = [c for c in X.columns if c not in ("track_id", "song_id", "region")]
        A = np.c_[np.ones(len(X)), X[self.features_].to_numpy(dtype=float)]
        gram = A.T @ A + self.ridge * np.eye(A.shape[1])
        self.coef_ = np.linalg.solve(gram, A.T @ y.to_numpy(dtype=float))
        self.columns_ = list(y.columns)
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        A = np.c_[np.ones(len(X)), X[self.features_].to_numpy(dtype=float)]
        return pd.DataFrame(A @ self.coef_, index=X.index, columns=self.columns_)


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two declarations a newcomer adds (here for the test's duration only)."""
    monkeypatch.setitem(feature_sets.FEATURE_SETS, TOY_SET.name, TOY_SET)
    monkeypatch.setitem(
        MODELS, "level", ModelSpec("level", LevelRegression, "classical", features="essentia")
    )


def test_a_new_feature_set_and_model_run_through_every_stage(
    declared: None, tmp_path: Path, tracking_uri: str
) -> None:
    data_dir = make_demo(
        tmp_path / "demo", songs=10, regions=2, weeks=30, top_n=8, seed=5, progress=print
    )
    ingest_charts([data_dir / "raw" / "charts"], data_dir)
    ingest_audio(data_dir / "raw" / "audio", data_dir, mapping=data_dir / "raw" / "catalog.csv")
    build_targets(data_dir, horizon=4)

    report = extract_features(data_dir, workers=1, sets=["toy_loudness"], progress=False)
    assert report.rows == {"toy_loudness": report.tracks} and report.failed == 0
    store.apply(data_dir)
    fs = store.feature_store(data_dir)
    assert fs.get_feature_service("toy_loudness_v1").description
    assert [f.name for f in fs.get_feature_view("toy_loudness").features] == ["toy.rms", "toy.peak"]

    config = load_config(
        "quick",
        data_dir=data_dir,
        dataset="toy",
        suite="region_mean,level[toy_loudness]",
        n_folds=2,
        bootstrap=50,
        tracking_uri=tracking_uri,
        results_dir=tmp_path / "results",
        drop_incomplete=False,
    )
    runs = select_runs(config)
    data = load_benchmark_data(config, runs)
    assert data.feature_service(runs[1]) == "toy_loudness_v1"
    assert list(data.X(runs[1]).columns[-2:]) == ["toy.rms", "toy.peak"]
    results = run_suite(config, data)
    assert set(results.predictions) == {"region_mean", "level[toy_loudness]"}
    assert "level[toy_loudness]" in (results.results_dir / "summary.md").read_text()
    assert results.models["level[toy_loudness]"].feature_service == "toy_loudness_v1"
