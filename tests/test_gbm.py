"""The LightGBM estimator's region encodings: categorical, one-hot, none, one model per region."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musicpop.models.estimators.gbm import REGION_ENCODINGS, LightGBMRegressor


def _planted(n: int = 1200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Target = region offset + a region-specific slope on f0 (opposite signs in two regions)."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["us", "gb", "de"], size=n)
    f0, f1 = rng.normal(size=n), rng.normal(size=n)
    offset = pd.Series(region).map({"us": 3.0, "gb": 0.0, "de": -3.0}).to_numpy()
    slope = pd.Series(region).map({"us": 1.0, "gb": -1.0, "de": 0.0}).to_numpy()
    y = offset + slope * f0 + 0.1 * rng.normal(size=n)
    X = pd.DataFrame(
        {
            "track_id": [f"t{i}" for i in range(n)],
            "song_id": "s",
            "region": region,
            "f0": f0,
            "f1": f1,
        }
    )
    return X, pd.DataFrame({"a": y, "b": -y})


def _rmse(model: LightGBMRegressor, X: pd.DataFrame, y: pd.DataFrame) -> float:
    pred = model.predict(X)
    assert list(pred.columns) == ["a", "b"] and pred.index.equals(X.index)
    return float(np.sqrt(((pred["a"] - y["a"]) ** 2).mean()))


def test_every_encoding_fits_and_only_region_aware_ones_learn_the_region() -> None:
    X, y = _planted()
    X_test, y_test = _planted(seed=1)
    errors = {}
    for encoding in REGION_ENCODINGS:
        model = LightGBMRegressor(n_estimators=150, num_threads=1, region_encoding=encoding)
        errors[encoding] = _rmse(model.fit(X, y), X_test, y_test)
    # without the region the offsets (sd ~2.4) and the opposite slopes are unexplainable
    assert errors["none"] > 2.0
    for encoding in ("categorical", "onehot", "per_region"):
        assert errors[encoding] < 0.5, errors


def test_feature_names_say_how_the_region_enters() -> None:
    X, y = _planted(n=300)
    names = {
        e: LightGBMRegressor(n_estimators=5, region_encoding=e).fit(X, y).feature_names_
        for e in REGION_ENCODINGS
    }
    assert names["categorical"] == ["region", "f0", "f1"]
    assert names["onehot"] == ["f0", "f1", "region=de", "region=gb", "region=us"]
    assert names["none"] == names["per_region"] == ["f0", "f1"]
    per_region = LightGBMRegressor(n_estimators=5, region_encoding="per_region").fit(X, y)
    assert sorted(per_region.boosters_) == sorted(
        f"{t}@{r}" for t in ("a", "b") for r in ("de", "gb", "us")
    )
    importance = per_region.feature_importance()
    assert importance.shape == (2, 6) and list(importance.index) == ["f0", "f1"]


def test_unseen_regions_are_predicted_without_error() -> None:
    X, y = _planted(n=300)
    X_new = X.head(4).assign(region=["fr", "us", "fr", "gb"])
    for encoding in REGION_ENCODINGS:
        model = LightGBMRegressor(n_estimators=20, region_encoding=encoding).fit(X, y)
        pred = model.predict(X_new)
        assert np.isfinite(pred.to_numpy()).all()
    per_region = LightGBMRegressor(n_estimators=20, region_encoding="per_region").fit(X, y)
    pred = per_region.predict(X_new)
    assert pred.loc[X_new.index[0], "a"] == pytest.approx(y["a"].mean())


def test_an_unknown_encoding_is_refused() -> None:
    X, y = _planted(n=100)
    with pytest.raises(ValueError, match="region_encoding must be one of"):
        LightGBMRegressor(region_encoding="embedding").fit(X, y)


def test_validation_losses_are_reported_without_changing_the_model() -> None:
    X, y = _planted(n=800)
    X_val, y_val = _planted(n=300, seed=2)
    reports: list[tuple[int, float]] = []
    plain = LightGBMRegressor(n_estimators=60).fit(X, y)
    watched = LightGBMRegressor(n_estimators=60).fit(
        X, y, eval_set=(X_val, y_val), report=lambda step, loss: reports.append((step, loss))
    )
    pd.testing.assert_frame_equal(plain.predict(X_val), watched.predict(X_val))
    # every 25 rounds, per target: steps target_index * 100000 + round
    assert [step for step, _ in reports] == [25, 50, 100_025, 100_050]
    last = watched.boosters_["a"].predict(watched.model_inputs(X_val), num_iteration=50)
    assert reports[1][1] == pytest.approx(float(np.sqrt(np.mean((last - y_val["a"]) ** 2))))
