"""What a benchmark run produced (plain data; :mod:`benchmark.report` renders it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .config import BenchmarkConfig


@dataclass
class ModelInfo:
    """How one model of a run was set up.

    Attributes
    ----------
    name : str
        Result-row name (``lightgbm[essentia]``).
    family : str
        ``baseline``, ``classical``, ``deep`` or ``reference``.
    features : str or None
        Feature set it read.
    feature_service : str
        Feast FeatureService its inputs came from.
    tuned : bool
        Whether Optuna tuned it (with the run's equal budget).
    description : str
        One line.
    encoder : str
        The encoder behind its predictions: a pretrained network (``MSD_musicnn``,
        ``ast:<checkpoint>``), ``scratch``, or empty (hand-crafted features, no inputs).
    encoder_weights_sha256 : str
        sha256 of the pretrained weights (empty when none).
    encoder_frozen : bool or None
        Whether the pretrained weights were kept fixed (None without an encoder).
    """

    name: str
    family: str
    features: str | None
    feature_service: str
    tuned: bool
    description: str = ""
    encoder: str = ""
    encoder_weights_sha256: str = ""
    encoder_frozen: bool | None = None


@dataclass
class Results:
    """What a benchmark run produced.

    Attributes
    ----------
    metrics : pandas.DataFrame
        Tidy table, one row per model x target x metric (see :func:`benchmark.metrics.evaluate`).
    predictions : dict[str, pandas.DataFrame]
        Model name to out-of-fold predictions (index = the data frame's row, plus ``fold``).
    split : pandas.DataFrame
        The split table (:func:`benchmark.splits.split_table`).
    config : BenchmarkConfig
        The configuration.
    models : dict[str, ModelInfo]
        Model name to how it was set up.
    run_id : str or None
        MLflow parent run id.
    child_run_ids : dict[str, str]
        Model name to MLflow child run id.
    results_dir : Path or None
        The ``results/<dataset>/`` folder written.
    seconds : float
        Wall time of the run.
    feature_importance : dict[str, pandas.DataFrame]
        Model name to the gain importance (feature x target) of its final model.
    tags : dict[str, str]
        The run's tags (git commit, dataset fingerprint, config hash).
    timings : dict[str, float]
        Seconds per stage of the run: ``fit <model>`` (tuning and every fold), ``evaluate
        (bootstrap)``, ``report``.
    """

    metrics: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    split: pd.DataFrame
    config: BenchmarkConfig
    models: dict[str, ModelInfo] = field(default_factory=dict)
    run_id: str | None = None
    child_run_ids: dict[str, str] = field(default_factory=dict)
    results_dir: Path | None = None
    seconds: float = 0.0
    feature_importance: dict[str, pd.DataFrame] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def best_classical(self) -> str | None:
        """The reference of the paired comparison (best classical model) for the first target."""
        if self.metrics.empty or "reference" not in self.metrics:
            return None
        first = self.metrics[self.metrics.target == self.config.targets[0]]
        refs = first["reference"].dropna()
        return str(refs.iloc[0]) if len(refs) else None

    def value(self, model: str, target: str, metric: str, column: str = "value") -> float:
        """One number of the metrics table.

        Parameters
        ----------
        model, target, metric : str
            Row keys.
        column : str
            ``value``, ``ci_low``, ``ci_high``, ``diff``, ``baseline_diff_ci_low``, ...

        Returns
        -------
        float
            The number.
        """
        t = self.metrics
        rows = t[(t.model == model) & (t.target == target) & (t.metric == metric)]
        if rows.empty:
            raise KeyError(f"no metric {metric!r} for model {model!r}, target {target!r}")
        return float(rows[column].iloc[0])
