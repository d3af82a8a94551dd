"""Reference models: the global mean, the per-region mean, and the ground-truth oracle.

All three follow the estimator contract of :mod:`models.estimators.base`. They work for any
target columns, scalar or curve (NaN targets are ignored when averaging).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import APPEAL_COLUMN, BenchmarkEstimator


def _column_means(y: pd.DataFrame) -> pd.Series:
    """Mean of each column ignoring NaN; 0.0 for a column with no observed value."""
    return y.mean(axis=0, skipna=True).fillna(0.0).astype(float)


class GlobalMean(BenchmarkEstimator):
    """Predicts the training mean of every target column for every row (no parameters)."""

    predicts_curve = True

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> GlobalMean:
        """Learn the per-column training means.

        Parameters
        ----------
        X : pd.DataFrame
            Inputs (unused beyond their length).
        y : pd.DataFrame
            Target columns.

        Returns
        -------
        GlobalMean
            ``self``.
        """
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        self.columns_ = list(y.columns)
        self.means_ = _column_means(y)
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predict the training means.

        Parameters
        ----------
        X : pd.DataFrame
            Rows to predict.

        Returns
        -------
        pd.DataFrame
            ``index = X.index``, the target columns.
        """
        values = np.broadcast_to(self.means_.to_numpy(), (len(X), len(self.columns_)))
        return pd.DataFrame(values.copy(), index=X.index, columns=self.columns_)


class RegionMean(BenchmarkEstimator):
    """Predicts the training mean of each target column within the row's region.

    A region absent from training gets the global training mean.
    """

    predicts_curve = True

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> RegionMean:
        """Learn per-region and global target means.

        Parameters
        ----------
        X : pd.DataFrame
            Inputs with a ``region`` column.
        y : pd.DataFrame
            Target columns, aligned with ``X``.

        Returns
        -------
        RegionMean
            ``self``.
        """
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        self.columns_ = list(y.columns)
        self.global_means_ = _column_means(y)
        grouped = y.set_axis(X.index).groupby(X["region"].astype(str).to_numpy(), sort=True)
        self.region_means_ = grouped.mean().fillna(self.global_means_)
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predict the region means (global mean for unseen regions).

        Parameters
        ----------
        X : pd.DataFrame
            Rows with a ``region`` column.

        Returns
        -------
        pd.DataFrame
            ``index = X.index``, the target columns.
        """
        table = self.region_means_.reindex(X["region"].astype(str).to_numpy())
        table = table.fillna(self.global_means_)
        return pd.DataFrame(table.to_numpy(), index=X.index, columns=self.columns_)


class Oracle(BenchmarkEstimator):
    """The demo's noise-free appeal, calibrated: a 1-D least-squares line per target.

    The demo generator knows each (song, region) pair's noise-free appeal on the log1p-sum scale.
    The oracle fits ``y = a + b * appeal`` per target column on the training rows, pooled over
    regions, and predicts with it. It is a reference, not a bound: it is what a model that knew
    the generator's hidden appeal (and nothing else) would score after a pooled linear
    calibration; a per-region calibration, or knowing the generator's version offsets, can do
    better on some targets.
    """

    needs_appeal = True

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> Oracle:
        """Fit one least-squares line per target column on the rows with a known appeal.

        Parameters
        ----------
        X : pd.DataFrame
            Inputs with the ``appeal`` column.
        y : pd.DataFrame
            Target columns, aligned with ``X``.

        Returns
        -------
        Oracle
            ``self``.
        """
        a = X[APPEAL_COLUMN].to_numpy(dtype=float)
        self.columns_ = list(y.columns)
        coefs = []
        for column in self.columns_:
            t = y[column].to_numpy(dtype=float)
            ok = np.isfinite(a) & np.isfinite(t)
            if ok.sum() >= 2 and np.ptp(a[ok]) > 0:
                slope, intercept = np.polyfit(a[ok], t[ok], deg=1)
            else:
                slope, intercept = 0.0, float(np.nanmean(t)) if np.isfinite(t).any() else 0.0
            coefs.append((float(intercept), float(slope)))
        self.coef_ = np.asarray(coefs)  # (n_targets, 2): intercept, slope
        self.fallback_ = _column_means(y).to_numpy()
        return self

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predict ``a + b * appeal`` (the training mean where the appeal is unknown).

        Parameters
        ----------
        X : pd.DataFrame
            Rows with the ``appeal`` column.

        Returns
        -------
        pd.DataFrame
            ``index = X.index``, the target columns.
        """
        a = X[APPEAL_COLUMN].to_numpy(dtype=float)[:, None]  # (N, 1)
        preds = self.coef_[None, :, 0] + self.coef_[None, :, 1] * a  # (N, T)
        preds = np.where(np.isfinite(preds), preds, self.fallback_[None, :])
        return pd.DataFrame(preds, index=X.index, columns=self.columns_)
