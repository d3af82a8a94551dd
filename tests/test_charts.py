"""Chart ingestion: every registered format, skips, idempotence, conflicts, and the real data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from musicpop.features.charts import (
    CHART_FORMATS,
    ChartFileError,
    detect_format,
    ingest_charts,
    read_chart_file,
)
from musicpop.features.errors import DataError
from musicpop.features.identifiers import normalise_region, parse_track_id
from musicpop.features.layout import STREAMS_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures" / "charts"

# (fixture, format, rows, first row: region, period, chart_date, track_id, rank, streams)
CASES = [
    (
        "legacy_weekly/us/2019-01-04--2019-01-11us.csv",
        "spotifycharts_legacy_csv",
        3,
        ("us", "weekly", "2019-01-04", "3KkXRkHbMCARz0aVfEt68P", 1, 14202522),
    ),
    (
        "legacy_daily/gb/2019-01-01gb.csv",
        "spotifycharts_legacy_csv",
        2,
        ("gb", "daily", "2019-01-01", "25sgk305KZfyuqVBQIahim", 1, 1402031),
    ),
    (
        # file date 2023-01-05 is the week's last day: the chart period starts 6 days earlier
        "new_weekly/regional-global-weekly-2023-01-05.csv",
        "charts_spotify_csv",
        3,
        ("global", "weekly", "2022-12-30", "1Qrg8KqiBpW07V7PNxwwwL", 1, 15030938),
    ),
    (
        "daily_export/spotify-daily-2023-12-28-3-rows.csv",
        "daily_export_csv",
        3,
        ("global", "daily", "2023-12-28", "0bYg9bo50gSsH3LtXe2SQn", 1, 75826005),
    ),
    (
        "kworb/se_daily.html",
        "kworb_country_daily_html",
        3,
        ("se", "daily", "2023-12-28", "2FRnf9qhLbvw8fu4IBXx78", 1, 312000),
    ),
    (
        # a weekly page's date is the chart's last day, as for the new CSV
        "kworb/gb_weekly.html",
        "kworb_country_weekly_html",
        3,
        ("gb", "weekly", "2023-12-29", "1Qrg8KqiBpW07V7PNxwwwL", 1, 4120554),
    ),
    (
        "kworb/track/0bYg9bo50gSsH3LtXe2SQn.html",
        "kworb_track_html",
        8,
        ("global", "weekly", "2023-12-22", "0bYg9bo50gSsH3LtXe2SQn", 1, 450123456),
    ),
]


def _copy_fixtures(tmp_path: Path, *names: str) -> Path:
    root = tmp_path / "charts"
    for name in names:
        src = FIXTURES / name
        dst = root / name
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    return root


def test_every_registered_format_has_a_fixture_case() -> None:
    assert {fmt for _, fmt, _, _ in CASES} == set(CHART_FORMATS)


@pytest.mark.parametrize(("fixture", "fmt", "n_rows", "first"), CASES, ids=[c[0] for c in CASES])
def test_format_detected_from_content_and_read(
    fixture: str, fmt: str, n_rows: int, first: tuple
) -> None:
    path = FIXTURES / fixture
    head = path.read_bytes()[:65536]
    accepted = [name for name, reader in CHART_FORMATS.items() if reader.sniff(path, head)]
    assert accepted == [fmt]
    assert detect_format(path, head) == fmt
    name, frame = read_chart_file(path)
    assert name == fmt
    assert list(frame.columns) == list(STREAMS_COLUMNS)
    assert len(frame) == n_rows
    assert frame["chart_date"].dtype == "datetime64[ns]"
    assert frame["streams"].dtype == "int64" and frame["rank"].dtype == "int64"
    row = frame.iloc[0]
    got = (
        row["region"],
        row["period"],
        str(row["chart_date"].date()),
        row["track_id"],
        row["rank"],
        row["streams"],
    )
    assert got == first
    assert frame["source_file"].iloc[0] == str(path.resolve())


def test_quoted_thousands_and_bom_are_parsed() -> None:
    _, frame = read_chart_file(FIXTURES / "new_weekly/regional-global-weekly-2023-01-05.csv")
    assert frame.loc[frame["rank"] == 2, "streams"].item() == 8_469_115
    assert frame.loc[frame["rank"] == 2, "artist"].item() == "Drake, 21 Savage"


def test_kworb_track_page_splits_weekly_and_daily_tables() -> None:
    _, frame = read_chart_file(FIXTURES / "kworb/track/0bYg9bo50gSsH3LtXe2SQn.html")
    assert frame.groupby("period").size().to_dict() == {"daily": 3, "weekly": 5}
    daily = frame[(frame["period"] == "daily") & (frame["region"] == "global")]
    assert sorted(daily["chart_date"].dt.strftime("%Y-%m-%d")) == ["2023-12-24", "2023-12-25"]
    assert frame["title"].iloc[0] == "All I Want for Christmas Is You"
    assert frame["artist"].iloc[0] == "Mariah Carey"


def test_invalid_track_ids_are_dropped_and_counted() -> None:
    _, frame = read_chart_file(FIXTURES / "legacy_weekly/us/2019-01-11--2019-01-18us.csv")
    assert len(frame) == 3
    assert frame.attrs["invalid_track_ids"] == 1
    assert frame["track_id"].str.fullmatch(r"[0-9A-Za-z]{22}").all()


def test_html_error_page_is_skipped_with_reason() -> None:
    with pytest.raises(ChartFileError, match="HTML page"):
        read_chart_file(FIXTURES / "broken/ad/2019-01-04--2019-01-11ad.csv")


def test_legacy_file_without_region_is_skipped(tmp_path: Path) -> None:
    src = FIXTURES / "legacy_weekly/us/2019-01-04--2019-01-11us.csv"
    dst = tmp_path / "charts" / "2019-01-04--2019-01-11.csv"
    dst.parent.mkdir()
    shutil.copy(src, dst)
    with pytest.raises(ChartFileError, match="region"):
        read_chart_file(dst)


def test_ingest_all_fixtures_then_reingest_adds_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    report = ingest_charts([FIXTURES], data, progress=False)
    assert report.files_read == 8
    assert report.skipped == [
        (str(FIXTURES / "broken/ad/2019-01-04--2019-01-11ad.csv"), report.skipped[0][1])
    ]
    assert "HTML page" in report.skipped[0][1]
    # 3+4(one bad id)+2+3+3+3+3+8 rows; the kworb se page repeats the export's se row exactly
    assert report.invalid_track_ids == 1
    assert report.rows_read == 3 + 3 + 2 + 3 + 3 + 3 + 3 + 8
    assert report.rows_present == 1 and report.conflicts == 0
    assert report.rows_added == report.rows_read - 1
    streams = pd.read_parquet(data / "streams.parquet")
    assert len(streams) == report.rows_added
    assert not streams.duplicated(["region", "period", "chart_date", "track_id"]).any()
    assert set(streams["region"]) == {"us", "gb", "global", "se"}
    saved = json.loads((data / "ingest_report.json").read_text())
    assert saved["files_skipped"] == 1 and saved["rows_added"] == report.rows_added
    assert (data / "catalog.parquet").exists()
    assert not list(data.glob(".*tmp"))

    before = (data / "streams.parquet").read_bytes()
    again = ingest_charts([FIXTURES], data, progress=False)
    assert again.rows_added == 0
    assert again.rows_present == again.rows_read
    assert again.conflicts == 0
    assert (data / "streams.parquet").read_bytes() == before
    assert "0 added" in again.summary()


def test_conflicting_values_are_reported_not_overwritten(tmp_path: Path) -> None:
    data = tmp_path / "data"
    root = _copy_fixtures(tmp_path, "legacy_weekly")
    ingest_charts([root], data, progress=False)
    changed = tmp_path / "changed" / "us" / "2019-01-04--2019-01-11us.csv"
    changed.parent.mkdir(parents=True)
    text = (root / "legacy_weekly/us/2019-01-04--2019-01-11us.csv").read_text()
    changed.write_text(text.replace("14202522", "14202523"))
    report = ingest_charts([changed], data, progress=False)
    assert report.conflicts == 1
    assert report.rows_present == 2 and report.rows_added == 0
    example = report.conflict_examples[0]
    assert example["track_id"] == "3KkXRkHbMCARz0aVfEt68P"
    assert example["kept"]["streams"] == 14202522 and example["rejected"]["streams"] == 14202523
    assert "CONFLICTS: 1" in report.summary()
    streams = pd.read_parquet(data / "streams.parquet")
    kept = streams[
        (streams["track_id"] == "3KkXRkHbMCARz0aVfEt68P")
        & (streams["chart_date"] == pd.Timestamp("2019-01-04"))
    ]
    assert kept["streams"].tolist() == [14202522]


def test_file_without_valid_track_ids_is_skipped(tmp_path: Path) -> None:
    bad = tmp_path / "charts" / "us" / "2019-01-04--2019-01-11us.csv"
    bad.parent.mkdir(parents=True)
    text = (FIXTURES / "legacy_weekly/us/2019-01-04--2019-01-11us.csv").read_text()
    bad.write_text(text.replace("open.spotify.com/track/", "open.spotify.com/track/x"))
    report = ingest_charts([bad.parent], tmp_path / "data", progress=False)
    assert report.files_read == 0 and report.rows_read == 0
    assert report.invalid_track_ids == 3
    assert report.skipped == [(str(bad.resolve()), "no chart rows with a valid track id")]
    with pytest.raises(ChartFileError, match="valid track id"):
        read_chart_file(bad)


def test_missing_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        ingest_charts([tmp_path / "nope"], tmp_path / "data", progress=False)


def test_identifiers() -> None:
    tid = "3KkXRkHbMCARz0aVfEt68P"
    assert parse_track_id(tid) == tid
    assert parse_track_id(f"https://open.spotify.com/track/{tid}?si=abc") == tid
    assert parse_track_id(f"spotify:track:{tid}") == tid
    assert parse_track_id(tid + "x") is None
    assert parse_track_id("3KkXRkHbMCARz0aVfEt68-") is None
    assert parse_track_id(None) is None
    assert normalise_region(" US ") == "us"
    assert normalise_region("Global") == "global"
    with pytest.raises(DataError):
        normalise_region("usa")


# --- real data ----------------------------------------------------------------------------------


def _legacy_data_rows(path: Path) -> int | None:
    """Rows of an old spotifycharts CSV counted without pandas (None for non-CSV pages)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.lstrip().startswith("<"):
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    return len(lines) - 2  # the note line and the header


@pytest.mark.integration
@pytest.mark.slow
def test_real_weekly_2019_2021_folder(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "charts" / "spotifycharts-weekly-2019-2021"
    counts = [_legacy_data_rows(p) for p in sorted(folder.rglob("*.csv"))]
    assert len(counts) == 1356
    report = ingest_charts([folder], tmp_path / "data", progress=False)
    assert report.files_read == 1256
    assert len(report.skipped) == 100
    assert all("HTML page" in reason for _, reason in report.skipped)
    assert sum(p.parent.name == "ad" for p, _ in ((Path(p), r) for p, r in report.skipped)) == 99
    assert report.rows_read == sum(c for c in counts if c is not None) == report.rows_added
    assert report.invalid_track_ids == 0 and report.conflicts == 0
    again = ingest_charts([folder], tmp_path / "data", progress=False)
    assert again.rows_added == 0 and again.rows_present == report.rows_read


@pytest.mark.integration
def test_real_2023_weekly_and_daily_snapshot(shared_data: Path, tmp_path: Path) -> None:
    charts = shared_data / "charts"
    report = ingest_charts(
        [charts / "spotify-weekly-2023", charts / "daily-snapshot"],
        tmp_path / "data",
        progress=False,
    )
    assert report.skipped == []
    assert report.formats == {"charts_spotify_csv": 208, "daily_export_csv": 1}
    streams = pd.read_parquet(tmp_path / "data" / "streams.parquet")
    daily = streams[streams["period"] == "daily"]
    assert len(daily) == 14_400 and daily["region"].nunique() == 72
    assert "global" in set(daily["region"])
    weekly = streams[streams["period"] == "weekly"]
    assert set(weekly["region"]) == {"be", "de", "in", "us"}
    # 52 weekly files per region, dated 2023-01-05 .. 2023-12-28 (week ends) -> Friday starts
    assert weekly["chart_date"].min() == pd.Timestamp("2022-12-30")
    assert weekly["chart_date"].max() == pd.Timestamp("2023-12-22")
    assert (weekly["chart_date"].dt.dayofweek == 4).all()
    assert report.rows_added == len(streams)
