"""The benchmark protocol: ``run_suite(config) -> Results``.

For every model of the suite, on the same song-grouped outer folds::

    folds -> tune (inner splits of the training part) -> fit -> predict the test part -> log

then every model's out-of-fold predictions are evaluated together (metrics with song-bootstrap
intervals and paired differences), logged to MLflow and written to ``results/<dataset>/``.

The runner knows models only through their registry entry and the declarations of the estimator
contract (:mod:`models.estimators.base`); every MLflow call goes through the
:class:`~benchmark.tracking.RunLogger`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..features.errors import DataError
from ..features.feature_sets import feature_sets
from ..features.layout import DataLayout
from ..models.estimators.base import ID_COLUMNS, PROVENANCE_KEYS, BenchmarkEstimator
from .config import BenchmarkConfig, deep_update
from .data import BenchmarkData, load_benchmark_data
from .metrics import METRICS, evaluate
from .plots import plot_feature_importance
from .registry import ModelRun
from .report import write_report
from .results import ModelInfo, Results
from .splits import Fold, group_labels, make_splits, split_table
from .tracking import RunLogger, git_commit
from .tuning import tune

log = logging.getLogger(__name__)


def reference_model(config: BenchmarkConfig, runs: list[ModelRun]) -> str | None:
    """The model the others are compared with, fixed before the run (never chosen on test folds).

    ``config.reference_model`` when given, else the first classical model of the suite (the tuned
    LightGBM), else ``region_mean``, else none.
    """
    names = [run.name for run in runs]
    if config.reference_model is not None:
        if config.reference_model not in names:
            raise DataError(
                f"reference_model {config.reference_model!r} is not in the suite ({', '.join(names)})"
            )
        return config.reference_model
    classical = [run.name for run in runs if run.spec.family == "classical"]
    if classical:
        return classical[0]
    return "region_mean" if "region_mean" in names else None


@dataclass
class _Context:
    """What every model of one run shares."""

    config: BenchmarkConfig
    data: BenchmarkData
    logger: RunLogger
    tags: dict[str, str]
    study_prefix: str
    checkpoint_root: Path | None
    groups: np.ndarray  # the split unit of every row (config.group)
    worker: str = ""  # the parent MLflow run id: recorded on each Optuna trial this run runs
    # (model name, fold) -> fine-tuned encoder weights, for models that warm-start from it
    encoders: dict[tuple[str, int], Any] = field(default_factory=dict)


def select_runs(config: BenchmarkConfig, data: BenchmarkData | None = None) -> list[ModelRun]:
    """The suite's model runs that can run on the data (the oracle needs a ground truth).

    Raises
    ------
    DataError
        No model of the suite can run.
    """
    runs = []
    for run in config.model_runs():
        has_truth = (
            data.ground_truth is not None
            if data is not None
            else DataLayout(config.data_dir).ground_truth.exists()
        )
        if run.spec.estimator.needs_appeal and not has_truth:
            log.info("skipping %s: the dataset has no ground truth", run.name)
            continue
        runs.append(run)
    if not runs:
        raise DataError(f"suite {config.suite!r} has no model that can run on this dataset")
    return runs


def build_estimator(
    run: ModelRun,
    params: dict[str, Any],
    seed: int,
    ctx: _Context,
    fold: int | None,
) -> BenchmarkEstimator:
    """A fresh estimator of ``run`` with its parameters and the run settings it declares.

    Parameters
    ----------
    run : ModelRun
        The model.
    params : dict[str, Any]
        Estimator parameters (the configuration's, or a tuning sample).
    seed : int
        Seed of this fit.
    ctx : _Context
        The run.
    fold : int, optional
        The outer fold (None for a fit on all rows): selects the warm-start encoder and the
        checkpoint folder.

    Returns
    -------
    BenchmarkEstimator
        Unfitted.
    """
    cls = run.spec.estimator
    settings = deep_update(dict(run.spec.params), params)  # nested tables merged key by key
    runtime = {
        "seed": seed,
        "num_threads": ctx.config.num_threads,
        "regions": sorted(ctx.data.frame["region"].unique()),
        "progress": True,
        "allow_download": ctx.config.allow_download,
    }
    settings.update({name: runtime[name] for name in cls.runtime})
    if cls.checkpoints and ctx.checkpoint_root is not None and fold is not None:
        settings["checkpoint_dir"] = ctx.checkpoint_root / f"{run.name}-fold{fold}"
    if cls.accepts_encoder and fold is not None:
        settings["encoder_state_dict"] = ctx.encoders.get((run.spec.warm_start_from or "", fold))
    estimator = cls()
    known = estimator.get_params(deep=False)
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise DataError(
            f"model {run.name}: unknown parameter(s) {unknown} in [models.{run.spec.name}]; "
            f"{cls.__name__} takes {sorted(known)}"
        )
    return estimator.set_params(**settings)


def _check_prediction(pred: Any, X: pd.DataFrame, columns: list[str], model: str) -> pd.DataFrame:
    if not isinstance(pred, pd.DataFrame):
        raise TypeError(f"model {model!r}: predict must return a DataFrame, got {type(pred)}")
    if not pred.index.equals(X.index):
        raise ValueError(f"model {model!r}: predictions must have index = X.index")
    missing = [c for c in columns if c not in pred.columns]
    if missing:
        raise ValueError(f"model {model!r}: predictions lack column(s) {missing}")
    return pred[columns]


def _fold_metrics(truth: pd.DataFrame, pred: pd.DataFrame, targets: list[str]) -> dict[str, float]:
    out = {}
    regions = truth["region"].to_numpy()
    for target in targets:
        keep = np.isfinite(truth[target].to_numpy(dtype=float))
        for name in ("rmse", "spearman"):
            value = METRICS[name](
                truth[target].to_numpy()[keep], pred[target].to_numpy()[keep], regions[keep]
            )
            if np.isfinite(value):
                out[f"{target}.{name}"] = value
    return out


class _ModelFits:
    """Tunes, fits and predicts one model on every fold (the protocol for one model)."""

    def __init__(self, run: ModelRun, ctx: _Context) -> None:
        self.run = run
        self.ctx = ctx
        self.cls = run.spec.estimator
        self.X = ctx.data.X(run)
        self.y = ctx.data.y(run)
        self.fixed = ctx.config.model_params(run.spec.name)
        self.tuned = self.cls.is_tunable() and ctx.config.n_trials > 0
        self.provenance: dict[str, Any] = {}

    def _protocol(self, rows: np.ndarray, seed: int) -> str:
        """What a study of this model on ``rows`` tunes: workers may share it only if equal."""
        config = self.ctx.config
        content = {
            "data": self.ctx.data.fingerprint,
            "model": self.run.name,
            "fixed": self.fixed,
            "rows": hashlib.sha256(np.ascontiguousarray(self.X.index[rows])).hexdigest(),
            "groups": hashlib.sha256(
                pd.util.hash_array(np.asarray(self.ctx.groups[rows], dtype=object)).tobytes()
            ).hexdigest(),
            "seed": seed,
            "targets": self.ctx.data.targets,
            **{
                name: getattr(config, name)
                for name in ("inner_folds", "validation_fraction", "pruning", "tune_metric")
            },
        }
        text = json.dumps(content, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _params(self, rows: np.ndarray, seed: int, study: str) -> tuple[dict, Any]:
        """Tuned parameters on ``rows`` (an outer training part), or the configured ones."""
        if not self.tuned:
            skip = self.cls.search_settings
            return {k: v for k, v in self.fixed.items() if k not in skip}, None

        def fit_predict(params, X_fit, y_fit, X_val, y_val, report):
            estimator = build_estimator(self.run, params, seed, self.ctx, fold=None)
            if report is not None and self.cls.reports_progress:
                estimator.fit(X_fit, y_fit, eval_set=(X_val, y_val), report=report)
            else:
                estimator.fit(X_fit, y_fit)
            targets = self.ctx.data.targets
            return _check_prediction(estimator.predict(X_val), X_val, targets, self.run.name)

        outcome = tune(
            self.cls.search_space,
            self.fixed,
            fit_predict,
            self.X.iloc[rows],
            self.y.iloc[rows],
            self.ctx.groups[rows],
            self.ctx.data.targets,
            self.ctx.config,
            seed,
            study,
            self.cls.reports_progress,
            worker=self.ctx.worker,
            protocol=self._protocol(rows, seed),
        )
        skip = self.cls.search_settings
        return {k: v for k, v in outcome.params.items() if k not in skip}, outcome

    def fold(self, fold: Fold) -> pd.DataFrame:
        """Tune on the fold's training part, fit there, predict its test part; log the fold."""
        ctx, logger = self.ctx, self.ctx.logger
        seed = ctx.config.seed + 1000 * (fold.index + 1)
        study = f"{ctx.study_prefix}.{self.run.name}.fold{fold.index}"
        params, tuning = self._params(fold.train, seed, study)
        estimator = build_estimator(self.run, params, seed, ctx, fold.index)
        estimator.fit(self.X.iloc[fold.train], self.y.iloc[fold.train])
        self.provenance = self.provenance or estimator.provenance()
        X_test = self.X.iloc[fold.test]
        pred = _check_prediction(
            estimator.predict(X_test), X_test, list(self.y.columns), self.run.name
        )
        logger.params({"n_train": len(fold.train), "n_test": len(fold.test), **params})
        if tuning is not None:
            logger.tags({"optuna_study": study})
            logger.frame(tuning.trials, "optuna_trials.csv")
            finished = tuning.trials["state"].isin(["COMPLETE", "PRUNED"]).sum()
            logger.metrics({"optuna_trials": finished, "optuna_own_trials": tuning.own_trials})
        logger.metrics(_fold_metrics(ctx.data.frame.iloc[fold.test], pred, ctx.data.targets))
        if getattr(estimator, "history_", None):
            logger.history(estimator.history_)
        if self.cls.exposes_encoder:
            ctx.encoders[(self.run.spec.name, fold.index)] = estimator.encoder_state_dict_
            logger.state_dict(estimator.encoder_state_dict_, "encoder.safetensors")
        if self.cls.accepts_encoder and self.run.spec.warm_start_from:
            started = (self.run.spec.warm_start_from, fold.index) in ctx.encoders
            logger.tags({"warm_start_from": self.run.spec.warm_start_from if started else "none"})
        if self.cls.logs_model == "pytorch" and fold.index == 0:
            logger.torch_network(estimator, self.run.name)
        return pred

    def final(self) -> pd.DataFrame | None:
        """Tune and fit on all rows, log the model (not used for evaluation); its importance."""
        rows = np.arange(len(self.X))
        study = f"{self.ctx.study_prefix}.{self.run.name}.final"
        params, tuning = self._params(rows, self.ctx.config.seed, study)
        estimator = build_estimator(self.run, params, self.ctx.config.seed, self.ctx, fold=None)
        estimator.fit(self.X, self.y)
        logger = self.ctx.logger
        logger.params(params, prefix="final.")
        if tuning is not None:
            logger.frame(tuning.trials, "optuna_trials_final.csv")
        logger.lightgbm_model(estimator, self.X.head(50), name_prefix=self.run.name)
        importance = estimator.feature_importance("gain")
        logger.frame(importance.reset_index(names="feature"), "feature_importance.csv")
        logger.figure(plot_feature_importance(importance), "feature_importance.png")
        return importance


def provenance_of(run: ModelRun, fitted: dict[str, Any], data: BenchmarkData) -> dict[str, Any]:
    """A model's provenance: the fitted estimator's, with its feature set's laid over it.

    A set of stored encoder outputs says which network and weights computed them, and that they
    were frozen; an estimator says what it loaded itself (a fine-tuned backbone) or that it trained
    its encoder from scratch.

    Parameters
    ----------
    run : ModelRun
        The model.
    fitted : dict
        ``BenchmarkEstimator.provenance()`` of one of its fitted estimators.
    data : BenchmarkData
        The rows and inputs it ran on.

    Returns
    -------
    dict
        Keys of :data:`~models.estimators.base.PROVENANCE_KEYS` (those known).
    """
    merged = {**fitted, **data.provenance(run)}
    return {k: merged[k] for k in PROVENANCE_KEYS if k in merged}


def _run_model(run: ModelRun, folds: list[Fold], ctx: _Context, bar: Any) -> tuple:
    """Every fold of one model, in its own MLflow child run.

    Returns (predictions, importance, tuned, provenance); the provenance is also set as tags
    of the model's run. With ``config.final_models``, a LightGBM-like model is tuned and fitted
    once more on all rows and logged.
    """
    fits = _ModelFits(run, ctx)
    logger = ctx.logger
    logger.params(fits.fixed, prefix="fixed.")
    predictions = []
    for fold in folds:
        tags = {**ctx.tags, "model": run.name, "fold": str(fold.index)}
        with logger.run(f"{run.name}-fold{fold.index}", tags):
            predictions.append(fits.fold(fold).assign(fold=fold.index))
        bar.update(1)
    oof = pd.concat(predictions).sort_index()
    ids = ctx.data.frame.loc[oof.index, list(ID_COLUMNS)]
    logger.frame(ids.join(oof.add_prefix("pred_")).reset_index(names="row"), "predictions.csv")
    final = ctx.config.final_models and run.spec.estimator.logs_model == "lightgbm"
    importance = fits.final() if final else None
    provenance = provenance_of(run, fits.provenance, ctx.data)
    logger.tags({k: str(v) for k, v in provenance.items()} or {"encoder": "none"})
    return oof, importance, fits.tuned, provenance


def _checkpoint_root(config: BenchmarkConfig, data: BenchmarkData, tags: dict, run_id: str):
    """Per-epoch checkpoints keyed by code, data and config (uncommitted code: this run only)."""
    if data.data_dir is None:
        return None
    code = tags["git_commit"]
    if code == "unknown" or code.endswith("-dirty"):
        code = f"{code[:12]}-{run_id[:8]}"
    key = f"{code[:21]}-{data.fingerprint[:12]}-{tags['config_hash'][:12]}"
    return DataLayout(data.data_dir).checkpoints_dir / key


def feature_set_tags(data: BenchmarkData, run: ModelRun) -> dict[str, str]:
    """MLflow tags that say which feature set (and which version of it) a model read.

    Returns
    -------
    dict[str, str]
        ``feature_set``, ``feature_service``, and for a set of a data dir its ``feature_set_source``
        (``audio`` or ``table``), ``feature_set_version`` and, for an ingested table, the SHA-256
        of the file it came from (``feature_set_sha256``).
    """
    tags = {"feature_set": run.features or "none", "feature_service": data.feature_service(run)}
    if run.features is None or data.data_dir is None:
        return tags
    fs = feature_sets(DataLayout(data.data_dir)).get(run.features)
    if fs is None:  # a set made in memory (a control's song-permuted copy), not one of the data dir
        return tags
    tags["feature_set_source"] = fs.source
    tags["feature_set_version"] = str(fs.version)
    sha = fs.metadata.get("provenance", {}).get("sha256") if fs.metadata else None
    if sha:
        tags["feature_set_sha256"] = str(sha)
    return tags


def run_suite(
    config: BenchmarkConfig,
    data: BenchmarkData | None = None,
    *,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> Results:
    """Run every model of the configured suite on the same song-grouped folds.

    Parameters
    ----------
    config : BenchmarkConfig
        The run's settings.
    data : BenchmarkData, optional
        Pre-built data (notebooks, tests); default: :func:`~benchmark.data.load_benchmark_data`.
    run_name : str, optional
        Name of the MLflow parent run (default ``<suite>-<profile>-seed<seed>``).
    tags : dict[str, str], optional
        Extra tags of every MLflow run of this call (e.g. an experiment and its variant).

    Returns
    -------
    Results
        Metrics with intervals, out-of-fold predictions, the split, MLflow run ids, the report
        folder and the time of each stage (``timings``).
    """
    started = time.perf_counter()
    runs = select_runs(config, data)
    reference = reference_model(config, runs)
    if data is None:
        data = load_benchmark_data(config, runs)
    groups = group_labels(data.frame, config.group)
    folds = make_splits(
        data.frame,
        config.split,
        config.n_folds,
        config.seed,
        config.test_fraction,
        group=config.group,
    )
    split = split_table(data.frame, folds)
    evaluated = np.flatnonzero(split["test_fold"].to_numpy() >= 0)

    logger = RunLogger(config.tracking_uri, config.dataset, config.artifact_location)
    extra = dict(tags or {})
    tags = {
        **extra,
        "git_commit": git_commit(),
        "dataset": config.dataset,
        "dataset_fingerprint": data.fingerprint,
        "config_hash": config.config_hash(),
        "profile": config.profile,
        "suite": config.suite,
    }
    predictions: dict[str, pd.DataFrame] = {}
    importances: dict[str, pd.DataFrame] = {}
    models: dict[str, ModelInfo] = {}
    child_ids: dict[str, str] = {}
    name = run_name or f"{config.suite}-{config.profile}-seed{config.seed}"
    timings: dict[str, float] = {}
    with logger.run(name, {**tags, "role": "benchmark"}) as parent:
        logger.params(config.to_dict())
        logger.params({"n_rows": len(data.frame), "n_songs": data.frame["song_id"].nunique()})
        logger.frame(split, "split.csv")
        ctx = _Context(
            config,
            data,
            logger,
            tags,
            study_prefix=config.study_name or f"{config.dataset}.{parent}",
            checkpoint_root=_checkpoint_root(config, data, tags, parent),
            groups=groups,
            worker=parent,
        )
        bar = tqdm(total=len(runs) * len(folds), desc="benchmark", unit="fold", leave=False)
        with bar:
            for run in runs:
                service = data.feature_service(run)
                run_tags = {
                    **tags,
                    "model": run.name,
                    "family": run.family,
                    **feature_set_tags(data, run),
                    "role": "model",
                }
                model_started = time.perf_counter()
                with logger.run(run.name, run_tags) as child:
                    child_ids[run.name] = child
                    predictions[run.name], importance, tuned, provenance = _run_model(
                        run, folds, ctx, bar
                    )
                timings[f"fit {run.name}"] = time.perf_counter() - model_started
                if importance is not None:
                    importances[run.name] = importance
                models[run.name] = ModelInfo(
                    run.name,
                    run.family,
                    run.features,
                    service,
                    tuned,
                    run.spec.description,
                    encoder=str(provenance.get("encoder", "")),
                    encoder_weights_sha256=str(provenance.get("encoder_weights_sha256", "")),
                    encoder_frozen=provenance.get("encoder_frozen"),
                )

        truth = data.frame.iloc[evaluated]
        evaluate_started = time.perf_counter()
        metrics = evaluate(
            truth=truth[data.targets + data.curve_columns],
            predictions={m: p.loc[truth.index] for m, p in predictions.items()},
            songs=truth["song_id"],
            regions=truth["region"],
            targets=data.targets,
            n_resamples=config.bootstrap,
            seed=config.seed,
            candidates=[reference] if reference else [],
            primary_metric=config.primary_metric,
            folds=split["test_fold"].iloc[evaluated],
        )
        metrics.insert(1, "kind", metrics["model"].map({n: m.family for n, m in models.items()}))
        timings["evaluate (bootstrap)"] = time.perf_counter() - evaluate_started
        logger.metric_table(child_ids, metrics)
        results = Results(
            metrics=metrics,
            predictions=predictions,
            split=split,
            config=config,
            models=models,
            run_id=parent,
            child_run_ids=child_ids,
            feature_importance=importances,
            tags=tags,
        )
        results.timings = timings
        results.seconds = time.perf_counter() - started
        if config.write_report:
            report_started = time.perf_counter()
            results.results_dir = write_report(results, data)
            logger.artifacts(results.results_dir, "report")
            timings["report"] = time.perf_counter() - report_started
        else:
            logger.frame(metrics, "summary.csv")
        logger.metrics({"seconds": time.perf_counter() - started})
    results.seconds = time.perf_counter() - started
    return results
