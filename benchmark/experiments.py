"""The design's open questions as experiments: each a named variation of one benchmark run.

``benchmark experiment NAME --data-dir DIR`` runs the variants of experiment ``NAME`` through
:func:`~benchmark.runner.run_suite` (the same folds, tuning budget and models as ``benchmark run``;
a variant changes settings, rows, targets or the split), compares them with the metrics'
paired song bootstrap (:func:`~benchmark.metrics.evaluate`: every interval and difference comes
from the same code as the benchmark's), and writes ``results/<dataset>/experiments/NAME.md`` and
``NAME.csv``. In MLflow the experiment is a parent run (tag ``experiment``) with one benchmark
run per variant below it (tag ``variant``).

An experiment is one :func:`register_experiment` entry: a name, the question it answers and a
function ``ExperimentContext -> ExperimentResult``. The registered ones:

``regions``
    One model per region against one pooled model that sees the region (as LightGBM's
    categorical splits, as one-hot columns) and one that does not see it: the design's claim
    that single-region data is not enough, per region with intervals and paired differences.
``null-policy``
    Off-chart periods as ``missing``, ``zero`` or ``floor``: how the targets and the models'
    ranking change.
``grouping``
    Song-, main-artist-, track- and row-grouped folds: how much versions, artists and regions
    inflate the scores of a careless split.
``horizon``
    Targets over 4, 13, 26 and 52 weeks after the debut, on the same rows.
``season``
    Tracks whose streams come back in the same few calendar weeks of several years (Christmas
    songs): how many, and how the models do with and without them.
``deep-design``
    MP2 with positional embeddings added or concatenated, and the region as a token beside
    [CLS] or as an embedding joined to the pooled vector (2x2 variants, the design's default
    the reference): the design's two open deep-model questions.

Every variant of an experiment is tuned with the configuration's budget (``n_trials`` per
outer fold for every tunable model); no variant gets more search than another.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..features.charts import read_streams
from ..features.errors import DataError
from ..features.layout import DataLayout, write_text_atomic
from ..features.targets import PERIOD_DAYS, TARGETS, compute_targets
from ..models.estimators.deep import MP2Estimator, TrainingConfig, with_overrides
from ..models.mp2 import MP2, MP2Config
from .config import BenchmarkConfig, deep_update, load_config
from .data import BenchmarkData, load_benchmark_data
from .metrics import CURVE_TARGET, METRICS, evaluate
from .registry import ModelRun
from .report import markdown_table, pivot
from .results import Results
from .runner import run_suite, select_runs
from .tracking import RunLogger, git_commit

HEADLINE_METRICS = ("spearman_region", "r2_region", "spearman", "rmse", "curve_rmse")
"""Metrics an experiment's tables show (those registered), the within-region ones first."""
LEAD_METRIC = "spearman_region"
"""The metric of the paired differences in an experiment's tables."""


# --- what an experiment produces ----------------------------------------------------------------


@dataclass
class Section:
    """A part of an experiment's page: a heading and Markdown blocks (text or tables)."""

    heading: str
    blocks: list[str] = field(default_factory=list)


@dataclass
class ExperimentResult:
    """What one experiment found.

    Attributes
    ----------
    name : str
        Registry name.
    title : str
        Page title.
    question : str
        The design question it answers.
    method : list[str]
        How it was run (one line each).
    sections : list[Section]
        The findings, in order.
    tables : dict[str, pandas.DataFrame]
        Tidy metric tables by section (written together as ``NAME.csv``).
    variant_seconds : dict[str, float]
        Wall time of each variant's benchmark run.
    seconds : float
        Wall time of the whole experiment.
    load : tuple[float, float]
        One-minute load average at the start and the end (the machine may be shared).
    run_id : str or None
        The MLflow parent run.
    """

    name: str
    title: str
    question: str
    method: list[str]
    sections: list[Section]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    variant_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    load: tuple[float, float] = (float("nan"), float("nan"))
    run_id: str | None = None

    def markdown(self) -> str:
        """The experiment's page (``NAME.md``)."""
        lines = [f"# {self.title}", "", f"**Question.** {self.question}", ""]
        lines += [f"- {line}" for line in self.method]
        lines.append("")
        for section in self.sections:
            lines += [f"## {section.heading}", ""]
            for block in section.blocks:
                lines += [block, ""]
        lines += ["## Run time", "", "| variant | seconds |", "|---|---|"]
        lines += [f"| {label} | {sec:.0f} |" for label, sec in self.variant_seconds.items()]
        lines += [
            f"| total | {self.seconds:.0f} |",
            "",
            f"Load average (1 min) at the start {self.load[0]:.1f}, at the end {self.load[1]:.1f}, "
            f"on {os.cpu_count()} cores; MLflow parent run `{self.run_id}`.",
            "",
        ]
        return "\n".join(lines)

    def tidy(self) -> pd.DataFrame:
        """Every metric table of the experiment in one frame (``NAME.csv``)."""
        frames = [t.assign(table=name) for name, t in self.tables.items() if not t.empty]
        if not frames:
            return pd.DataFrame()
        out = pd.concat(frames, ignore_index=True)
        return out[["table", *[c for c in out.columns if c != "table"]]]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes
    ----------
    name : str
        Registry key (``benchmark experiment NAME``).
    title : str
        Page title.
    question : str
        The design question it answers (one or two sentences).
    run : Callable[[ExperimentContext], ExperimentResult]
        Runs the variants and builds the result.
    unavailable : Callable[[BenchmarkConfig], str | None] or None
        Why the experiment cannot run on a configuration's suite (None when it can);
        ``benchmark experiment all`` skips it with that reason.
    """

    name: str
    title: str
    question: str
    run: Callable[[ExperimentContext], ExperimentResult]
    unavailable: Callable[[BenchmarkConfig], str | None] | None = None


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(
    name: str,
    title: str,
    question: str,
    unavailable: Callable[[BenchmarkConfig], str | None] | None = None,
) -> Callable[[Callable[[ExperimentContext], ExperimentResult]], Experiment]:
    """Decorator: register the function as experiment ``name``.

    Parameters
    ----------
    name : str
        Registry key.
    title : str
        Page title.
    question : str
        The design question it answers.
    unavailable : Callable, optional
        Config -> why the experiment cannot run on its suite, or None (see :class:`Experiment`).

    Returns
    -------
    Callable
        The decorator; it returns the :class:`Experiment`.
    """

    def wrap(function: Callable[[ExperimentContext], ExperimentResult]) -> Experiment:
        EXPERIMENTS[name] = Experiment(name, title, question, function, unavailable)
        return EXPERIMENTS[name]

    return wrap


# --- the context every experiment runs in -------------------------------------------------------


class ExperimentContext:
    """The base configuration, the data, and the shared ways to run and compare variants.

    Parameters
    ----------
    experiment : Experiment
        The experiment being run.
    config : BenchmarkConfig
        The base settings (preset, config file, CLI options); each variant changes some.
    """

    def __init__(self, experiment: Experiment, config: BenchmarkConfig) -> None:
        self.experiment = experiment
        self.config = config
        self.layout = DataLayout(config.data_dir)
        self.runs = select_runs(config)
        self.variant_seconds: dict[str, float] = {}
        self._data: BenchmarkData | None = None

    @property
    def data(self) -> BenchmarkData:
        """The benchmark's rows and inputs for the base configuration (loaded once)."""
        if self._data is None:
            self._data = load_benchmark_data(self.config, self.runs)
        return self._data

    @property
    def baselines(self) -> list[ModelRun]:
        """The suite's baseline models (global and region means)."""
        return [run for run in self.runs if run.spec.family == "baseline"]

    @property
    def learners(self) -> list[ModelRun]:
        """The suite's models that read inputs (what the variants are about)."""
        return [run for run in self.runs if run.spec.estimator.inputs is not None]

    def load(
        self, popularity: pd.DataFrame | None = None, **changes: Any
    ) -> tuple[BenchmarkData, BenchmarkConfig]:
        """Rows and inputs for targets computed in memory (and changed settings)."""
        config = dataclasses.replace(self.config, **changes)
        return load_benchmark_data(config, self.runs, popularity=popularity), config

    def run(
        self,
        label: str,
        data: BenchmarkData,
        runs: Sequence[ModelRun],
        config: BenchmarkConfig | None = None,
        intervals: bool = True,
        **changes: Any,
    ) -> Results:
        """One variant: ``runs`` on ``data`` with the base settings plus ``changes``.

        Without ``intervals`` the variant's own metrics are point values only (no bootstrap):
        for variants that :meth:`compare` scores together afterwards, with the same resamples.
        """
        base = config or self.config
        suite = ",".join(run.name for run in runs)
        if not intervals:
            changes["bootstrap"] = 0
        variant = dataclasses.replace(
            base,
            suite=suite,
            reference_model=None,
            write_report=False,
            final_models=False,
            **changes,
        )
        print(f"[{self.experiment.name}] {label}: {suite} on {len(data.frame):,} rows", flush=True)
        started = time.perf_counter()
        results = run_suite(
            variant,
            data,
            run_name=f"{self.experiment.name}: {label}",
            tags={"experiment": self.experiment.name, "variant": label},
        )
        self.variant_seconds[label] = time.perf_counter() - started
        return results

    def compare(
        self,
        data: BenchmarkData,
        predictions: Mapping[str, pd.DataFrame],
        folds: Mapping[str, pd.Series],
        reference: str,
        kinds: Mapping[str, str] | None = None,
        baseline: str | None = None,
        metrics: Sequence[str] = HEADLINE_METRICS,
    ) -> pd.DataFrame:
        """Every model's metrics on ``data``'s rows with intervals and paired differences.

        Parameters
        ----------
        data : BenchmarkData
            The evaluated rows (``predictions`` and ``folds`` are indexed like its frame).
        predictions : Mapping[str, pandas.DataFrame]
            Label to out-of-fold predictions.
        folds : Mapping[str, pandas.Series]
            Label to the outer fold of every row (rank metrics are computed within folds).
        reference : str
            The label every other one is compared with (fixed before looking at the results).
        kinds : Mapping[str, str], optional
            Label to a kind shown in tables (e.g. the variant).
        baseline : str, optional
            A second label for the ``baseline_diff`` columns.
        metrics : Sequence[str]
            Metric names (those registered are used).

        Returns
        -------
        pandas.DataFrame
            :func:`benchmark.metrics.evaluate`'s table, with ``kind``.
        """
        frame = data.frame
        chosen = [m for m in metrics if m in METRICS]
        table = evaluate(
            truth=frame[data.targets + data.curve_columns],
            predictions={name: p.loc[frame.index] for name, p in predictions.items()},
            songs=frame["song_id"],
            regions=frame["region"],
            targets=data.targets,
            n_resamples=self.config.bootstrap,
            seed=self.config.seed,
            candidates=[reference],
            primary_metric=LEAD_METRIC,
            baseline=baseline,
            metrics=chosen,
            folds={name: f.loc[frame.index] for name, f in folds.items()},
            reference=reference,
        )
        table.insert(1, "kind", table["model"].map(dict(kinds or {})).fillna("model"))
        return table

    def per_region(
        self,
        data: BenchmarkData,
        predictions: Mapping[str, pd.DataFrame],
        folds: Mapping[str, pd.Series],
        reference: str,
        metric: str = LEAD_METRIC,
    ) -> pd.DataFrame:
        """:meth:`compare` on each region's rows alone, for one metric.

        Returns
        -------
        pandas.DataFrame
            The tidy table of every region with a ``region`` column.
        """
        parts = []
        for region, rows in data.frame.groupby("region", sort=True):
            keep = data.frame.index.isin(rows.index)
            if len(np.unique(rows["song_id"])) < 2:
                continue
            table = self.compare(
                data.subset(keep),
                {
                    n: p.loc[rows.index].set_axis(np.arange(len(rows)))
                    for n, p in predictions.items()
                },
                {n: f.loc[rows.index].set_axis(np.arange(len(rows))) for n, f in folds.items()},
                reference,
                metrics=[metric],
            )
            parts.append(table.assign(region=region))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _renamed(results: Results, label: str, rename: Sequence[str]) -> dict[str, str]:
    """Model name to its label in an experiment: ``lightgbm[x] (label)`` for varied models."""
    return {name: f"{name} ({label})" if name in rename else name for name in results.predictions}


def _collect(
    results: Results,
    label: str,
    rename: Sequence[str],
    predictions: dict[str, pd.DataFrame],
    folds: dict[str, pd.Series],
    kinds: dict[str, str],
) -> None:
    """Add a variant's out-of-fold predictions and folds under their experiment labels."""
    fold = results.split["test_fold"]
    for name, new in _renamed(results, label, rename).items():
        predictions[new] = results.predictions[name]
        folds[new] = fold
        kinds[new] = label if name in rename else results.models[name].family


def _tables(table: pd.DataFrame, lead: str = LEAD_METRIC) -> list[str]:
    """Markdown tables of a comparison, one per target, with a heading line each."""
    return [f"**{t.heading}**\n\n{markdown_table(t)}" for t in pivot(table, HEADLINE_METRICS, lead)]


def _value(table: pd.DataFrame, model: str, target: str, metric: str, column: str) -> float:
    rows = table[(table.model == model) & (table.target == target) & (table.metric == metric)]
    return float(rows[column].iloc[0]) if len(rows) else float("nan")


def _interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def _diff_sentence(table: pd.DataFrame, model: str, target: str, metric: str = LEAD_METRIC) -> str:
    """``+0.012 [-0.004, +0.030]`` (model minus the reference), with the verdict."""
    diff = _value(table, model, target, metric, "diff")
    low = _value(table, model, target, metric, "diff_ci_low")
    high = _value(table, model, target, metric, "diff_ci_high")
    if not np.isfinite(diff):
        return "n/a"
    maximize = METRICS[metric].maximize
    if low > 0:
        verdict = "better" if maximize else "worse"
    elif high < 0:
        verdict = "worse" if maximize else "better"
    else:
        verdict = "no difference the interval can resolve"
    return f"{_interval(diff, low, high)} ({verdict})"


# --- regions ------------------------------------------------------------------------------------

REGION_VARIANTS = (
    ("pooled, region categorical", "categorical"),
    ("pooled, region one-hot", "onehot"),
    ("pooled, no region", "none"),
    ("one model per region", "per_region"),
)
"""Label and ``region_encoding`` of each variant; the first is the reference."""


@register_experiment(
    "regions",
    "Regions: one model per region, or one pooled model that sees the region?",
    "The design says single-region data is not enough (a 'mixed region' model). Is one model "
    "trained on all regions, with the region as an input, better than one model per region, "
    "region by region?",
)
def regions_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """Pooled models (region categorical, one-hot, or absent) against one model per region."""
    learners = [
        run for run in ctx.learners if "region_encoding" in run.spec.estimator().get_params()
    ]
    if not learners:
        raise DataError(
            "the regions experiment varies how a tabular model sees the region; the suite has "
            "none (add lightgbm)"
        )
    data = ctx.data
    names = [run.name for run in learners]
    predictions: dict[str, pd.DataFrame] = {}
    folds: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    for i, (label, encoding) in enumerate(REGION_VARIANTS):
        models = {
            name: dict(table) for name, table in ctx.config.models.items()
        }  # copy: each variant sets its own encoding
        for run in learners:
            models.setdefault(run.spec.name, {})["region_encoding"] = encoding
        runs = [*ctx.baselines, *learners] if i == 0 else learners
        results = ctx.run(label, data, runs, models=models, intervals=False)
        _collect(results, label, names, predictions, folds, kinds)
    reference = f"{names[0]} ({REGION_VARIANTS[0][0]})"
    overall = ctx.compare(data, predictions, folds, reference, kinds, baseline="region_mean")
    shown = {k: v for k, v in predictions.items() if k != "global_mean"}
    regional = ctx.per_region(data, shown, folds, reference)

    sections = [Section("All regions", _tables(overall))]
    separate = f"{names[0]} ({REGION_VARIANTS[3][0]})"
    blind = f"{names[0]} ({REGION_VARIANTS[2][0]})"
    onehot = f"{names[0]} ({REGION_VARIANTS[1][0]})"
    reading = []
    for target in data.targets:
        reading.append(
            f"- {target}: one model per region minus the pooled model, {LEAD_METRIC}: "
            f"{_diff_sentence(overall, separate, target)}; one-hot minus categorical: "
            f"{_diff_sentence(overall, onehot, target)}; without the region: "
            f"{_diff_sentence(overall, blind, target)}."
        )
    for target in data.targets:
        block = (
            f"Model: {names[0]}. Each cell: value [95% interval] of the reference, then the "
            "paired difference of each variant minus the reference, on the region's rows.\n\n"
            + _region_table(regional, target, reference, [separate, onehot, blind])
        )
        counts = _region_counts(regional, target, separate)
        reading.append(
            f"- {target}, region by region: one model per region is better (interval above 0) "
            f"in {counts['better']} of {counts['regions']} regions and worse in "
            f"{counts['worse']}; the rest cannot be told apart."
        )
        sections.append(Section(f"Per region: {LEAD_METRIC}, {target}", [block]))
    sections.insert(1, Section("Reading", ["\n".join(reading)]))
    method = [
        *_method(ctx, data),
        "variants: "
        + "; ".join(f"`region_encoding = {e}` ({label})" for label, e in REGION_VARIANTS)
        + ". One model per region shares one hyper-parameter search across its regions (the "
        "same budget as a pooled model) and trains each region's boosters on that region's rows "
        "only.",
        "a learned region embedding needs a model that learns one (MP2's region embedding); "
        "LightGBM has none, so on tabular feature sets the pooled model sees the region as "
        "categorical splits or as one-hot columns",
        f"reference of the paired differences: {reference} (fixed beforehand)",
    ]
    return ExperimentResult(
        "regions",
        ctx.experiment.title,
        ctx.experiment.question,
        method,
        sections,
        tables={"all regions": overall, "per region": regional},
    )


def _region_table(
    regional: pd.DataFrame, target: str, reference: str, others: Sequence[str]
) -> str:
    """Regions as rows: rows, the reference's value and each other label's paired difference
    (region_mean is left out: it cannot rank within a region)."""
    rows = regional[regional.target == target]

    def short(label: str) -> str:  # "lightgbm[x] (one model per region)" -> the variant
        return label[label.index("(") + 1 : -1] if label.endswith(")") and "(" in label else label

    header = [
        "region",
        "rows",
        f"{short(reference)} (reference)",
        *[f"{short(o)} minus reference" for o in others],
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for region, part in rows.groupby("region", sort=True):
        by_model = part.set_index("model")
        cells = [str(region), f"{int(part['n_rows'].iloc[0]):,}"]
        if reference in by_model.index:
            r = by_model.loc[reference]
            cells.append(_plain_interval(r["value"], r["ci_low"], r["ci_high"]))
        else:
            cells.append("")
        for other in others:
            if other in by_model.index:
                r = by_model.loc[other]
                cells.append(_interval(r["diff"], r["diff_ci_low"], r["diff_ci_high"]))
            else:
                cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plain_interval(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _region_counts(regional: pd.DataFrame, target: str, model: str) -> dict[str, int]:
    rows = regional[(regional.target == target) & (regional.model == model)]
    return {
        "regions": int(rows["region"].nunique()),
        "better": int((rows["diff_ci_low"] > 0).sum()),
        "worse": int((rows["diff_ci_high"] < 0).sum()),
    }


def _method(ctx: ExperimentContext, data: BenchmarkData) -> list[str]:
    """The lines every experiment page starts with."""
    config = ctx.config
    return [
        f"data: `{config.data_dir}` ({config.period} charts), {len(data.frame):,} (track, region) "
        f"rows, {data.frame['song_id'].nunique():,} songs, {data.frame['region'].nunique()} "
        "regions; rows as in `benchmark run` (censoring settings of the configuration)",
        f"models: {', '.join(run.name for run in ctx.runs)}; preset `{config.profile}`, "
        f"{config.n_folds}-fold outer split (seed {config.seed}), {config.n_trials} Optuna "
        "trials per outer fold for every tunable model in every variant",
        f"intervals: 95% bootstrap over songs, {config.bootstrap} resamples, shared by every "
        "model and variant (differences are paired); rank metrics within each model's own "
        f"outer folds; lead metric {LEAD_METRIC} (Spearman within each region and fold)",
        f"code `{git_commit()}`",
    ]


# --- null policy ----------------------------------------------------------------------------------

POLICY_TARGETS = {
    "missing": "log1p_charted_sum",
    "zero": "log1p_charted_sum",
    "floor": "log1p_floor_sum",
}
"""Each null policy and the scalar target its curve sums to."""


@register_experiment(
    "null-policy",
    "Null policy: what the off-chart periods are taken to be",
    "A chart lists only its top N: is an off-chart period missing, zero, or the chart's floor? "
    "How do the targets change, and does the ranking of the models change with them?",
)
def null_policy_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """The suite under each null policy: target statistics and model rankings."""
    streams = read_streams(ctx.layout)
    catalog = ctx.layout.catalog.read()
    stats_rows, tables, sections = [], {}, []
    sums: dict[str, pd.Series] = {}
    rankings: dict[str, list[str]] = {}
    data = None
    for policy, target in POLICY_TARGETS.items():
        pop = compute_targets(
            streams, horizon=ctx.config.horizon, null_policy=policy, catalog=catalog
        )
        data, config = ctx.load(pop, null_policy=policy, targets=[target])
        results = ctx.run(policy, data, ctx.runs, config)
        table = results.metrics.copy()
        reference = results.metrics["reference"].dropna()
        tables[policy] = table
        key = data.frame["track_id"] + "|" + data.frame["region"]
        sums[policy] = pd.Series(data.frame[target].to_numpy(), index=key)
        period_rows = pop[pop["period"] == ctx.config.period]
        used = (period_rows["track_id"] + "|" + period_rows["region"]).isin(set(key)).to_numpy()
        stats_rows.append(_target_stats(policy, target, period_rows[used]))
        for metric in ("spearman_region", "r2_region"):
            ranked = table[(table.target == target) & (table.metric == metric)]
            ranked = ranked[np.isfinite(ranked["value"])].sort_values("value", ascending=False)
            rankings[f"{policy}, {metric}"] = list(ranked["model"])
        sections.append(
            Section(
                f"Models under `{policy}`",
                [
                    *_tables(table),
                    "Reference of the differences: "
                    f"{reference.iloc[0] if len(reference) else 'none'}.",
                ],
            )
        )
    assert data is not None
    agreement = []
    for a, b in (("missing", "zero"), ("missing", "floor"), ("zero", "floor")):
        common = sums[a].index.intersection(sums[b].index)
        rho = METRICS["spearman"](sums[a].loc[common].to_numpy(), sums[b].loc[common].to_numpy())
        same = float(np.mean(np.isclose(sums[a].loc[common], sums[b].loc[common])))
        agreement.append(f"| {a} vs {b} | {rho:.3f} | {same:.1%} |")
    target_table = [
        "| policy | scalar target | rows | window cells charted | off-chart cells filled | "
        "cells missing (NaN) | mean | median |",
        "|---|---|---|---|---|---|---|---|",
        *stats_rows,
    ]
    order = [f"- {key}: " + " > ".join(models) for key, models in rankings.items()]
    same = all(
        len({tuple(m) for k, m in rankings.items() if k.endswith(metric)}) == 1
        for metric in ("spearman_region", "r2_region")
    )
    reading = [
        "The order of the models on each policy's scalar target (by spearman_region, where "
        "region_mean and global_mean are n/a, and by r2_region) is "
        + ("the same under every policy:" if same else "NOT the same under every policy:"),
        "\n".join(order),
        "`missing` and `zero` give the same scalar target by definition (a sum skips a missing "
        "period and adds nothing for a zero: both are log1p_charted_sum); with the same rows, "
        "folds and seeds their scalar results are "
        + (
            "identical"
            if _same_scalar_results(tables["missing"], tables["zero"])
            else "NOT identical"
        )
        + "; the two policies differ in the curves (curve_rmse) only.",
    ]
    sections = [
        Section(
            "Targets",
            [
                "\n".join(target_table),
                "Spearman correlation of the scalar targets between policies (same rows) and the share of "
                "rows whose value is unchanged:\n\n| policies | Spearman | unchanged |\n|---|---|---|\n"
                + "\n".join(agreement),
            ],
        ),
        Section("Reading", reading),
        *sections,
    ]
    method = [
        *_method(ctx, data),
        "variants: targets rebuilt in memory with each null policy "
        "(`features.targets.compute_targets`); the scalar target is log1p of the sum of the "
        "policy's curve: log1p_charted_sum for missing and zero (a missing or zero period adds "
        "nothing), log1p_floor_sum for floor (every off-chart period at the chart's floor); "
        "log1p_debut does not depend on the policy (the debut period is charted) and is left "
        "out; the curve metrics compare the policy's own curves",
        "the reference of each policy's paired differences is the suite's first classical model",
    ]
    tidy = {f"policy {p}": t for p, t in tables.items()}
    return ExperimentResult(
        "null-policy", ctx.experiment.title, ctx.experiment.question, method, sections, tidy
    )


def _same_scalar_results(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two runs' scalar-target metrics agree to the last digit that matters."""
    key = ["model", "target", "metric"]
    left = a[a.target != CURVE_TARGET].set_index(key)["value"].sort_index()
    right = b[b.target != CURVE_TARGET].set_index(key)["value"].sort_index()
    return left.index.equals(right.index) and bool(
        np.allclose(left.to_numpy(), right.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True)
    )


def _target_stats(policy: str, target: str, pop: pd.DataFrame) -> str:
    """One Markdown row: how much of the window is charted, filled, unknown under a policy."""
    curves = np.vstack(pop["curve"].to_numpy())  # (N, H) raw streams, policy-filled
    finite = np.isfinite(curves)
    charted = pop["periods_on_chart"].to_numpy(dtype=float)
    filled = (finite.sum(axis=1) - charted).sum() / curves.size
    y = np.log1p(pop[TARGETS[target]].to_numpy(dtype=float))
    return (
        f"| {policy} | {target} | {len(pop):,} | {charted.sum() / curves.size:.1%} | "
        f"{filled:.1%} | {1 - finite.mean():.1%} | {np.mean(y):.3f} | {np.median(y):.3f} |"
    )


# --- grouping -----------------------------------------------------------------------------------

GROUPING_VARIANTS = (
    ("song", "song-grouped folds"),
    ("main_artist", "main-artist-grouped folds"),
    ("track", "track-grouped folds"),
    ("row", "row-random folds"),
)
"""``config.group`` and label of each variant; the first is the reference."""


@register_experiment(
    "grouping",
    "Grouping: how much a careless split inflates the scores",
    "Versions of a song (remasters, live takes, 'feat.' variants) and the same track in other "
    "regions share their audio. How much better do the models look when the split lets them "
    "into training (track-grouped or row-random folds) than with song-grouped folds?",
)
def grouping_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """The suite on song-, main-artist-, track- and row-grouped outer (and inner) folds."""
    data = ctx.data
    names = [run.name for run in ctx.runs]
    predictions: dict[str, pd.DataFrame] = {}
    folds: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    leakage = []
    for group, label in GROUPING_VARIANTS:
        results = ctx.run(label, data, ctx.runs, group=group, intervals=False)
        _collect(results, label, names, predictions, folds, kinds)
        leakage.append(_leakage(data.frame, results.split["test_fold"].to_numpy(), label))
    reference_model = next((r.name for r in ctx.learners), names[0])
    reference = f"{reference_model} ({GROUPING_VARIANTS[0][1]})"
    table = ctx.compare(data, predictions, folds, reference, kinds)
    reading = []
    for target in data.targets:
        for _, label in GROUPING_VARIANTS[1:]:
            for name in names:
                model = f"{name} ({label})"
                same = f"{name} ({GROUPING_VARIANTS[0][1]})"
                diff = _value(table, model, target, LEAD_METRIC, "value") - _value(
                    table, same, target, LEAD_METRIC, "value"
                )
                if name == reference_model:
                    reading.append(
                        f"- {target}, {name}: {label} minus song-grouped, {LEAD_METRIC}: "
                        f"{_diff_sentence(table, model, target)}"
                    )
                elif np.isfinite(diff):
                    reading.append(f"- {target}, {name}: {label} minus song-grouped: {diff:+.3f}")
    leak_table = [
        "| split | test rows whose track is in training (another region) | ... whose song is in "
        "training (another version or region) | ... whose main artist is in training |",
        "|---|---|---|---|",
        *leakage,
    ]
    sections = [
        Section(
            "What each split lets into training",
            [
                "\n".join(leak_table),
                "Song-grouped folds keep every version and every region of a test song out of "
                "training; track-grouped folds keep the same track out but let other versions "
                "in; row-random folds let the same track in through its other regions.",
            ],
        ),
        Section("Reading", ["\n".join(reading)]),
        Section("All models and splits", _tables(table)),
    ]
    method = [
        *_method(ctx, data),
        "variants: `group = song | main_artist | track | row` (benchmark.splits.GROUPINGS) for "
        "the outer folds and for the inner tuning split alike; the same rows, targets and "
        "seeds; each model's rank metrics are computed within its own outer folds",
        f"reference of the paired differences: {reference} (fixed beforehand)",
    ]
    return ExperimentResult(
        "grouping",
        ctx.experiment.title,
        ctx.experiment.question,
        method,
        sections,
        tables={"all": table},
    )


def _leakage(frame: pd.DataFrame, test_fold: np.ndarray, label: str) -> str:
    """Shares of test rows whose track, song or main artist also has a row in training."""
    from ..features.catalog import normalise_artist

    artist = frame["artist"].map(lambda a: normalise_artist(a) if isinstance(a, str) else "")
    shares = []
    for key in (frame["track_id"], frame["song_id"], artist):
        values = key.astype(str).to_numpy()
        hit = np.zeros(len(frame), dtype=bool)
        for fold in np.unique(test_fold[test_fold >= 0]):
            test = test_fold == fold
            hit[test] = np.isin(values[test], np.unique(values[~test]))
        evaluated = test_fold >= 0
        shares.append(f"{hit[evaluated].mean():.1%}")
    return f"| {label} | " + " | ".join(shares) + " |"


# --- horizon ------------------------------------------------------------------------------------

HORIZON_WEEKS = (4, 13, 26, 52)
HORIZON_TARGET = "log1p_charted_sum"
"""The target whose horizon varies (streams of the charted weeks within the horizon)."""


@register_experiment(
    "horizon",
    "Horizon: popularity over 4, 13, 26 and 52 weeks",
    "Is the sum of streams over the first 4 weeks after the debut easier or harder to predict "
    "from the inputs than over 13, 26 or 52 weeks, on the same tracks?",
)
def horizon_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """The suite on targets over each horizon, on the rows every horizon covers."""
    streams = read_streams(ctx.layout)
    catalog = ctx.layout.catalog.read()
    step = PERIOD_DAYS[ctx.config.period]
    horizons = [max(1, round(weeks * 7 / step)) for weeks in HORIZON_WEEKS]
    tables: dict[str, pd.DataFrame] = {}
    populations = {}
    alone = {}
    for weeks, h in zip(HORIZON_WEEKS, horizons, strict=True):
        pop = compute_targets(
            streams, horizon=h, null_policy=ctx.config.null_policy, catalog=catalog
        )
        populations[weeks] = pop
        alone[weeks] = int(_usable(pop, ctx.config).sum())
    longest = populations[HORIZON_WEEKS[-1]]
    usable = longest[_usable(longest, ctx.config)]
    keys = set(zip(usable["track_id"], usable["region"], strict=True))
    if not keys:
        raise DataError(
            f"no row of {ctx.layout.root} covers {HORIZON_WEEKS[-1]} weeks after its debut; the "
            "horizon experiment needs longer chart data"
        )
    summary_rows = []
    data = None
    sections = []
    for weeks in HORIZON_WEEKS:
        pop = populations[weeks]
        kept = [(t, r) in keys for t, r in zip(pop["track_id"], pop["region"], strict=True)]
        data, config = ctx.load(
            pop[np.asarray(kept)],
            horizon=int(pop["curve"].iloc[0].shape[0]),
            targets=[HORIZON_TARGET],
        )
        label = f"{weeks} weeks"
        results = ctx.run(label, data, ctx.runs, config)
        table = results.metrics
        tables[label] = table
        sections.append(Section(f"{label}", _tables(table)))
        for model in table["model"].unique():
            if model == "global_mean":
                continue
            cells = [
                _plain_interval(
                    _value(table, model, HORIZON_TARGET, metric, "value"),
                    _value(table, model, HORIZON_TARGET, metric, "ci_low"),
                    _value(table, model, HORIZON_TARGET, metric, "ci_high"),
                )
                for metric in ("spearman_region", "r2_region")
            ]
            summary_rows.append(
                f"| {weeks} | {alone[weeks]:,} | {model} | " + " | ".join(cells) + " |"
            )
    assert data is not None
    summary = [
        f"| weeks | rows with this window complete | model | spearman_region ({HORIZON_TARGET}) "
        f"| r2_region ({HORIZON_TARGET}) |",
        "|---|---|---|---|---|",
        *summary_rows,
    ]
    sections.insert(
        0,
        Section(
            "Summary",
            [
                "\n".join(summary),
                f"Every horizon is scored on the same {len(data.frame):,} rows: those whose "
                f"{HORIZON_WEEKS[-1]}-week window the data covers (the longest horizon's) and "
                "whose track has the inputs. A shorter horizon alone could use more rows (second "
                "column, counted before the inputs' coverage). region_mean cannot rank within a "
                "region (n/a); its r2_region is the within-region skill of knowing the region "
                "(about 0 by construction).",
            ],
        ),
    )
    method = [
        *_method(ctx, data),
        "variants: targets rebuilt in memory with a horizon of "
        + ", ".join(
            f"{w} weeks ({h} {ctx.config.period} periods)"
            for w, h in zip(HORIZON_WEEKS, horizons, strict=True)
        )
        + f"; target {HORIZON_TARGET} (log1p_debut does not depend on the horizon and is left "
        "out); the "
        "curve metrics compare curves of each horizon's length",
        "within each horizon, paired differences against the suite's first classical model",
    ]
    return ExperimentResult(
        "horizon", ctx.experiment.title, ctx.experiment.question, method, sections, tables
    )


def _usable(pop: pd.DataFrame, config: BenchmarkConfig) -> np.ndarray:
    """Rows of the configured period the benchmark would keep (censoring settings)."""
    keep = (pop["period"] == config.period).to_numpy()
    if config.drop_incomplete:
        keep &= pop["complete_horizon"].astype(bool).to_numpy()
    if config.drop_left_censored:
        keep &= ~pop["left_censored"].astype(bool).to_numpy()
    if config.drop_reentries:
        keep &= ~pop["reentry"].astype(bool).to_numpy()
    if "charted" in pop:
        keep &= pop["charted"].astype(bool).to_numpy()
    return keep


# --- season -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeasonRule:
    """When a track counts as seasonal.

    Attributes
    ----------
    window_weeks : int
        Width of the calendar window (weeks of the year, wrapping around New Year).
    min_share : float
        Share of the track's streams (all regions, all years) that must fall in its best window.
    min_seasons : int
        Distinct seasons (years counted from the window's start) in which it charted inside the
        window: a hit that charts once for a few weeks is concentrated too, but only a song that
        comes back year after year is seasonal.
    """

    window_weeks: int = 8
    min_share: float = 0.9
    min_seasons: int = 2


def seasonal_tracks(
    streams: pd.DataFrame, period: str, rule: SeasonRule = SeasonRule()
) -> pd.DataFrame:
    """Tracks whose streams concentrate in the same few calendar weeks of several years.

    Parameters
    ----------
    streams : pandas.DataFrame
        The streams table (``track_id``, ``period``, ``chart_date``, ``streams``, ``title``,
        ``artist``).
    period : str
        Chart period whose rows are used.
    rule : SeasonRule
        The thresholds.

    Returns
    -------
    pandas.DataFrame
        One row per track: ``track_id``, ``title``, ``artist``, ``share`` (streams in its best
        window), ``window_start`` (week of the year, 1-based), ``seasons``, ``seasonal``.
    """
    rows = streams[streams["period"] == period]
    if rows.empty:
        raise DataError(f"no {period} chart rows to look for seasonal tracks in")
    dates = pd.to_datetime(rows["chart_date"])
    week = np.minimum((dates.dt.dayofyear.to_numpy() - 1) // 7, 51)  # 0..51
    codes, tracks = pd.factorize(rows["track_id"], sort=True)
    weights = rows["streams"].to_numpy(dtype=float)
    per_week = np.zeros((len(tracks), 52))
    np.add.at(per_week, (codes, week), weights)
    wrapped = np.concatenate([per_week, per_week[:, : rule.window_weeks - 1]], axis=1)
    windows = np.stack(
        [wrapped[:, s : s + rule.window_weeks].sum(axis=1) for s in range(52)], axis=1
    )  # (T, 52)
    start = windows.argmax(axis=1)
    total = per_week.sum(axis=1)
    share = windows[np.arange(len(tracks)), start] / np.maximum(total, 1.0)
    # seasons: years counted from each track's window start, among its entries in the window
    offset = (week - start[codes]) % 52
    inside = offset < rule.window_weeks
    season_year = (dates - pd.to_timedelta(start[codes] * 7, unit="D")).dt.year.to_numpy()
    seasons = (
        pd.DataFrame({"code": codes[inside], "year": season_year[inside]})
        .drop_duplicates()
        .groupby("code")
        .size()
        .reindex(np.arange(len(tracks)), fill_value=0)
        .to_numpy()
    )
    first = rows.drop_duplicates("track_id").set_index("track_id")
    out = pd.DataFrame(
        {
            "track_id": np.asarray(tracks, dtype=object),
            "title": first.loc[tracks, "title"].to_numpy(),
            "artist": first.loc[tracks, "artist"].to_numpy(),
            "share": share,
            "window_start": start + 1,
            "seasons": seasons,
        }
    )
    out["seasonal"] = (out["share"] >= rule.min_share) & (out["seasons"] >= rule.min_seasons)
    return out


@register_experiment(
    "season",
    "Season: songs that come back every year",
    "The design observes that Christmas songs chart only around Christmas. How many tracks "
    "concentrate their streams in the same few calendar weeks across years, and how do the "
    "models do with and without them?",
)
def season_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """Flag seasonal tracks; run the suite with and without their rows."""
    rule = SeasonRule()
    flags = seasonal_tracks(read_streams(ctx.layout), ctx.config.period, rule)
    seasonal = flags[flags["seasonal"]].sort_values("share", ascending=False)
    data = ctx.data
    is_seasonal = data.frame["track_id"].isin(seasonal["track_id"]).to_numpy()
    listing = [
        "| track | artist | share in window | window starts (week) | seasons |",
        "|---|---|---|---|---|",
    ]
    listing += [
        f"| {r.title} | {r.artist} | {r.share:.0%} | {r.window_start} | {r.seasons} |"
        for r in seasonal.head(25).itertuples()
    ]
    counts = (
        f"{len(seasonal):,} of {len(flags):,} charting tracks are seasonal ({len(seasonal) / max(1, len(flags)):.2%}); "
        f"{int(is_seasonal.sum()):,} of the benchmark's {len(data.frame):,} rows are theirs "
        f"(in {int(data.frame.loc[is_seasonal, 'region'].nunique())} regions)."
    )
    sections = [Section("Seasonal tracks", [counts, "\n".join(listing)])]
    tables: dict[str, pd.DataFrame] = {}
    method = [
        *_method(ctx, data),
        f"seasonal: at least {rule.min_share:.0%} of a track's streams (all regions and years "
        f"of the {ctx.config.period} charts) fall in one window of {rule.window_weeks} calendar "
        f"weeks, and it charted inside that window in at least {rule.min_seasons} different "
        "seasons (years counted from the window's start, so a December-January run is one "
        "season)",
    ]
    if is_seasonal.sum() < 2 or (~is_seasonal).sum() < 2:
        sections.append(
            Section(
                "Comparison",
                ["Too few seasonal rows among the benchmark's rows to compare the models."],
            )
        )
        return ExperimentResult(
            "season", ctx.experiment.title, ctx.experiment.question, method, sections, tables
        )
    names = [run.name for run in ctx.runs]
    predictions: dict[str, pd.DataFrame] = {}
    folds: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    with_all = ctx.run("with seasonal tracks", data, ctx.runs, intervals=False)
    _collect(with_all, "with seasonal tracks", names, predictions, folds, kinds)
    rest = data.subset(~is_seasonal)
    without = ctx.run("without seasonal tracks", rest, ctx.runs, intervals=False)
    # the subset's rows are numbered afresh: map them back to the full frame's rows
    back = np.flatnonzero(~is_seasonal)
    renamed = _renamed(without, "without seasonal tracks", names)
    for name, new in renamed.items():
        predictions[new] = without.predictions[name].set_axis(back[without.predictions[name].index])
        folds[new] = pd.Series(without.split["test_fold"].to_numpy(), index=back)
        kinds[new] = "without seasonal tracks"
    reference_model = next((r.name for r in ctx.learners), names[0])
    reference = f"{reference_model} (with seasonal tracks)"
    others = data.subset(~is_seasonal)
    renumber = np.arange(len(back))
    common = ctx.compare(
        others,
        {n: p.loc[back].set_axis(renumber) for n, p in predictions.items()},
        {n: f.loc[back].set_axis(renumber) for n, f in folds.items()},
        reference,
        kinds,
    )
    tables["non-seasonal rows"] = common
    own = np.flatnonzero(is_seasonal)
    with_only = {n: p for n, p in predictions.items() if kinds.get(n) != "without seasonal tracks"}
    on_seasonal = ctx.compare(
        data.subset(is_seasonal),
        {n: p.loc[own].set_axis(np.arange(len(own))) for n, p in with_only.items()},
        {n: folds[n].loc[own].set_axis(np.arange(len(own))) for n in with_only},
        reference,
        kinds,
        baseline="region_mean",
    )
    tables["seasonal rows"] = on_seasonal
    reading = []
    for target in data.targets:
        model = f"{reference_model} (without seasonal tracks)"
        seasonal_value = _value(on_seasonal, reference, target, LEAD_METRIC, "value")
        rest_value = _value(common, reference, target, LEAD_METRIC, "value")
        reading.append(
            f"- {target}: on the other rows, trained without the seasonal tracks minus with "
            f"them: {_diff_sentence(common, model, target)}; {LEAD_METRIC} of {reference_model} "
            f"on the seasonal rows {seasonal_value:.3f} against {rest_value:.3f} on the others "
            "(few rows: see the intervals below)."
        )
    sections += [
        Section("Reading", ["\n".join(reading)]),
        Section(
            "On the non-seasonal rows (trained with and without the seasonal tracks)",
            _tables(common),
        ),
        Section("On the seasonal rows (trained with them)", _tables(on_seasonal)),
    ]
    return ExperimentResult(
        "season", ctx.experiment.title, ctx.experiment.question, method, sections, tables
    )


# --- deep design ----------------------------------------------------------------------------------

DEEP_DESIGN_VARIANTS = (
    ("pos add, region joint", "add", "joint"),
    ("pos concat, region joint", "concat", "joint"),
    ("pos add, region token", "add", "token"),
    ("pos concat, region token", "concat", "token"),
)
"""Label, ``EncoderConfig.pos_mode`` and ``MP2Config.conditioning`` of each variant; the first,
the design's default, is the reference (fixed before the run)."""
DEEP_DESIGN_ANSWERS = {
    "pos concat, region joint": "positions concatenated instead of added",
    "pos add, region token": "the region as a token instead of an embedding in the head",
    "pos concat, region token": "both changes together",
}
"""What each variant's paired difference with the reference answers."""


def _spectrogram_mp2(run: ModelRun, config: BenchmarkConfig) -> bool:
    """Whether ``run`` is MP2 on log-mel clips (the scratch encoder the variants change)."""
    if not issubclass(run.spec.estimator, MP2Estimator) or run.spec.estimator.predicts_curve:
        return False
    settings = deep_update(dict(run.spec.params), config.model_params(run.spec.name))
    return settings.get("encoder", "scratch") == "scratch"


def _mp2_settings(run: ModelRun, config: BenchmarkConfig) -> dict[str, Any]:
    """The estimator parameters a run of ``run`` starts from (registry entry, then config)."""
    return deep_update(dict(run.spec.params), config.model_params(run.spec.name))


def _parameter_count(settings: Mapping[str, Any], data: BenchmarkData, run: ModelRun) -> int:
    """Trainable parameters of the MP2 network ``settings`` build on ``data``'s clips."""
    config = with_overrides(MP2Config(), settings.get("config"), f"{run.name} config")
    first = np.asarray(data.X(run)["clips"].iloc[0][0])  # (n_mels, n_frames)
    config.n_regions = int(data.frame["region"].nunique())
    config.n_targets = len(data.targets)
    config.encoder = dataclasses.replace(config.encoder, n_mels=int(first.shape[0]))
    return sum(p.numel() for p in MP2(config).parameters() if p.requires_grad)


def _verdict(table: pd.DataFrame, model: str, target: str, metric: str = LEAD_METRIC) -> str:
    """``better``/``worse`` than the reference when the paired interval excludes 0."""
    low = _value(table, model, target, metric, "diff_ci_low")
    high = _value(table, model, target, metric, "diff_ci_high")
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    maximize = METRICS[metric].maximize
    if low > 0:
        return "better" if maximize else "worse"
    if high < 0:
        return "worse" if maximize else "better"
    return "not distinguishable"


def _without_spectrogram_mp2(config: BenchmarkConfig) -> str | None:
    """Why deep-design cannot run on the suite: it has no MP2 on log-mel clips (None: it has)."""
    if any(_spectrogram_mp2(run, config) for run in select_runs(config)):
        return None
    return f"suite {config.suite!r} has no MP2 on log-mel clips (add --suite ...,mp2)"


@register_experiment(
    "deep-design",
    "Deep design: positions added or concatenated, the region as a token or in the head",
    "The design leaves two choices of the spectrogram transformer open: are the positional "
    "embeddings added to the patch embeddings (AST) or concatenated to them, and does the region "
    "enter as a learned token beside [CLS] (read with the audio) or as an embedding joined to "
    "the pooled [CLS] vector in the head? Which is better, under the same tuning budget?",
    unavailable=_without_spectrogram_mp2,
)
def deep_design_experiment(ctx: ExperimentContext) -> ExperimentResult:
    """MP2 in the 2x2 variants (``pos_mode`` x ``conditioning``), the same folds and budget."""
    reason = _without_spectrogram_mp2(ctx.config)
    if reason:
        raise DataError(f"the deep-design experiment varies MP2 on log-mel clips; {reason}")
    # the suite's first MP2 on log-mel clips
    learner = next(run for run in ctx.runs if _spectrogram_mp2(run, ctx.config))
    runs = [*ctx.baselines, learner]
    data = load_benchmark_data(ctx.config, runs)
    base = _mp2_settings(learner, ctx.config)
    predictions: dict[str, pd.DataFrame] = {}
    folds: dict[str, pd.Series] = {}
    kinds: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for i, (label, pos_mode, conditioning) in enumerate(DEEP_DESIGN_VARIANTS):
        change = {"config": {"conditioning": conditioning, "encoder": {"pos_mode": pos_mode}}}
        models = {name: dict(table) for name, table in ctx.config.models.items()}
        models[learner.spec.name] = deep_update(models.get(learner.spec.name, {}), change)
        sizes[label] = _parameter_count(deep_update(base, change), data, learner)
        results = ctx.run(
            label, data, runs if i == 0 else [learner], models=models, intervals=False
        )
        _collect(results, label, [learner.name], predictions, folds, kinds)
    reference = f"{learner.name} ({DEEP_DESIGN_VARIANTS[0][0]})"
    table = ctx.compare(data, predictions, folds, reference, kinds, baseline="region_mean")

    summary, reading = [], []
    for target in data.targets:
        lines = [
            f"| variant | answers | {LEAD_METRIC} [95%] | minus reference [95%] | verdict "
            f"| r2_region minus reference [95%] |",
            "|---|---|---|---|---|---|",
        ]
        for label, _, _ in DEEP_DESIGN_VARIANTS:
            model = f"{learner.name} ({label})"
            value = _plain_interval(
                *(
                    _value(table, model, target, LEAD_METRIC, c)
                    for c in ("value", "ci_low", "ci_high")
                )
            )
            if model == reference:
                lines.append(f"| {label} (reference) | the design's default | {value} | | | |")
                continue
            diff = _interval(
                *(
                    _value(table, model, target, LEAD_METRIC, c)
                    for c in ("diff", "diff_ci_low", "diff_ci_high")
                )
            )
            r2 = _interval(
                *(
                    _value(table, model, target, "r2_region", c)
                    for c in ("diff", "diff_ci_low", "diff_ci_high")
                )
            )
            verdict = _verdict(table, model, target)
            lines.append(
                f"| {label} | {DEEP_DESIGN_ANSWERS[label]} | {value} | {diff} | {verdict} | {r2} |"
            )
            reading.append(f"- {target}, {DEEP_DESIGN_ANSWERS[label]}: {verdict} ({diff}).")
        summary.append(f"**{target}**\n\n" + "\n".join(lines))
    skill = []
    for target in data.targets:
        r2 = [
            _value(table, reference, target, "r2_region", c) for c in ("value", "ci_low", "ci_high")
        ]
        line = (
            f"{target}: r2_region of the reference {_plain_interval(*r2)} (1 - its squared "
            "error over that of each region's mean)"
        )
        if r2[2] < 0:
            line += (
                "; below 0, the reference predicts the size within a region worse than the "
                "region mean does: under this budget MP2 has not learnt the region offsets yet, "
                "and the differences above are between undertrained models"
            )
        skill.append(f"- {line}.")
    sizes_line = "Trainable parameters: " + "; ".join(
        f"{label} {n:,}" for label, n in sizes.items()
    )
    sections = [
        Section(
            "Summary",
            [
                *summary,
                f"Each variant minus the reference ({reference}), paired over the same songs "
                f"(95% song bootstrap); 'not distinguishable' where the interval of the "
                f"{LEAD_METRIC} difference contains 0.",
                sizes_line + ".",
                "How much the reference learnt:\n\n" + "\n".join(skill),
            ],
        ),
        Section("Reading", ["\n".join(reading)]),
        Section("All models and variants", _tables(table)),
    ]
    method = [
        *_method(ctx, data),
        *_deep_budget(ctx.config, learner),
        "variants: "
        + "; ".join(
            f"`encoder.pos_mode = {p}`, `conditioning = {c}` ({label})"
            for label, p, c in DEEP_DESIGN_VARIANTS
        )
        + f"; everything else as `[models.{learner.spec.name}]` sets it. `concat` projects the "
        "patches to `dim - pos_dim` channels and concatenates `pos_dim` positional channels (the "
        "transformer keeps its width); `token` puts a learned region token of the encoder's "
        "width beside [CLS] (one encoder pass per (clip, region), and a training unit per "
        "(track, region) row), `joint` joins a region embedding to the pooled [CLS] output in "
        "an MLP head (one pass per clip serves every region, a training unit per track)",
        f"reference of the paired differences: {reference}, the design's default (fixed "
        "beforehand); the baselines ran once, with the reference variant",
        "MP3 is not varied: it starts from MP2's encoder and shares its `EncoderConfig`, so MP2 "
        "answers the encoder question, and every MP3 variant would need its own MP2 first",
    ]
    return ExperimentResult(
        "deep-design",
        ctx.experiment.title,
        ctx.experiment.question,
        method,
        sections,
        tables={"all": table},
    )


def _deep_budget(config: BenchmarkConfig, run: ModelRun) -> list[str]:
    """The page's lines on the tuning and training budget every variant shares."""
    settings = _mp2_settings(run, config)
    training = with_overrides(TrainingConfig(), settings.get("training"), f"{run.name} training")
    inner = (
        f"one song-grouped holdout of {config.validation_fraction:.0%} of the outer training part"
        if config.inner_folds <= 1
        else f"{config.inner_folds}-fold song-grouped inner split of the outer training part"
    )
    preset = load_config(config.profile)
    preset_epochs = with_overrides(
        TrainingConfig(),
        deep_update(dict(run.spec.params), preset.model_params(run.spec.name)).get("training"),
        f"{run.name} training",
    ).epochs
    budget = (config.n_folds, config.n_trials, training.epochs)
    own = (preset.n_folds, preset.n_trials, preset_epochs)
    note = (
        []
        if budget == own
        else [
            f"this budget is not the `{config.profile}` preset's ({own[0]} folds, {own[1]} "
            f"trials per fold, at most {own[2]} epochs): the configuration sets it, and it is the "
            "same for every variant"
        ]
    )
    return [
        *note,
        f"tuning budget, the same for every variant: {config.n_trials} Optuna trials per outer "
        f"fold ({config.n_folds} folds, {config.n_trials * config.n_folds} trials per variant) "
        f"over the learning rate, weight decay and dropout "
        f"(`{run.spec.estimator.__name__}.search_space`), scored on {inner}"
        + (", with pruning" if config.pruning else ""),
        f"training budget of every trial and fit: at most {training.epochs} epochs, "
        + (
            f"early stopping after {training.patience} epochs without improvement on "
            f"{training.val_fraction:.0%} of the training songs"
            if training.val_fraction > 0
            else "no early stopping"
        )
        + f", batch size {training.batch_size}, a linear warm-up of {training.warmup_epochs:g} "
        "epoch(s) then cosine decay",
    ]


# --- running and writing ------------------------------------------------------------------------


def not_applicable(name: str, config: BenchmarkConfig) -> str | None:
    """Why experiment ``name`` cannot run on ``config``'s suite (None when it can).

    ``benchmark experiment all`` skips such an experiment with this reason instead of stopping
    after the others (deep-design needs an MP2 on log-mel clips, which a data dir of descriptor
    tables alone does not have): the experiment's registered ``unavailable`` check.
    """
    unavailable = EXPERIMENTS[name].unavailable
    return unavailable(config) if unavailable else None


def experiment_names() -> list[str]:
    """The registered experiments, in registration order."""
    return list(EXPERIMENTS)


def run_experiment(name: str, config: BenchmarkConfig) -> ExperimentResult:
    """Run one registered experiment under an MLflow parent run.

    Parameters
    ----------
    name : str
        A key of :data:`EXPERIMENTS`.
    config : BenchmarkConfig
        The base settings (data dir, preset, suite, tracking).

    Returns
    -------
    ExperimentResult
        Its findings (see :func:`write_experiment`).

    Raises
    ------
    DataError
        Unknown experiment, or data the experiment cannot run on.
    """
    if name not in EXPERIMENTS:
        raise DataError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    experiment = EXPERIMENTS[name]
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    logger = RunLogger(config.tracking_uri, config.dataset, config.artifact_location)
    tags = {
        "experiment": name,
        "role": "experiment",
        "git_commit": git_commit(),
        "dataset": config.dataset,
        "config_hash": config.config_hash(),
    }
    with logger.run(f"experiment {name}", tags) as run_id:
        logger.params(config.to_dict())
        ctx = ExperimentContext(experiment, config)
        result = experiment.run(ctx)
        result.run_id = run_id
        result.variant_seconds = dict(ctx.variant_seconds)
        result.seconds = time.perf_counter() - started
        result.load = (load_start, os.getloadavg()[0])
        path = write_experiment(result, config)
        logger.file(path, "experiment")
        logger.file(path.with_suffix(".csv"), "experiment")
        logger.metrics({"seconds": result.seconds})
    return result


def experiment_path(config: BenchmarkConfig, name: str) -> Path:
    """``results/<dataset>/experiments/<name>.md``."""
    return Path(config.results_dir) / config.dataset / "experiments" / f"{name}.md"


def write_experiment(result: ExperimentResult, config: BenchmarkConfig) -> Path:
    """Write ``NAME.md`` and ``NAME.csv`` into ``results/<dataset>/experiments/``.

    Returns
    -------
    Path
        The Markdown file.
    """
    path = experiment_path(config, result.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, result.markdown())
    write_text_atomic(path.with_suffix(".csv"), result.tidy().to_csv(index=False))
    return path


__all__ = [
    "EXPERIMENTS",
    "Experiment",
    "ExperimentContext",
    "ExperimentResult",
    "SeasonRule",
    "Section",
    "experiment_names",
    "experiment_path",
    "not_applicable",
    "register_experiment",
    "run_experiment",
    "seasonal_tracks",
    "write_experiment",
]
