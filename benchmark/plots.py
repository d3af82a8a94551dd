"""The report's figures (matplotlib, no pyplot state): one function per picture."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .metrics import per_region

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_pred_vs_true(
    truth: pd.Series, predictions: Mapping[str, pd.Series], target: str
) -> Figure:
    """Scatter of predicted against true values, one panel per model.

    Parameters
    ----------
    truth : pd.Series
        True values.
    predictions : Mapping[str, pd.Series]
        Model name to predictions (same index as ``truth``).
    target : str
        Target name (axis label).

    Returns
    -------
    Figure
        The figure.
    """
    n = max(1, len(predictions))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = _figure(4 * cols, 3.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    finite = truth[np.isfinite(truth)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    for ax, (model, pred) in zip(axes, predictions.items(), strict=False):
        ax.scatter(truth, pred.loc[truth.index], s=6, alpha=0.5)
        ax.plot([low, high], [low, high], color="grey", linewidth=1)
        ax.set_title(model)
        ax.set_xlabel(f"true {target}")
        ax.set_ylabel("predicted")
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def plot_region_spearman(
    truth: pd.Series,
    regions: pd.Series,
    predictions: Mapping[str, pd.Series],
    target: str,
    folds: pd.Series | None = None,
) -> Figure:
    """Bars of the Spearman correlation within each region, per model.

    Each bar is the headline metric ``spearman_region`` computed on one region's rows alone
    (within each outer fold, then averaged over folds by rows), so the bars average to the
    headline value.

    Parameters
    ----------
    truth : pd.Series
        True values.
    regions : pd.Series
        Region of every row.
    predictions : Mapping[str, pd.Series]
        Model name to predictions.
    target : str
        Target name (title).
    folds : pd.Series, optional
        Outer fold of every row (default: one fold).

    Returns
    -------
    Figure
        The figure.
    """
    names = sorted(regions.astype(str).unique())
    fig = _figure(max(6.0, 0.5 * len(names) * max(1, len(predictions)) ** 0.5 + 3), 4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(predictions))
    keep = np.isfinite(truth.to_numpy())
    fold_values = None if folds is None else folds.to_numpy()[keep]
    for i, (model, pred) in enumerate(predictions.items()):
        table = per_region(
            "spearman_region",
            truth.to_numpy()[keep],
            pred.loc[truth.index].to_numpy()[keep],
            regions.astype(str).to_numpy()[keep],
            fold_values,
        ).set_index("region")
        values = table["value"].reindex(names).to_numpy()
        ax.bar(np.arange(len(names)) + i * width, values, width=width, label=model)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=45)
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.set_ylabel("Spearman within region")
    ax.set_title(f"per-region Spearman, {target}")
    ax.legend(fontsize="small")
    return fig


def plot_feature_importance(importance: pd.DataFrame, top: int = 20) -> Figure:
    """Horizontal bars of the largest gain importances (summed over targets).

    Parameters
    ----------
    importance : pd.DataFrame
        Feature x target importances (``LightGBMRegressor.feature_importance``).
    top : int
        Features shown.

    Returns
    -------
    Figure
        The figure.
    """
    total = importance.sum(axis=1).sort_values(ascending=True).tail(top)
    fig = _figure(7, 0.3 * len(total) + 1.5)
    ax = fig.subplots()
    ax.barh(total.index.astype(str), total.to_numpy())
    ax.set_xlabel("gain (summed over targets)")
    ax.set_title("LightGBM feature importance")
    return fig


def plot_metric_intervals(table: pd.DataFrame, target: str, metric: str) -> Figure:
    """Point estimates with 95% bootstrap intervals of one metric, per model.

    Parameters
    ----------
    table : pd.DataFrame
        Output of :func:`benchmark.metrics.evaluate`.
    target, metric : str
        Which numbers to plot.

    Returns
    -------
    Figure
        The figure.
    """
    rows = table[(table.target == target) & (table.metric == metric)]
    fig = _figure(6, 0.5 * len(rows) + 1.5)
    ax = fig.subplots()
    y = np.arange(len(rows))
    err = np.vstack([rows.value - rows.ci_low, rows.ci_high - rows.value]).clip(min=0)
    ax.errorbar(rows.value, y, xerr=np.nan_to_num(err), fmt="o", capsize=3)
    ax.set_yticks(y, rows.model)
    ax.set_xlabel(f"{metric} (95% bootstrap interval over songs)")
    ax.set_title(target)
    return fig


def plot_curve_rmse_by_step(truth: pd.DataFrame, predictions: Mapping[str, pd.DataFrame]) -> Figure:
    """RMSE of the log1p curve at each period since debut, one line per curve model.

    Parameters
    ----------
    truth : pd.DataFrame
        True curves, columns ``curve_00 ..`` (NaN = unobserved, left out).
    predictions : Mapping[str, pd.DataFrame]
        Model name to predicted curves (same columns and index).

    Returns
    -------
    Figure
        The figure.
    """
    columns = list(truth.columns)
    y = truth.to_numpy(dtype=float)  # (N, H)
    fig = _figure(6.5, 3.6)
    ax = fig.subplots()
    for model, pred in predictions.items():
        err = (pred.loc[truth.index, columns].to_numpy(dtype=float) - y) ** 2  # (N, H)
        rmse = np.sqrt(np.nanmean(np.where(np.isfinite(y), err, np.nan), axis=0))  # (H,)
        ax.plot(np.arange(len(columns)), rmse, marker="o", markersize=3, label=model)
    ax.set_xlabel("periods since debut")
    ax.set_ylabel("RMSE of log1p streams")
    ax.set_title("curve RMSE per horizon step (observed periods)")
    ax.legend(fontsize=8)
    return fig


def plot_curves_by_region(
    truth: pd.DataFrame,
    regions: pd.Series,
    predictions: Mapping[str, pd.DataFrame],
    per_region: int = 3,
    labels: pd.Series | None = None,
) -> Figure:
    """Predicted against true curves for a few test tracks of each region.

    The tracks shown are the ones with the most observed periods in each region (ties by row
    order), so the picture is deterministic.

    Parameters
    ----------
    truth : pd.DataFrame
        True log1p curves (``curve_..`` columns).
    regions : pd.Series
        Region of each row (same index).
    predictions : Mapping[str, pd.DataFrame]
        Model name to predicted curves.
    per_region : int
        Tracks per region.
    labels : pd.Series, optional
        Panel title of each row (e.g. the track id); default the row index.

    Returns
    -------
    Figure
        One row of panels per region.
    """
    columns = list(truth.columns)
    names = sorted(regions.unique())
    fig = _figure(3.2 * per_region, 2.4 * len(names))
    axes = fig.subplots(len(names), per_region, squeeze=False)
    steps = np.arange(len(columns))
    for r, region in enumerate(names):
        rows = truth[regions == region]
        observed = rows.notna().sum(axis=1).sort_values(ascending=False, kind="stable")
        for c in range(per_region):
            ax = axes[r, c]
            if c >= len(observed):
                ax.set_visible(False)
                continue
            index = observed.index[c]
            ax.plot(steps, rows.loc[index].to_numpy(dtype=float), "k.-", label="true")
            for model, pred in predictions.items():
                ax.plot(steps, pred.loc[index, columns].to_numpy(dtype=float), label=model)
            label = labels.loc[index] if labels is not None else f"row {index}"
            ax.set_title(f"{region}: {label}", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    return fig
