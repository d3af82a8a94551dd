"""Hyper-parameter search: one Optuna protocol for every tunable model, on training rows only.

Each trainable model gets the same budget (``n_trials`` per outer fold) and the same protocol:
a seeded TPE sampler over the estimator's own search space, scored on song-grouped inner
validation splits carved from the outer training part (the outer test part is never seen),
with median pruning for estimators that report validation losses while they train.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .config import BenchmarkConfig
from .metrics import METRICS
from .splits import inner_splits


@dataclass
class Tuning:
    """The outcome of one search.

    Attributes
    ----------
    params : dict[str, Any]
        The best trial's parameters (the fixed ones included).
    trials : pandas.DataFrame
        One row per trial: number, value, state, params, duration (s).
    """

    params: dict[str, Any]
    trials: pd.DataFrame


def tune(
    space: Callable[[Any, Mapping[str, Any]], dict[str, Any]],
    fixed: Mapping[str, Any],
    fit_predict: Callable[..., pd.DataFrame],
    X: pd.DataFrame,
    y: pd.DataFrame,
    groups: np.ndarray,
    targets: list[str],
    config: BenchmarkConfig,
    seed: int,
    study_name: str,
    prunable: bool,
) -> Tuning:
    """Search ``space`` on song-grouped inner splits of ``(X, y)`` (an outer training part).

    Parameters
    ----------
    space : Callable
        ``space(trial, fixed) -> params`` (the estimator's search space).
    fixed : Mapping[str, Any]
        Parameters the configuration holds fixed.
    fit_predict : Callable
        ``fit_predict(params, X_fit, y_fit, X_val, y_val, report) -> predictions of X_val``;
        ``report(step, validation_loss)`` is None when pruning is off.
    X, y : pandas.DataFrame
        The rows the search may see (``y`` as the model is fitted on, curves included).
    groups : np.ndarray
        The split unit of each row (the outer split's grouping): inner splits keep it together.
    targets : list[str]
        The scalar targets the trials are scored on (the tuning metric, averaged).
    config : BenchmarkConfig
        ``n_trials``, ``inner_folds``, ``validation_fraction``, ``pruning``, ``tune_metric``,
        ``optuna_storage``.
    seed : int
        Seeds the inner splits and the sampler.
    study_name : str
        The Optuna study (shared by workers when ``optuna_storage`` is a database).
    prunable : bool
        The estimator reports validation losses during training.

    Returns
    -------
    Tuning
        The best parameters and the trial table.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = METRICS[config.tune_metric]
    pairs = inner_splits(groups, config.inner_folds, config.validation_fraction, seed)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
        if config.pruning
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=config.optuna_storage,
        direction="maximize" if metric.maximize else "minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        load_if_exists=True,
    )
    sign = -1.0 if metric.maximize else 1.0  # intermediate values are losses: lower is better

    def objective(trial: optuna.Trial) -> float:
        params = space(trial, fixed)
        scores = []
        for i, (fit_rows, val_rows) in enumerate(pairs):
            report = None
            if config.pruning and prunable:

                def report(step: int, value: float, offset: int = i * 10**7) -> None:
                    trial.report(sign * value, offset + step)
                    if trial.should_prune():
                        raise optuna.TrialPruned()

            Xv, yv = X.iloc[val_rows], y.iloc[val_rows]
            pred = fit_predict(params, X.iloc[fit_rows], y.iloc[fit_rows], Xv, yv, report)
            for t in targets:
                truth = yv[t].to_numpy(dtype=float)
                seen = np.isfinite(truth)  # two-part targets are NaN where not defined
                regions = Xv["region"].to_numpy()[seen]
                scores.append(metric(truth[seen], pred[t].to_numpy()[seen], regions))
        return float(np.nanmean(scores))

    study.optimize(objective, n_trials=config.n_trials)
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
    trials["duration"] = trials["duration"].dt.total_seconds()
    trials["state"] = trials["state"].astype(str)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return Tuning(dict(fixed), trials)
    best = space(optuna.trial.FixedTrial(dict(study.best_params)), fixed)
    return Tuning(best, trials)
