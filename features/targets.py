"""Popularity targets: ``streams.parquet`` -> ``popularity.parquet``, one row per
(track, region, period).

Every column is defined in ``docs/targets.md``. In short: a track's *debut* in a (region, period)
chart series is the first chart of that series the track is on; its ``curve`` holds the streams
of the ``horizon`` periods from the debut on, with off-chart periods filled by the null policy;
``sum``/``debut``/``peak``/``periods_on_chart`` come from :func:`curve_statistics` (which MP3 also
applies to predicted curves); the ``rank_*`` columns are the eight rank-trajectory metrics of
Lee & Lee (2018) computed on the rank score ``chart size + 1 - rank`` over the same window.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .charts import read_streams
from .errors import DataError
from .layout import DataLayout

NULL_POLICIES = ("missing", "zero", "floor")
PERIOD_DAYS = {"daily": 1, "weekly": 7}
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
    "debut",
    "peak",
    "peak_rank",
    "debut_rank",
    "periods_on_chart",
    *RANK_METRICS,
    "left_censored",
    "complete_horizon",
]


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


def _series_targets(
    rows: pd.DataFrame, region: str, period: str, horizon: int, null_policy: str
) -> pd.DataFrame:
    """Targets of every track in one (region, period) chart series."""
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

    window = debut_idx[:, None] + np.arange(horizon)[None, :]  # (n, H) absolute period index
    in_data = window <= last
    clipped = np.minimum(window, last)
    chart_known = in_data & has_chart[clipped]
    charted = np.isfinite(rank)
    off_chart = chart_known & ~charted
    if null_policy == "zero":
        curve[off_chart] = 0.0
    elif null_policy == "floor":
        curve[off_chart] = floor[clipped][off_chart]

    stats = curve_statistics(curve, charted)
    score = size[clipped] + 1.0 - rank  # NaN where not charted
    metrics = rank_trajectory_metrics(score)
    with np.errstate(invalid="ignore"):
        peak_rank = np.where(charted, rank, np.inf).min(axis=1)

    debut_date = pd.to_datetime(first) + pd.to_timedelta(debut_idx * step, unit="D")
    event = (debut_date + pd.Timedelta(days=horizon * step)).tz_localize("UTC")
    out = pd.DataFrame(
        {
            "track_id": np.asarray(track_ids, dtype=object),
            "region": region,
            "period": period,
            "debut_date": debut_date.astype("datetime64[ns]"),
            "event_timestamp": event.astype("datetime64[ns, UTC]"),
            "curve": list(curve),
            **stats,
            "peak_rank": peak_rank.astype(np.int64),
            "debut_rank": rank[:, 0].astype(np.int64),
            **metrics,
            "left_censored": debut_idx == 0,
            "complete_horizon": chart_known.all(axis=1),
        }
    )
    return out[POPULARITY_COLUMNS]


def compute_targets(
    streams: pd.DataFrame, horizon: int = 26, null_policy: str = "missing"
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

    Returns
    -------
    pandas.DataFrame
        Columns :data:`POPULARITY_COLUMNS`; ``curve`` holds float64 arrays of length H.
    """
    if null_policy not in NULL_POLICIES:
        raise DataError(f"unknown null policy {null_policy!r}; choose one of {NULL_POLICIES}")
    if int(horizon) < 1:
        raise DataError(f"horizon must be at least 1 period, got {horizon}")
    unknown = set(streams["period"]) - set(PERIOD_DAYS)
    if unknown:
        raise DataError(f"streams.parquet: unknown period(s) {sorted(unknown)}")
    frames = [
        _series_targets(rows, region, period, int(horizon), null_policy)
        for (region, period), rows in streams.groupby(["region", "period"], sort=True)
    ]
    if not frames:
        raise DataError("streams.parquet has no rows: ingest chart files first")
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
    data_dir: Path | str, horizon: int = 26, null_policy: str = "missing"
) -> pd.DataFrame:
    """Build ``DIR/popularity.parquet`` from ``DIR/streams.parquet``.

    One row per (track_id, region, period); column definitions in ``docs/targets.md``. The
    file's schema metadata records ``horizon`` and ``null_policy``; ``curve`` is a
    ``list<float64>`` column of length ``horizon``.

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
    table = compute_targets(read_streams(layout), horizon=horizon, null_policy=null_policy)
    layout.popularity.write(
        _to_arrow(table, int(horizon)),
        metadata={"horizon": str(int(horizon)), "null_policy": null_policy},
    )
    return table


__all__ = [
    "NULL_POLICIES",
    "POPULARITY_COLUMNS",
    "RANK_METRICS",
    "build_targets",
    "compute_targets",
    "curve_columns",
    "curve_statistics",
    "rank_trajectory_metrics",
]
