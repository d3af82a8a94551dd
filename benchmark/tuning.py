"""Hyper-parameter search: one Optuna protocol for every tunable model, on training rows only.

Each trainable model gets the same budget (``n_trials`` per outer fold) and the same protocol:
a TPE sampler over the estimator's own search space, scored on song-grouped inner validation
splits carved from the outer training part (the outer test part is never seen), with median
pruning for estimators that report validation losses while they train.

Shared studies (several workers)
--------------------------------
With ``optuna_storage`` a database URL (``postgresql+psycopg://...``, ``sqlite:///...``) and a
user-named ``study_name``, several ``benchmark run`` processes, on one machine or many, tune the
same studies ``<prefix>.<model>.fold<k>`` at once. The protocol stays the one above:

- ``n_trials`` is the budget of the **study**, not of each worker: every worker runs trials until
  the study holds ``n_trials`` finished or running ones (a race at the last trial may add at most
  one trial per extra worker). W workers finish a study about W times sooner; a worker that
  joins a finished study runs no trial and reuses it, so a killed run resumes where it stopped.
- The sampler draws trial ``k`` from a random state seeded by (seed, k): one worker on a fresh
  study is reproducible, and concurrent workers never propose the same startup trials.
- A worker that has no trial left to start waits until the other workers' trials have ended
  (trials of a worker that died are failed by Optuna's heartbeat after ``2 x optuna_heartbeat``
  seconds, and their budget is run again), then takes the best trial of the whole study: every
  worker fits the same parameters, so their reported metrics are the same.
- A study remembers the protocol it was made for (data, configuration, model, fold); joining it
  with another one is refused, so differently configured runs never mix their trials.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from ..features.errors import DataError
from .config import BenchmarkConfig
from .metrics import METRICS
from .splits import inner_splits

#: Seconds between two looks at a shared study while other workers finish their trials.
POLL_SECONDS = 0.2
#: User attribute of a study: what it tunes (see :func:`tune`'s ``protocol``).
PROTOCOL_ATTR = "protocol"
#: User attribute of a trial: the worker that ran it.
WORKER_ATTR = "worker"


@dataclass
class Tuning:
    """The outcome of one search.

    Attributes
    ----------
    params : dict[str, Any]
        The best trial's parameters (the fixed ones included).
    trials : pandas.DataFrame
        One row per trial of the study (every worker's): number, value, state, params,
        duration (s), ``user_attrs_worker`` (who ran it).
    own_trials : int
        Trials this process ran.
    """

    params: dict[str, Any]
    trials: pd.DataFrame
    own_trials: int = 0


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a study searched with ``seed``.

    Parameters
    ----------
    seed : int
        The search's seed.
    number : int
        The trial's number in its study.

    Returns
    -------
    int
        A 32-bit seed.
    """
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A TPE sampler whose random state for trial ``k`` is seeded by ``(seed, k)``.

    Optuna's ``TPESampler(seed=s)`` draws from one random stream per process: two workers of a
    shared study seeded alike would propose the same trials. Seeding each trial by its number
    (unique within a study) keeps a single worker reproducible and makes workers differ. A fresh
    TPE sampler is made for each trial (TPE keeps no state beyond its random stream; it reads
    the study's history from the storage), and every sampler call goes to it.

    Parameters
    ----------
    seed : int
        The search's seed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._current = optuna.samplers.TPESampler(seed=trial_seed(seed, 0))

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._current = optuna.samplers.TPESampler(seed=trial_seed(self.seed, trial.number))
        self._current.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._current.reseed_rng()


@functools.lru_cache(maxsize=8)
def _storage(url: str, heartbeat: int) -> Any:
    """One Optuna RDB storage per URL and process, with a heartbeat for shared studies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat
        )


def _open_storage(config: BenchmarkConfig, attempts: int = 4) -> Any:
    """The configured RDB storage; a worker that races another creating its tables retries."""
    from sqlalchemy.exc import ArgumentError

    assert config.optuna_storage is not None
    for attempt in range(attempts):
        try:
            return _storage(config.optuna_storage, config.optuna_heartbeat)
        except ArgumentError as exc:  # a malformed URL or an unknown dialect: no use retrying
            problem = exc
            break
        except Exception as exc:  # sqlalchemy and optuna errors: no server yet, a table race
            problem = exc
            time.sleep(0.5 * 2**attempt)
    raise DataError(
        f"Optuna storage {config.optuna_storage!r}: cannot open it "
        f"({type(problem).__name__}: {str(problem).splitlines()[0]})"
    )


def _open_study(
    study_name: str, config: BenchmarkConfig, seed: int, maximize: bool, protocol: str
) -> Any:
    """Create or join the study; refuse one made for another protocol or direction."""
    storage = None if config.optuna_storage is None else _open_storage(config)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
        if config.pruning
        else optuna.pruners.NopPruner()
    )
    direction = "maximize" if maximize else "minimize"
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=direction,
        sampler=TrialSeededSampler(seed),
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != direction:
        raise DataError(
            f"Optuna study {study_name!r} in {config.optuna_storage} is set to "
            f"{study.direction.name.lower()}, but tune_metric {config.tune_metric!r} wants "
            f"{direction}; choose another --study-name"
        )
    known = study.user_attrs.get(PROTOCOL_ATTR)
    if known is None:
        study.set_user_attr(PROTOCOL_ATTR, protocol)  # a no-op if another worker set it first
        known = study.user_attrs.get(PROTOCOL_ATTR)
    if known != protocol:
        raise DataError(
            f"Optuna study {study_name!r} in {config.optuna_storage} was made for another "
            f"dataset or configuration ({known}, not {protocol}); choose another --study-name"
        )
    return study


def _fail_trials_without_heartbeat(study: Any) -> None:
    """FAIL the RUNNING trials that never recorded a heartbeat within the grace period.

    Optuna's heartbeat fails a dead worker's trial only once that trial has recorded a heartbeat.
    A worker killed between creating a trial and its heartbeat thread's first record (a few
    milliseconds) leaves the trial RUNNING for ever, and every other worker of the study would
    wait for it (seen in ``test_a_killed_workers_trial_is_failed_and_its_budget_run_again``).
    A live worker records its first heartbeat as soon as the trial starts, so a trial without
    one after the grace period (two heartbeat intervals, Optuna's default) is dead.
    """
    storage = getattr(study._storage, "_backend", study._storage)
    if not isinstance(storage, optuna.storages.RDBStorage) or storage.heartbeat_interval is None:
        return
    import sqlalchemy
    import sqlalchemy.orm
    from optuna.storages._rdb import models

    grace = timedelta(seconds=storage.grace_period or 2 * storage.heartbeat_interval)
    session = storage.scoped_session()
    try:
        # the database's clock, as Optuna's own stale-trial check uses (naive, like the trials)
        now = session.execute(sqlalchemy.func.now()).scalar().replace(tzinfo=None)
        running = (
            session.query(models.TrialModel)
            .options(sqlalchemy.orm.selectinload(models.TrialModel.heartbeats))
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialModel.study_id == study._study_id)
            .all()
        )
        dead = [
            trial.trial_id
            for trial in running
            if not trial.heartbeats
            and trial.datetime_start is not None
            and now - trial.datetime_start > grace
        ]
    finally:
        session.close()
    for trial_id in dead:
        try:
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # another worker failed it first


def _counted(study: Any) -> tuple[int, int]:
    """(trials that use the budget: finished or running, of which running or waiting)."""
    state = TrialState
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a dead worker's trials: FAIL, budget freed
    _fail_trials_without_heartbeat(study)  # ... and those it died before its first heartbeat
    trials = study.get_trials(
        deepcopy=False, states=(state.COMPLETE, state.PRUNED, state.RUNNING, state.WAITING)
    )
    active = sum(t.state in (state.RUNNING, state.WAITING) for t in trials)
    return len(trials), active


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
    worker: str = "",
    protocol: str = "",
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
        ``n_trials`` (the study's budget), ``inner_folds``, ``validation_fraction``,
        ``pruning``, ``tune_metric``, ``optuna_storage``, ``optuna_heartbeat``.
    seed : int
        Seeds the inner splits and the sampler.
    study_name : str
        The Optuna study (shared by workers when ``optuna_storage`` is a database).
    prunable : bool
        The estimator reports validation losses during training.
    worker : str
        Who runs this search (recorded on each of its trials; the runner passes its MLflow run
        id).
    protocol : str
        What the study tunes (data, configuration, model, fold): recorded on a new study and
        checked when joining one.

    Returns
    -------
    Tuning
        The best parameters of the whole study and its trial table.

    Raises
    ------
    DataError
        The storage cannot be opened, or the named study exists for another protocol or
        direction.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = METRICS[config.tune_metric]
    pairs = inner_splits(groups, config.inner_folds, config.validation_fraction, seed)
    study = _open_study(study_name, config, seed, metric.maximize, protocol)
    sign = -1.0 if metric.maximize else 1.0  # intermediate values are losses: lower is better
    own = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal own
        own += 1
        trial.set_user_attr(WORKER_ATTR, worker)
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

    budget = config.n_trials
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    while True:
        used, active = _counted(study)
        if used < budget:
            stop = optuna.study.MaxTrialsCallback(budget, states=counted)
            study.optimize(objective, n_trials=budget - used, callbacks=[stop])
        elif active:  # other workers' trials: their results may be the best
            time.sleep(POLL_SECONDS)
        else:
            break

    trials = study.trials_dataframe(
        attrs=("number", "value", "state", "params", "duration", "user_attrs")
    )
    trials["duration"] = trials["duration"].dt.total_seconds()
    trials["state"] = trials["state"].astype(str)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return Tuning(dict(fixed), trials, own)
    best = space(optuna.trial.FixedTrial(dict(study.best_params)), fixed)
    return Tuning(best, trials, own)
