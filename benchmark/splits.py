"""Seeded grouped splits: every member of a group falls on one side of every split.

The unit that must not straddle a split is chosen by ``group`` (:data:`GROUPINGS`):

- ``song`` (default): ``song_id`` of the catalog; no version of a test song (remaster, live,
  remix, "feat." variant) is seen in training.
- ``artist``: connected components of tracks that share a credited artist or a ``song_id``
  (:func:`artist_groups`): no artist of a test track is seen in training, so a model cannot score
  by recognising an artist's production. A track by A feat. B joins A's and B's groups; songs
  never straddle (song groups are nested in artist groups). A cover by another artist stays in
  its performer's group, not the original's: the catalog cannot tell a cover from an unrelated
  song with the same title, and merging by title would chain unrelated artists; a mapping CSV
  that gives the cover the original's ``song_id`` joins the two.
- ``main_artist``: the same components over the *main* (first-credited) artist of each track and
  its song id only: a featured guest's own tracks may fall on the other side. Much finer than
  ``artist`` where collaborations chain many artists into one component (on the real 2019-2021
  weekly charts, ``artist`` puts 49% of the tracks into one component; see docs/targets.md).
- ``track``: ``track_id``; versions of one song may straddle (to measure what song grouping is
  worth).
- ``row``: every (track, region) row alone; a track may be in training in one region and tested
  in another (the careless split, for the ``grouping`` experiment only).

``SongGroupKFold`` deals groups to K folds; ``temporal_split`` trains on the groups that debuted
first; ``group_holdout`` carves a validation set out of a training part for hyper-parameter
search. All take one group label per row (:func:`group_labels`) and work on positional row indices
of one frame, so every model sees exactly the same split. :func:`describe_groups` summarises the
groups for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..features.catalog import credited_artists, normalise_artist
from ..features.errors import DataError

GROUPINGS = ("song", "artist", "main_artist", "track", "row")
"""Split units; each is nested in the previous coarser one:
``artist`` >= ``main_artist`` >= ``song`` >= ``track`` >= ``row``."""


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


def artist_groups(
    artists: pd.Series | np.ndarray,
    titles: pd.Series | np.ndarray | None = None,
    songs: pd.Series | np.ndarray | None = None,
) -> np.ndarray:
    """Artist group of every row: connected components over credited artists and songs.

    Two rows are in one group when they share a credited artist
    (:func:`features.catalog.credited_artists` of the artist field and the title) or a song id,
    directly or through a chain of such links. Title credits are split at ``&``/``and``/``x``
    unless the whole name is some row's folded main artist.

    Parameters
    ----------
    artists : pd.Series or np.ndarray
        Artist field of every row (as charted); a missing artist links the row by its song only.
    titles : pd.Series or np.ndarray, optional
        Title of every row (adds the collaborators it names).
    songs : pd.Series or np.ndarray, optional
        Song id of every row (versions of a song always share a group).

    Returns
    -------
    np.ndarray
        One label per row (object array): ``"artist:<name>"``, the alphabetically first credited
        name of the group, or ``"song:<id>"`` for a group without any artist.
    """
    artist_values = pd.Series(np.asarray(artists, dtype=object))
    n = len(artist_values)
    if n == 0:
        raise DataError("cannot group an empty table")
    title_values = (
        pd.Series(np.asarray(titles, dtype=object)) if titles is not None else pd.Series([None] * n)
    )
    song_values = pd.Series(np.asarray(songs, dtype=object)) if songs is not None else None
    present = artist_values.notna() & (artist_values.astype(str).str.strip() != "")
    known = frozenset(normalise_artist(a) for a in artist_values[present].unique())

    node_of: dict[str, int] = {}
    edge_rows: list[int] = []
    edge_nodes: list[int] = []
    cache: dict[tuple[str, object], list[str]] = {}
    for i in range(n):
        names: list[str] = []
        if present.iloc[i]:
            key = (str(artist_values.iloc[i]), title_values.iloc[i])
            if key not in cache:
                cache[key] = [f"artist:{a}" for a in credited_artists(key[0], key[1], known)]
            names = cache[key]
        if song_values is not None and pd.notna(song_values.iloc[i]):
            names = [*names, f"song:{song_values.iloc[i]}"]
        if not names:
            names = [f"row:{i}"]
        for name in names:
            edge_rows.append(i)
            edge_nodes.append(node_of.setdefault(name, len(node_of)))
    # bipartite graph rows <-> names, as one square adjacency over rows and name nodes
    size = n + len(node_of)
    graph = coo_matrix(
        (np.ones(len(edge_rows)), (np.asarray(edge_rows), n + np.asarray(edge_nodes))),
        shape=(size, size),
    )
    _, component = connected_components(graph, directed=False)
    names_by_index = np.array(list(node_of), dtype=object)
    label_of_component: dict[int, str] = {}
    for node, name in enumerate(names_by_index):
        c = int(component[n + node])
        best = label_of_component.get(c)
        # artist names name a group before song ids; then the alphabetically first
        rank = (not name.startswith("artist:"), name)
        if best is None or rank < (not best.startswith("artist:"), best):
            label_of_component[c] = name
    return np.array([label_of_component[int(c)] for c in component[:n]], dtype=object)


def group_labels(frame: pd.DataFrame, group: str = "song") -> np.ndarray:
    """The split unit of every row of ``frame`` (see :data:`GROUPINGS`).

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with ``song_id`` (``song``), ``track_id`` (``track``), or ``artist`` and optionally
        ``title`` and ``song_id`` (``artist``, ``main_artist``).
    group : str
        One of :data:`GROUPINGS`.

    Returns
    -------
    np.ndarray
        One label per row (strings).

    Raises
    ------
    DataError
        For an unknown grouping or a missing column.
    """
    if group not in GROUPINGS:
        raise DataError(f"unknown grouping {group!r}; choose one of {', '.join(GROUPINGS)}")
    needed = {"song": "song_id", "track": "track_id"}.get(group, "artist")
    if group == "row":
        needed = None
    if needed is not None and needed not in frame.columns:
        raise DataError(f"grouping by {group} needs a {needed!r} column")
    if group == "song":
        return frame["song_id"].astype(str).to_numpy(dtype=object)
    if group == "track":
        return frame["track_id"].astype(str).to_numpy(dtype=object)
    if group == "row":
        return np.array([f"row:{i}" for i in range(len(frame))], dtype=object)
    songs = frame["song_id"] if "song_id" in frame.columns else None
    if group == "main_artist":
        main = frame["artist"].map(lambda a: normalise_artist(a) if pd.notna(a) else a)
        return artist_groups(main, None, songs)
    titles = frame["title"] if "title" in frame.columns else None
    return artist_groups(frame["artist"], titles, songs)


@dataclass(frozen=True)
class GroupSummary:
    """How a table's rows fall into split groups (for the report).

    Attributes
    ----------
    n_rows : int
        Rows.
    n_groups : int
        Groups.
    largest : int
        Rows in the largest group.
    median : float
        Median rows per group.
    share_largest : float
        Share of the rows in the largest group.
    singletons : int
        Groups of one row.
    """

    n_rows: int
    n_groups: int
    largest: int
    median: float
    share_largest: float
    singletons: int

    def line(self, group: str) -> str:
        """One report line, e.g. ``"artist groups: 120 (largest 40 rows = 7.6%, median 2)"``."""
        return (
            f"{group} groups: {self.n_groups:,} for {self.n_rows:,} rows (largest "
            f"{self.largest:,} rows = {self.share_largest:.1%}, median {self.median:g}, "
            f"{self.singletons:,} of one row)"
        )


def describe_groups(labels: pd.Series | np.ndarray) -> GroupSummary:
    """Count and size distribution of the groups of one split unit.

    Parameters
    ----------
    labels : pd.Series or np.ndarray
        Group label of every row (:func:`group_labels`).

    Returns
    -------
    GroupSummary
        Group count and sizes.
    """
    _, sizes = np.unique(np.asarray(labels).astype(str), return_counts=True)
    if len(sizes) == 0:
        raise DataError("cannot describe the groups of an empty table")
    return GroupSummary(
        n_rows=int(sizes.sum()),
        n_groups=len(sizes),
        largest=int(sizes.max()),
        median=float(np.median(sizes)),
        share_largest=float(sizes.max() / sizes.sum()),
        singletons=int((sizes == 1).sum()),
    )


def _song_codes(songs: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted song ids and the code of each row."""
    values = np.asarray(songs).astype(str)
    if len(values) == 0:
        raise DataError("cannot split an empty table")
    uniques, codes = np.unique(values, return_inverse=True)
    return uniques, codes


class SongGroupKFold:
    """K-fold over groups (songs by default): a seeded deal of the group labels into K folds.

    Parameters
    ----------
    n_splits : int
        Number of folds (at least 2, at most the number of groups).
    seed : int
        Seed of the shuffle; the same labels and seed always give the same folds.
    balance : str
        ``groups``: a seeded shuffle of the groups dealt round robin (fold sizes differ by at most
        one group; right when groups are small, as songs are). ``rows``: groups from the largest
        down (ties in seeded random order), each to the fold with the fewest rows so far (right
        when some groups are large, as artist components are: a group larger than a fold's share
        becomes a fold of its own).
    """

    def __init__(self, n_splits: int = 5, seed: int = 0, balance: str = "groups") -> None:
        self.n_splits = n_splits
        self.seed = seed
        self.balance = balance

    def song_folds(self, songs: pd.Series | np.ndarray) -> np.ndarray:
        """Fold number of every row.

        Parameters
        ----------
        songs : pd.Series or np.ndarray
            Group label (song id by default) of every row.

        Returns
        -------
        np.ndarray
            int array, one fold number per row.
        """
        uniques, codes = _song_codes(songs)
        if not 2 <= self.n_splits <= len(uniques):
            raise DataError(f"cannot make {self.n_splits} grouped folds from {len(uniques)} groups")
        if self.balance not in ("groups", "rows"):
            raise DataError(f"unknown fold balance {self.balance!r}; choose groups or rows")
        order = np.random.default_rng(self.seed).permutation(len(uniques))
        fold_of_song = np.empty(len(uniques), dtype=int)
        if self.balance == "groups":
            fold_of_song[order] = np.arange(len(uniques)) % self.n_splits
            return fold_of_song[codes]
        sizes = np.bincount(codes, minlength=len(uniques))
        rows_in_fold = np.zeros(self.n_splits, dtype=np.int64)
        for group in order[np.argsort(-sizes[order], kind="stable")]:
            fold = int(np.argmin(rows_in_fold))
            fold_of_song[group] = fold
            rows_in_fold[fold] += sizes[group]
        return fold_of_song[codes]

    def split(self, songs: pd.Series | np.ndarray) -> list[Fold]:
        """The K folds.

        Parameters
        ----------
        songs : pd.Series or np.ndarray
            Group label (song id by default) of every row.

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
    """Train on the songs (groups) that debuted first, test on the rest.

    A song's date is its earliest debut over all its rows (versions and regions), so a song never
    straddles the split; the same holds for any group labels passed instead of song ids. Songs are ordered by (date, song id) and the last ``test_fraction`` of the
    songs form the test part. With ``known_dates`` (when each row's targets became known, debut +
    horizon), training rows whose targets were not known yet at the first test debut are left
    out (an embargo): a model trained then could not have seen them.

    Parameters
    ----------
    songs : pd.Series or np.ndarray
        Group label (song id by default) of every row.
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
        Group label (song id by default) of every row of the training part.
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
        Group label (song id by default) of every row of the training part.
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
    *,
    group: str = "song",
) -> list[Fold]:
    """The outer folds every model of a benchmark run uses.

    Parameters
    ----------
    frame : pd.DataFrame
        Rows with the columns :func:`group_labels` needs (``song_id`` by default) and
        ``debut_date`` (and optionally ``known_date``) for the temporal split.
    split : str
        ``kfold`` or ``temporal``.
    n_folds : int
        Folds for ``kfold``.
    seed : int
        Seed for ``kfold``.
    test_fraction : float
        Test share for ``temporal``.
    group : str
        The unit that never straddles a split (:data:`GROUPINGS`). ``kfold`` deals ``artist`` and
        ``main_artist`` groups balancing rows, the others balancing groups.

    Returns
    -------
    list[Fold]
        The folds.
    """
    if split not in ("kfold", "temporal"):
        raise DataError(f"unknown split {split!r}; choose kfold or temporal")
    labels = group_labels(frame, group)
    if split == "kfold":
        balance = "rows" if group in ("artist", "main_artist") else "groups"
        return SongGroupKFold(n_folds, seed, balance).split(labels)
    if "debut_date" not in frame:
        raise DataError("a temporal split needs a debut_date column")
    known = frame["known_date"] if "known_date" in frame.columns else None
    return [temporal_split(labels, frame["debut_date"], test_fraction, known)]


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
