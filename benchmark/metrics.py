"""Metrics as objects (name + direction) in a registry, and the song-level bootstrap.

Every metric is written once, in a weighted and batched form: ``metric.batch(y_true, y_pred, w,
regions, folds)`` takes a ``(B, N)`` matrix of row weights and returns ``B`` values. The point estimate is
the same function with unit weights; a bootstrap resample over songs is the same function with each
row weighted by how often its song was drawn (a row of a song drawn twice counts twice; ties get
average ranks, exactly as if the rows were duplicated). So point values, intervals and paired
differences all come from one code path, vectorised with numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from ..features.targets import curve_columns

TOP_FRACTION = 0.10
"""Share of rows called a hit by top-10% hit precision."""

CURVE_TARGET = "curve"
"""Pseudo-target name of the curve metrics (columns ``curve_00 .. curve_{H-1}``)."""


# --- weighted building blocks (w: (B, N), x: (N,)) -------------------------------------------


def _wmean(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ x) / w.sum(axis=1)


def _weighted_ranks(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of every row in each weighted sample; ties share their mean rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    new_group = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    starts = np.flatnonzero(new_group)
    group = np.cumsum(new_group) - 1  # (N,) group of each sorted row
    group_weight = np.add.reduceat(w[:, order], starts, axis=1)  # (B, G)
    before = np.cumsum(group_weight, axis=1) - group_weight
    group_rank = before + (group_weight + 1.0) / 2.0  # (B, G)
    ranks = np.empty_like(w, dtype=float)
    ranks[:, order] = group_rank[:, group]
    return ranks


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson correlation per row of ``w``; ``x`` and ``y`` are (N,) or (B, N)."""
    total = w.sum(axis=1, keepdims=True)
    mx = (w * x).sum(axis=1, keepdims=True) / total
    my = (w * y).sum(axis=1, keepdims=True) / total
    dx, dy = x - mx, y - my
    cov = (w * dx * dy).sum(axis=1)
    var = (w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = cov / np.sqrt(var)
    return np.where(var > 1e-24, out, np.nan)


def _weighted_spearman(y_true: np.ndarray, y_pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return _weighted_pearson(_weighted_ranks(y_true, w), _weighted_ranks(y_pred, w), w)


def _group_mean(
    groups: np.ndarray, per_group: Callable[[np.ndarray], np.ndarray], w: np.ndarray
) -> np.ndarray:
    """Mean over groups (of at least two rows) of a per-group (B,) statistic, ignoring NaN."""
    values = [
        per_group(rows)
        for rows in (np.flatnonzero(groups == g) for g in np.unique(groups))
        if len(rows) >= 2
    ]
    if not values:
        return np.full(w.shape[0], np.nan)
    stacked = np.vstack(values)  # (G, B)
    counts = np.isfinite(stacked).sum(axis=0)
    sums = np.nansum(stacked, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _top_mask(values: np.ndarray, w: np.ndarray, fraction: float) -> np.ndarray:
    """(B, N) mask of rows at or above the value where the top ``fraction`` of weight is reached."""
    order = np.argsort(-values, kind="stable")
    cum = np.cumsum(w[:, order], axis=1)
    reached = cum >= fraction * cum[:, -1:] - 1e-9
    threshold = values[order][np.argmax(reached, axis=1)]  # (B,)
    return values[None, :] >= threshold[:, None]


# --- the registry --------------------------------------------------------------------------


class Metric:
    """A metric: a name, a direction, and a weighted batch implementation.

    Subclasses set ``name``, ``maximize`` and ``curve`` (True for 2-D curve targets) and implement
    :meth:`batch`.
    """

    name: ClassVar[str]
    maximize: ClassVar[bool]
    curve: ClassVar[bool] = False

    def batch(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        w: np.ndarray,
        regions: np.ndarray,
        folds: np.ndarray,
    ) -> np.ndarray:
        """Metric value for each weighting.

        Parameters
        ----------
        y_true, y_pred : np.ndarray
            (N,) for scalar metrics, (N, H) for curve metrics.
        w : np.ndarray
            (B, N) non-negative row weights.
        regions : np.ndarray
            (N,) integer region codes.
        folds : np.ndarray
            (N,) integer fold codes. Rank-based metrics are computed within each fold (the rows
            one fitted model ranked together) and averaged: pooling out-of-fold predictions would
            let fold-to-fold shifts of the training mean leak into the ranks.

        Returns
        -------
        np.ndarray
            (B,) values.
        """
        raise NotImplementedError

    def __call__(
        self,
        y_true: np.ndarray,
        y_pred: np.ndarray,
        regions: np.ndarray | None = None,
        folds: np.ndarray | None = None,
    ) -> float:
        """Point value on unweighted rows.

        Parameters
        ----------
        y_true, y_pred : np.ndarray
            Truth and predictions.
        regions : np.ndarray, optional
            Region label of every row (needed by per-region metrics).
        folds : np.ndarray, optional
            Fold label of every row (default: one fold).

        Returns
        -------
        float
            The metric.
        """
        y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
        codes = [np.zeros(len(y_true), dtype=int)] * 2
        for i, labels in enumerate((regions, folds)):
            if labels is not None:
                codes[i] = np.unique(np.asarray(labels).astype(str), return_inverse=True)[1]
        return float(self.batch(y_true, y_pred, np.ones((1, len(y_true))), *codes)[0])


METRICS: dict[str, Metric] = {}


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator: add an instance of ``cls`` to :data:`METRICS` under ``cls.name``.

    Parameters
    ----------
    cls : type[Metric]
        The metric class.

    Returns
    -------
    type[Metric]
        ``cls``.
    """
    METRICS[cls.name] = cls()
    return cls


@register_metric
class RMSE(Metric):
    """Root mean squared error."""

    name = "rmse"
    maximize = False

    def batch(self, y_true, y_pred, w, regions, folds):
        return np.sqrt(_wmean((y_pred - y_true) ** 2, w))


@register_metric
class MAE(Metric):
    """Mean absolute error."""

    name = "mae"
    maximize = False

    def batch(self, y_true, y_pred, w, regions, folds):
        return _wmean(np.abs(y_pred - y_true), w)


@register_metric
class R2(Metric):
    """Coefficient of determination, 1 - SSE / SST."""

    name = "r2"
    maximize = True

    def batch(self, y_true, y_pred, w, regions, folds):
        centred = y_true - y_true.mean()
        sse = _wmean((y_pred - y_true) ** 2, w)
        sst = _wmean(centred**2, w) - _wmean(centred, w) ** 2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(sst > 1e-24, 1.0 - sse / sst, np.nan)


@register_metric
class Spearman(Metric):
    """Spearman rank correlation, within each fold, averaged over folds."""

    name = "spearman"
    maximize = True

    def batch(self, y_true, y_pred, w, regions, folds):
        return _group_mean(folds, lambda r: _weighted_spearman(y_true[r], y_pred[r], w[:, r]), w)


@register_metric
class SpearmanPerRegion(Metric):
    """Spearman correlation within each region (and fold), averaged over regions."""

    name = "spearman_region"
    maximize = True

    def batch(self, y_true, y_pred, w, regions, folds):
        cells = folds * (int(regions.max()) + 1) + regions
        return _group_mean(cells, lambda r: _weighted_spearman(y_true[r], y_pred[r], w[:, r]), w)


@register_metric
class TopHitPrecision(Metric):
    """Top-10% hit precision: the share of the predicted top 10% that is in the true top 10%.

    Computed within each fold (the rows one model ranked together), averaged over folds.
    """

    name = "top10_precision"
    maximize = True

    def batch(self, y_true, y_pred, w, regions, folds):
        def precision(r: np.ndarray) -> np.ndarray:
            wr = w[:, r]
            predicted = _top_mask(y_pred[r], wr, TOP_FRACTION)
            actual = _top_mask(y_true[r], wr, TOP_FRACTION)
            with np.errstate(invalid="ignore", divide="ignore"):
                return (wr * predicted * actual).sum(axis=1) / (wr * predicted).sum(axis=1)

        return _group_mean(folds, precision, w)


@register_metric
class CurveRMSE(Metric):
    """RMSE over all observed points of the curves (NaN truth is masked)."""

    name = "curve_rmse"
    maximize = False
    curve = True

    def batch(self, y_true, y_pred, w, regions, folds):
        observed = np.isfinite(y_true)
        sq = np.where(observed, (y_pred - np.where(observed, y_true, 0.0)) ** 2, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt((w @ sq.sum(axis=1)) / (w @ observed.sum(axis=1)))


# --- the bootstrap -------------------------------------------------------------------------


class SongBootstrap:
    """Seeded bootstrap resamples over songs, as row-weight matrices.

    Each resample draws as many songs as there are, with replacement; a row's weight is the
    number of times its song was drawn. Every model is evaluated with the same resamples, which
    makes differences between models paired.

    Parameters
    ----------
    songs : Sequence or np.ndarray
        Song id of every evaluated row.
    n_resamples : int
        Number of resamples (0: point estimates only).
    seed : int
        Seed of the draws.
    max_cells : int
        Largest weight block (resamples x rows) materialised at once.
    cache_cells : int
        The blocks of the last row subset are kept for the next call (every model and metric
        of a target uses the same rows) when all of them together hold at most this many cells.
    """

    def __init__(
        self,
        songs: Sequence[str] | np.ndarray,
        n_resamples: int = 1000,
        seed: int = 0,
        max_cells: int = 4_000_000,
        cache_cells: int = 16_000_000,
    ) -> None:
        uniques, self.codes = np.unique(np.asarray(songs).astype(str), return_inverse=True)
        self.n_songs = len(uniques)
        self.n_resamples = n_resamples
        draws = np.random.default_rng(seed).integers(0, self.n_songs, (n_resamples, self.n_songs))
        offsets = (np.arange(n_resamples) * self.n_songs)[:, None]
        self.counts = (
            np.bincount((draws + offsets).ravel(), minlength=n_resamples * self.n_songs)
            .reshape(n_resamples, self.n_songs)
            .astype(float)
        )  # (B, S)
        self.chunk = max(1, max_cells // max(1, len(self.codes)))
        self.cache_cells = cache_cells
        self._cached: tuple[bytes, list[np.ndarray]] | None = None

    def weight_blocks(self, rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Row-weight blocks ``(b, n)`` covering all resamples, in order.

        Parameters
        ----------
        rows : np.ndarray, optional
            Positional subset of the rows (e.g. rows with an observed target).

        Yields
        ------
        np.ndarray
            Weights of a block of resamples.
        """
        codes = self.codes if rows is None else self.codes[rows]
        key = codes.tobytes()
        if self._cached is not None and self._cached[0] == key:
            yield from self._cached[1]
            return
        keep = self.n_resamples * len(codes) <= self.cache_cells
        blocks = []
        for start in range(0, self.n_resamples, self.chunk):
            block = self.counts[start : start + self.chunk][:, codes]
            if keep:
                block.setflags(write=False)  # shared by every later call: never changed
                blocks.append(block)
            yield block
        if keep:
            self._cached = (key, blocks)


def _resampled(
    metric: Metric,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    regions: np.ndarray,
    folds: np.ndarray,
    boot: SongBootstrap,
    rows: np.ndarray,
) -> tuple[float, np.ndarray]:
    point = float(metric.batch(y_true, y_pred, np.ones((1, len(y_true))), regions, folds)[0])
    blocks = [metric.batch(y_true, y_pred, w, regions, folds) for w in boot.weight_blocks(rows)]
    return point, (np.concatenate(blocks) if blocks else np.empty(0))


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def evaluate(
    truth: pd.DataFrame,
    predictions: Mapping[str, pd.DataFrame],
    songs: pd.Series,
    regions: pd.Series,
    targets: Sequence[str],
    n_resamples: int = 1000,
    seed: int = 0,
    candidates: Sequence[str] | None = None,
    primary_metric: str = "spearman",
    baseline: str | None = "region_mean",
    metrics: Sequence[str] | None = None,
    folds: pd.Series | Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """Every metric of every model and target, with bootstrap intervals and paired differences.

    Parameters
    ----------
    truth : pd.DataFrame
        Target columns (scalar targets and optionally ``curve_..``) for the evaluated rows.
    predictions : Mapping[str, pd.DataFrame]
        Model name to predictions with ``truth``'s index (a model may lack some targets).
    songs, regions : pd.Series
        Song id and region of every evaluated row (``truth``'s index).
    targets : Sequence[str]
        Scalar target columns to evaluate.
    n_resamples : int
        Bootstrap resamples over songs (shared by all models: paired).
    seed : int
        Bootstrap seed.
    candidates : Sequence[str], optional
        Models eligible as the reference ("best classical model"); default all models.
    primary_metric : str
        Metric that picks the reference per target.
    baseline : str, optional
        A second fixed reference (default ``region_mean``) for ``baseline_diff`` columns.
    metrics : Sequence[str], optional
        Metric names; default every registered metric.
    folds : pd.Series or Mapping[str, pd.Series], optional
        Outer fold of every row (rank metrics are computed within folds); default one fold. A
        mapping gives each model its own folds (models fitted on different splits of the same
        rows, e.g. song- against row-grouped folds); the resamples stay shared, so differences
        stay paired.

    Returns
    -------
    pd.DataFrame
        One row per model x target x metric: ``value``, ``ci_low``, ``ci_high``, ``reference``,
        ``diff``, ``diff_ci_low``, ``diff_ci_high`` (model minus reference, paired), ``baseline``,
        ``baseline_diff``, ``baseline_diff_ci_low``, ``baseline_diff_ci_high``, ``maximize``,
        ``n_rows``, ``n_songs``.
    """
    chosen = [METRICS[m] for m in (metrics or list(METRICS))]
    region_codes = np.unique(regions.astype(str).to_numpy(), return_inverse=True)[1]

    def fold_codes_of(labels: pd.Series | None) -> np.ndarray:
        if labels is None:
            return np.zeros(len(truth), dtype=int)
        return np.unique(np.asarray(labels), return_inverse=True)[1]

    if isinstance(folds, Mapping):
        fold_codes = {model: fold_codes_of(folds[model]) for model in predictions}
    else:
        shared = fold_codes_of(folds)
        fold_codes = {model: shared for model in predictions}
    boot = SongBootstrap(songs.to_numpy(), n_resamples, seed)
    curve_cols = curve_columns(truth.columns)
    jobs: list[tuple[str, list[str], list[Metric]]] = [
        (t, [t], [m for m in chosen if not m.curve]) for t in targets
    ]
    if curve_cols:
        jobs.append((CURVE_TARGET, curve_cols, [m for m in chosen if m.curve]))

    records = []
    samples: dict[tuple[str, str, str], np.ndarray] = {}
    for target, columns, job_metrics in jobs:
        y_all = truth[columns].to_numpy(dtype=float)
        observed = np.isfinite(y_all).any(axis=1)
        rows = np.flatnonzero(observed)
        y_true = y_all[rows][:, 0] if target != CURVE_TARGET else y_all[rows]
        for model, pred in predictions.items():
            if not set(columns) <= set(pred.columns):
                continue
            y_pred_all = pred.loc[truth.index, columns].to_numpy(dtype=float)
            y_pred = y_pred_all[rows][:, 0] if target != CURVE_TARGET else y_pred_all[rows]
            if not np.isfinite(y_pred).all():
                raise ValueError(f"model {model!r} predicted NaN or inf for {target}")
            for metric in job_metrics:
                point, resampled = _resampled(
                    metric, y_true, y_pred, region_codes[rows], fold_codes[model][rows], boot, rows
                )
                samples[(model, target, metric.name)] = resampled
                low, high = _interval(resampled)
                records.append(
                    {
                        "model": model,
                        "target": target,
                        "metric": metric.name,
                        "maximize": metric.maximize,
                        "value": point,
                        "ci_low": low,
                        "ci_high": high,
                        "n_rows": len(rows),
                        "n_songs": len(np.unique(boot.codes[rows])),
                    }
                )
    table = pd.DataFrame.from_records(records)
    if table.empty:
        return table
    _add_paired(table, samples, candidates, primary_metric, baseline)
    return table


def _best_model(table: pd.DataFrame, target: str, metric: str, pool: Sequence[str]) -> str | None:
    rows = table[(table.target == target) & (table.metric == metric) & table.model.isin(pool)]
    rows = rows[np.isfinite(rows.value)]
    if rows.empty:
        return None
    best = rows.value.idxmax() if METRICS[metric].maximize else rows.value.idxmin()
    return str(rows.loc[best, "model"])


def _add_paired(
    table: pd.DataFrame,
    samples: dict[tuple[str, str, str], np.ndarray],
    candidates: Sequence[str] | None,
    primary_metric: str,
    baseline: str | None,
) -> None:
    """Fill the paired-difference columns in place."""
    pool = list(candidates) if candidates is not None else list(table.model.unique())
    references: dict[str, str | None] = {}
    for target in table.target.unique():
        metric = primary_metric
        if not (table[(table.target == target)].metric == metric).any():
            metric = str(table[table.target == target].metric.iloc[0])
        references[target] = _best_model(table, target, metric, pool)
    for ref_column, prefix, ref_of in (
        ("reference", "", references),
        ("baseline", "baseline_", {t: baseline for t in references}),
    ):
        refs, diffs, lows, highs = [], [], [], []
        for row in table.itertuples():
            ref = ref_of.get(row.target)
            key, ref_key = (row.model, row.target, row.metric), (ref, row.target, row.metric)
            if ref is None or ref_key not in samples:
                refs.append(ref if ref_key in samples else None)
                diffs.append(np.nan)
                lows.append(np.nan)
                highs.append(np.nan)
                continue
            ref_value = table.loc[
                (table.model == ref) & (table.target == row.target) & (table.metric == row.metric),
                "value",
            ].iloc[0]
            low, high = _interval(samples[key] - samples[ref_key])
            refs.append(ref)
            diffs.append(row.value - ref_value)
            lows.append(low)
            highs.append(high)
        table[ref_column] = refs
        table[f"{prefix}diff"] = diffs
        table[f"{prefix}diff_ci_low"] = lows
        table[f"{prefix}diff_ci_high"] = highs
