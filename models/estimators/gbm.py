"""LightGBM regressor under the estimator contract, and its Optuna search space.

One LightGBM booster per target column; the features are every numeric column of ``X``
(identifier columns are dropped), so it runs on any tabular feature set. The region enters as
``region_encoding`` says: a categorical feature (default), one-hot columns, not at all, or one
model per region. Training is deterministic for a fixed ``seed`` (``deterministic=True``,
``force_row_wise=True``, fixed thread count). No file or network I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

# OpenMP threads that spin while waiting make LightGBM 10x slower on a busy machine (more runnable
# threads than cores); passive waiting costs nothing when the machine is idle. Must precede import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb
import numpy as np
import pandas as pd

from .base import CLIPS_COLUMN, BenchmarkEstimator, Trial

NON_FEATURE_COLUMNS = (
    "track_id",
    "song_id",
    "clip_id",
    "event_timestamp",
    "debut_date",
    CLIPS_COLUMN,
)
"""Columns of ``X`` that are identifiers or times, never model inputs."""

REGION_ENCODINGS = ("categorical", "onehot", "none", "per_region")
"""How ``region`` reaches the model: LightGBM's categorical splits; one 0/1 column per training
region; not at all (the audio alone); or one booster per region and target, trained on that
region's rows only (regions unseen in training get the training mean)."""

REPORT_STEP_STRIDE = 100_000
"""Intermediate-value steps: ``target_index * REPORT_STEP_STRIDE + iteration``."""


def lightgbm_search_space(trial: Trial, fixed: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Sample LightGBM hyper-parameters from the benchmark's search space.

    Parameters
    ----------
    trial : Trial
        An Optuna trial (anything with ``suggest_int`` / ``suggest_float``).
    fixed : Mapping[str, Any], optional
        Parameters held fixed (not searched); they override the sampled values. An entry
        ``max_estimators`` caps the searched ``n_estimators`` range instead.

    Returns
    -------
    dict[str, Any]
        Keyword arguments for :class:`LightGBMRegressor`.
    """
    fixed = dict(fixed or {})
    max_estimators = int(fixed.pop("max_estimators", 400))
    space: dict[str, Callable[[], Any]] = {
        "n_estimators": lambda: trial.suggest_int(
            "n_estimators", 50, max(50, max_estimators), step=50
        ),
        "learning_rate": lambda: trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": lambda: trial.suggest_int("num_leaves", 4, 63, log=True),
        "min_child_samples": lambda: trial.suggest_int("min_child_samples", 5, 60, log=True),
        "feature_fraction": lambda: trial.suggest_float("feature_fraction", 0.2, 1.0),
        "bagging_fraction": lambda: trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": lambda: trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }
    params = {name: suggest() for name, suggest in space.items() if name not in fixed}
    params.update(fixed)
    return params


class LightGBMRegressor(BenchmarkEstimator):
    """One LightGBM booster per target column, with ``region`` as a categorical feature.

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    learning_rate : float
        Shrinkage.
    num_leaves : int
        Leaves per tree.
    min_child_samples : int
        Minimum rows per leaf.
    feature_fraction : float
        Fraction of features sampled per tree.
    bagging_fraction : float
        Fraction of rows sampled per tree (every iteration).
    lambda_l2 : float
        L2 regularisation.
    max_bin : int
        Histogram bins per feature (63 is plenty for a few thousand rows, and fast).
    seed : int
        Seed for every random choice LightGBM makes.
    num_threads : int
        Threads; fixed so that results do not depend on the machine. On a busy machine (more
        runnable threads than cores) one thread is several times faster than two.
    categorical : tuple[str, ...]
        Columns treated as categorical (``region`` only with ``region_encoding="categorical"``).
    region_encoding : str
        One of :data:`REGION_ENCODINGS`. With ``per_region`` every region's boosters share the
        hyper-parameters (one search for all regions, the same budget as a pooled model) and
        no validation losses are reported during training (no pruning).
    """

    inputs = "tabular"
    reports_progress = True
    logs_model = "lightgbm"
    search_settings = ("max_estimators",)
    runtime = ("seed", "num_threads")

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        lambda_l2: float = 1.0,
        max_bin: int = 63,
        seed: int = 0,
        num_threads: int = 2,
        categorical: tuple[str, ...] = ("region",),
        region_encoding: str = "categorical",
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.max_bin = max_bin
        self.seed = seed
        self.num_threads = num_threads
        self.categorical = categorical
        self.region_encoding = region_encoding

    @classmethod
    def search_space(cls, trial: Trial, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """The benchmark's LightGBM search space (:func:`lightgbm_search_space`)."""
        return lightgbm_search_space(trial, fixed)

    def _booster_params(self) -> dict[str, Any]:
        return {
            "objective": "regression",
            "metric": "rmse",  # computed only on validation sets, when given
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            "min_data_per_group": 5,
            "cat_smooth": 10.0,
        }

    def _inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's input frame: numeric features; categoricals as integer codes (-1 unknown);
        with one-hot regions, one 0/1 column ``region=<code>`` per training region."""
        out = X[[c for c in self.feature_names_ if c in X.columns]].copy()
        for column in self.categories_:
            codes = pd.Categorical(out[column].astype(str), categories=self.categories_[column])
            out[column] = codes.codes.astype("int32")
        if self.region_encoding == "onehot":
            region = X["region"].astype(str).to_numpy()
            for code in self.regions_:
                out[f"region={code}"] = (region == code).astype(np.float64)
        return out[self.feature_names_]

    def fit(
        self,
        X: pd.DataFrame,
        y: pd.DataFrame,
        eval_set: tuple[pd.DataFrame, pd.DataFrame] | None = None,
        report: Callable[[int, float], None] | None = None,
        report_every: int = 25,
    ) -> LightGBMRegressor:
        """Train one booster per target column.

        Parameters
        ----------
        X : pd.DataFrame
            Inputs: ``region`` plus numeric feature columns (identifier columns are ignored).
        y : pd.DataFrame
            Target columns; rows with a NaN target are left out of that target's booster.
        eval_set : tuple[pd.DataFrame, pd.DataFrame], optional
            Validation ``(X, y)`` whose RMSE is passed to ``report`` during training.
        report : Callable[[int, float], None], optional
            Called as ``report(step, validation_rmse)`` every ``report_every`` rounds, with
            ``step = target_index * REPORT_STEP_STRIDE + round``. It may raise to stop training
            (Optuna pruning).
        report_every : int
            Rounds between reports.

        Returns
        -------
        LightGBMRegressor
            ``self``.
        """
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if self.region_encoding not in REGION_ENCODINGS:
            raise ValueError(
                f"region_encoding must be one of {REGION_ENCODINGS}, got {self.region_encoding!r}"
            )
        drop = set(NON_FEATURE_COLUMNS)
        categorical = [c for c in self.categorical if c != "region"]
        if self.region_encoding == "categorical":
            categorical.append("region")
        elif "region" in X.columns:
            drop.add("region")
        self.feature_names_ = [
            c
            for c in X.columns
            if c not in drop and (c in categorical or pd.api.types.is_numeric_dtype(X[c]))
        ]
        self.regions_ = sorted(X["region"].astype(str).unique()) if "region" in X else []
        if self.region_encoding == "onehot":
            self.feature_names_ += [f"region={code}" for code in self.regions_]
        if not self.feature_names_:
            raise ValueError("X has no feature columns")
        self.categories_ = {c: sorted(X[c].astype(str).unique()) for c in categorical if c in X}
        self.targets_ = list(y.columns)
        inputs = self._inputs(X)
        self.boosters_: dict[str, lgb.Booster] = {}
        if self.region_encoding == "per_region":
            region = X["region"].astype(str).to_numpy()
            self.means_ = y.mean(axis=0, skipna=True).fillna(0.0)
            for code in self.regions_:
                rows = region == code
                for target in self.targets_:
                    t = y[target].to_numpy(dtype=float)[rows]
                    keep = np.isfinite(t)
                    if keep.any():
                        self.boosters_[f"{target}@{code}"] = self._train(
                            inputs[rows][keep], t[keep], []
                        )
            return self
        valid_inputs = self._inputs(eval_set[0]) if eval_set is not None else None
        for t_index, target in enumerate(self.targets_):
            t = y[target].to_numpy(dtype=float)
            keep = np.isfinite(t)
            valid = None
            if report is not None and valid_inputs is not None:
                v = eval_set[1][target].to_numpy(dtype=float)
                valid = (valid_inputs[np.isfinite(v)], v[np.isfinite(v)])
            callbacks = []
            if valid is not None and len(valid[1]):
                callbacks.append(
                    _report_callback(report, t_index * REPORT_STEP_STRIDE, report_every)
                )
            self.boosters_[target] = self._train(inputs[keep], t[keep], callbacks, valid)
        return self

    def _train(
        self,
        inputs: pd.DataFrame,
        target: np.ndarray,
        callbacks: list,
        valid: tuple[pd.DataFrame, np.ndarray] | None = None,
    ) -> lgb.Booster:
        """One booster on ``inputs`` and ``target`` (rows with a finite target).

        With ``valid``, LightGBM scores the validation rows as it adds each tree (its own
        incremental RMSE; re-predicting them from scratch at every report would cost a full
        pass over all trees each time and stall training).
        """
        train = lgb.Dataset(
            inputs,
            label=target,
            categorical_feature=list(self.categories_),
            free_raw_data=False,
        )
        valid_sets = []
        if valid is not None and len(valid[1]):
            valid_sets = [lgb.Dataset(valid[0], label=valid[1], reference=train)]
        return lgb.train(
            self._booster_params(),
            train,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            valid_names=["validation"] * len(valid_sets),
            callbacks=callbacks,
        )

    def model_inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        """The frame the boosters consume (what a logged booster's signature describes).

        Parameters
        ----------
        X : pd.DataFrame
            Rows with the training feature columns.

        Returns
        -------
        pd.DataFrame
            Feature columns in training order; categoricals as int32 codes of ``categories_``.
        """
        return self._inputs(X)

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predict every target column.

        Parameters
        ----------
        X : pd.DataFrame
            Rows with the training feature columns.

        Returns
        -------
        pd.DataFrame
            ``index = X.index``, one column per target.
        """
        inputs = self._inputs(X)
        if self.region_encoding == "per_region":
            region = X["region"].astype(str).to_numpy()
            out = pd.DataFrame(
                np.tile(self.means_.to_numpy(dtype=float), (len(X), 1)),
                index=X.index,
                columns=self.targets_,
            )
            for key, booster in self.boosters_.items():
                target, code = key.rsplit("@", 1)
                rows = region == code
                if rows.any():
                    out.loc[rows, target] = booster.predict(
                        inputs[rows], num_threads=self.num_threads
                    )
            return out
        preds = {
            t: b.predict(inputs, num_threads=self.num_threads) for t, b in self.boosters_.items()
        }
        return pd.DataFrame(preds, index=X.index, columns=self.targets_)

    def feature_importance(self, kind: str = "gain") -> pd.DataFrame:
        """Feature importance of every booster.

        Parameters
        ----------
        kind : str
            ``"gain"`` or ``"split"``.

        Returns
        -------
        pd.DataFrame
            Index = feature names, one column per target (per ``target@region`` with one model
            per region).
        """
        return pd.DataFrame(
            {t: b.feature_importance(importance_type=kind) for t, b in self.boosters_.items()},
            index=self.feature_names_,
        )


def _report_callback(
    report: Callable[[int, float], None], offset: int, every: int
) -> Callable[[Any], None]:
    """A LightGBM callback passing the validation RMSE LightGBM computed to ``report``."""

    def callback(env: Any) -> None:
        round_ = env.iteration + 1
        if round_ % every == 0:
            for _, metric, value, _ in env.evaluation_result_list:
                if metric == "rmse":
                    report(offset + round_, float(value))

    return callback
