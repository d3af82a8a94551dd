"""Popularity targets: ``streams.parquet`` -> ``popularity.parquet``, one row per
(track, region, period).

Every column is defined in ``docs/targets.md``. In short: a track's *debut* in a (region, period)
chart series is the first chart of that series the track is on; its ``curve`` holds the streams
of the ``horizon`` periods from the debut on, with off-chart periods filled by the null policy;
``debut``/``peak``/``periods_on_chart`` come from :func:`curve_statistics` (which MP3 also
applies to predicted curves); ``sum`` is the streams of the charted periods of the window (a lower
bound, whatever the null policy) and ``sum_floor`` adds the chart's floor for every off-chart
period with data (an upper bound); the ``rank_*`` columns are the eight rank-trajectory metrics of
Lee & Lee (2018) computed on the rank score ``chart size + 1 - rank`` over the same window.

Censoring flags: ``left_censored`` (the debut falls within the first :data:`BURN_IN_DAYS` of the
series' data: the track may have charted before the data began), ``complete_horizon`` (the data
covers the whole window), ``reentry`` (the debut comes :data:`REENTRY_GAP_DAYS` or more after the
track first charted in any series, or after its release date when known: a revival, not a
release). With ``uncharted=True`` every catalog track with audio also gets a ``charted = False``
row in each series it never entered (the two-part targets: P(charts), then size given charting).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .charts import read_streams
from .errors import DataError
from .layout import DataLayout

NULL_POLICIES = ("missing", "zero", "floor")
PERIOD_DAYS = {"daily": 1, "weekly": 7}
BURN_IN_DAYS = 28
"""Default burn-in: a debut within the first 28 days (4 weekly or 28 daily periods) of a series'
data is left-censored. On the real 2019-2021 weekly charts, re-starting the data at a later week
shows that 92% of the apparent debuts in the first week, 18%, 11% and 10% in weeks 2-4, and
about 5% afterwards (the background of long-gap re-entries) had charted before (docs/targets.md)."""
REENTRY_GAP_DAYS = 365
"""Default re-entry gap: a debut a year or more after the track first charted anywhere (or after
its release) is a revival; on the real weekly charts those are Christmas songs and old hits."""
RANK_METRICS = [
    "rank_debut",
    "rank_max",
    "rank_mean",
    "rank_std",
    "rank_length",
    "rank_sum",
    "rank_skewness",
    "rank_kurtosis",
]
POPULARITY_COLUMNS = [
    "track_id",
    "region",
    "period",
    "debut_date",
    "event_timestamp",
    "curve",
    "sum",
    "sum_floor",
    "debut",
    "peak",
    "peak_rank",
    "debut_rank",
    "periods_on_chart",
    *RANK_METRICS,
    "left_censored",
    "complete_horizon",
    "reentry",
    "charted",
]


TARGETS = {
    "log1p_charted_sum": "sum",
    "log1p_floor_sum": "sum_floor",
    "log1p_debut": "debut",
}
"""The scalar model targets and the popularity statistic each is ``log1p`` of: the streams of
the charted periods within the horizon (a lower bound of the track's streams), the same with
every off-chart period inside the data filled with the chart's floor (an upper bound), and the
debut period's streams. See docs/targets.md."""


CHARTED = "charted"
"""The classification target of the two-part option: 1 when the track charted in the region
within the data, 0 for the ``charted = false`` rows (docs/targets.md, "Two-part targets")."""


def curve_columns(columns: Iterable[str]) -> list[str]:
    """The ``curve_<h>`` columns in period order (numeric, so ``curve_100`` follows ``curve_99``).

    Parameters
    ----------
    columns : Iterable[str]
        Column names.

    Returns
    -------
    list[str]
        The curve columns sorted by period.
    """
    found = [c for c in columns if c.startswith("curve_") and c[6:].isdigit()]
    return sorted(found, key=lambda c: int(c[6:]))


def curve_statistics(curve: np.ndarray, charted: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Summary targets of stream curves: ``sum``, ``debut``, ``peak``, ``periods_on_chart``.

    Parameters
    ----------
    curve
        Shape (N, H): raw streams per period since debut (not log), NaN where unknown.
    charted
        Optional bool (N, H): which periods count as "on the chart". Default: finite and > 0,
        which is exact for the ``missing`` and ``zero`` null policies. For ``floor`` curves pass
        the real chart mask; for predicted curves pass e.g. ``pred >= region floor``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``sum`` (float64: NaN-skipping sum, NaN when the row has no known value), ``debut``
        (float64: ``curve[:, 0]``), ``peak`` (float64: NaN-skipping max, NaN when nothing is
        known), ``periods_on_chart`` (int64: number of charted periods).
    """
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 2 or curve.shape[1] == 0:
        raise ValueError(f"curve must have shape (N, H) with H >= 1, got {curve.shape}")
    known = np.isfinite(curve)
    any_known = known.any(axis=1)
    total = np.where(any_known, np.where(known, curve, 0.0).sum(axis=1), np.nan)
    peak = np.where(any_known, np.where(known, curve, -np.inf).max(axis=1), np.nan)
    if charted is None:
        charted = known & (np.where(known, curve, 0.0) > 0)
    charted = np.asarray(charted, dtype=bool)
    if charted.shape != curve.shape:
        raise ValueError(f"charted has shape {charted.shape}, curve {curve.shape}")
    return {
        "sum": total,
        "debut": curve[:, 0].copy(),
        "peak": peak,
        "periods_on_chart": charted.sum(axis=1).astype(np.int64),
    }


def rank_trajectory_metrics(score: np.ndarray) -> dict[str, np.ndarray]:
    """The eight Lee & Lee (2018) metrics of rank-score trajectories.

    Parameters
    ----------
    score
        Shape (N, H): rank score ``chart size + 1 - rank`` per period since debut (200 for a
        number one on a top-200 chart, 1 for the last place), NaN where the track is not on the
        chart or the period is unknown.

    Returns
    -------
    dict of str to numpy.ndarray
        ``rank_debut`` (score at debut), ``rank_max`` (best score), ``rank_mean`` and
        ``rank_std`` (population std) of the charted scores, ``rank_length`` (charted periods,
        int64), ``rank_sum`` (sum of scores), ``rank_skewness`` and ``rank_kurtosis`` (excess) of
        the trajectory's shape in time: the moments of the period index ``t`` weighted by the
        score (positive skewness = an early peak and a long tail). Skewness and kurtosis are NaN
        when the weighted spread is zero (one charted period).
    """
    score = np.asarray(score, dtype=np.float64)
    on = np.isfinite(score)
    w = np.where(on, score, 0.0)
    length = on.sum(axis=1)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(length > 0, total / length, np.nan)
        var = np.where(
            length > 0, (np.where(on, score - mean[:, None], 0.0) ** 2).sum(1) / length, np.nan
        )
        t = np.arange(score.shape[1], dtype=np.float64)[None, :]
        mu = (w * t).sum(axis=1) / total
        d = t - mu[:, None]
        m2 = (w * d**2).sum(axis=1) / total
        m3 = (w * d**3).sum(axis=1) / total
        m4 = (w * d**4).sum(axis=1) / total
        flat = ~(m2 > 1e-12)
        skew = np.where(flat, np.nan, m3 / m2**1.5)
        kurt = np.where(flat, np.nan, m4 / m2**2 - 3.0)
    return {
        "rank_debut": score[:, 0].copy(),
        "rank_max": np.where(length > 0, np.where(on, score, -np.inf).max(axis=1), np.nan),
        "rank_mean": mean,
        "rank_std": np.sqrt(var),
        "rank_length": length.astype(np.int64),
        "rank_sum": np.where(length > 0, total, np.nan),
        "rank_skewness": skew,
        "rank_kurtosis": kurt,
    }


@dataclass(frozen=True)
class _SeriesGrid:
    """The chart periods of one (region, period) series."""

    first: np.datetime64  # chart_date of period 0
    step: int  # days per period
    last: int  # index of the last period with data
    has_chart: np.ndarray  # (last + 1,) bool
    floor: np.ndarray  # (last + 1,) lowest charted streams, NaN without a chart
    size: np.ndarray  # (last + 1,) chart size (largest rank), NaN without a chart

    def window(self, start: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Clipped absolute period indices (n, H) of windows starting at ``start`` and which of
        them are periods with chart data."""
        window = start[:, None] + np.arange(horizon)[None, :]
        clipped = np.clip(window, 0, self.last)
        return clipped, (window >= 0) & (window <= self.last) & self.has_chart[clipped]

    def date(self, index: np.ndarray) -> pd.DatetimeIndex:
        """chart_date of period ``index``."""
        return pd.to_datetime(self.first) + pd.to_timedelta(index * self.step, unit="D")


def _series_grid(rows: pd.DataFrame, region: str, period: str) -> tuple[_SeriesGrid, np.ndarray]:
    """The series' period grid and the period index of every row."""
    step = PERIOD_DAYS[period]
    dates = np.sort(rows["chart_date"].unique())
    first = dates[0]
    day_offsets = (rows["chart_date"].to_numpy() - first) // np.timedelta64(1, "D")
    if np.any(day_offsets % step):
        odd = sorted(
            {str(pd.Timestamp(d).date()) for d in rows["chart_date"][day_offsets % step != 0]}
        )
        raise DataError(
            f"streams.parquet: {region}/{period} chart dates are not on a {step}-day grid "
            f"starting {pd.Timestamp(first).date()}: e.g. {odd[:3]}"
        )
    idx = (day_offsets // step).astype(np.int64)
    last = int(idx.max())
    per_chart = pd.DataFrame(
        {"idx": idx, "streams": rows["streams"].to_numpy(), "rank": rows["rank"].to_numpy()}
    )
    by_chart = per_chart.groupby("idx").agg(floor=("streams", "min"), size=("rank", "max"))
    has_chart = np.zeros(last + 1, dtype=bool)
    has_chart[by_chart.index] = True
    floor = np.full(last + 1, np.nan)
    floor[by_chart.index] = by_chart["floor"].to_numpy(dtype=np.float64)
    size = np.full(last + 1, np.nan)
    size[by_chart.index] = by_chart["size"].to_numpy(dtype=np.float64)
    return _SeriesGrid(first, step, last, has_chart, floor, size), idx


@dataclass(frozen=True)
class _Context:
    """What every series needs to know beyond its own charts."""

    first_seen: pd.Series  # track_id -> first chart_date in any series
    release: pd.Series  # track_id -> release date (known ones only)
    uncharted: pd.Index  # tracks that get charted = False rows where they never charted
    burn_in_days: int
    reentry_gap_days: int

    def burn_in_periods(self, period: str) -> int:
        """Periods of the burn-in in a series of ``period``: ``ceil(days / step)``."""
        return -(-self.burn_in_days // PERIOD_DAYS[period])


def _days_after(later: pd.DatetimeIndex, earlier: pd.Series) -> np.ndarray:
    """``later - earlier`` in days (NaN where ``earlier`` is unknown)."""
    return (pd.Series(later) - earlier.to_numpy()).dt.days.to_numpy(dtype=float)


def _series_targets(
    rows: pd.DataFrame,
    region: str,
    period: str,
    horizon: int,
    null_policy: str,
    context: _Context,
) -> pd.DataFrame:
    """Targets of every track in one (region, period) chart series."""
    grid, idx = _series_grid(rows, region, period)
    codes, track_ids = pd.factorize(rows["track_id"], sort=True)
    n = len(track_ids)
    debut_idx = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(debut_idx, codes, idx)
    offset = idx - debut_idx[codes]
    keep = offset < horizon
    curve = np.full((n, horizon), np.nan)
    rank = np.full((n, horizon), np.nan)
    curve[codes[keep], offset[keep]] = rows["streams"].to_numpy(dtype=np.float64)[keep]
    rank[codes[keep], offset[keep]] = rows["rank"].to_numpy(dtype=np.float64)[keep]

    clipped, chart_known = grid.window(debut_idx, horizon)
    charted = np.isfinite(rank)
    off_chart = chart_known & ~charted
    charted_sum = np.where(charted, curve, 0.0).sum(axis=1)
    floor_fill = np.where(off_chart, grid.floor[clipped], 0.0).sum(axis=1)
    if null_policy == "zero":
        curve[off_chart] = 0.0
    elif null_policy == "floor":
        curve[off_chart] = grid.floor[clipped][off_chart]

    stats = curve_statistics(curve, charted)
    score = grid.size[clipped] + 1.0 - rank  # NaN where not charted
    metrics = rank_trajectory_metrics(score)
    with np.errstate(invalid="ignore"):
        peak_rank = np.where(charted, rank, np.inf).min(axis=1)

    debut_date = grid.date(debut_idx)
    ids = pd.Index(np.asarray(track_ids, dtype=object))
    after_first = _days_after(debut_date, context.first_seen.reindex(ids))
    after_release = _days_after(debut_date, context.release.reindex(ids))
    with np.errstate(invalid="ignore"):
        reentry = (after_first >= context.reentry_gap_days) | (
            after_release >= context.reentry_gap_days
        )
    out = pd.DataFrame(
        {
            "track_id": ids.to_numpy(),
            "region": region,
            "period": period,
            "debut_date": debut_date.astype("datetime64[ns]"),
            "curve": list(curve),
            "sum": charted_sum,
            "sum_floor": charted_sum + floor_fill,
            "debut": stats["debut"],
            "peak": stats["peak"],
            "periods_on_chart": stats["periods_on_chart"],
            "peak_rank": peak_rank.astype(np.int64),
            "debut_rank": rank[:, 0].astype(np.int64),
            **metrics,
            "left_censored": debut_idx < context.burn_in_periods(period),
            "complete_horizon": chart_known.all(axis=1),
            "reentry": reentry,
            "charted": True,
        }
    )
    uncharted = context.uncharted.difference(ids)
    if len(uncharted):
        out = pd.concat(
            [out, _uncharted_rows(uncharted, region, period, horizon, null_policy, grid, context)],
            ignore_index=True,
        )
    out["event_timestamp"] = (
        pd.DatetimeIndex(out["debut_date"]) + pd.Timedelta(days=horizon * grid.step)
    ).tz_localize("UTC")
    return out[POPULARITY_COLUMNS]


def _uncharted_rows(
    track_ids: pd.Index,
    region: str,
    period: str,
    horizon: int,
    null_policy: str,
    grid: _SeriesGrid,
    context: _Context,
) -> pd.DataFrame:
    """``charted = False`` rows of tracks never on this series' charts.

    The window starts at the track's release date when known, else at its first chart date in
    any series, else at the series' first period (clipped to the series' first period).
    """
    start_date = context.release.reindex(track_ids).fillna(context.first_seen.reindex(track_ids))
    days = (start_date - pd.Timestamp(grid.first)).dt.days.to_numpy(dtype=float)
    start = np.where(np.isfinite(days), np.floor(np.maximum(days, 0) / grid.step), 0)
    start = start.astype(np.int64)
    n = len(track_ids)
    clipped, chart_known = grid.window(start, horizon)
    curve = np.full((n, horizon), np.nan)
    if null_policy == "zero":
        curve[chart_known] = 0.0
    elif null_policy == "floor":
        curve[chart_known] = grid.floor[clipped][chart_known]
    any_known = chart_known.any(axis=1)
    metrics = rank_trajectory_metrics(np.full((n, horizon), np.nan))
    missing_rank = pd.array([pd.NA] * n, dtype="Int64")
    return pd.DataFrame(
        {
            "track_id": track_ids.to_numpy(dtype=object),
            "region": region,
            "period": period,
            "debut_date": grid.date(start).astype("datetime64[ns]"),
            "curve": list(curve),
            "sum": np.where(any_known, 0.0, np.nan),
            "sum_floor": np.where(
                any_known, np.where(chart_known, grid.floor[clipped], 0.0).sum(axis=1), np.nan
            ),
            "debut": np.full(n, np.nan),
            "peak": np.full(n, np.nan),
            "periods_on_chart": np.zeros(n, dtype=np.int64),
            "peak_rank": missing_rank,
            "debut_rank": missing_rank.copy(),
            **metrics,
            "left_censored": start < context.burn_in_periods(period),
            "complete_horizon": chart_known.all(axis=1),
            "reentry": False,
            "charted": False,
        }
    )


def _catalog_context(
    streams: pd.DataFrame,
    catalog: pd.DataFrame | None,
    uncharted: bool,
    burn_in_days: int,
    reentry_gap_days: int,
) -> _Context:
    first_seen = streams.groupby("track_id")["chart_date"].min()
    release = pd.Series(dtype="datetime64[ns]")
    tracks = pd.Index([], dtype=object)
    if catalog is not None:
        if "track_id" not in catalog.columns:
            raise DataError("catalog: needs a 'track_id' column")
        if "release_date" in catalog.columns:
            known = catalog.dropna(subset=["release_date"]).drop_duplicates("track_id")
            release = pd.Series(
                pd.to_datetime(known["release_date"]).to_numpy(), index=known["track_id"]
            )
        if uncharted:
            if "audio_path" not in catalog.columns:
                raise DataError("catalog: needs an 'audio_path' column for uncharted rows")
            with_audio = catalog.loc[catalog["audio_path"].notna(), "track_id"]
            tracks = pd.Index(sorted(set(with_audio)), dtype=object)
    elif uncharted:
        raise DataError("uncharted rows need the catalog (its tracks with audio)")
    return _Context(first_seen, release, tracks, int(burn_in_days), int(reentry_gap_days))


def compute_targets(
    streams: pd.DataFrame,
    horizon: int = 26,
    null_policy: str = "missing",
    *,
    catalog: pd.DataFrame | None = None,
    burn_in_days: int = BURN_IN_DAYS,
    reentry_gap_days: int = REENTRY_GAP_DAYS,
    uncharted: bool = False,
) -> pd.DataFrame:
    """Popularity targets from a streams frame (no I/O); see :func:`build_targets`.

    Parameters
    ----------
    streams
        Rows in the streams contract (``features.charts.STREAMS_COLUMNS``).
    horizon
        Number of periods H in each curve, counting the debut period.
    null_policy
        ``missing``, ``zero`` or ``floor``.
    catalog
        Optional catalog frame (``track_id``, ``release_date``, ``audio_path``): release dates
        add the release rule to ``reentry``; with ``uncharted`` its tracks with audio get
        ``charted = False`` rows.
    burn_in_days
        A debut within this many days of a series' first period is ``left_censored``
        (``ceil(days / step)`` periods; 0 flags nothing).
    reentry_gap_days
        A debut at least this many days after the track first charted in any series, or after
        its release date, is a ``reentry``.
    uncharted
        Add a ``charted = False`` row for every catalog track with audio in every series it
        never charted in (two-part targets).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`POPULARITY_COLUMNS`; ``curve`` holds float64 arrays of length H.
        ``peak_rank`` and ``debut_rank`` are nullable (``Int64``) when uncharted rows are added.
    """
    if null_policy not in NULL_POLICIES:
        raise DataError(f"unknown null policy {null_policy!r}; choose one of {NULL_POLICIES}")
    if int(horizon) < 1:
        raise DataError(f"horizon must be at least 1 period, got {horizon}")
    if int(burn_in_days) < 0 or int(reentry_gap_days) < 1:
        raise DataError(
            f"burn_in_days must be >= 0 and reentry_gap_days >= 1, got {burn_in_days} and "
            f"{reentry_gap_days}"
        )
    unknown = set(streams["period"]) - set(PERIOD_DAYS)
    if unknown:
        raise DataError(f"streams.parquet: unknown period(s) {sorted(unknown)}")
    if streams.empty:
        raise DataError("streams.parquet has no rows: ingest chart files first")
    context = _catalog_context(streams, catalog, uncharted, burn_in_days, reentry_gap_days)
    frames = [
        _series_targets(rows, region, period, int(horizon), null_policy, context)
        for (region, period), rows in streams.groupby(["region", "period"], sort=True)
    ]
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["region", "period", "debut_date", "track_id"], ignore_index=True)


def _to_arrow(table: pd.DataFrame, horizon: int) -> pa.Table:
    plain = table.drop(columns=["curve"])
    arrow = pa.Table.from_pandas(plain, preserve_index=False)
    values = np.concatenate(table["curve"].to_list()) if len(table) else np.empty(0)
    offsets = np.arange(len(table) + 1, dtype=np.int32) * horizon
    curve = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.float64()))
    return arrow.add_column(POPULARITY_COLUMNS.index("curve"), "curve", curve)


def build_targets(
    data_dir: Path | str,
    horizon: int = 26,
    null_policy: str = "missing",
    *,
    catalog: pd.DataFrame | None = None,
    burn_in_days: int = BURN_IN_DAYS,
    reentry_gap_days: int = REENTRY_GAP_DAYS,
    uncharted: bool = False,
) -> pd.DataFrame:
    """Build ``DIR/popularity.parquet`` from ``DIR/streams.parquet``.

    One row per (track_id, region, period); column definitions in ``docs/targets.md``. The
    file's footer metadata records ``horizon``, ``null_policy``, ``burn_in_days``,
    ``reentry_gap_days`` and ``uncharted``; ``curve`` is a ``list<float64>`` column of length
    ``horizon``.

    Parameters
    ----------
    data_dir
        The dataset folder.
    horizon
        Periods H per curve, counting the debut period (default 26: half a year of weeks).
    null_policy
        Value of off-chart periods inside the data: ``missing`` (NaN, masked in losses),
        ``zero``, or ``floor`` (the region's lowest charted streams that period: an upper bound).
        Periods without any chart data are NaN under every policy.
    catalog
        The catalog frame (release dates for ``reentry``; tracks with audio for ``uncharted``),
        see :func:`compute_targets`; default: the data dir's catalog when it has one.
    burn_in_days, reentry_gap_days, uncharted
        See :func:`compute_targets`.

    Returns
    -------
    pandas.DataFrame
        The table written.

    Raises
    ------
    DataError
        If streams.parquet is missing or empty, or the arguments are invalid.
    """
    layout = DataLayout(data_dir)
    if not layout.streams.exists():
        raise DataError(f"{layout.streams.path}: not found; run `benchmark ingest charts` first")
    settings = {
        "burn_in_days": int(burn_in_days),
        "reentry_gap_days": int(reentry_gap_days),
        "uncharted": bool(uncharted),
    }
    if catalog is None and layout.catalog.exists():
        catalog = layout.catalog.read()
    table = compute_targets(
        read_streams(layout), horizon=horizon, null_policy=null_policy, catalog=catalog, **settings
    )
    layout.popularity.write(
        _to_arrow(table, int(horizon)),
        metadata={
            "horizon": str(int(horizon)),
            "null_policy": null_policy,
            **{key: str(value).lower() for key, value in settings.items()},
        },
    )
    return table


__all__ = [
    "BURN_IN_DAYS",
    "CHARTED",
    "NULL_POLICIES",
    "POPULARITY_COLUMNS",
    "RANK_METRICS",
    "REENTRY_GAP_DAYS",
    "TARGETS",
    "build_targets",
    "compute_targets",
    "curve_columns",
    "curve_statistics",
    "rank_trajectory_metrics",
]
