"""Popularity targets: curve statistics, null policies, censoring, real hand-checked values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from musicpop.features.charts import ingest_charts
from musicpop.features.errors import DataError
from musicpop.features.targets import (
    POPULARITY_COLUMNS,
    build_targets,
    compute_targets,
    curve_statistics,
    rank_trajectory_metrics,
)

NAN = np.nan
START = pd.Timestamp("2020-01-03")  # a Friday


def _streams(entries: list[tuple[int, str, int, int]], region: str = "se") -> pd.DataFrame:
    """Weekly rows from (week index, track, rank, streams); track names padded to 22 chars."""
    return pd.DataFrame(
        {
            "region": region,
            "period": "weekly",
            "chart_date": [START + pd.Timedelta(weeks=k) for k, *_ in entries],
            "track_id": [t.ljust(22, "0") for _, t, _, _ in entries],
            "rank": [r for *_, r, _ in entries],
            "streams": [s for *_, s in entries],
            "title": "t",
            "artist": "a",
            "source_file": "f.csv",
        }
    )


# Week 3 has no chart at all (a missing file); weeks 0..5 otherwise.
TOY = _streams(
    [
        (0, "A", 1, 100), (0, "D", 2, 60),
        (1, "B", 1, 200), (1, "A", 2, 80), (1, "D", 3, 30),
        (2, "B", 1, 150), (2, "C", 2, 90),
        (4, "C", 1, 70), (4, "A", 2, 50),
        (5, "C", 1, 60),
    ]
)  # fmt: skip


def _row(table: pd.DataFrame, track: str) -> pd.Series:
    return table.set_index("track_id").loc[track.ljust(22, "0")]


def test_curve_statistics_by_hand() -> None:
    curve = np.array([[10.0, NAN, 30.0, 0.0], [NAN, NAN, NAN, NAN], [5.0, 7.0, NAN, NAN]])
    stats = curve_statistics(curve)
    np.testing.assert_array_equal(stats["sum"], [40.0, NAN, 12.0])
    np.testing.assert_array_equal(stats["debut"], [10.0, NAN, 5.0])
    np.testing.assert_array_equal(stats["peak"], [30.0, NAN, 7.0])
    np.testing.assert_array_equal(stats["periods_on_chart"], [2, 0, 2])
    charted = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(curve_statistics(curve, charted)["periods_on_chart"], [3, 0, 1])
    with pytest.raises(ValueError, match="shape"):
        curve_statistics(np.ones(3))


def test_rank_trajectory_metrics_by_hand() -> None:
    # scores 3, 1 at t = 0, 2 (t = 1 off the chart): mean 2, std 1, sum 4, length 2, max 3.
    # time weights 3/4 at t=0, 1/4 at t=2: mu = 0.5, m2 = .75*.25 + .25*2.25 = 0.75,
    # m3 = .75*(-.125) + .25*3.375 = 0.75, m4 = .75*.0625 + .25*5.0625 = 1.3125
    # skew = 0.75 / 0.75**1.5 = 1.1547, excess kurtosis = 1.3125 / 0.5625 - 3 = -0.6667
    m = rank_trajectory_metrics(np.array([[3.0, NAN, 1.0]]))
    assert m["rank_debut"][0] == 3 and m["rank_max"][0] == 3
    assert m["rank_mean"][0] == 2 and m["rank_std"][0] == 1
    assert m["rank_sum"][0] == 4 and m["rank_length"][0] == 2
    assert m["rank_skewness"][0] == pytest.approx(0.75 / 0.75**1.5)
    assert m["rank_kurtosis"][0] == pytest.approx(1.3125 / 0.5625 - 3)
    single = rank_trajectory_metrics(np.array([[5.0, NAN]]))
    assert math.isnan(single["rank_skewness"][0]) and single["rank_std"][0] == 0


@pytest.mark.parametrize(
    ("policy", "a_curve", "d_curve"),
    [
        ("missing", [100, 80, NAN], [60, 30, NAN]),
        ("zero", [100, 80, 0], [60, 30, 0]),
        ("floor", [100, 80, 90], [60, 30, 90]),  # week 2's lowest charted streams: C with 90
    ],
)
def test_null_policies(policy: str, a_curve: list[float], d_curve: list[float]) -> None:
    table = compute_targets(TOY, horizon=3, null_policy=policy)
    assert list(table.columns) == POPULARITY_COLUMNS
    a, d = _row(table, "A"), _row(table, "D")
    np.testing.assert_array_equal(a["curve"], a_curve)
    np.testing.assert_array_equal(d["curve"], d_curve)
    # the bounds do not depend on the policy: charted streams only, and + week 2's floor (90)
    assert (a["sum"], a["sum_floor"]) == (100 + 80, 100 + 80 + 90)
    assert (d["sum"], d["sum_floor"]) == (60 + 30, 60 + 30 + 90)
    assert table["charted"].all() and not table["reentry"].any()
    assert a["periods_on_chart"] == 2 and d["periods_on_chart"] == 2  # policy-independent
    # B's third week (week 3) has no chart file: unknown under every policy
    b = _row(table, "B")
    np.testing.assert_array_equal(b["curve"], [200, 150, NAN])
    assert not b["complete_horizon"]


def test_debut_censoring_and_timestamps() -> None:
    table = compute_targets(TOY, horizon=3, burn_in_days=7)  # a burn-in of one week
    a, b, c = _row(table, "A"), _row(table, "B"), _row(table, "C")
    assert a["debut_date"] == START and a["left_censored"] and a["complete_horizon"]
    assert a["event_timestamp"] == pd.Timestamp("2020-01-24", tz="UTC")
    assert b["debut_date"] == START + pd.Timedelta(weeks=1) and not b["left_censored"]
    assert (a["debut_rank"], a["peak_rank"], a["debut"], a["peak"]) == (1, 1, 100, 100)
    assert (b["debut_rank"], b["peak_rank"]) == (1, 1)
    # C: weeks 2, (3 = gap), 4 -> curve 90, NaN, 70; the week-5 entry lies outside H=3
    np.testing.assert_array_equal(c["curve"], [90, NAN, 70])
    assert c["periods_on_chart"] == 2 and c["peak_rank"] == 1 and c["debut_rank"] == 2
    # rank score = chart size + 1 - rank; week 2 has 2 entries, week 4 has 2: C scores 1, 2
    assert (c["rank_debut"], c["rank_max"], c["rank_sum"]) == (1, 2, 3)
    # a window running past the end of the data is incomplete and NaN there
    c5 = _row(compute_targets(TOY, horizon=5), "C")
    np.testing.assert_array_equal(c5["curve"], [90, NAN, 70, 60, NAN])
    assert not c5["complete_horizon"]


def test_bad_arguments_and_grid() -> None:
    with pytest.raises(DataError, match="null policy"):
        compute_targets(TOY, null_policy="mean")
    with pytest.raises(DataError, match="horizon"):
        compute_targets(TOY, horizon=0)
    shifted = TOY.copy()
    shifted.loc[0, "chart_date"] += pd.Timedelta(days=1)
    with pytest.raises(DataError, match="grid"):
        compute_targets(shifted)


def test_build_targets_writes_list_column(tmp_path: Path) -> None:
    TOY.to_parquet(tmp_path / "streams.parquet", index=False)
    table = build_targets(tmp_path, horizon=3, null_policy="floor")
    arrow = pq.read_table(tmp_path / "popularity.parquet")
    assert arrow.column_names == POPULARITY_COLUMNS
    assert arrow.schema.field("curve").type == pa.list_(pa.float64())
    assert arrow.schema.field("event_timestamp").type == pa.timestamp("ns", tz="UTC")
    assert {len(c) for c in arrow.column("curve").to_pylist()} == {3}
    assert pq.read_metadata(tmp_path / "popularity.parquet").metadata[b"null_policy"] == b"floor"
    assert len(table) == arrow.num_rows == 4
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(DataError, match="not found"):
        build_targets(tmp_path / "empty")


@pytest.mark.integration
def test_real_targets_by_hand(shared_data: Path, tmp_path: Path) -> None:
    charts = shared_data / "charts"
    data = tmp_path / "data"
    ingest_charts(
        [charts / "spotifycharts-weekly-2019-2021" / "se", charts / "spotify-weekly-2023" / "usa"],
        data,
        progress=False,
    )
    table = build_targets(data, horizon=6, null_policy="missing").set_index(["track_id", "region"])

    # "My Turn" - John Lundvik (5faSzPLmJYUOnk17yFRlIe), se, H = 6. Raw rows (grep of se/*.csv):
    #   2019-02-01--2019-02-08se.csv: 190,"My Turn","John Lundvik",132702
    #   2019-03-08--2019-03-15se.csv: 109,"My Turn","John Lundvik",195007
    #   absent from the four weeks in between; se's first chart is 2019-01-04 (not left-censored).
    # curve = [132702, -, -, -, -, 195007]; sum = 327709; peak = 195007; on chart 2 weeks.
    # event = 2019-02-01 + 6 weeks = 2019-03-15. Scores (top 200): 201-190 = 11, 201-109 = 92:
    # mean 51.5, std 40.5, sum 103; time weights p = 11/103 at t=0, q = 92/103 at t=5 (a
    # two-point law): skewness (p - q)/sqrt(pq) = -81/sqrt(1012), excess kurtosis 1/(pq) - 6.
    row = table.loc[("5faSzPLmJYUOnk17yFRlIe", "se")]
    np.testing.assert_array_equal(row["curve"], [132702, NAN, NAN, NAN, NAN, 195007])
    assert row["debut_date"] == pd.Timestamp("2019-02-01")
    assert row["event_timestamp"] == pd.Timestamp("2019-03-15", tz="UTC")
    assert (row["sum"], row["debut"], row["peak"]) == (327709, 132702, 195007)
    assert (row["debut_rank"], row["peak_rank"], row["periods_on_chart"]) == (190, 109, 2)
    assert not row["left_censored"] and row["complete_horizon"]
    assert (row["rank_debut"], row["rank_max"], row["rank_sum"], row["rank_length"]) == (
        11,
        92,
        103,
        2,
    )
    assert row["rank_mean"] == 51.5 and row["rank_std"] == 40.5
    assert row["rank_skewness"] == pytest.approx(-81 / math.sqrt(1012))
    assert row["rank_kurtosis"] == pytest.approx(103**2 / 1012 - 6)

    # Same track, floor policy: the four off-chart weeks take each week's rank-200 streams:
    #   02-08: 135406, 02-15: 132676, 02-22: 137530, 03-01: 134731 (last line of each file)
    # sum = 132702 + 135406 + 132676 + 137530 + 134731 + 195007 = 868052 (an upper bound).
    floor = build_targets(data, horizon=6, null_policy="floor").set_index(["track_id", "region"])
    row = floor.loc[("5faSzPLmJYUOnk17yFRlIe", "se")]
    np.testing.assert_array_equal(row["curve"], [132702, 135406, 132676, 137530, 134731, 195007])
    assert row["sum_floor"] == 868052 and row["periods_on_chart"] == 2
    assert row["sum"] == 327709  # the lower bound: charted weeks only, whatever the policy
    assert table.loc[("5faSzPLmJYUOnk17yFRlIe", "se"), "sum_floor"] == 868052

    # Rammstein "DEUTSCHLAND" (1T8IRUJBga0JXioJZvxjBR), se, first 4 weeks (H = 4):
    #   2019-03-29: 56 / 336211, 04-05: 110 / 203954, 04-12: 164 / 156379, 04-19: absent
    # sum = 696544, peak 336211, peak_rank = debut_rank = 56, 3 weeks on chart.
    # scores 145, 91, 37: mean 91, std sqrt((54^2 + 0 + 54^2)/3) = sqrt(1944), sum 273.
    short = compute_targets(pd.read_parquet(data / "streams.parquet"), horizon=4)
    row = short.set_index(["track_id", "region"]).loc[("1T8IRUJBga0JXioJZvxjBR", "se")]
    np.testing.assert_array_equal(row["curve"], [336211, 203954, 156379, NAN])
    assert (row["sum"], row["peak"], row["peak_rank"], row["debut_rank"]) == (
        696544,
        336211,
        56,
        56,
    )
    assert (row["rank_mean"], row["rank_sum"]) == (91, 273)
    assert row["rank_std"] == pytest.approx(math.sqrt(1944))

    # SZA "Kill Bill" (1Qrg8KqiBpW07V7PNxwwwL), us 2023 (new CSV format):
    #   regional-us-weekly-2023-01-05.csv: rank 1, "15030938" -> week starting 2022-12-30
    #   regional-us-weekly-2023-01-12.csv: rank 1, "15993525" -> week starting 2023-01-06
    # it is on the first us chart of the data, so left-censored.
    row = table.loc[("1Qrg8KqiBpW07V7PNxwwwL", "us")]
    assert row["debut_date"] == pd.Timestamp("2022-12-30") and row["left_censored"]
    assert not row["reentry"]

    # Mariah Carey "All I Want for Christmas Is You" (0bYg9bo50gSsH3LtXe2SQn) debuts in se on
    #   2019-11-01 (first in 2019-11-01--2019-11-08se.csv, rank 154) and in the us 2023 data
    #   in regional-us-weekly-2023-11-02.csv (week starting 2023-10-27): four years after it
    #   first charted anywhere in the data, a re-entry.
    mariah = table.loc["0bYg9bo50gSsH3LtXe2SQn"]
    assert mariah.loc["se", "debut_date"] == pd.Timestamp("2019-11-01")
    assert mariah.loc["us", "debut_date"] == pd.Timestamp("2023-10-27")
    assert not mariah.loc["se", "reentry"] and not mariah.loc["se", "left_censored"]
    assert mariah.loc["us", "reentry"] and not mariah.loc["us", "left_censored"]
    # the burn-in (28 days) flags the first four weeks of each series, no later debut
    weeks = (table["debut_date"] - table.groupby("region")["debut_date"].transform("min")).dt.days
    np.testing.assert_array_equal(table["left_censored"], weeks < 28)
    meta = pq.read_metadata(data / "popularity.parquet").metadata
    assert (meta[b"burn_in_days"], meta[b"reentry_gap_days"]) == (b"28", b"365")
    np.testing.assert_array_equal(row["curve"][:2], [15030938, 15993525])
    assert row["debut_rank"] == 1 and row["rank_debut"] == 200


def test_burn_in_flags_debuts_in_the_first_days_of_each_series() -> None:
    # A and D debut in week 0, B in week 1, C in week 2: inside the default 28-day burn-in
    default = compute_targets(TOY, horizon=3).set_index("track_id")["left_censored"]
    assert default.all()
    week = compute_targets(TOY, horizon=3, burn_in_days=7).set_index("track_id")
    assert week["left_censored"].to_dict() == {t.ljust(22, "0"): t in "AD" for t in "ABCD"}
    assert not compute_targets(TOY, horizon=3, burn_in_days=0)["left_censored"].any()
    # daily series count the burn-in in days
    daily = TOY.assign(period="daily", chart_date=START + pd.to_timedelta(TOY.index // 2, "D"))
    flagged = compute_targets(daily, horizon=2, burn_in_days=3)
    assert (
        flagged["left_censored"].tolist()
        == (flagged["debut_date"] < START + pd.Timedelta(days=3)).tolist()
    )
    with pytest.raises(DataError, match="burn_in_days"):
        compute_targets(TOY, burn_in_days=-1)


def _weekly_series(region: str, weeks: int, extra: list[tuple[int, str]]) -> pd.DataFrame:
    """A filler track on every chart of ``weeks`` weeks plus (week, track) entries at rank 2."""
    rows = [(k, f"fill{region}", 1, 1000) for k in range(weeks)]
    rows += [(k, track, 2, 500) for k, track in extra]
    return _streams(rows, region=region)


def test_reentries_long_after_the_first_chart_anywhere_or_the_release() -> None:
    streams = pd.concat(
        [
            _weekly_series("se", 60, [(0, "R"), (0, "Q"), (10, "P"), (11, "S")]),
            # R debuts in de 53 weeks (371 days) after se, Q 52 weeks (364 days) after
            _weekly_series("de", 60, [(53, "R"), (52, "Q")]),
        ],
        ignore_index=True,
    )
    table = compute_targets(streams, horizon=2).set_index(["track_id", "region"])["reentry"]
    key = lambda t, r: (t.ljust(22, "0"), r)  # noqa: E731
    assert table[key("R", "de")] and not table[key("Q", "de")]
    assert not table[key("R", "se")] and not table[key("P", "se")]
    # release rule: P debuts (week 10) exactly 365 days after its release, S 364 days after
    debut_p = START + pd.Timedelta(weeks=10)
    catalog = pd.DataFrame(
        {
            "track_id": [t.ljust(22, "0") for t in "PS"],
            "release_date": [debut_p - pd.Timedelta(days=365), debut_p - pd.Timedelta(days=357)],
        }
    )
    with_release = compute_targets(streams, horizon=2, catalog=catalog)
    flags = with_release.set_index(["track_id", "region"])["reentry"]
    assert flags[key("P", "se")] and not flags[key("S", "se")]
    assert flags.sum() == 2  # R in de and P in se
    longer = compute_targets(streams, horizon=2, catalog=catalog, reentry_gap_days=400)
    assert not longer["reentry"].any()


def test_uncharted_rows_for_tracks_with_audio_by_hand() -> None:
    de = _streams([(k, "F", 1, 10 + k) for k in range(6)], region="de")
    streams = pd.concat([TOY, de], ignore_index=True)
    pad = lambda t: t.ljust(22, "0")  # noqa: E731
    catalog = pd.DataFrame(
        {
            "track_id": [pad(t) for t in "AUXW"],
            "audio_path": ["a.mp3", "u.mp3", "x.mp3", None],
            # U is released on a Monday inside week 2; the others' release dates are unknown
            "release_date": [pd.NaT, START + pd.Timedelta(days=17), pd.NaT, pd.NaT],
        }
    )
    plain = compute_targets(streams, horizon=3, catalog=catalog)
    assert plain["charted"].all() and len(plain) == 5  # A B C D in se, F in de
    for policy, u_curve in (
        ("missing", [NAN, NAN, NAN]),
        ("zero", [0, NAN, 0]),
        ("floor", [90, NAN, 50]),  # week 3 has no chart; floors of weeks 2 and 4
    ):
        table = compute_targets(
            streams, horizon=3, null_policy=policy, catalog=catalog, uncharted=True
        )
        rows = table.set_index(["track_id", "region"])
        added = rows[~rows["charted"]]
        assert sorted(added.index) == sorted(
            [
                (pad("U"), "se"),
                (pad("X"), "se"),
                (pad("A"), "de"),
                (pad("U"), "de"),
                (pad("X"), "de"),
            ]
        )
        u = rows.loc[(pad("U"), "se")]
        np.testing.assert_array_equal(u["curve"], u_curve)
        assert u["debut_date"] == START + pd.Timedelta(weeks=2)
        assert u["event_timestamp"] == pd.Timestamp("2020-02-07", tz="UTC")
        assert (u["sum"], u["sum_floor"]) == (0.0, 90 + 50)
        assert np.isnan(u["debut"]) and pd.isna(u["debut_rank"]) and u["periods_on_chart"] == 0
        assert u["left_censored"] and not u["complete_horizon"] and not u["reentry"]
        # X (no release, never charted) starts at the series' start; A in de at its se debut
        assert rows.loc[(pad("X"), "se"), "debut_date"] == START
        a_de = rows.loc[(pad("A"), "de")]
        assert a_de["debut_date"] == START and a_de["complete_horizon"]
        assert a_de["sum_floor"] == 10 + 11 + 12  # F's streams are de's floor
        # the charted rows are exactly those of the plain table
        charted = table[table["charted"]].reset_index(drop=True)
        expected = compute_targets(streams, horizon=3, null_policy=policy, catalog=catalog)
        pd.testing.assert_frame_equal(
            charted.drop(columns=["curve", "peak_rank", "debut_rank"]),
            expected.drop(columns=["curve", "peak_rank", "debut_rank"]),
        )
        assert charted["debut_rank"].astype(int).tolist() == expected["debut_rank"].tolist()
    with pytest.raises(DataError, match="catalog"):
        compute_targets(streams, uncharted=True)


def test_build_targets_records_the_settings_and_nullable_ranks(tmp_path: Path) -> None:
    TOY.to_parquet(tmp_path / "streams.parquet", index=False)
    catalog = pd.DataFrame({"track_id": ["U".ljust(22, "0")], "audio_path": ["u.mp3"]})
    build_targets(
        tmp_path, horizon=3, catalog=catalog, uncharted=True, burn_in_days=14, reentry_gap_days=200
    )
    arrow = pq.read_table(tmp_path / "popularity.parquet")
    meta = pq.read_metadata(tmp_path / "popularity.parquet").metadata
    assert meta[b"burn_in_days"] == b"14" and meta[b"reentry_gap_days"] == b"200"
    assert meta[b"uncharted"] == b"true"
    assert arrow.schema.field("debut_rank").type == pa.int64()
    assert arrow.column("debut_rank").null_count == 1 == arrow.num_rows - 4
    assert arrow.column("charted").to_pylist().count(False) == 1
