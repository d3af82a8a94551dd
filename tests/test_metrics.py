"""Metrics against scipy/sklearn, the weighted form against duplicated rows, and the bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from musicpop.benchmark.metrics import (
    METRICS,
    SongBootstrap,
    evaluate,
    ordered_metrics,
    per_region,
)

RNG = np.random.default_rng(0)
N = 400
Y = RNG.normal(size=N)
PRED = Y + RNG.normal(size=N)
PRED_TIED = np.round(PRED)  # many ties
REGIONS = RNG.choice(["us", "gb", "de"], N)


def test_error_metrics_match_sklearn() -> None:
    assert METRICS["rmse"](Y, PRED) == pytest.approx(np.sqrt(mean_squared_error(Y, PRED)), 1e-12)
    assert METRICS["mae"](Y, PRED) == pytest.approx(mean_absolute_error(Y, PRED), 1e-12)
    assert METRICS["r2"](Y, PRED) == pytest.approx(r2_score(Y, PRED), 1e-10)


@pytest.mark.parametrize("pred", [PRED, PRED_TIED])
def test_spearman_matches_scipy_with_and_without_ties(pred: np.ndarray) -> None:
    assert METRICS["spearman"](Y, pred) == pytest.approx(spearmanr(Y, pred).statistic, 1e-12)
    # within-region: scipy per region, averaged weighted by the region's rows
    names = ["us", "gb", "de"]
    rho = [spearmanr(Y[REGIONS == r], pred[REGIONS == r]).statistic for r in names]
    rows = [(REGIONS == r).sum() for r in names]
    expected = np.average(rho, weights=rows)
    assert METRICS["spearman_region"](Y, pred, REGIONS) == pytest.approx(expected, 1e-12)
    table = per_region("spearman_region", Y, pred, REGIONS).set_index("region")
    np.testing.assert_allclose(table.loc[names, "value"], rho, rtol=1e-12)
    assert table.loc[names, "n_rows"].tolist() == rows


def test_within_region_r2_by_hand() -> None:
    frame = pd.DataFrame({"y": Y, "pred": PRED, "region": REGIONS})
    frame["region_mean"] = frame.groupby("region")["y"].transform("mean")
    ss_within = ((frame.y - frame.region_mean) ** 2).sum()
    expected = 1.0 - ((frame.pred - frame.y) ** 2).sum() / ss_within
    assert METRICS["r2_region"](Y, PRED, REGIONS) == pytest.approx(expected, 1e-12)
    # the region means themselves score 0; within one region it is sklearn's R^2
    assert METRICS["r2_region"](Y, frame.region_mean.to_numpy(), REGIONS) == pytest.approx(0.0)
    us = REGIONS == "us"
    assert METRICS["r2_region"](Y[us], PRED[us], REGIONS[us]) == pytest.approx(
        r2_score(Y[us], PRED[us]), 1e-12
    )
    # adding a region offset to truth and prediction alike changes nothing (pooled R^2 rises)
    offset = pd.Series(REGIONS).map({"us": 5.0, "gb": 0.0, "de": -3.0}).to_numpy()
    assert METRICS["r2_region"](Y + offset, PRED + offset, REGIONS) == pytest.approx(expected)
    assert METRICS["r2"](Y + offset, PRED + offset) > METRICS["r2"](Y, PRED) + 0.3
    # the headline is the per-region values weighted by each region's sum of squares
    table = per_region("r2_region", Y, PRED, REGIONS)
    weights = ((frame.y - frame.region_mean) ** 2).groupby(frame.region).sum()
    weighted = np.average(table.value, weights=weights.loc[table.region])
    assert weighted == pytest.approx(expected, 1e-12)


def test_metrics_are_ordered_within_region_first() -> None:
    order = ordered_metrics()
    assert set(order) == set(METRICS)
    within = [name for name in order if METRICS[name].within_region]
    assert set(within) == {"spearman_region", "r2_region"}
    assert order[: len(within)] == within
    assert ordered_metrics(["rmse", "r2_region", "spearman"]) == ["r2_region", "rmse", "spearman"]


def test_constant_predictions_have_no_rank_metrics() -> None:
    """n/a, not a tie artefact: a constant used to score the base rate in top-10% precision."""
    constant = np.full(N, 3.0)
    for name in ("spearman", "spearman_region", "top10_precision"):
        assert np.isnan(METRICS[name](Y, constant, REGIONS)), name
    # region means are constant within each region: n/a within regions, informative pooled
    offset = pd.Series(REGIONS).map({"us": 5.0, "gb": 0.0, "de": -3.0}).to_numpy()
    assert np.isnan(METRICS["spearman_region"](Y + offset, offset, REGIONS))
    assert METRICS["spearman"](Y + offset, offset) > 0.5
    assert METRICS["r2_region"](Y, constant, REGIONS) < 0  # an error metric still has a value


def test_top10_precision_shares_a_tied_boundary_block_by_hand() -> None:
    truth = np.arange(10.0)[::-1]  # rows 0 and 1 are the true top 20%
    pred = np.array([3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    # top 10%: row 0 alone -> 1. top 20%: row 0 and one of rows 1-3 at random: hits 1 + 1/3
    assert METRICS["top10_precision"](truth, pred) == pytest.approx(1.0)
    from musicpop.benchmark import metrics

    w = np.ones((1, 10))
    share = metrics._top_share(pred, w, 0.2)[0]
    np.testing.assert_allclose(share, [1, 1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0, 0, 0])
    hits = (share * metrics._top_share(truth, w, 0.2)[0]).sum() / share.sum()
    assert hits == pytest.approx((1 + 1 / 3) / 2)


def test_top10_precision_is_the_expectation_under_random_tie_breaking() -> None:
    rng = np.random.default_rng(4)
    n = 200
    truth = rng.normal(size=n)
    pred = np.round(truth + rng.normal(size=n))  # a few large tie blocks
    k = n // 10
    true_top = set(np.argsort(-truth)[:k])
    draws = []
    for _ in range(4000):
        jitter = rng.random(n)  # random order inside every tie block
        top = np.lexsort((jitter, -pred))[:k]
        draws.append(len(true_top & set(top)) / k)
    value = METRICS["top10_precision"](truth, pred)
    assert value == pytest.approx(np.mean(draws), abs=4 * np.std(draws) / np.sqrt(len(draws)))
    # without ties it is the plain precision at k
    untied = truth + rng.normal(size=n)
    plain = len(true_top & set(np.argsort(-untied)[:k])) / k
    assert METRICS["top10_precision"](truth, untied) == pytest.approx(plain, 1e-12)


def test_cells_avoid_the_fold_shift_bias_of_pooled_out_of_fold_ranks() -> None:
    """A training-mean predictor (plus jitter) has no skill; pooling its out-of-fold predictions
    within a region gives a clearly negative Spearman, the (fold, region) cells give about 0."""
    rng = np.random.default_rng(7)
    pooled, cells = [], []
    for _ in range(200):
        y = rng.normal(size=60)
        folds = rng.permutation(np.arange(60) % 5)
        pred = np.array([y[folds != f].mean() for f in folds]) + 1e-6 * rng.normal(size=60)
        pooled.append(spearmanr(y, pred).statistic)
        cells.append(METRICS["spearman_region"](y, pred, None, folds))
    se = np.std(cells) / np.sqrt(len(cells))
    assert abs(np.mean(cells)) < 3 * se
    assert np.mean(pooled) < -0.1


def test_rank_metrics_are_computed_within_folds() -> None:
    folds = np.arange(N) % 2
    expected = np.mean([spearmanr(Y[folds == f], PRED[folds == f]).statistic for f in (0, 1)])
    assert METRICS["spearman"](Y, PRED, folds=folds) == pytest.approx(expected, 1e-12)
    # a prediction that is constant within each fold has no rank information at all
    assert np.isnan(METRICS["spearman"](Y, folds.astype(float), folds=folds))


def test_top10_precision_counts_shared_top_rows() -> None:
    k = N // 10
    expected = len(set(np.argsort(-Y)[:k]) & set(np.argsort(-PRED)[:k])) / k
    assert METRICS["top10_precision"](Y, PRED) == pytest.approx(expected)
    assert METRICS["top10_precision"](Y, Y) == 1.0


def test_curve_rmse_masks_unobserved_periods() -> None:
    truth = np.array([[1.0, np.nan, 3.0], [2.0, 2.0, np.nan]])
    pred = np.array([[2.0, 50.0, 3.0], [2.0, 4.0, 99.0]])
    expected = np.sqrt((1.0 + 0.0 + 0.0 + 4.0) / 4)
    assert METRICS["curve_rmse"](truth, pred) == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(n for n, m in METRICS.items() if not m.curve))
def test_weights_equal_duplicated_rows(name: str) -> None:
    """A bootstrap weight of k must give the same value as repeating the row k times."""
    metric = METRICS[name]
    assert isinstance(metric.maximize, bool) and isinstance(metric.within_region, bool)
    idx = np.random.default_rng(1).integers(0, N, N)
    w = np.bincount(idx, minlength=N).astype(float)[None, :]
    codes = np.unique(REGIONS, return_inverse=True)[1]
    folds = np.arange(N) % 3
    weighted = metric.batch(Y, PRED_TIED, w, codes, folds)[0]
    duplicated = metric(Y[idx], PRED_TIED[idx], REGIONS[idx], folds[idx])
    assert weighted == pytest.approx(duplicated, 1e-10)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_a_batch_of_weightings_equals_one_call_per_weighting(name: str) -> None:
    """The bootstrap evaluates all resamples in one vectorised call per metric."""
    metric = METRICS[name]
    rng = np.random.default_rng(2)
    y, pred = (Y, PRED_TIED) if not metric.curve else (Y.reshape(-1, 4), PRED.reshape(-1, 4))
    n = len(y)
    w = rng.poisson(1.0, size=(7, n)).astype(float)
    codes = np.unique(REGIONS[:n], return_inverse=True)[1]
    folds = np.arange(n) % 2
    batched = metric.batch(y, pred, w, codes, folds)
    single = [metric.batch(y, pred, w[b : b + 1], codes, folds)[0] for b in range(7)]
    np.testing.assert_allclose(batched, single, rtol=1e-12)


def _frame(n_songs: int = 150, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    songs = pd.Series(np.repeat([f"s{i}" for i in range(n_songs)], 2))
    regions = pd.Series(np.tile(["us", "gb"], n_songs))
    truth = pd.DataFrame({"t": rng.normal(size=2 * n_songs)})
    return truth, songs, regions


def test_bootstrap_is_seeded_and_its_interval_covers_the_truth() -> None:
    truth, songs, regions = _frame()
    rng = np.random.default_rng(5)
    preds = {"m": pd.DataFrame({"t": truth.t + rng.normal(size=len(truth))})}  # true RMSE is 1
    a = evaluate(truth, preds, songs, regions, ["t"], n_resamples=500, seed=3, metrics=["rmse"])
    b = evaluate(truth, preds, songs, regions, ["t"], n_resamples=500, seed=3, metrics=["rmse"])
    c = evaluate(truth, preds, songs, regions, ["t"], n_resamples=500, seed=4, metrics=["rmse"])
    pd.testing.assert_frame_equal(a, b)
    assert a.ci_low[0] != c.ci_low[0]
    assert a.ci_low[0] < 1.0 < a.ci_high[0]
    assert a.ci_low[0] < a.value[0] < a.ci_high[0]


def test_bootstrap_weights_resample_whole_songs() -> None:
    songs = np.array(["a", "a", "b", "c", "c", "c"])
    boot = SongBootstrap(songs, n_resamples=50, seed=0, max_cells=60)
    blocks = list(boot.weight_blocks())
    assert len(blocks) == 5  # 10 resamples of 6 rows per block
    w = np.vstack(blocks)
    assert w.shape == (50, 6)
    np.testing.assert_array_equal(w[:, 0], w[:, 1])  # rows of one song share the weight
    np.testing.assert_array_equal(w[:, 3], w[:, 5])
    assert (w[:, [0, 2, 3]].sum(axis=1) == 3).all()  # three songs drawn per resample


def test_paired_difference_has_the_right_sign() -> None:
    truth, songs, regions = _frame(seed=1)
    rng = np.random.default_rng(2)
    preds = {
        "good": pd.DataFrame({"t": truth.t + 0.5 * rng.normal(size=len(truth))}),
        "bad": pd.DataFrame({"t": truth.t + 2.0 * rng.normal(size=len(truth))}),
        "region_mean": pd.DataFrame({"t": np.zeros(len(truth))}),
    }
    table = evaluate(truth, preds, songs, regions, ["t"], n_resamples=300, seed=0).set_index(
        ["model", "metric"]
    )
    assert (table["reference"] == "good").all()
    assert table.loc[("good", "spearman"), "diff"] == 0.0
    bad = table.loc[("bad", "spearman")]
    assert bad["diff"] < 0 and bad.diff_ci_high < 0
    bad_rmse = table.loc[("bad", "rmse")]
    assert bad_rmse["diff"] > 0 and bad_rmse.diff_ci_low > 0  # higher error
    good_vs_baseline = table.loc[("good", "rmse")]
    assert good_vs_baseline.baseline == "region_mean"
    assert good_vs_baseline.baseline_diff_ci_high < 0


def test_a_fixed_reference_replaces_the_choice_on_test_predictions() -> None:
    truth, songs, regions = _frame(seed=1)
    rng = np.random.default_rng(2)
    preds = {
        "good": pd.DataFrame({"t": truth.t + 0.5 * rng.normal(size=len(truth))}),
        "bad": pd.DataFrame({"t": truth.t + 2.0 * rng.normal(size=len(truth))}),
    }
    table = evaluate(truth, preds, songs, regions, ["t"], n_resamples=50, reference="bad")
    table = table.set_index(["model", "metric"])
    assert (table["reference"] == "bad").all()
    assert table.loc[("good", "spearman"), "diff"] > 0
    by_target = evaluate(truth, preds, songs, regions, ["t"], n_resamples=0, reference={"x": "bad"})
    assert (by_target["reference"] == "good").all()  # no entry for "t": chosen as before


def test_curve_columns_are_in_period_order_past_two_digits() -> None:
    from musicpop.features.targets import curve_columns

    names = [f"curve_{h:02d}" for h in range(120)]
    shuffled = sorted(names)  # lexicographic: curve_100 before curve_11
    assert shuffled != names
    assert curve_columns([*shuffled, "log1p_charted_sum", "curve_x"]) == names
