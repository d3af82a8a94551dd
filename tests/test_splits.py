"""Grouped splits: no song (nor any version of it), or no artist, on both sides; seeded; temporal
order; artist components on a hand-made example and on the real weekly charts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_data

from musicpop.benchmark.splits import (
    GROUPINGS,
    SongGroupKFold,
    artist_groups,
    describe_groups,
    group_holdout,
    group_labels,
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
    with pytest.raises(DataError, match="2 groups"):
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


# --- artist groups ---------------------------------------------------------------------------

HAND = pd.DataFrame(
    [
        # track, artist, title, song_id
        ("t1", "Alma", "First Light", "s1"),
        ("t2", "Bo", "Second (feat. Alma)", "s2"),  # featured: joins Alma
        ("t3", "Cleo", "Third", "s3"),
        ("t4", "Dex, Cleo", "Fourth", "s4"),  # new CSV lists every artist: joins Cleo
        ("t5", "Eli", "Fifth", "s5"),  # alone
        ("t6", "Fay", "First Light - Live", "s1"),  # a cover mapped onto s1: joins Alma by song
        ("t7", "Gus & Hal", "Seventh", "s7"),  # a duo is one act
        ("t8", "Ivy", "Eighth (feat. Gus & Hal)", "s8"),  # the featured duo, kept whole
        ("t9", "Jon", "Ninth (with Kit & Lou)", "s9"),  # a credit list: split
        ("t10", "Lou", "Tenth", "s10"),  # joins Jon through Lou
        ("t11", "Eli", "Fifth - Acoustic", "s5"),  # Eli again
        ("t12", "Hal", "Twelfth", "s12"),  # Hal alone is not the duo "Gus & Hal"
    ],
    columns=["track_id", "artist", "title", "song_id"],
)


def _partition(labels: np.ndarray) -> set[frozenset[str]]:
    tracks = HAND["track_id"].to_numpy()
    return {frozenset(tracks[labels == g]) for g in np.unique(labels)}


def test_artist_components_by_hand() -> None:
    labels = group_labels(HAND, "artist")
    assert _partition(labels) == {
        frozenset({"t1", "t2", "t6"}),
        frozenset({"t3", "t4"}),
        frozenset({"t5", "t11"}),
        frozenset({"t7", "t8"}),
        frozenset({"t9", "t10"}),
        frozenset({"t12"}),
    }
    assert labels[0] == "artist:alma" and labels[8] == "artist:jon"  # first name in the group
    # main artists only: featured guests no longer join, songs still do
    assert _partition(group_labels(HAND, "main_artist")) == {
        frozenset({"t1", "t6"}),
        *(frozenset({t}) for t in ("t2", "t3", "t4", "t7", "t8", "t9", "t10", "t12")),
        frozenset({"t5", "t11"}),
    }
    # without song ids, the mapped cover stands alone
    alone = artist_groups(HAND["artist"], HAND["title"])
    assert _partition(alone) >= {frozenset({"t1", "t2"}), frozenset({"t6"})}


def test_groupings_are_nested_and_named() -> None:
    frame = HAND.assign(region="se")
    counts = {g: len(np.unique(group_labels(frame, g))) for g in GROUPINGS}
    assert counts == {"artist": 6, "main_artist": 10, "song": 10, "track": 12, "row": 12}
    with pytest.raises(DataError, match="unknown grouping"):
        group_labels(frame, "label")
    with pytest.raises(DataError, match="'artist' column"):
        group_labels(frame.drop(columns="artist"), "artist")


def _credited(frame: pd.DataFrame, rows: np.ndarray) -> set[str]:
    """Artists credited on ``rows``; featured acts that are some row's main artist kept whole."""
    from musicpop.features.catalog import credited_artists, normalise_artist

    known = set(frame["artist"].map(normalise_artist))
    names: set[str] = set()
    for artist, title in zip(frame["artist"].iloc[rows], frame["title"].iloc[rows], strict=True):
        names.update(credited_artists(artist, title, known))
    return names


@pytest.mark.parametrize("split", ["kfold", "temporal"])
def test_no_artist_on_both_sides_of_any_fold(split: str) -> None:
    rng = np.random.default_rng(0)
    names = [f"Art{i}" for i in range(40)]
    rows = []
    for song in range(150):
        main = names[rng.integers(0, 40)]
        title = f"Song {song}"
        if rng.random() < 0.15:  # a few collaborations chain artists together
            title += f" (feat. {names[rng.integers(0, 40)]})"
        for region in ("se", "de"):
            rows.append((f"tr{song}", main, title, f"s{song}", region, 3 * song))
    frame = pd.DataFrame(rows, columns=["track_id", "artist", "title", "song_id", "region", "d"])
    frame["debut_date"] = pd.Timestamp("2020-01-03") + pd.to_timedelta(frame["d"], unit="D")
    folds = make_splits(frame, split, n_folds=4, seed=2, test_fraction=0.3, group="artist")
    for fold in folds:
        assert len(fold.test) and len(fold.train)
        assert not _credited(frame, fold.train) & _credited(frame, fold.test)
        assert not _songs(frame, fold.train) & _songs(frame, fold.test)
    if split == "kfold":
        assert sorted(np.concatenate([f.test for f in folds])) == list(range(len(frame)))


def test_row_balanced_folds_give_a_giant_group_its_own_fold() -> None:
    labels = np.array(["giant"] * 50 + [f"g{i}" for i in range(50)])
    fold = SongGroupKFold(4, seed=0, balance="rows").song_folds(labels)
    sizes = np.bincount(fold)
    assert sizes.max() == 50 and (fold[:50] == fold[0]).all()
    assert sorted(sizes) == [16, 17, 17, 50]
    # dealing groups instead puts the giant group beside 12 others
    dealt = SongGroupKFold(4, seed=0).song_folds(labels)
    assert np.bincount(dealt).max() >= 50 + 11
    again = SongGroupKFold(4, seed=0, balance="rows").song_folds(labels)
    np.testing.assert_array_equal(fold, again)
    assert (SongGroupKFold(4, seed=1, balance="rows").song_folds(labels) != fold).any()


def test_track_and_row_groupings_let_versions_straddle(frame: pd.DataFrame) -> None:
    for group in ("track", "row"):
        folds = make_splits(frame, "kfold", n_folds=5, seed=0, group=group)
        straddling = [bool(_songs(frame, f.train) & _songs(frame, f.test)) for f in folds]
        assert any(straddling)
        for fold in folds:
            tracks = frame["track_id"].to_numpy()
            if group == "track":
                assert not set(tracks[fold.train]) & set(tracks[fold.test])
    row_folds = make_splits(frame, "kfold", n_folds=5, seed=0, group="row")
    tracks = frame["track_id"].to_numpy()
    assert any(set(tracks[f.train]) & set(tracks[f.test]) for f in row_folds)


def test_describe_groups_by_hand() -> None:
    summary = describe_groups(np.array(["a", "a", "a", "b", "c", "c"]))
    assert (summary.n_rows, summary.n_groups, summary.largest, summary.singletons) == (6, 3, 3, 1)
    assert summary.median == 2.0 and summary.share_largest == 0.5
    assert "3 for 6 rows" in summary.line("song") and "50.0%" in summary.line("song")


@pytest.mark.slow
@pytest.mark.integration
def test_artist_groups_on_the_real_weekly_charts(shared_data: Path, tmp_path: Path) -> None:
    """All 12 regions of the 2019-2021 weekly charts, through the real ingestion."""
    from musicpop.features.charts import ingest_charts
    from musicpop.features.targets import compute_targets

    data = tmp_path / "weekly"
    ingest_charts([shared_data / "charts" / "spotifycharts-weekly-2019-2021"], data, progress=False)
    catalog = pd.read_parquet(data / "catalog.parquet")
    summaries = {g: describe_groups(group_labels(catalog, g)) for g in GROUPINGS}
    assert summaries["song"].n_groups == catalog["song_id"].nunique() > 10_000
    n = [summaries[g].n_groups for g in ("artist", "main_artist", "song", "track")]
    assert n == sorted(n) and n[0] < n[1] < n[2] < n[3] == len(catalog)
    labels = pd.Series(group_labels(catalog, "artist"), index=catalog["track_id"])
    by_song = labels.groupby(catalog["song_id"].to_numpy()).nunique()
    assert (by_song == 1).all()  # songs are nested in artist groups
    # "Sunflower" (Post Malone with Swae Lee) joins Post Malone's and Swae Lee's own tracks
    swae = catalog["artist"].eq("Swae Lee") & ~catalog["title"].str.contains("Sunflower")
    post = catalog["artist"].eq("Post Malone")
    assert swae.any() and post.any()
    assert labels[catalog.loc[swae, "track_id"]].nunique() == 1
    assert labels[catalog.loc[swae, "track_id"]].iloc[0] == labels["3KkXRkHbMCARz0aVfEt68P"]
    assert labels[catalog.loc[post, "track_id"]].iloc[0] == labels["3KkXRkHbMCARz0aVfEt68P"]

    # an artist-grouped 5-fold over the (track, region) rows of three regions
    streams = pd.read_parquet(data / "streams.parquet")
    rows = compute_targets(streams[streams["region"].isin(["se", "br", "jp"])], horizon=4)
    rows = rows.merge(catalog[["track_id", "song_id", "artist", "title"]], on="track_id")
    folds = make_splits(rows, "kfold", n_folds=5, seed=0, group="artist")
    for fold in folds:
        assert not _credited(rows, fold.train) & _credited(rows, fold.test)
    sizes = sorted(len(f.test) for f in folds)
    giant = describe_groups(group_labels(rows, "artist")).largest
    assert sizes[-1] >= giant and sizes[0] > 0
