"""Seeded splits grouped by song: every version of a song falls on one side of every split.

``SongGroupKFold`` deals songs to K folds; ``temporal_split`` trains on the songs that debuted first;
``group_holdout`` carves a validation set out of a training part for hyper-parameter search. All
work on positional row indices of one frame, so every model sees exactly the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..features.errors import DataError


@dataclass(frozen=True)
class Fold:
    """One outer split.

    Attributes
    ----------
    index : int
        Fold number, 0-based.
    train : np.ndarray
        Positional row indices of the training part (sorted).
    test : np.ndarray
        Positional row indices of the test part (sorted).
    """

    index: int
    train: np.ndarray
    test: np.ndarray


def _song_codes(songs: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted song ids and the code of each row."""
    values = np.asarray(songs).astype(str)
    if len(values) == 0:
        raise DataError("cannot split an empty table")
    uniques, codes = np.unique(values, return_inverse=True)
    return uniques, codes


class SongGroupKFold:
    """K-fold over songs: a seeded shuffle of the song ids dealt into K folds of near-equal size.

    Parameters
    ----------
    n_splits : int
        Number of folds (at least 2, at most the number of songs).
    seed : int
        Seed of the shuffle; the same songs and seed always give the same folds.
    """

    def __init__(self, n_splits: int = 5, seed: int = 0) -> None:
        self.n_splits = n_splits
        self.seed = seed

    def song_folds(self, songs: pd.Series | np.ndarray) -> np.ndarray:
        """Fold number of every row.

        Parameters
        ----------
        songs : pd.Series or np.ndarray
            Song id of every row.

        Returns
        -------
        np.ndarray
            int array, one fold number per row.
        """
        uniques, codes = _song_codes(songs)
        if not 2 <= self.n_splits <= len(uniques):
            raise DataError(
                f"cannot make {self.n_splits} song-grouped folds from {len(uniques)} songs"
            )
        order = np.random.default_rng(self.seed).permutation(len(uniques))
        fold_of_song = np.empty(len(uniques), dtype=int)
        fold_of_song[order] = np.arange(len(uniques)) % self.n_splits
        return fold_of_song[codes]

    def split(self, songs: pd.Series | np.ndarray) -> list[Fold]:
        """The K folds.

        Parameters
        ----------
        songs : pd.Series or np.ndarray
            Song id of every row.

        Returns
        -------
        list[Fold]
            One fold per split; test parts partition the rows.
        """
        fold = self.song_folds(songs)
        return [
            Fold(k, np.flatnonzero(fold != k), np.flatnonzero(fold == k))
            for k in range(self.n_splits)
        ]


def _naive_dates(values: pd.Series | np.ndarray) -> pd.Series:
    """Dates as a tz-naive UTC datetime Series (positional index)."""
    dates = pd.to_datetime(pd.Series(np.asarray(values)), utc=True)
    return dates.dt.tz_localize(None)


def temporal_split(
    songs: pd.Series | np.ndarray,
    debut_dates: pd.Series | np.ndarray,
    test_fraction: float = 0.2,
    known_dates: pd.Series | np.ndarray | None = None,
) -> Fold:
    """Train on the songs that debuted first, test on the rest.

    A song's date is its earliest debut over all its rows (versions and regions), so a song never
    straddles the split. Songs are ordered by (date, song id) and the last ``test_fraction`` of the
    songs form the test part. With ``known_dates`` (when each row's targets became known, debut +
    horizon), training rows whose targets were not known yet at the first test debut are left
    out (an embargo): a model trained then could not have seen them.

    Parameters
    ----------
    songs : pd.Series or np.ndarray
        Song id of every row.
    debut_dates : pd.Series or np.ndarray
        Debut date of every row.
    test_fraction : float
        Share of songs in the test part.
    known_dates : pd.Series or np.ndarray, optional
        When each row's targets became known; enables the embargo.

    Returns
    -------
    Fold
        ``index = 0``.
    """
    uniques, codes = _song_codes(songs)
    if len(uniques) < 2:
        raise DataError("a temporal split needs at least two songs")
    dates = pd.to_datetime(pd.Series(np.asarray(debut_dates)))
    if dates.isna().any():
        raise DataError("a temporal split needs a debut date on every row")
    first = pd.Series(dates.to_numpy()).groupby(codes).min().to_numpy()  # per song code
    order = np.lexsort((uniques, first))
    n_test = min(len(uniques) - 1, max(1, round(test_fraction * len(uniques))))
    is_test_song = np.zeros(len(uniques), dtype=bool)
    is_test_song[order[len(uniques) - n_test :]] = True
    test = is_test_song[codes]
    train = ~test
    if known_dates is not None:
        known = _naive_dates(known_dates)
        train &= (known <= _naive_dates(debut_dates)[test].min()).to_numpy()
        if not train.any():
            raise DataError(
                "temporal split: no training row's targets were known before the first test "
                "debut; lower test_fraction or use a shorter horizon"
            )
    return Fold(0, np.flatnonzero(train), np.flatnonzero(test))


def group_holdout(
    songs: pd.Series | np.ndarray, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a song-grouped validation set out of a training part.

    Parameters
    ----------
    songs : pd.Series or np.ndarray
        Song id of every row of the training part.
    fraction : float
        Share of songs held out.
    seed : int
        Seed of the song shuffle.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        Positional indices (into ``songs``) of the fitting rows and of the validation rows.
    """
    uniques, codes = _song_codes(songs)
    if len(uniques) < 2:
        raise DataError("a validation holdout needs at least two songs")
    n_val = min(len(uniques) - 1, max(1, round(fraction * len(uniques))))
    held = np.zeros(len(uniques), dtype=bool)
    held[np.random.default_rng(seed).permutation(len(uniques))[:n_val]] = True
    val = held[codes]
    return np.flatnonzero(~val), np.flatnonzero(val)


def inner_splits(
    songs: pd.Series | np.ndarray, inner_folds: int, fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Song-grouped (fit, validation) index pairs inside one outer training part.

    Parameters
    ----------
    songs : pd.Series or np.ndarray
        Song id of every row of the training part.
    inner_folds : int
        0: one holdout of ``fraction``; k >= 2: song-grouped k-fold.
    fraction : float
        Holdout share when ``inner_folds`` is 0.
    seed : int
        Seed.

    Returns
    -------
    list[tuple[np.ndarray, np.ndarray]]
        Positional indices into ``songs``.
    """
    if inner_folds == 0:
        return [group_holdout(songs, fraction, seed)]
    return [(f.train, f.test) for f in SongGroupKFold(inner_folds, seed).split(songs)]


def make_splits(
    frame: pd.DataFrame,
    split: str = "kfold",
    n_folds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> list[Fold]:
    """The outer folds every model of a benchmark run uses.

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with ``song_id`` (and ``debut_date`` for the temporal split).
    split : str
        ``kfold`` or ``temporal``.
    n_folds : int
        Folds for ``kfold``.
    seed : int
        Seed for ``kfold``.
    test_fraction : float
        Test share for ``temporal``.

    Returns
    -------
    list[Fold]
        The folds.
    """
    if split == "kfold":
        return SongGroupKFold(n_folds, seed).split(frame["song_id"])
    if split == "temporal":
        if "debut_date" not in frame:
            raise DataError("a temporal split needs a debut_date column")
        known = frame["known_date"] if "known_date" in frame.columns else None
        return [temporal_split(frame["song_id"], frame["debut_date"], test_fraction, known)]
    raise DataError(f"unknown split {split!r}; choose kfold or temporal")


def split_table(frame: pd.DataFrame, folds: list[Fold]) -> pd.DataFrame:
    """The split as a table (the MLflow artifact): one row per data row and fold.

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with ``track_id``, ``song_id`` and ``region``.
    folds : list[Fold]
        The folds.

    Returns
    -------
    pd.DataFrame
        Columns ``track_id``, ``song_id``, ``region``, ``test_fold`` (the fold whose test part holds
        the row; -1 when the row is only ever in training).
    """
    test_fold = np.full(len(frame), -1, dtype=int)
    for fold in folds:
        test_fold[fold.test] = fold.index
    out = frame[["track_id", "song_id", "region"]].reset_index(drop=True).copy()
    out["test_fold"] = test_fold
    return out
