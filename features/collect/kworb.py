"""``collect charts --source kworb``: fetch kworb.net chart pages, keep them, ingest them.

Country pages (``/spotify/country/<cc>_<period>.html``) and, on request, the track pages of the
tracks they list (``/spotify/track/<id>.html``) are saved byte for byte under
``DIR/raw/kworb/<fetch date>/`` (:class:`~.layout.CollectLayout`), one folder per fetch date,
with a ``manifest.jsonl`` line per request (URL, HTTP status, file, sha256, size, time). A file
that exists is never fetched or written again, so a run repeated on the same date continues
where the last one stopped, and earlier dates are never touched. ``--fetch-date`` resumes an
older fetch.

Every saved page is read at once with the project's chart readers
(:mod:`features.charts`); a page the reader does not recognise or cannot read is reported with
its file and reason (the readers were written from a second-hand description of the pages, so
the saved page is the evidence to fix them with) and is left out of the ingestion. The readable
pages are then ingested into ``streams.parquet`` with :func:`features.charts.ingest_charts`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..charts import ChartFileError, IngestReport, ingest_charts, read_chart_file
from ..errors import DataError
from ..identifiers import normalise_region
from ..layout import CollectLayout, DataLayout
from .client import (
    BudgetExhausted,
    ClientStats,
    FetchError,
    HostLimit,
    PoliteClient,
    Throttled,
    client_or,
    host_of,
)

KWORB_URL = "https://kworb.net"
KWORB_LIMIT = HostLimit(rate=0.5, burst=1)
"""kworb.net publishes no limit; it is one person's site: one page every 2 s at most."""
PERIODS = ("daily", "weekly")
_FORMAT = {
    "daily": "kworb_country_daily_html",
    "weekly": "kworb_country_weekly_html",
    "track": "kworb_track_html",
}


@dataclass
class KworbReport:
    """What one :func:`collect_kworb` call did."""

    fetch_dir: str
    fetched: list[str] = field(default_factory=list)  # files written by this run
    present: list[str] = field(default_factory=list)  # files already there (not fetched)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    readable: list[str] = field(default_factory=list)  # files the readers accept
    tracks_listed: int = 0
    stopped: str | None = None  # why the run stopped early
    stop_cause: str | None = None  # "budget", "throttled" or "errors"
    stats: ClientStats = field(default_factory=ClientStats)
    ingest: IngestReport | None = None
    seconds: float = 0.0

    def stop(self, cause: str, message: str) -> None:
        """Record why the run stopped early."""
        self.stop_cause, self.stopped = cause, message

    @property
    def ok(self) -> bool:
        """True when no page failed or was unreadable and no service problem stopped the run
        (a spent budget is not a failure: a re-run resumes)."""
        return not (self.failed or self.unreadable or self.stop_cause in ("throttled", "errors"))

    def summary(self) -> str:
        """Human-readable lines; failures and unreadable pages are listed in full."""
        lines = [
            f"kworb pages in {self.fetch_dir}: {len(self.fetched)} fetched, "
            f"{len(self.present)} already there, {len(self.failed)} failed, "
            f"{len(self.readable)} readable, {len(self.unreadable)} unreadable "
            f"({self.seconds:.1f} s)"
        ]
        if self.tracks_listed:
            lines.append(f"{self.tracks_listed} distinct tracks listed on the country pages")
        for url, reason in self.failed:
            lines.append(f"FAILED {url}: {reason}")
        for path, reason in self.unreadable:
            lines.append(f"UNREADABLE {path}: {reason}")
        lines.append(self.stats.summary())
        if self.stopped:
            lines.append(f"STOPPED EARLY: {self.stopped}; a re-run on the same fetch date resumes")
        if self.ingest is not None:
            lines.append(self.ingest.summary())
        return "\n".join(lines)


def _looks_like_html(body: bytes) -> bool:
    start = body[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype html", b"<html")) or b"<table" in body[:65536].lower()


def _write_atomic(path: Path, body: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(body)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Fetcher:
    """Fetches pages into one fetch folder, logging each request to its manifest."""

    def __init__(
        self, client: PoliteClient, layout: CollectLayout, fetch_date: date, report: KworbReport
    ) -> None:
        self.client = client
        self.layout = layout
        self.fetch_date = fetch_date
        self.report = report
        self.failures_in_a_row = 0
        self.track_ids: set[str] = set()  # listed on the country pages read so far

    def _manifest(self, entry: dict[str, Any]) -> None:
        path = self.layout.kworb_manifest(self.fetch_date)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def fetch(self, url: str, dest: Path, expected: str, missing: str) -> Path | None:
        """Fetch ``url`` into ``dest`` unless present; read it; return it when readable."""
        if dest.exists():
            self.report.present.append(str(dest))
        else:
            when = datetime.now(UTC).isoformat(timespec="seconds")
            try:
                body = self.client.get_bytes(url)
            except (Throttled, BudgetExhausted):
                raise
            except FetchError as exc:
                reason = exc.reason
                if exc.status == 404:
                    reason = f"HTTP 404: {missing}"
                self.report.failed.append((url, reason))
                self._manifest({"url": url, "status": exc.status, "error": reason, "at": when})
                self.failures_in_a_row += 1
                return None
            self.failures_in_a_row = 0
            _write_atomic(dest, body)
            self._manifest(
                {
                    "url": url,
                    "status": 200,
                    "file": str(dest.relative_to(self.layout.kworb_fetch(self.fetch_date))),
                    "sha256": hashlib.sha256(body).hexdigest(),
                    "bytes": len(body),
                    "at": when,
                }
            )
            self.report.fetched.append(str(dest))
            if not _looks_like_html(body):
                self.report.unreadable.append(
                    (str(dest), f"not an HTML page (starts with {body[:24]!r})")
                )
                return None
        return self.check(dest, expected)

    def check(self, path: Path, expected: str) -> Path | None:
        """Read a saved page with the chart readers; report it when it does not read as
        ``expected`` (a format name of :data:`features.charts.CHART_FORMATS`)."""
        try:
            name, frame = read_chart_file(path)
        except ChartFileError as exc:
            self.report.unreadable.append((str(path), str(exc)))
            return None
        except OSError as exc:
            self.report.unreadable.append((str(path), f"cannot open: {exc.strerror}"))
            return None
        if name != expected:
            self.report.unreadable.append((str(path), f"read as {name}, expected {expected}"))
            return None
        self.report.readable.append(str(path))
        if expected != _FORMAT["track"]:
            self.track_ids.update(frame["track_id"])
        return path


def collect_kworb(
    data_dir: Path | str,
    regions: Sequence[str],
    *,
    period: str = "daily",
    tracks: bool = False,
    fetch_date: date | None = None,
    base_url: str | None = None,
    max_requests: int | None = None,
    rate: float | None = None,
    contact: str | None = None,
    timeout: float = 30.0,
    ingest: bool = True,
    max_consecutive_errors: int = 5,
    client: PoliteClient | None = None,
    progress: bool | None = None,
    no_wait: bool = True,
) -> KworbReport:
    """Fetch kworb.net country (and track) pages into ``DIR/raw/kworb/<date>/`` and ingest them.

    Parameters
    ----------
    data_dir
        The dataset folder.
    regions
        Region codes (``us``, ``gb``, ..., ``global``).
    period
        ``daily`` or ``weekly`` country pages.
    tracks
        Also fetch the track page of every track listed on the country pages.
    fetch_date
        The fetch folder's date (default: today, UTC); pass an earlier date to resume it.
    base_url
        Replaces ``https://kworb.net`` (a local server in tests).
    max_requests
        The request budget of this run.
    rate
        Requests per second to kworb (default :data:`KWORB_LIMIT`: 0.5).
    contact
        Operator contact for the User-Agent.
    timeout
        Seconds per connect/read.
    ingest
        Ingest the readable pages into ``streams.parquet`` (default True).
    max_consecutive_errors
        Stop after this many failed requests in a row.
    client
        A ready client (tests); by default one is made from the arguments above.
    progress
        Show a progress bar; None shows it only on a terminal.

    Returns
    -------
    KworbReport
        Pages fetched, present, failed (URL and reason) and unreadable (file and reason), and
        the ingestion report.

    Raises
    ------
    DataError
        For a bad region or period, or when another command is writing the data dir (and
        ``no_wait``).
    """
    started = time.perf_counter()
    if max_requests is not None and max_requests < 0:
        raise DataError("--max-requests must be >= 0")
    if rate is not None and not rate > 0:
        raise DataError("--rate must be > 0 (requests per second)")
    if period not in PERIODS:
        raise DataError(f"--period must be one of {', '.join(PERIODS)} (got {period!r})")
    codes = list(dict.fromkeys(normalise_region(r) for r in regions if str(r).strip()))
    if not codes:
        raise DataError("--regions: give at least one region code (e.g. us,gb,global)")
    layout = CollectLayout.of(data_dir)
    fetch_date = fetch_date or datetime.now(UTC).date()
    folder = layout.kworb_fetch(fetch_date)
    folder.mkdir(parents=True, exist_ok=True)
    base = (base_url or KWORB_URL).rstrip("/")
    report = KworbReport(fetch_dir=str(folder))
    with DataLayout(layout.data_dir).writing("collect charts", no_wait=no_wait):
        try:
            with client_or(
                client, max_requests=max_requests, contact=contact, timeout=timeout
            ) as http:
                http.set_limit(host_of(base), HostLimit(rate, 1) if rate else KWORB_LIMIT)
                fetcher = _Fetcher(http, layout, fetch_date, report)
                _run(fetcher, base, codes, period, tracks, max_consecutive_errors, progress)
                report.stats = http.stats
            report.tracks_listed = len(fetcher.track_ids) if tracks else 0
            if ingest and report.readable:
                report.ingest = ingest_charts(report.readable, layout.data_dir, progress=progress)
        finally:
            report.seconds = time.perf_counter() - started
    return report


def _run(
    fetcher: _Fetcher,
    base: str,
    codes: list[str],
    period: str,
    tracks: bool,
    max_consecutive_errors: int,
    progress: bool | None,
) -> None:
    layout, day, report = fetcher.layout, fetcher.fetch_date, fetcher.report
    disable = None if progress is None else not progress
    try:
        for code in tqdm(codes, desc=f"kworb {period}", unit="page", disable=disable):
            url = f"{base}/spotify/country/{code}_{period}.html"
            dest = layout.kworb_country_page(day, code, period)
            fetcher.fetch(url, dest, _FORMAT[period], f"kworb has no {period} chart for {code!r}")
            if fetcher.failures_in_a_row >= max_consecutive_errors:
                report.stop("errors", f"{fetcher.failures_in_a_row} requests in a row failed")
                return
        if not tracks:
            return
        track_ids = sorted(fetcher.track_ids)
        for track_id in tqdm(track_ids, desc="kworb tracks", unit="page", disable=disable):
            url = f"{base}/spotify/track/{track_id}.html"
            dest = layout.kworb_track_page(day, track_id)
            fetcher.fetch(url, dest, _FORMAT["track"], "kworb has no page for this track")
            if fetcher.failures_in_a_row >= max_consecutive_errors:
                report.stop("errors", f"{fetcher.failures_in_a_row} requests in a row failed")
                return
    except BudgetExhausted as exc:
        report.stop("budget", str(exc))
    except Throttled as exc:
        report.stop("throttled", f"throttled by {exc}")


__all__ = ["KWORB_LIMIT", "KWORB_URL", "PERIODS", "KworbReport", "collect_kworb"]
