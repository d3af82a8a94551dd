"""Reference models: the global mean, the per-region mean, and the ground-truth oracle.

All three follow the estimator contract of ``docs/architecture.md``: ``__init__`` stores parameters,
``fit(X, y) -> self`` learns attributes ending in ``_``, ``predict(X)`` returns a frame with
``index = X.index`` and one column per target column seen in ``fit``. They work for any target
columns, scalar or curve (NaN targets are ignored when averaging).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _column_means(y: pd.DataFrame) -> pd.Series:
    """Mean of each column ignoring NaN; 0.0 for a column with no observed value."""
    return y.mean(axis=0, skipna=True).fillna(0.0).astype(float)


class GlobalMean:
    """Predicts the training mean of every target column for every row.

    Parameters
    ----------
    None. The class takes no hyper-parameters.
    """

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


class RegionMean:
    """Predicts the training mean of each target column within the row's region.

    A region absent from training gets the global training mean.
    """

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


class Oracle:
    """Ground-truth reference: a 1-D linear calibration of the dataset's noise-free appeal.

    The demo generator knows each (song, region) pair's noise-free appeal (on the log1p-sum scale).
    The oracle fits ``y = a + b * appeal`` per target column on the training rows and predicts with
    it, which bounds what any audio model can reach on that dataset.

    Parameters
    ----------
    appeal : pd.Series
        Noise-free appeal indexed by a two-level MultiIndex whose level names are columns of ``X``:
        ``(track_id, region)`` or ``(song_id, region)``. This is data given at construction (like
        a deep model's spectrograms), not learned state.
    """

    def __init__(self, appeal: pd.Series) -> None:
        self.appeal = appeal

    def _lookup(self, X: pd.DataFrame) -> np.ndarray:
        names = [n or ("song_id", "region")[i] for i, n in enumerate(self.appeal.index.names)]
        keys = pd.MultiIndex.from_arrays([X[n].astype(str).to_numpy() for n in names])
        return self.appeal.reindex(keys).to_numpy(dtype=float)

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> Oracle:
        """Fit one least-squares line per target column on the rows with a known appeal.

        Parameters
        ----------
        X : pd.DataFrame
            Inputs with ``song_id`` and ``region``.
        y : pd.DataFrame
            Target columns, aligned with ``X``.

        Returns
        -------
        Oracle
            ``self``.
        """
        a = self._lookup(X)
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
            Rows with ``song_id`` and ``region``.

        Returns
        -------
        pd.DataFrame
            ``index = X.index``, the target columns.
        """
        a = self._lookup(X)[:, None]  # (N, 1)
        preds = self.coef_[None, :, 0] + self.coef_[None, :, 1] * a  # (N, T)
        preds = np.where(np.isfinite(preds), preds, self.fallback_[None, :])
        return pd.DataFrame(preds, index=X.index, columns=self.columns_)
