"""The ``results/<dataset>/`` report: summary.md, summary.csv and PNG plots.

``summary.csv`` is the tidy metrics table (one row per model x target x metric, with the 95%
bootstrap interval and the paired difference to the best classical model and to region-mean);
``summary.md`` is the comparison table with intervals, the split, the config, date and commit.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .metrics import CURVE_TARGET, METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .runner import BenchmarkData, Results

SUMMARY_COLUMNS = [
    "model",
    "kind",
    "target",
    "metric",
    "maximize",
    "value",
    "ci_low",
    "ci_high",
    "reference",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "baseline",
    "baseline_diff",
    "baseline_diff_ci_low",
    "baseline_diff_ci_high",
    "n_rows",
    "n_songs",
]


def _cell(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def metrics_wide(table: pd.DataFrame, metrics: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Per target, a model x metric table of ``value [ci_low, ci_high]`` strings.

    The last column is the paired difference in the primary metric (the first of ``metrics``
    the table has, Spearman by default) against the reference model.

    Parameters
    ----------
    table : pd.DataFrame
        Output of :func:`benchmark.metrics.evaluate`.
    metrics : Sequence[str]
        Metric columns, in order.

    Returns
    -------
    dict[str, pd.DataFrame]
        Target name to its table.
    """
    out = {}
    for target, rows in table.groupby("target", sort=False):
        shown = [m for m in metrics if m in set(rows.metric)] or list(dict.fromkeys(rows.metric))
        lead = "spearman" if "spearman" in shown else shown[0]
        records = []
        for model, mrows in rows.groupby("model", sort=False):
            by_metric = mrows.set_index("metric")
            record: dict[str, Any] = {"model": model}
            for m in shown:
                if m in by_metric.index:
                    r = by_metric.loc[m]
                    record[m] = _cell(r.value, r.ci_low, r.ci_high)
            r = by_metric.loc[lead]
            if pd.notna(r.reference) and r.reference != model:
                record[f"{lead} vs {r.reference}"] = _cell(r["diff"], r.diff_ci_low, r.diff_ci_high)
            records.append(record)
        out[str(target)] = pd.DataFrame.from_records(records).fillna("")
    return out


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# --- plots ---------------------------------------------------------------------------------


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
    truth: pd.Series, regions: pd.Series, predictions: Mapping[str, pd.Series], target: str
) -> Figure:
    """Bars of the Spearman correlation within each region, per model.

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

    Returns
    -------
    Figure
        The figure.
    """
    spearman = METRICS["spearman"]
    names = sorted(regions.astype(str).unique())
    fig = _figure(max(6.0, 0.5 * len(names) * max(1, len(predictions)) ** 0.5 + 3), 4)
    ax = fig.subplots()
    width = 0.8 / max(1, len(predictions))
    for i, (model, pred) in enumerate(predictions.items()):
        values = []
        for region in names:
            rows = (regions.astype(str) == region).to_numpy() & np.isfinite(truth.to_numpy())
            values.append(
                spearman(truth.to_numpy()[rows], pred.loc[truth.index].to_numpy()[rows])
                if rows.sum() >= 2
                else np.nan
            )
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


# --- the report ----------------------------------------------------------------------------


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


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path)
    return path


def write_report(results: Results, data: BenchmarkData, tags: Mapping[str, str]) -> Path:
    """Write ``results_dir/<dataset>/`` (summary.md, summary.csv, split.csv, PNG plots).

    Parameters
    ----------
    results : Results
        The run's results.
    data : BenchmarkData
        The data the run used.
    tags : Mapping[str, str]
        Run tags (git commit, fingerprint, config hash).

    Returns
    -------
    Path
        The folder written.
    """
    config = results.config
    out = Path(config.results_dir) / config.dataset
    out.mkdir(parents=True, exist_ok=True)
    table = results.metrics
    table.reindex(columns=SUMMARY_COLUMNS).to_csv(out / "summary.csv", index=False)
    results.split.to_csv(out / "split.csv", index=False)

    evaluated = results.split["test_fold"].to_numpy() >= 0
    truth = data.frame[evaluated]
    plots = []
    for target in data.targets:
        preds = {m: p[target] for m, p in results.predictions.items() if target in p}
        plots.append(
            _save(
                plot_pred_vs_true(truth[target], preds, target), out / f"pred_vs_true_{target}.png"
            )
        )
        plots.append(
            _save(
                plot_region_spearman(truth[target], truth["region"], preds, target),
                out / f"region_spearman_{target}.png",
            )
        )
        if config.primary_metric in set(table.metric):
            plots.append(
                _save(
                    plot_metric_intervals(table, target, config.primary_metric),
                    out / f"{config.primary_metric}_{target}.png",
                )
            )

    curve_columns = data.curve_columns
    curve_preds = {
        m: p[curve_columns]
        for m, p in results.predictions.items()
        if curve_columns and set(curve_columns) <= set(p.columns)
    }
    if curve_preds:
        plots.append(
            _save(
                plot_curve_rmse_by_step(truth[curve_columns], curve_preds),
                out / "curve_rmse_by_step.png",
            )
        )
        plots.append(
            _save(
                plot_curves_by_region(
                    truth[curve_columns], truth["region"], curve_preds, labels=truth["track_id"]
                ),
                out / "curves_by_region.png",
            )
        )

    for model, importance in results.feature_importance.items():
        plots.append(
            _save(plot_feature_importance(importance), out / f"feature_importance_{model}.png")
        )

    n_songs = data.frame["song_id"].nunique()
    if config.split == "kfold":
        split_text = (
            f"song-grouped {config.n_folds}-fold (seed {config.seed}); every row is predicted "
            f"once, out of fold"
        )
    else:
        split_text = (
            f"temporal: the last {config.test_fraction:.0%} of songs by first debut are the test "
            f"set ({int(evaluated.sum())} rows)"
        )
    tuning = (
        f"Optuna TPE (seeded), {config.n_trials} trials per outer fold, "
        + (
            "inner song-grouped holdout"
            if config.inner_folds == 0
            else f"inner {config.inner_folds}-fold"
        )
        + (", median pruning" if config.pruning else "")
    )
    lines = [
        f"# Benchmark: {config.dataset}",
        "",
        f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- git commit: `{tags.get('git_commit', 'unknown')}`",
        f"- dataset: `{data.data_dir or 'in memory'}`, fingerprint `{data.fingerprint[:16]}`, "
        f"{len(data.frame):,} (track, region) rows, {n_songs:,} songs, "
        f"{len(data.feature_columns)} audio features (`{data.feature_service}`)",
        f"- split: {split_text}",
        f"- tuning: {tuning}",
        f"- intervals: 95% bootstrap over songs, {config.bootstrap} resamples (seed {config.seed}); "
        "differences are paired (same resamples for every model)",
        "- rank metrics (spearman, spearman_region, top10_precision) are computed within each "
        "outer fold (the rows one fitted model ranked) and averaged; n/a: the model's predictions "
        "carry no ranking there (constant within a fold, or within a region for spearman_region)",
        f"- MLflow: `{config.tracking_uri}`, parent run `{results.run_id}`, "
        f"config hash `{tags.get('config_hash', '')[:16]}`",
        "",
    ]
    for target, wide in metrics_wide(table, list(METRICS)).items():
        heading = "curves (log1p streams)" if target == CURVE_TARGET else target
        lines += [f"## {heading}", "", _markdown(wide), ""]
    lines += [
        "Cells: value [95% interval]. The last column is the paired difference of each model "
        "minus the best classical model (by "
        f"{config.primary_metric}); an interval above 0 means the model is better with 95% "
        "confidence. summary.csv also has the paired difference to region_mean.",
        "",
        "## Plots",
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str),
        "```",
        "",
    ]
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    return out
