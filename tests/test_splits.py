"""Song-grouped splits: no song (nor any version of it) on both sides, seeded, temporal order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_data

from musicpop.benchmark.splits import (
    SongGroupKFold,
    group_holdout,
    inner_splits,
    make_splits,
    split_table,
    temporal_split,
)
from musicpop.features.errors import DataError


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_data(n_songs=60, n_features=3, seed=3).frame


def _songs(frame: pd.DataFrame, rows: np.ndarray) -> set[str]:
    return set(frame["song_id"].iloc[rows])


def test_synthetic_frame_has_versions_in_several_regions(frame: pd.DataFrame) -> None:
    tracks_per_song = frame.groupby("song_id")["track_id"].nunique()
    assert (tracks_per_song > 1).sum() >= 10  # the grouping test below is meaningful
    assert frame.groupby("track_id")["region"].nunique().max() > 1


@pytest.mark.parametrize("n_splits", [2, 5])
def test_kfold_never_puts_a_song_on_both_sides(frame: pd.DataFrame, n_splits: int) -> None:
    folds = SongGroupKFold(n_splits, seed=1).split(frame["song_id"])
    assert len(folds) == n_splits
    for fold in folds:
        assert not _songs(frame, fold.train) & _songs(frame, fold.test)
        # every version of a test song is in the test part
        test_songs = _songs(frame, fold.test)
        assert set(frame.index[frame["song_id"].isin(test_songs)]) == set(fold.test)
    all_test = np.concatenate([f.test for f in folds])
    assert sorted(all_test) == list(range(len(frame)))  # test parts partition the rows


def test_kfold_is_seeded(frame: pd.DataFrame) -> None:
    a = SongGroupKFold(4, seed=7).song_folds(frame["song_id"])
    b = SongGroupKFold(4, seed=7).song_folds(frame["song_id"])
    c = SongGroupKFold(4, seed=8).song_folds(frame["song_id"])
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    counts = np.bincount(pd.Series(a).groupby(frame["song_id"].to_numpy()).first())
    assert counts.max() - counts.min() <= 1  # songs dealt evenly


def test_kfold_needs_enough_songs() -> None:
    with pytest.raises(DataError, match="songs"):
        SongGroupKFold(5).split(pd.Series(["a", "a", "b"]))


def test_temporal_split_trains_on_earlier_debuts(frame: pd.DataFrame) -> None:
    fold = temporal_split(frame["song_id"], frame["debut_date"], test_fraction=0.25)
    assert not _songs(frame, fold.train) & _songs(frame, fold.test)
    first = frame.groupby("song_id")["debut_date"].min()
    latest_train = first[sorted(_songs(frame, fold.train))].max()
    earliest_test = first[sorted(_songs(frame, fold.test))].min()
    assert latest_train <= earliest_test
    assert len(_songs(frame, fold.test)) == 15  # 25% of 60 songs
    assert len(fold.train) + len(fold.test) == len(frame)


def test_holdout_and_inner_folds_are_grouped(frame: pd.DataFrame) -> None:
    songs = frame["song_id"]
    fit, val = group_holdout(songs, 0.2, seed=0)
    assert not _songs(frame, fit) & _songs(frame, val)
    assert len(_songs(frame, val)) == 12
    pairs = inner_splits(songs, 3, 0.2, seed=0)
    assert len(pairs) == 3
    for fit, val in pairs:
        assert not _songs(frame, fit) & _songs(frame, val)


def test_make_splits_and_split_table(frame: pd.DataFrame) -> None:
    folds = make_splits(frame, "kfold", n_folds=3, seed=0)
    table = split_table(frame, folds)
    assert list(table.columns) == ["track_id", "song_id", "region", "test_fold"]
    assert (table.groupby("song_id")["test_fold"].nunique() == 1).all()
    temporal = split_table(frame, make_splits(frame, "temporal", test_fraction=0.2))
    assert set(temporal["test_fold"]) == {-1, 0}
    with pytest.raises(DataError, match="unknown split"):
        make_splits(frame, "random")


def test_temporal_split_embargoes_training_rows_whose_targets_were_not_known_yet() -> None:
    debut = pd.to_datetime(["2020-01-03", "2020-01-10", "2020-03-06", "2020-05-01", "2020-06-05"])
    songs = np.array(["a", "b", "c", "d", "e"])
    known = debut + pd.Timedelta(weeks=9)  # targets known 9 weeks after the debut
    fold = temporal_split(songs, debut, test_fraction=0.4, known_dates=known)
    cutoff = debut[fold.test].min()
    assert set(songs[fold.test]) == {"d", "e"}
    # "c" debuted before the test songs, but its 9-week targets end after the first test debut
    assert set(songs[fold.train]) == {"a", "b"}
    assert (known[fold.train] <= cutoff).all()
    without = temporal_split(songs, debut, test_fraction=0.4)
    assert set(songs[without.train]) == {"a", "b", "c"}
