"""kworb pages: the strict readers, and ``collect charts`` against a local kworb."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from localserver import LocalServer, Reply, VirtualClock

from musicpop.features.charts import ChartFileError, ingest_charts, read_chart_file
from musicpop.features.collect.client import PoliteClient, RetryPolicy
from musicpop.features.collect.kworb import collect_kworb
from musicpop.features.errors import DataError

KWORB = Path(__file__).resolve().parents[1] / "fixtures" / "charts" / "kworb"
SE_DAILY = (KWORB / "se_daily.html").read_text()
GB_WEEKLY = (KWORB / "gb_weekly.html").read_text()
TRACK_PAGE = (KWORB / "track" / "0bYg9bo50gSsH3LtXe2SQn.html").read_text()
XMAS, WHAM, CRUEL = "0bYg9bo50gSsH3LtXe2SQn", "2FRnf9qhLbvw8fu4IBXx78", "1BxfuPKGuaTgP7aM0Bbdwr"
DAY = date(2026, 3, 1)


def _client(clock: VirtualClock, **kw) -> PoliteClient:
    kw.setdefault("retry", RetryPolicy(max_attempts=3))
    return PoliteClient(clock=clock, sleep=clock.sleep, rng=random.Random(0), timeout=2.0, **kw)


# --- the readers, strictly -------------------------------------------------------------------


def _page(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("<th>Streams</th>", "<th>Plays</th>"), r"lacks column\(s\) \['streams'\]"),
        (('<a href="../track/2FRnf9qhLbvw8fu4IBXx78.html">', "<a>"), "row 1 .*no link to a track"),
        (("<td>312,000</td>", "<td>312k</td>"), "row 1: streams '312k' is not a number"),
        (("<tr><td>2</td>", "<tr><td>1</td>"), r"position\(s\) \['1'\] appear more than once"),
        (("<tr><td>3</td>", "<tr><td>#3</td>"), "row 3: position '#3' is not a number"),
        (
            ("<td>150,001</td><td></td><td>150,001</td><td></td><td>150,001</td></tr>", "</tr>"),
            "row 3: 6 cells, the header has 11",
        ),
        (("2023/12/28", "yesterday"), r"no chart date \(YYYY/MM/DD\)"),
    ],
    ids=["column", "link", "streams", "duplicate", "position", "cells", "date"],
)
def test_a_country_page_that_does_not_look_as_described_fails_with_the_reason(
    tmp_path: Path, edit: tuple[str, str], reason: str
) -> None:
    assert edit[0] in SE_DAILY
    path = _page(tmp_path, "se_daily.html", SE_DAILY.replace(*edit, 1))
    with pytest.raises(ChartFileError, match=reason):
        read_chart_file(path)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (("<td>1 (31,000,555)</td>", "<td>1 31,000,555</td>"), "row 2023/12/25, column 'us'"),
        (("<td>Peak</td>", "<td>Best</td>"), "labelled 'Best'"),
        (("<td>2023/12/21</td>", "<td>2023/13/21</td>"), "bad date"),
        (("<th>GB</th>", "<th>UK</th><th>XX</th>"), "4 regions"),
    ],
)
def test_a_track_page_that_does_not_look_as_described_fails_with_the_reason(
    tmp_path: Path, edit: tuple[str, str], reason: str
) -> None:
    assert edit[0] in TRACK_PAGE
    path = _page(tmp_path, f"track/{XMAS}.html", TRACK_PAGE.replace(*edit, 1))
    with pytest.raises(ChartFileError, match=reason):
        read_chart_file(path)


def test_ingest_reports_an_unreadable_kworb_page_by_file_and_reason(tmp_path: Path) -> None:
    good = _page(tmp_path / "pages", "se_daily.html", SE_DAILY)
    bad = _page(
        tmp_path / "pages", "gb_daily.html", SE_DAILY.replace("<td>312,000</td>", "<td>?</td>")
    )
    report = ingest_charts([good.parent], tmp_path / "data", progress=False)
    assert report.files_read == 1
    assert report.skipped == [(str(bad), "table row 1: streams '?' is not a number")]


def test_the_weekly_page_is_not_taken_for_a_daily_one(tmp_path: Path) -> None:
    path = _page(tmp_path, "gb_daily.html", GB_WEEKLY)  # a weekly page under a daily name
    with pytest.raises(ChartFileError, match=r"not <cc>_weekly\.html"):
        read_chart_file(path)


# --- collect charts --------------------------------------------------------------------------


def _serve(server: LocalServer) -> None:
    server.route("/spotify/country/se_daily.html", Reply(200, SE_DAILY, content_type="text/html"))
    server.route("/spotify/country/gb_daily.html", Reply(200, SE_DAILY, content_type="text/html"))
    server.route("/spotify/country/gb_weekly.html", Reply(200, GB_WEEKLY, content_type="text/html"))
    server.route(f"/spotify/track/{XMAS}.html", Reply(200, TRACK_PAGE, content_type="text/html"))
    broken = TRACK_PAGE.replace("<td>1 (31,000,555)</td>", "<td>#1 / 31M</td>")
    server.route(f"/spotify/track/{WHAM}.html", [Reply(503), Reply(200, broken)])
    # CRUEL's track page is not routed: 404


def test_collect_fetches_saves_reads_and_ingests(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    _serve(server)
    data = tmp_path / "data"
    report = collect_kworb(
        data,
        ["SE", "gb", "xx"],
        tracks=True,
        fetch_date=DAY,
        base_url=server.base_url,
        client=_client(clock),
        progress=False,
    )
    fetch = data / "raw" / "kworb" / "2026-03-01"
    assert (fetch / "country" / "se_daily.html").read_text() == SE_DAILY  # byte for byte
    assert sorted(p.name for p in (fetch / "track").iterdir()) == sorted(
        [f"{XMAS}.html", f"{WHAM}.html"]
    )
    assert report.tracks_listed == 3
    failed = dict(report.failed)
    assert set(failed) == {
        f"{server.base_url}/spotify/country/xx_daily.html",
        f"{server.base_url}/spotify/track/{CRUEL}.html",
    }
    assert all("HTTP 404" in reason for reason in failed.values())
    assert report.unreadable == [
        (
            str(fetch / "track" / f"{WHAM}.html"),
            "row 2023/12/25, column 'us': cannot read '#1 / 31M' "
            "(expected 'position (streams)' or an empty cell)",
        )
    ]
    assert not report.ok
    assert "UNREADABLE" in report.summary() and "FAILED" in report.summary()
    manifest = [json.loads(line) for line in (fetch / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 6 and {m["status"] for m in manifest} == {200, 404}
    assert all(len(m["sha256"]) == 64 for m in manifest if m["status"] == 200)

    streams = pd.read_parquet(data / "streams.parquet")
    assert set(streams["region"]) == {"se", "gb", "global", "us"}
    assert set(streams["source_file"]) == {
        str((fetch / "country" / "se_daily.html").resolve()),
        str((fetch / "country" / "gb_daily.html").resolve()),
        str((fetch / "track" / f"{XMAS}.html").resolve()),
    }
    assert report.ingest is not None and report.ingest.rows_added == len(streams)

    # the same fetch date again: nothing is fetched twice, nothing changes
    sent = server.count()
    again = collect_kworb(
        data,
        ["se", "gb"],
        tracks=True,
        fetch_date=DAY,
        base_url=server.base_url,
        client=_client(clock),
        progress=False,
    )
    assert server.count() - sent == 1  # only the track page that 404ed is asked again
    assert len(again.present) == 4 and again.fetched == []
    assert again.ingest.rows_added == 0

    # a later date is a new snapshot; the earlier one is untouched
    before = {p: p.read_bytes() for p in fetch.rglob("*.html")}
    later = collect_kworb(
        data,
        ["se"],
        fetch_date=date(2026, 3, 2),
        base_url=server.base_url,
        client=_client(clock),
        progress=False,
    )
    assert (
        later.ok and (data / "raw" / "kworb" / "2026-03-02" / "country" / "se_daily.html").exists()
    )
    assert {p: p.read_bytes() for p in fetch.rglob("*.html")} == before


def test_weekly_pages(server: LocalServer, clock: VirtualClock, tmp_path: Path) -> None:
    _serve(server)
    report = collect_kworb(
        tmp_path / "data",
        ["gb"],
        period="weekly",
        fetch_date=DAY,
        base_url=server.base_url,
        client=_client(clock),
        progress=False,
    )
    assert report.ok
    streams = pd.read_parquet(tmp_path / "data" / "streams.parquet")
    assert set(streams["period"]) == {"weekly"} and len(streams) == 3
    assert str(streams["chart_date"].iloc[0].date()) == "2023-12-29"


def test_pages_are_paced_and_the_budget_resumes_without_repeats(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    _serve(server)
    data = tmp_path / "data"
    first = collect_kworb(
        data,
        ["se", "gb"],
        tracks=True,
        fetch_date=DAY,
        base_url=server.base_url,
        client=_client(clock, max_requests=2),
        progress=False,
    )
    assert first.stopped and "budget" in first.stopped
    assert clock.sleeps == pytest.approx([2.0])  # kworb: one page every 2 s
    collect_kworb(
        data,
        ["se", "gb"],
        tracks=True,
        fetch_date=DAY,
        base_url=server.base_url,
        client=_client(clock),
        progress=False,
    )
    paths = [s.path for s in server.seen]
    repeated = {p for p in paths if paths.count(p) > 1}
    assert repeated == {f"/spotify/track/{WHAM}.html"}  # its 503 was retried, nothing else


def test_an_error_page_served_with_200_is_kept_and_reported(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    page = "<!DOCTYPE html><html><body><h1>Too many requests</h1></body></html>"
    server.route("/spotify/country/us_daily.html", Reply(200, page, content_type="text/html"))
    server.route("/spotify/country/de_daily.html", Reply(200, b"\x00\x01binary"))
    report = collect_kworb(
        tmp_path / "data",
        ["us", "de"],
        fetch_date=DAY,
        base_url=server.base_url,
        client=_client(clock),
        progress=False,
    )
    reasons = dict(report.unreadable)
    us = str(tmp_path / "data/raw/kworb/2026-03-01/country/us_daily.html")
    de = str(tmp_path / "data/raw/kworb/2026-03-01/country/de_daily.html")
    assert "HTML page that is not a known chart page" in reasons[us]
    assert "not an HTML page" in reasons[de]
    assert Path(us).read_text() == page  # the evidence is kept
    assert report.ingest is None and not (tmp_path / "data" / "streams.parquet").exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="region"):
        collect_kworb(tmp_path, ["usa"])
    with pytest.raises(DataError, match="--period"):
        collect_kworb(tmp_path, ["us"], period="monthly")
    with pytest.raises(DataError, match="at least one region"):
        collect_kworb(tmp_path, [""])
