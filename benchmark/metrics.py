"""Metrics as objects (name + direction) in a registry, and the song-level bootstrap.

Every metric is written once, in a weighted and batched form: ``metric.batch(y_true, y_pred, w,
regions, folds)`` takes a ``(B, N)`` matrix of row weights and returns ``B`` values. The point estimate is
the same function with unit weights; a bootstrap resample over songs is the same function with each
row weighted by how often its song was drawn (a row of a song drawn twice counts twice; ties get
average ranks, exactly as if the rows were duplicated). So point values, intervals and paired
differences all come from one code path, vectorised with numpy: no metric loops in Python over
resamples (only over regions and folds).

Within-region and pooled metrics
--------------------------------
A model that only knows each region's market size already ranks rows across regions well, so
pooled rank metrics reward knowing the region. The headline metrics are computed *within* a
region (:attr:`Metric.within_region`; :func:`ordered_metrics` puts them first):

- ``spearman_region``: Spearman's rho in every (outer fold, region) cell -- the rows one fitted
  model ranked within one region -- averaged over cells weighted by their rows. Equivalently, the
  per-region values of :func:`per_region` (each the row-weighted mean over its folds) averaged
  over regions weighted by rows. Cells are used rather than whole regions because pooling
  out-of-fold predictions across folds lets each fold's shift of the training mean enter the
  ranks: a fold whose songs are good has a worse training set, so a mean predictor ranks it low
  (a negative bias of about ``-1/sqrt(rows per region)``; see the tests).
- ``r2_region``: ``1 - sum_r SSE_r / sum_r sum_{i in r} (y_i - ybar_r)^2`` over the evaluated rows,
  ``ybar_r`` being the mean truth of region ``r`` on those rows: the share of the within-region
  variance a model explains beyond the region means. The best constant-per-region predictor
  chosen in hindsight scores 0; the out-of-fold ``region_mean`` model scores slightly below 0
  (its means are estimated without the test rows). 1 minus the ratio of a model's MSE to the
  out-of-fold ``region_mean`` model's MSE (as some reviews quote it) is larger by that gap.

Rank metrics and ties
---------------------
Rank metrics (``spearman``, ``spearman_region``, ``top10_precision``) are NaN ("n/a") in a cell
where the predictions (or the truth) are constant: a constant carries no ranking, and any value
would be a tie artefact. Cells with fewer than two rows or such ties are left out of the
average; a metric whose every cell is left out is NaN. Partial ties get average ranks
(Spearman, as scipy) or, for top-10% precision, the expected precision under random
tie-breaking (:class:`TopHitPrecision`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    if _constant(y_true) or _constant(y_pred):  # no ranking in any resample: skip the ranks
        return np.full(w.shape[0], np.nan)
    return _weighted_pearson(_weighted_ranks(y_true, w), _weighted_ranks(y_pred, w), w)


def _constant(values: np.ndarray) -> bool:
    """Whether every value is the same (then every resample of them is constant too)."""
    return len(values) == 0 or bool(values.min() == values.max())


MIN_CELL_ROWS = 2
"""Smallest (fold, region) cell or fold on which a rank metric is computed."""


def _cell_mean(
    cells: np.ndarray, per_cell: Callable[[np.ndarray], np.ndarray], w: np.ndarray
) -> np.ndarray:
    """Row-weighted mean over cells of a per-cell ``(B,)`` statistic.

    A cell's weight in each resample is the total weight of its rows (its rows counted with
    their multiplicity). Cells of fewer than :data:`MIN_CELL_ROWS` rows and NaN cell values are
    left out; the result is NaN where every cell is left out.
    """
    values, weights = [], []
    for cell in np.unique(cells):
        rows = np.flatnonzero(cells == cell)
        if len(rows) >= MIN_CELL_ROWS:
            values.append(per_cell(rows))
            weights.append(w[:, rows].sum(axis=1))
    if not values:
        return np.full(w.shape[0], np.nan)
    stacked, weight = np.vstack(values), np.vstack(weights)  # (G, B)
    valid = np.isfinite(stacked) & (weight > 0)
    total = np.where(valid, weight, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(valid, stacked * weight, 0.0).sum(axis=0) / total
    return np.where(total > 0, mean, np.nan)


def _top_share(values: np.ndarray, w: np.ndarray, fraction: float) -> np.ndarray:
    """(B, N) expected membership of every row in the top ``fraction`` of the weight.

    Rows are taken from the largest value down until their weight reaches ``fraction`` of the
    total; the block of tied values where that happens is taken in part, each of its rows with
    the same share (its membership under random tie-breaking, in expectation). A row above the
    block has share 1, below it 0.
    """
    order = np.argsort(-values, kind="stable")
    sorted_values = values[order]
    new_block = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    starts = np.flatnonzero(new_block)
    block = np.cumsum(new_block) - 1  # (N,) tie block of each sorted row
    block_weight = np.add.reduceat(w[:, order], starts, axis=1)  # (B, G)
    before = np.cumsum(block_weight, axis=1) - block_weight
    quota = fraction * w.sum(axis=1, keepdims=True)  # (B, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip((quota - before) / block_weight, 0.0, 1.0)
    share = np.where(block_weight > 0, share, (before < quota).astype(float))
    out = np.empty_like(w, dtype=float)
    out[:, order] = share[:, block]
    return out


def _varies(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(B,) whether ``values`` take more than one value on the rows of positive weight."""
    positive = w > 0
    high = np.where(positive, values, -np.inf).max(axis=1)
    low = np.where(positive, values, np.inf).min(axis=1)
    return high > low


# --- the registry --------------------------------------------------------------------------


class Metric:
    """A metric: a name, a direction, and a weighted batch implementation.

    Subclasses set ``name``, ``maximize``, ``curve`` (True for 2-D curve targets) and
    ``within_region`` (True for metrics computed within regions, which lead reports; False for
    metrics pooled over regions) and implement :meth:`batch`.
    """

    name: ClassVar[str]
    maximize: ClassVar[bool]
    curve: ClassVar[bool] = False
    within_region: ClassVar[bool] = False

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
            one fitted model ranked together) and averaged weighted by rows: pooling out-of-fold
            predictions would let fold-to-fold shifts of the training mean leak into the ranks.

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


def _region_sums(y: np.ndarray, w: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per region: weight, weighted sum and weighted sum of squares of ``y``, each ``(B, R)``.

    ``y`` is centred on each region's unweighted mean first (for precision); within-region
    sums of squares do not depend on that shift.
    """
    n_regions = int(regions.max()) + 1
    onehot = np.zeros((len(y), n_regions))
    onehot[np.arange(len(y)), regions] = 1.0
    centre = (onehot.T @ y) / np.maximum(onehot.sum(axis=0), 1.0)
    yc = y - centre[regions]
    return w @ onehot, w @ (onehot * yc[:, None]), w @ (onehot * (yc**2)[:, None])


@register_metric
class SpearmanPerRegion(Metric):
    """Within-region Spearman: rho in each (fold, region) cell, averaged weighted by rows.

    The headline rank metric: it measures how well a model orders the songs of one region, which
    the region's market size cannot help with. Cells hold the rows one fitted model ranked in
    one region; a cell where predictions or truth are constant is left out (n/a).
    """

    name = "spearman_region"
    maximize = True
    within_region = True

    def batch(self, y_true, y_pred, w, regions, folds):
        cells = folds * (int(regions.max()) + 1) + regions
        return _cell_mean(cells, lambda r: _weighted_spearman(y_true[r], y_pred[r], w[:, r]), w)


@register_metric
class R2PerRegion(Metric):
    """Within-region R^2: ``1 - sum_r SSE_r / sum_r SS_r`` against each region's mean truth.

    ``SS_r`` is the sum of squared deviations of region ``r``'s evaluated truth from its mean:
    0 for the region means chosen in hindsight, below 0 for anything worse. Pooled over folds
    (like RMSE: fold-to-fold shifts of a model are errors it makes).
    """

    name = "r2_region"
    maximize = True
    within_region = True

    def batch(self, y_true, y_pred, w, regions, folds):
        weight, total, squares = _region_sums(y_true, w, regions)  # (B, R) each
        with np.errstate(invalid="ignore", divide="ignore"):
            ss = np.where(weight > 0, squares - total**2 / weight, 0.0).sum(axis=1)
            sse = w @ (y_pred - y_true) ** 2
            return np.where(ss > 1e-24, 1.0 - sse / ss, np.nan)


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
    """Coefficient of determination pooled over regions, 1 - SSE / SST."""

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
    """Spearman rank correlation pooled over regions, within each fold, folds weighted by rows."""

    name = "spearman"
    maximize = True

    def batch(self, y_true, y_pred, w, regions, folds):
        return _cell_mean(folds, lambda r: _weighted_spearman(y_true[r], y_pred[r], w[:, r]), w)


@register_metric
class TopHitPrecision(Metric):
    """Top-10% hit precision: the share of the predicted top 10% that is in the true top 10%.

    The top 10% is 10% of the rows, fractional where that is not a whole number (the boundary row
    counts in part). Ties at the boundary are shared: every row of the tied block counts with the
    same share, so the value is the expected precision under random tie-breaking (of the
    predictions and of the truth). Computed within each fold (the rows one model ranked
    together), folds weighted by rows; n/a in a fold where the predictions or the truth are
    constant (a constant would score the base rate, 0.1, by tie-breaking alone).
    """

    name = "top10_precision"
    maximize = True

    def batch(self, y_true, y_pred, w, regions, folds):
        def precision(r: np.ndarray) -> np.ndarray:
            if _constant(y_pred[r]) or _constant(y_true[r]):  # n/a in every resample
                return np.full(w.shape[0], np.nan)
            wr = w[:, r]
            predicted = _top_share(y_pred[r], wr, TOP_FRACTION)
            actual = _top_share(y_true[r], wr, TOP_FRACTION)
            with np.errstate(invalid="ignore", divide="ignore"):
                value = (wr * predicted * actual).sum(axis=1) / (wr * predicted).sum(axis=1)
            ranked = _varies(y_pred[r], wr) & _varies(y_true[r], wr)
            return np.where(ranked, value, np.nan)

        return _cell_mean(folds, precision, w)


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


def ordered_metrics(names: Iterable[str] | None = None) -> list[str]:
    """Metric names in report order: within-region metrics (the headline) first, then pooled.

    Parameters
    ----------
    names : Iterable[str], optional
        Registered metric names to order (default: all); order is kept within each group.

    Returns
    -------
    list[str]
        The names, within-region first.
    """
    chosen = list(METRICS) if names is None else list(dict.fromkeys(names))
    return sorted(chosen, key=lambda name: not METRICS[name].within_region)


def per_region(
    metric: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    regions: np.ndarray,
    folds: np.ndarray | None = None,
) -> pd.DataFrame:
    """A metric computed on each region's rows alone (for per-region plots and tables).

    For ``spearman_region`` the rows-weighted mean of the per-region ``value`` over regions
    (weights ``n_rows``: the rows of the cells that have a value) equals the headline value; for
    ``r2_region`` the mean weighted by each region's sum of squares does.

    Parameters
    ----------
    metric : str
        A registered scalar metric.
    y_true, y_pred : np.ndarray
        (N,) truth and predictions.
    regions : np.ndarray
        (N,) region labels.
    folds : np.ndarray, optional
        (N,) outer fold labels (default: one fold).

    Returns
    -------
    pd.DataFrame
        One row per region, sorted: ``region``, ``value``, ``n_rows`` (rows of the region in
        cells of at least two rows whose value is defined; all its rows for non-rank metrics).
    """
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    labels = np.asarray(regions).astype(str)
    fold_labels = np.zeros(len(labels), dtype=int) if folds is None else np.asarray(folds)
    records = []
    for region in np.unique(labels):
        rows = np.flatnonzero(labels == region)
        value = METRICS[metric](y_true[rows], y_pred[rows], labels[rows], fold_labels[rows])
        n_rows = len(rows)
        if metric in ("spearman_region", "spearman", "top10_precision"):
            n_rows = 0
            for fold in np.unique(fold_labels[rows]):
                cell = rows[fold_labels[rows] == fold]
                if len(cell) >= MIN_CELL_ROWS and np.isfinite(
                    METRICS[metric](y_true[cell], y_pred[cell])
                ):
                    n_rows += len(cell)
        records.append({"region": region, "value": value, "n_rows": n_rows})
    return pd.DataFrame.from_records(records, columns=["region", "value", "n_rows"])


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


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap draws (NaN draws ignored; NaN when none is left)."""
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
    reference: str | Mapping[str, str] | None = None,
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
    reference : str or Mapping[str, str], optional
        The reference model (or one per target), chosen beforehand, e.g. on inner folds. Default:
        the best of ``candidates`` by ``primary_metric`` on these (outer-fold) predictions, which
        favours the reference slightly (a report must say so).

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
                low, high = percentile_interval(resampled)
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
    _add_paired(table, samples, candidates, primary_metric, baseline, reference)
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
    reference: str | Mapping[str, str] | None = None,
) -> None:
    """Fill the paired-difference columns in place."""
    pool = list(candidates) if candidates is not None else list(table.model.unique())
    references: dict[str, str | None] = {}
    for target in table.target.unique():
        if reference is not None:
            fixed = reference if isinstance(reference, str) else reference.get(target)
            if fixed is not None:
                references[target] = fixed
                continue
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
            low, high = percentile_interval(samples[key] - samples[ref_key])
            refs.append(ref)
            diffs.append(row.value - ref_value)
            lows.append(low)
            highs.append(high)
        table[ref_column] = refs
        table[f"{prefix}diff"] = diffs
        table[f"{prefix}diff_ci_low"] = lows
        table[f"{prefix}diff_ci_high"] = highs
