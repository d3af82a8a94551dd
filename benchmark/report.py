"""The ``results/<dataset>/`` report: one report model, two renderers.

:func:`build_report` turns a run's :class:`~benchmark.results.Results` into a :class:`Report`
(the metrics pivoted into one table per target, the run's method, the data summary, the plots).
:func:`render_markdown` writes it as ``summary.md`` and :func:`render_html` as a self-contained
``report.html`` through the Jinja2 template ``templates/report.html.j2``; the terminal table is a
third view of the same pivot. ``summary.csv`` is the tidy metrics table itself (one row per model
x target x metric, with the 95% bootstrap interval and the paired differences) with each model's
provenance (``encoder``, ``encoder_weights_sha256``, ``encoder_frozen``), which the report's
models table shows too. When the run loaded the ``musicnn`` feature set, the report has a section
on popularity by vocal/instrumental group (:mod:`benchmark.instrumental`, also written as
``instrumental.csv``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..features.feature_sets import available_feature_sets
from ..features.layout import DataLayout, write_text_atomic
from .data import LEFT_OUT, BenchmarkData
from .instrumental import RULE, instrumental_table
from .metrics import CURVE_TARGET, ordered_metrics
from .plots import (
    plot_curve_rmse_by_step,
    plot_curves_by_region,
    plot_feature_importance,
    plot_metric_intervals,
    plot_pred_vs_true,
    plot_region_spearman,
)
from .results import ModelInfo, Results
from .splits import describe_groups, group_labels

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
SUMMARY_COLUMNS = [
    "model",
    "kind",
    "encoder",
    "encoder_weights_sha256",
    "encoder_frozen",
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
TERMINAL_METRICS = ("spearman_region", "r2_region", "rmse", "spearman", "top10_precision")
"""The terminal's columns: within-region metrics (the headline) first; every metric is in the
CSV, the Markdown and the HTML."""


# --- the pivot ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One metric of one model: value, interval, and the paired difference to the reference."""

    value: float
    low: float = np.nan
    high: float = np.nan
    diff: float = np.nan
    diff_low: float = np.nan
    diff_high: float = np.nan
    maximize: bool = True

    @property
    def text(self) -> str:
        """``value [low, high]``; ``n/a`` when the metric is undefined."""
        return _interval_text(self.value, self.low, self.high)

    @property
    def diff_text(self) -> str:
        """``+diff [low, high]`` against the reference; empty without one."""
        if not np.isfinite(self.diff):
            return ""
        return _interval_text(self.diff, self.diff_low, self.diff_high, signed=True)

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` when the difference's interval excludes 0, else ``""``."""
        if not (np.isfinite(self.diff_low) and np.isfinite(self.diff_high)):
            return ""
        if self.diff_low > 0:
            return "better" if self.maximize else "worse"
        if self.diff_high < 0:
            return "worse" if self.maximize else "better"
        return ""


def _interval_text(value: float, low: float, high: float, signed: bool = False) -> str:
    fmt = "{:+.3f}" if signed else "{:.3f}"
    if not np.isfinite(value):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return fmt.format(value)
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


@dataclass
class Row:
    """One model's row of a target table."""

    model: str
    kind: str
    cells: dict[str, Cell]
    is_reference: bool = False


@dataclass
class TargetTable:
    """Every model's metrics for one target."""

    target: str
    metrics: list[str]
    rows: list[Row]
    reference: str | None
    lead_metric: str

    @property
    def heading(self) -> str:
        """Section heading."""
        return "curves (log1p streams)" if self.target == CURVE_TARGET else self.target


def pivot(
    table: pd.DataFrame, metrics: Sequence[str] | None = None, lead: str | None = None
) -> list[TargetTable]:
    """The tidy metrics table as one model x metric table per target (the one pivot).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`benchmark.metrics.evaluate` (with ``kind``).
    metrics : Sequence[str], optional
        Metric columns in order (default: every registered metric the table has).
    lead : str, optional
        The metric whose paired difference the table shows (default: the first metric shown,
        within-region metrics first).

    Returns
    -------
    list[TargetTable]
        In target order.
    """
    out = []
    order = ordered_metrics(metrics)
    for target, rows in table.groupby("target", sort=False):
        shown = [m for m in order if m in set(rows.metric)] or list(dict.fromkeys(rows.metric))
        chosen = lead if lead in shown else shown[0]
        # the run's reference model; a target it does not predict (curves) is compared with
        # the baseline (region_mean) instead
        prefix = "" if rows["reference"].notna().any() else "baseline_"
        refs = rows.loc[rows.metric == chosen, "baseline" if prefix else "reference"].dropna()
        reference = str(refs.iloc[0]) if len(refs) else None
        model_rows = []
        for model, mrows in rows.groupby("model", sort=False):
            cells = {}
            for r in mrows.to_dict("records"):
                if r["metric"] in shown:
                    cells[r["metric"]] = Cell(
                        r["value"],
                        r["ci_low"],
                        r["ci_high"],
                        np.nan if model == reference else r[prefix + "diff"],
                        r[prefix + "diff_ci_low"],
                        r[prefix + "diff_ci_high"],
                        bool(r["maximize"]),
                    )
            kind = str(mrows["kind"].iloc[0]) if "kind" in mrows else "model"
            model_rows.append(Row(str(model), kind, cells, str(model) == reference))
        out.append(TargetTable(str(target), shown, model_rows, reference, chosen))
    return out


# --- the report model ---------------------------------------------------------------------------


@dataclass
class ModelRow:
    """One line of the models table: how a model was set up and what encoder it stands on."""

    model: str
    kind: str
    inputs: str
    encoder: str
    weights: str
    frozen: str
    tuned: str


def model_rows(models: Mapping[str, ModelInfo]) -> list[ModelRow]:
    """The models table: inputs, provenance (encoder, weights' sha256, frozen) and tuning."""
    out = []
    for m in models.values():
        frozen = "" if m.encoder_frozen is None else ("yes" if m.encoder_frozen else "no")
        out.append(
            ModelRow(
                model=m.name,
                kind=m.family,
                inputs=f"{m.features} ({m.feature_service})" if m.features else "none",
                encoder=m.encoder or "none",
                weights=m.encoder_weights_sha256[:16],
                frozen=frozen,
                tuned="yes" if m.tuned else "no",
            )
        )
    return out


@dataclass
class InstrumentalSection:
    """Popularity by vocal/instrumental group (:func:`benchmark.instrumental.instrumental_table`)."""

    rule: str
    rows: list[dict[str, str]]


def instrumental_section(table: pd.DataFrame | None) -> InstrumentalSection | None:
    """The section's rows as text: ``value [low, high]`` per group, target and statistic."""
    if table is None:
        return None
    rows = []
    for r in table.itertuples():
        signed = r.statistic in ("difference", "spearman_region")
        rows.append(
            {
                "group": str(r.group),
                "target": str(r.target),
                "statistic": str(r.statistic),
                "value": _interval_text(r.value, r.ci_low, r.ci_high, signed=signed),
                "rows": f"{r.n_rows:,}",
                "songs": f"{r.n_songs:,}",
            }
        )
    return InstrumentalSection(RULE, rows)


@dataclass
class Report:
    """Everything both renderers show."""

    title: str
    generated: str
    commit: str
    facts: list[str]
    tables: list[TargetTable]
    plots: list[Path]
    data_rows: list[tuple[str, str]]
    config: dict[str, Any]
    timings: list[Mapping[str, Any]] = field(default_factory=list)
    models: list[ModelRow] = field(default_factory=list)
    instrumental: InstrumentalSection | None = None


def summarize_data(layout: DataLayout) -> list[tuple[str, str]]:
    """Counts a reader needs to judge a result: size, coverage, censoring and failures."""
    if not (layout.streams.exists() and layout.catalog.exists() and layout.popularity.exists()):
        return []
    streams = layout.streams.read(["region", "period", "chart_date"])
    catalog = layout.catalog.read(["track_id", "song_id"])
    popularity = layout.popularity.read()
    clips = layout.clips.read(["track_id"], missing_ok=True)
    failures = len(layout.extract_errors.read()) if layout.extract_errors.exists() else 0
    regions = sorted(streams["region"].unique().tolist())
    return [
        ("tracks", f"{len(catalog):,}"),
        ("songs (versions grouped)", f"{catalog['song_id'].nunique():,}"),
        ("regions", f"{len(regions)}: {', '.join(regions)}"),
        ("periods", ", ".join(sorted(streams["period"].unique().tolist()))),
        ("chart dates", f"{streams['chart_date'].nunique():,}"),
        ("(track, region, period) targets", f"{len(popularity):,}"),
        (
            "left-censored (debut within the burn-in at the start of the data)",
            f"{int(popularity['left_censored'].sum()):,}",
        ),
        (
            "re-entries (a debut long after the first chart entry or the release)",
            f"{int(popularity['reentry'].sum()):,}" if "reentry" in popularity else "not flagged",
        ),
        (
            "horizon not covered by the data",
            f"{int((~popularity['complete_horizon'].astype(bool)).sum()):,}",
        ),
        ("tracks with audio / clips", f"{clips['track_id'].nunique():,} / {len(clips):,}"),
        ("extraction failures", f"{failures:,}"),
        *_feature_set_rows(layout),
    ]


def _feature_set_rows(layout: DataLayout) -> list[tuple[str, str]]:
    """One summary row per feature set of the data dir: tracks covered, version, provenance."""
    import pyarrow.parquet as pq

    rows = []
    for fs in available_feature_sets(layout):
        table = fs.table(layout)
        tracks = pq.read_metadata(table.path).num_rows if fs.kind != "clips" else None
        where = ""
        if fs.source == "table":
            provenance = fs.metadata.get("provenance", {})
            where = (
                f", ingested from {provenance.get('file', '?')} "
                f"(sha256 {str(provenance.get('sha256', ''))[:12]}, "
                f"{provenance.get('ingested_at', '?')})"
            )
        count = f"{tracks:,} tracks, " if tracks is not None else ""
        rows.append(
            (
                f"feature set {fs.name}",
                f"{count}{len(fs.columns) or '?'} columns, {fs.source}, `{fs.service}`{where}",
            )
        )
    return rows


def _method(results: Results, data: BenchmarkData) -> list[str]:
    """The run's facts: data, features, split, tuning, intervals, tracking."""
    config, tags = results.config, results.tags
    evaluated = int((results.split["test_fold"] >= 0).sum())
    if config.split == "kfold":
        split = (
            f"song-grouped {config.n_folds}-fold (seed {config.seed}); every row is predicted "
            "once, out of fold"
        )
    else:
        split = (
            f"temporal: the last {config.test_fraction:.0%} of songs by first debut are the test "
            f"set ({evaluated} rows)"
        )
    tuned = [m.name for m in results.models.values() if m.tuned]
    tuning = (
        f"Optuna TPE (seeded), {config.n_trials} trials per outer fold for every tunable model "
        f"({', '.join(tuned) or 'none'}), "
        + (
            "inner song-grouped holdout"
            if config.inner_folds == 0
            else f"inner {config.inner_folds}-fold"
        )
        + (", median pruning" if config.pruning else "")
    )
    inputs = "; ".join(
        f"{m.name}: {m.features} (`{m.feature_service}`)"
        for m in results.models.values()
        if m.features
    )
    unit = {"weekly": "weeks", "daily": "days"}.get(config.period, "periods")
    families = {m.family for m in results.models.values()}
    reference = (
        "reference rows: "
        + ", ".join(m.name for m in results.models.values() if m.family == "baseline")
        + (
            "; no oracle: this dataset has no ground truth (only generated data knows its "
            "noise-free popularity), so nothing takes the oracle's place"
            if "reference" not in families
            else "; the oracle is the generator's noise-free appeal, calibrated (not a bound)"
        )
    )
    groups = [describe_groups(group_labels(data.frame, "song")).line("song")]
    if config.group != "song":
        groups.append(describe_groups(group_labels(data.frame, config.group)).line(config.group))
    compared = int(np.isfinite(results.metrics["diff_ci_low"]).sum())
    return [
        f"dataset: `{data.data_dir or 'in memory'}`, fingerprint `{data.fingerprint[:16]}`, "
        f"{len(data.frame):,} (track, region) rows, {data.frame['song_id'].nunique():,} songs, "
        f"{data.frame['region'].nunique()} regions, {config.period} charts",
        f"chart period: {config.period}; targets over {config.horizon} {unit} from the debut "
        f"(null policy {config.null_policy}); rows left out: "
        + ", ".join(
            [reason for switch, (_, _, reason) in LEFT_OUT.items() if getattr(config, switch)]
            + (["tracks without the inputs"] if inputs else [])
        ),
        reference,
        f"inputs (through Feast): {inputs or 'none'}",
        f"split: {split}; the split unit is the {config.group}: " + "; ".join(groups),
        f"tuning: {tuning}",
        f"intervals: 95% bootstrap over songs, {config.bootstrap} resamples (seed {config.seed}); "
        "differences are paired (same resamples for every model) against the reference model "
        f"`{results.best_classical or 'none'}`, fixed before the run (never chosen on the test "
        "folds)",
        f"comparisons: {compared} paired intervals against the reference (every model x target x "
        f"metric); at 95% each, about {compared / 20:.0f} of them would exclude 0 by chance "
        "even if no model differed, so read single borderline intervals with care",
        "headline metrics are within-region (spearman_region: Spearman within each region and "
        "fold, averaged with weights proportional to rows; r2_region: 1 - SSE / the squared "
        "deviations from each region's mean); pooled metrics follow",
        "rank metrics (spearman, spearman_region, top10_precision) are computed within each "
        "outer fold (the rows one fitted model ranked) and averaged; n/a: the model's "
        "predictions carry no ranking there",
        f"MLflow: `{config.tracking_uri}`, parent run `{results.run_id}`, config hash "
        f"`{tags.get('config_hash', '')[:16]}`",
    ]


def build_report(
    results: Results,
    data: BenchmarkData,
    plots: Sequence[Path] = (),
    timings: Sequence[Mapping[str, Any]] = (),
) -> Report:
    """The report model of a run.

    Parameters
    ----------
    results : Results
        The run.
    data : BenchmarkData
        The rows it ran on.
    plots : Sequence[Path]
        Figures written next to the report.
    timings : Sequence[Mapping]
        ``{"stage", "seconds", "status"}`` per pipeline stage (when run by ``benchmark run``).

    Returns
    -------
    Report
        What both renderers show.
    """
    layout = DataLayout(data.data_dir) if data.data_dir is not None else None
    return Report(
        title=f"Popularity benchmark: {results.config.dataset}",
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=results.tags.get("git_commit", "unknown"),
        facts=_method(results, data),
        tables=pivot(results.metrics),
        plots=list(plots),
        data_rows=summarize_data(layout) if layout is not None else [],
        config=results.config.to_dict(),
        timings=list(timings),
        models=model_rows(results.models),
        instrumental=instrumental_section(
            instrumental_table(data, results.config.bootstrap, results.config.seed)
        ),
    )


# --- renderers ------------------------------------------------------------------------------------


def markdown_table(table: TargetTable) -> str:
    """One target's table in Markdown: value [interval] per metric, then the paired difference."""
    header = ["model", *table.metrics]
    diff_column = table.reference is not None
    if diff_column:
        header.append(f"{table.lead_metric} vs {table.reference}")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in table.rows:
        cells = [row.model] + [row.cells[m].text if m in row.cells else "" for m in table.metrics]
        if diff_column:
            lead = row.cells.get(table.lead_metric)
            cells.append(lead.diff_text if lead is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """``summary.md``: the facts, one table per target, the plots and the configuration."""
    lines = [
        f"# {report.title}",
        "",
        f"- date: {report.generated}",
        f"- git commit: `{report.commit}`",
        *[f"- {fact}" for fact in report.facts],
        "",
    ]
    for table in report.tables:
        lines += [f"## {table.heading}", "", markdown_table(table), ""]
    lines += [
        "Cells: value [95% interval]. The last column is the paired difference of each model "
        "minus the reference model; an interval above 0 means the model is better with 95% "
        "confidence, and an interval containing 0 means not distinguishable. summary.csv also "
        "has the paired difference to region_mean.",
        "",
    ]
    if report.models:
        lines += [
            "## Models",
            "",
            "| model | kind | inputs (FeatureService) | encoder | weights sha256 | frozen | tuned |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| {m.model} | {m.kind} | {m.inputs} | {m.encoder} | {m.weights} | {m.frozen} "
                f"| {m.tuned} |"
                for m in report.models
            ],
            "",
            "Encoder: the pretrained network behind a model's inputs or in its network "
            "(`scratch`: trained from scratch; `none`: hand-crafted features or no inputs); "
            "weights: the first 16 hex digits of the sha256 of its weights (summary.csv has all "
            "64); frozen: whether those weights were kept fixed.",
            "",
        ]
    if report.instrumental is not None:
        lines += [
            "## Instrumental or vocal?",
            "",
            f"Rule: {report.instrumental.rule}. Values with 95% song-bootstrap intervals; "
            "`region_centred_mean` is the mean of each row minus its region's mean, "
            "`difference` the instrumental minus vocal difference of it, `spearman_region` the "
            "within-region Spearman correlation of p(instrumental) with the target.",
            "",
            "| group | target | statistic | value [95% interval] | rows | songs |",
            "|---|---|---|---|---|---|",
            *[
                f"| {r['group']} | {r['target']} | {r['statistic']} | {r['value']} "
                f"| {r['rows']} | {r['songs']} |"
                for r in report.instrumental.rows
            ],
            "",
        ]
    lines += [
        "## Plots",
        "",
        *[f"![{p.stem}]({p.name})" for p in report.plots],
        "",
    ]
    if report.data_rows:
        lines += ["## Data", "", "| | |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in report.data_rows]
        lines.append("")
    if report.timings:
        lines += ["## Stage times", "", "| stage | seconds | status |", "|---|---|---|"]
        lines += [f"| {t['stage']} | {t['seconds']:.1f} | {t['status']} |" for t in report.timings]
        lines.append("")
    lines += [
        "## Config",
        "",
        "```json",
        json.dumps(report.config, indent=2, sort_keys=True, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def render_html(report: Report) -> str:
    """``report.html``: the same content as one self-contained page (plots embedded)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATE_DIR), autoescape=select_autoescape(default=True)
    )
    plots = [
        {"name": p.stem.replace("_", " "), "data": base64.b64encode(p.read_bytes()).decode()}
        for p in report.plots
    ]
    return env.get_template("report.html.j2").render(
        report=report,
        plots=plots,
        config_text=json.dumps(report.config, indent=2, sort_keys=True, default=str),
    )


def terminal_table(results: Results, metrics: Sequence[str] = TERMINAL_METRICS) -> str:
    """A readable terminal view of the same pivot: value [95% interval] per model and metric."""
    blocks = []
    for table in pivot(results.metrics, metrics):
        frame = pd.DataFrame(
            [
                {
                    "model": row.model,
                    **{m: row.cells[m].text for m in table.metrics if m in row.cells},
                }
                for row in table.rows
            ]
        ).fillna("")
        if table.reference is not None:
            frame[f"{table.lead_metric} vs {table.reference}"] = [
                row.cells[table.lead_metric].diff_text if table.lead_metric in row.cells else ""
                for row in table.rows
            ]
        blocks.append(f"target: {table.heading}\n{frame.to_string(index=False)}")
    return "\n\n".join(blocks)


# --- writing ------------------------------------------------------------------------------------


def _save(figure: Any, path: Path) -> Path:
    figure.savefig(path)
    return path


def write_plots(results: Results, data: BenchmarkData, out: Path) -> list[Path]:
    """Every figure of the report, as PNG files in ``out``."""
    config, table = results.config, results.metrics
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
                plot_region_spearman(
                    truth[target],
                    truth["region"],
                    preds,
                    target,
                    results.split["test_fold"][evaluated],
                ),
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
        name = model.replace("[", "_").replace("]", "")
        plots.append(
            _save(plot_feature_importance(importance), out / f"feature_importance_{name}.png")
        )
    return plots


def summary_table(results: Results) -> pd.DataFrame:
    """``summary.csv``: the tidy metrics with each model's provenance (:data:`SUMMARY_COLUMNS`)."""
    table = results.metrics.copy()
    info = results.models
    for column in ("encoder", "encoder_weights_sha256", "encoder_frozen"):
        table[column] = table["model"].map(
            lambda m, c=column: getattr(info[m], c) if m in info else None
        )
    return table.reindex(columns=SUMMARY_COLUMNS)


def predictions_table(results: Results, data: BenchmarkData) -> pd.DataFrame:
    """Every row's truth and every model's out-of-fold prediction of the scalar targets.

    One row per (track, region) of the run: ``track_id``, ``song_id``, ``region``, ``test_fold``,
    the true value of each target, and ``<model>:<target>`` for each model's prediction (NaN where
    a model has none), so that every metric of the summary can be recomputed without MLflow.
    """
    frame = data.frame
    table = frame[["track_id", "song_id", "region"]].copy()
    table["test_fold"] = results.split["test_fold"].to_numpy()
    for target in data.targets:
        table[target] = frame[target].to_numpy()
    for name, predicted in results.predictions.items():
        for target in data.targets:
            if target in predicted.columns:
                table[f"{name}:{target}"] = predicted[target].reindex(frame.index).to_numpy()
    return table


def write_report(
    results: Results, data: BenchmarkData, timings: Sequence[Mapping[str, Any]] = ()
) -> Path:
    """Write ``results_dir/<dataset>/``: summary.csv, split.csv, predictions.csv, plots, summary.md,
    report.html.

    Parameters
    ----------
    results : Results
        The run.
    data : BenchmarkData
        The rows it ran on.
    timings : Sequence[Mapping]
        Pipeline stage times, when known.

    Returns
    -------
    Path
        The folder written.
    """
    out = Path(results.config.results_dir) / results.config.dataset
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    write_text_atomic(out / "summary.csv", summary_table(results).to_csv(index=False))
    instrumental = instrumental_table(data, results.config.bootstrap, results.config.seed)
    stale = out / "instrumental.csv"
    if instrumental is not None:
        write_text_atomic(stale, instrumental.to_csv(index=False))
    elif stale.exists():
        stale.unlink()
    write_text_atomic(out / "split.csv", results.split.to_csv(index=False))
    write_text_atomic(out / "predictions.csv", predictions_table(results, data).to_csv(index=False))
    plots = write_plots(results, data, out)
    render_pages(results, data, plots, timings)
    return out


def render_pages(
    results: Results,
    data: BenchmarkData,
    plots: Sequence[Path] | None = None,
    timings: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """(Re)write ``summary.md`` and ``report.html`` of a run (e.g. once stage times are known).

    Returns
    -------
    Path
        The ``report.html`` written.
    """
    out = Path(results.config.results_dir) / results.config.dataset
    if plots is None:
        plots = sorted(out.glob("*.png"))
    report = build_report(results, data, plots, timings)
    write_text_atomic(out / "summary.md", render_markdown(report))
    write_text_atomic(out / "report.html", render_html(report))
    return out / "report.html"
