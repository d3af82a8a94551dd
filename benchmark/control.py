"""Negative controls: how often does the paired test declare a difference where there is none?

``benchmark control`` runs, over many seeds, pairs of models of equal expected skill through the
same runner and the same paired song-bootstrap as every benchmark, and counts how often the 95%
interval of their difference excludes 0. Two kinds of pair:

``permuted``
    The same model on two independent song-level permutations of its feature set (each song gets
    the features of another song, within the data): neither copy carries any signal, on any
    data, so their skills are equal in expectation.
``null``
    The model on its real features against the model on permuted features. Only on a dataset
    where popularity is independent of everything audible (``benchmark demo --null``) are their
    skills equal; there this pair also checks that the null really is null.

For each seed the outer split, the tuning, the models and the bootstrap all use that seed. A
"false win" is an interval of (second - first) entirely above 0 on the lead metric, a "false
loss" one entirely below; with a calibrated 95% interval each happens about 2.5% of the time.
Rates are given with Clopper-Pearson 95% intervals over seeds x targets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..features.errors import DataError
from ..features.layout import write_text_atomic
from .config import BenchmarkConfig
from .data import BenchmarkData, FeatureInputs, load_benchmark_data
from .registry import resolve_suite
from .runner import run_suite

PAIRS = ("permuted", "null")


def song_permuted(data: BenchmarkData, features: str, seed: int) -> FeatureInputs:
    """A copy of a tabular feature set where every song carries another song's features.

    Songs are permuted within the data (a random derangement when possible), and every row of a
    song takes the features of the first row of its partner song, so the features keep their
    distribution and their within-song identity but lose any link to the song's popularity.
    """
    values = data.inputs[features]
    if values.columns is None:
        raise DataError(f"the control permutes tabular feature sets; {features} is {values.kind}")
    songs = data.frame["song_id"].to_numpy()
    uniques = np.unique(songs)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniques))
    for _ in range(100):  # a derangement: no song keeps its own features
        if not np.any(order == np.arange(len(uniques))) or len(uniques) < 2:
            break
        order = rng.permutation(len(uniques))
    partner = dict(zip(uniques, uniques[order], strict=True))
    first_row = pd.Series(np.arange(len(songs))).groupby(songs).first()
    rows = first_row.loc[[partner[s] for s in songs]].to_numpy()
    columns = values.columns.iloc[rows].reset_index(drop=True)
    return FeatureInputs(f"{features}.perm{seed}", values.kind, "song-permuted copy", columns)


@dataclass
class ControlResult:
    """Every comparison of a control run and the rates they give."""

    comparisons: pd.DataFrame
    metric: str

    def rates(self) -> pd.DataFrame:
        """False-win and false-loss rates per pair kind with Clopper-Pearson 95% intervals.

        With more than one kind of pair, an ``all`` row pools them (every pair of the run is of
        equal expected skill only on a null dataset; on other data read the ``permuted`` rows).
        """
        rows = []
        groups = list(self.comparisons.groupby("pair", sort=False))
        if len(groups) > 1:
            groups.append(("all", self.comparisons))
        for pair, group in groups:
            n = len(group)
            for outcome, hits in (
                ("false win", int((group["diff_ci_low"] > 0).sum())),
                ("false loss", int((group["diff_ci_high"] < 0).sum())),
            ):
                low, high = _clopper_pearson(hits, n)
                rows.append(
                    {"pair": pair, "outcome": outcome, "count": hits, "n": n, "rate": hits / n}
                    | {"ci_low": low, "ci_high": high}
                )
        return pd.DataFrame(rows)

    def mean_differences(self) -> pd.DataFrame:
        """Mean paired difference (second - first) per pair kind and target over the seeds, with
        a 95% t interval over seeds: equal skill means 0, whatever the width of each interval."""
        rows = []
        for (pair, target), group in self.comparisons.groupby(["pair", "target"], sort=False):
            diffs = group["diff"].to_numpy(dtype=float)
            n, mean = len(diffs), float(np.mean(diffs))
            half = (
                float(stats.t.ppf(0.975, n - 1) * np.std(diffs, ddof=1) / np.sqrt(n))
                if n > 1
                else float("nan")
            )
            rows.append(
                {"pair": pair, "target": target, "seeds": n, "mean": mean}
                | {"ci_low": mean - half, "ci_high": mean + half}
            )
        return pd.DataFrame(rows)

    def markdown(self, title: str) -> str:
        """The control's report: what was compared, the rates, every comparison."""
        rates = self.rates()
        lines = [
            f"# {title}",
            "",
            f"Pairs of equal expected skill, compared on `{self.metric}` with the benchmark's "
            "paired song bootstrap (95% intervals); see `benchmark/control.py` for the design. "
            "A false win is an interval of (second - first) above 0.",
            "",
            "| pair | outcome | count | comparisons | rate [95% interval] |",
            "|---|---|---|---|---|",
        ]
        for r in rates.itertuples():
            lines.append(
                f"| {r.pair} | {r.outcome} | {r.count} | {r.n} | "
                f"{r.rate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] |"
            )
        lines += [
            "",
            "## Mean difference over seeds",
            "",
            "Equal skill means a mean of 0; the 95% t interval is over seeds (each seed a new "
            "split, tuning and permutation of the same rows).",
            "",
            "| pair | target | seeds | mean (second - first) [95% interval] |",
            "|---|---|---|---|",
        ]
        for r in self.mean_differences().itertuples():
            lines.append(
                f"| {r.pair} | {r.target} | {r.seeds} | "
                f"{r.mean:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] |"
            )
        lines += ["", "## Every comparison", "", _markdown(self.comparisons), ""]
        return "\n".join(lines)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def _clopper_pearson(hits: int, n: int) -> tuple[float, float]:
    low = stats.beta.ppf(0.025, hits, n - hits + 1) if hits > 0 else 0.0
    high = stats.beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0
    return float(low), float(high)


def run_control(
    config: BenchmarkConfig,
    seeds: Sequence[int],
    model: str = "lightgbm",
    pairs: Sequence[str] = ("permuted",),
    data: BenchmarkData | None = None,
) -> ControlResult:
    """Run the negative control over ``seeds``.

    Parameters
    ----------
    config : BenchmarkConfig
        The benchmark settings (data dir, preset, tracking); ``seed`` and ``suite`` are set per
        comparison.
    seeds : Sequence[int]
        One comparison per seed, pair kind and target.
    model : str
        A tabular model of the registry (with its feature set, e.g. ``lightgbm[essentia]``).
    pairs : Sequence[str]
        Pair kinds among :data:`PAIRS`.
    data : BenchmarkData, optional
        Pre-built data (default: loaded from ``config.data_dir``).

    Returns
    -------
    ControlResult
        One row per (seed, pair, target) with the paired difference and its interval.
    """
    unknown = sorted(set(pairs) - set(PAIRS))
    if unknown:
        raise DataError(f"unknown control pair(s) {unknown}; choose from {', '.join(PAIRS)}")
    (run,) = resolve_suite(model, config.features)
    if run.spec.estimator.inputs != "tabular":
        raise DataError(
            f"the control runs a tabular model; {run.name} reads {run.spec.estimator.inputs}"
        )
    if data is None:
        data = load_benchmark_data(config, [run])
    base = run.spec.name
    records = []
    for seed in seeds:
        a = song_permuted(data, run.features, 2 * seed + 1)
        b = song_permuted(data, run.features, 2 * seed + 2)
        inputs = {**data.inputs, a.name: a, b.name: b}
        trial = dataclasses.replace(data, inputs=inputs)
        for pair in pairs:
            first, second = (a.name, b.name) if pair == "permuted" else (b.name, run.features)
            names = (f"{base}[{first}]", f"{base}[{second}]")
            seeded = dataclasses.replace(
                config,
                seed=int(seed),
                suite=",".join(names),
                reference_model=names[0],
                dataset=f"{config.dataset}-control",
                final_models=False,
                write_report=False,
            )
            results = run_suite(seeded, trial)
            table = results.metrics
            rows = table[(table.model == names[1]) & (table.metric == config.primary_metric)]
            for r in rows.itertuples():
                records.append(
                    {
                        "seed": int(seed),
                        "pair": pair,
                        "target": r.target,
                        "first": _label(names[0], seed),
                        "second": _label(names[1], seed),
                        "diff": r.diff,
                        "diff_ci_low": r.diff_ci_low,
                        "diff_ci_high": r.diff_ci_high,
                    }
                )
    return ControlResult(pd.DataFrame.from_records(records), config.primary_metric)


def _label(name: str, seed: int) -> str:
    """``lightgbm[essentia.perm7]`` -> ``lightgbm[essentia, permutation A]`` (seed-free)."""
    return name.replace(f".perm{2 * seed + 1}]", ", permutation A]").replace(
        f".perm{2 * seed + 2}]", ", permutation B]"
    )


def write_control(result: ControlResult, path: Path, title: str) -> Path:
    """Write the control's Markdown report (and its CSV beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, result.markdown(title))
    write_text_atomic(path.with_suffix(".csv"), result.comparisons.to_csv(index=False))
    return path
