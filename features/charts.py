"""Chart ingestion: every supported chart file format into ``streams.parquet``.

Each format is one reader object in :data:`CHART_FORMATS`, found by :func:`detect_format` from the
file's *content* (the name only supplies what the content lacks: region and date). Adding a format
is adding one ``@register``-decorated class; ``tests/test_charts.py`` covers every entry.

Readers return rows as read, with their line in the file (:data:`ORIGIN_COLUMNS`);
:func:`check_rows` then validates track ids and rejects implausible rows, each with its file,
line and reason (:data:`REJECT_REASONS`): rank or streams 0 or below, a rank held twice in one
chart, the cut-off last line of a file without a final newline (a field missing, a quoted field
left open, or a number shorter than its neighbours allow: streams never increase with rank, so a
number cut by a digit is at least ten times smaller than the rank above), an unreadable value, a
line with the wrong number of fields. Rejected rows are never stored; the ingest summary and
``ingest_report.json`` count them by reason and list them by file and line. Charts whose ranks
have gaps are kept and counted (their chart size and ``floor`` are then only bounds); rows whose
streams exceed the rank above are kept and reported. ``docs/targets.md`` ("Implausible chart
rows, and charts with rank gaps") gives the evidence and what it means for the targets.

The streams table (one row per chart entry) has the columns of :data:`STREAMS_COLUMNS`:
``region`` (lower-case ISO code or ``global``), ``period`` (``daily`` | ``weekly``), ``chart_date``
(``datetime64[ns]``, the first day of the chart period), ``track_id`` (22-char base62), ``rank``
(int64), ``streams`` (int64), ``title``, ``artist`` and ``source_file`` (absolute path). It is
unique on :data:`STREAMS_KEY`.

Dates, per format (``chart_date`` is always the day the chart period *starts*):

- old spotifycharts.com CSV: weekly names carry ``<start>--<end>`` (Friday to the next Friday);
  ``chart_date`` is ``<start>``. A daily file's single date is the chart day.
- new charts.spotify.com CSV: the date in ``regional-<cc>-weekly-<date>.csv`` is the chart date
  Spotify prints, the *last* day (a Thursday) of the Friday-to-Thursday tracking week, so
  ``chart_date = date - 6 days`` (a Friday, on the same weekly grid as the old format). The data
  confirm it: SZA's "Kill Bill" (released Friday 2022-12-09) has ``weeks_on_chart = 4`` in the
  file dated 2023-01-05, i.e. weeks ending 12-15, 12-22, 12-29 and 01-05. Daily files: the date.
- the daily export with ``country_short``: its ``date`` column, a daily chart.
- kworb country daily page: the date printed on the page, a daily chart.
- kworb country weekly page: the date printed on the page is taken to be the weekly chart date
  (week end), so ``chart_date = date - 6 days``.
- kworb track page: daily table dates as they are; weekly table dates are taken to be Spotify's
  weekly chart dates (week end), so ``chart_date = date - 6 days`` as for the new CSV.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .catalog import build_catalog
from .errors import DataError
from .identifiers import is_region, normalise_region, parse_track_ids
from .layout import STREAMS_COLUMNS, STREAMS_KEY, DataLayout

SNIFF_BYTES = 65536
CHART_KEY = ("region", "period", "chart_date")
"""One chart: the rows of one region, period and date."""
ORIGIN_COLUMNS = ("line", "reject", "detail", "unterminated")
"""Columns a reader's ``read_rows`` adds to :data:`STREAMS_COLUMNS`: the row's line in the file,
its rejection reason and detail when the reader already found it unreadable, and whether it is
the last row of a file that does not end with a newline."""
REJECT_REASONS: dict[str, str] = {
    "malformed_line": "more or fewer fields than the header",
    "bad_value": "a rank, streams, date or region that cannot be read",
    "invalid_track_id": "no valid Spotify track id",
    "rank_not_positive": "rank 0 or negative",
    "streams_not_positive": "streams 0 or negative",
    "duplicate_rank": "a rank held by more than one track of one chart",
    "cut_short": "the last line of a file cut short: no final newline, a field cut",
}
"""Why :func:`check_rows` rejects a chart row (rejected rows are never stored)."""
EXAMPLES_PER_REASON = 10
_WHOLE_RE = r"[+-]?(?:\d{1,18}|\d{1,3}(?:,\d{3}){1,5})"


class ChartFormat(Protocol):
    """What a chart reader provides (the registry's value type)."""

    name: str

    def sniff(self, path: Path, head: bytes) -> bool:
        """Return True when ``head`` (the file's first bytes) looks like this format."""
        ...

    def read(self, path: Path) -> pd.DataFrame:
        """Read the file into :data:`STREAMS_COLUMNS`; raise ChartFileError if broken."""
        ...

    def read_rows(self, path: Path) -> pd.DataFrame:
        """Like ``read`` but ``track_id`` still holds raw references (validated in bulk later)."""
        ...


CHART_FORMATS: dict[str, ChartFormat] = {}
"""Registry of chart readers, by format name, in detection order."""


def register(cls: type) -> type:
    """Class decorator: instantiate a reader and add it to :data:`CHART_FORMATS`."""
    reader = cls()
    CHART_FORMATS[reader.name] = reader
    return cls


class ChartFileError(Exception):
    """A chart file that cannot be loaded; the message is the reason shown in the report."""


# --- shared helpers -------------------------------------------------------------------------

_DATE_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_REGIONAL_NAME_RE = re.compile(r"regional-([A-Za-z]{2}|global)-(weekly|daily)", re.IGNORECASE)


def _text_head(head: bytes) -> str:
    return head.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace").lstrip()


def _first_line(head: bytes) -> str:
    return _text_head(head).split("\n", 1)[0].strip().lower()


def _looks_like_html(head: bytes) -> bool:
    start = _text_head(head)[:1024].lower()
    return start.startswith("<!doctype html") or "<html" in start


def _dates_in_name(path: Path) -> list[date]:
    out = []
    for y, m, d in _DATE_RE.findall(path.name):
        try:
            out.append(date(int(y), int(m), int(d)))
        except ValueError as exc:
            raise ChartFileError(f"bad date in file name: {exc}") from None
    return out


def _region_from_name(path: Path) -> str:
    """Region from ``regional-<cc>-``, a ``<date><cc>.csv`` suffix, ``<cc>_`` or the folder."""
    name = path.name
    match = _REGIONAL_NAME_RE.search(name)
    if match:
        return normalise_region(match.group(1))
    match = re.search(r"\d{4}-\d{2}-\d{2}([A-Za-z]{2}|global)\.[A-Za-z]+$", name, re.IGNORECASE)
    if match:
        return normalise_region(match.group(1))
    match = re.match(r"^([A-Za-z]{2}|global)[_-]", name, re.IGNORECASE)
    if match:
        return normalise_region(match.group(1))
    if is_region(path.parent.name):
        return normalise_region(path.parent.name)
    raise ChartFileError("cannot tell the region from the file name or its folder")


def _whole_numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integers from text that may carry thousands separators; and a mask of the unreadable.

    An unreadable value (empty, not a whole number, more than 18 digits) reads as 0 and is
    flagged, so that its row can be rejected alone instead of the whole file.
    """
    n = len(values)
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64), np.zeros(n, dtype=bool)
    text = values.astype("string").str.strip()
    readable = text.str.fullmatch(_WHOLE_RE).fillna(False).to_numpy(dtype=bool)
    out = np.zeros(n, dtype=np.int64)
    if readable.any():
        out[readable] = text[readable].str.replace(",", "", regex=False).astype(np.int64)
    return out, ~readable


Origin = dict[str, np.ndarray]
"""The :data:`ORIGIN_COLUMNS` of a reader's rows, as arrays (see :func:`_origin`)."""


def _origin(n: int, lines: Sequence[int] | np.ndarray | None = None) -> Origin:
    """Where each of ``n`` rows comes from (``line``) and whether it is already rejected."""
    return {
        "line": np.asarray(lines if lines is not None else np.zeros(n), dtype=np.int64),
        "reject": np.full(n, None, dtype=object),
        "detail": np.full(n, None, dtype=object),
        "unterminated": np.zeros(n, dtype=bool),
    }


def _mark(origin: Origin, mask: np.ndarray, reason: str, details: Iterable[str]) -> None:
    """Reject the rows of ``mask`` not rejected yet, for ``reason``.

    ``details`` gives one text per row of ``mask`` (it is not consumed when the mask is empty).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    texts = np.asarray(list(details), dtype=object)
    fresh = mask & pd.isna(origin["reject"])
    origin["reject"][fresh] = reason
    origin["detail"][fresh] = texts[fresh[mask]]


def _frame(
    *,
    region: str | pd.Series,
    period: str | pd.Series,
    chart_date: date | pd.Series,
    track_refs: pd.Series,
    rank: pd.Series,
    streams: pd.Series,
    title: pd.Series,
    artist: pd.Series,
    path: Path,
    origin: Origin | None = None,
) -> pd.DataFrame:
    """Assemble a reader's rows: :data:`STREAMS_COLUMNS` as read (``track_id`` the raw
    references: URL, URI or bare id; ``rank`` and ``streams`` the text) plus the
    :data:`ORIGIN_COLUMNS`; :func:`check_rows` turns them into plausible rows and rejected ones."""
    track_ids = track_refs.to_numpy(dtype=object)
    n = len(track_ids)
    if isinstance(chart_date, date):
        dates = np.full(n, np.datetime64(chart_date, "ns"))
    else:
        dates = pd.to_datetime(chart_date).to_numpy(dtype="datetime64[ns]")

    def text(values: str | pd.Series) -> str | np.ndarray:
        return values if isinstance(values, str) else values.to_numpy(dtype=object)

    columns = {
        "region": text(region),
        "period": text(period),
        "chart_date": dates,
        "track_id": track_ids,
        "rank": text(rank),
        "streams": text(streams),
        "title": text(title),
        "artist": text(artist),
        "source_file": str(path.resolve()),
    }
    return pd.DataFrame({**columns, **(origin if origin is not None else _origin(n))})


def _examples(frame: pd.DataFrame, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` rejected rows per reason as ``{file, line, reason, detail}``."""
    head = frame.groupby("reason", sort=True).head(limit)
    return [
        {"file": f, "line": int(n), "reason": r, "detail": d}
        for f, n, r, d in zip(
            head["file"], head["line"], head["reason"], head["detail"], strict=True
        )
    ]


def check_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validate track ids and reject implausible rows, each with its file, line and reason.

    Vectorised over many files at once (ingestion checks every file's rows in one pass). A row
    is rejected (see :data:`REJECT_REASONS`) when a reader already found it unreadable, its
    track id is not valid, its rank or streams are 0 or negative, its rank is held by another
    row of the same chart in the same file (every row of that rank is rejected: which one is
    right cannot be told), or it is the cut-off last line of a file. A file that does not end
    with a newline may have been cut; its last line is rejected when its streams are shorter
    than the neighbours allow: streams are non-increasing with rank in a chart (true of every
    row of the real charts), so a number cut by one digit or more is at least ten times smaller
    than the streams of the rank above (the largest drop between neighbours in the real charts
    is 3.6 times, from rank 1 to 2), or smaller than those of a rank below.

    Parameters
    ----------
    frame
        Rows from readers' ``read_rows``: :data:`STREAMS_COLUMNS` plus :data:`ORIGIN_COLUMNS`.

    Returns
    -------
    tuple of (pandas.DataFrame, pandas.DataFrame, pandas.DataFrame)
        The plausible rows (:data:`STREAMS_COLUMNS` plus ``line``, track ids validated, new
        index); the rejected ones (``file``, ``line``, ``reason``, ``detail``, in file and line
        order); and, in the same columns, the kept rows whose streams exceed those of the rank
        above them in the same file's chart (reported, kept: which of the two rows is wrong
        cannot be told).
    """
    frame = frame.reset_index(drop=True)
    origin = {column: frame[column].to_numpy().copy() for column in ORIGIN_COLUMNS}
    for column in ("rank", "streams"):
        values, bad = _whole_numbers(frame[column])
        raw = frame[column].to_numpy(dtype=object)
        _mark(origin, bad, "bad_value", (f"{column} {v!r} is not a whole number" for v in raw[bad]))
        frame[column] = values
    raw_ids = frame["track_id"].to_numpy(dtype=object)
    ids = parse_track_ids(frame["track_id"])
    invalid = ids.isna().to_numpy()
    _mark(origin, invalid, "invalid_track_id", (f"track {v!r}" for v in raw_ids[invalid]))
    for column in ("rank", "streams"):
        values = frame[column].to_numpy()
        bad = values <= 0
        _mark(origin, bad, f"{column}_not_positive", (f"{column} {v}" for v in values[bad]))

    # the last line of a file without a final newline: cut somewhere inside?
    unterminated = origin["unterminated"].astype(bool)
    cut = unterminated & np.isin(
        origin["reject"], ["malformed_line", "bad_value", "invalid_track_id"]
    )
    origin["detail"][cut] = [
        f"the file ends without a newline inside this line: {d}" for d in origin["detail"][cut]
    ]
    origin["reject"][cut] = "cut_short"
    ok = pd.isna(origin["reject"])
    if (unterminated & ok).any():
        files = frame.loc[unterminated & ok, "source_file"]
        near = _neighbours(frame[ok & frame["source_file"].isin(files).to_numpy()])
        last = near[unterminated[near.index]]
        for index, row in last.iterrows():
            if row["above"] >= 10 * row["streams"]:
                neighbour = f"{row['above']:.0f} at rank {row['rank_above']:.0f}"
            elif row["below"] > row["streams"]:
                neighbour = f"{row['below']:.0f} at rank {row['rank_below']:.0f}"
            else:
                continue
            origin["reject"][index] = "cut_short"
            origin["detail"][index] = (
                f"streams {row['streams']} at rank {row['rank']} are shorter than the "
                f"neighbours allow ({neighbour}) and the file ends inside this line"
            )

    # duplicate ranks within one chart of one file: every row of such a rank
    ok = pd.isna(origin["reject"])
    file_rank = ["source_file", *CHART_KEY, "rank"]
    dup = np.zeros(len(frame), dtype=bool)
    dup[ok] = frame.loc[ok].duplicated(file_rank, keep=False).to_numpy()
    if dup.any():
        held = frame.loc[dup, file_rank].assign(line=origin["line"][dup])
        lines = held.groupby(file_rank, sort=False)["line"].transform(
            lambda s: ", ".join(str(v) for v in s.iloc[:5]) + (" ..." if len(s) > 5 else "")
        )
        _mark(
            origin,
            dup,
            "duplicate_rank",
            (
                f"rank {r} is held by the rows of lines {ls}"
                for r, ls in zip(held["rank"], lines, strict=True)
            ),
        )

    rejected_mask = ~pd.isna(origin["reject"])
    rejected = pd.DataFrame(
        {
            "file": frame.loc[rejected_mask, "source_file"].to_numpy(dtype=object),
            "line": origin["line"][rejected_mask],
            "reason": origin["reject"][rejected_mask],
            "detail": origin["detail"][rejected_mask],
        }
    ).sort_values(["file", "line"], kind="stable", ignore_index=True)
    kept = frame.loc[~rejected_mask, [*STREAMS_COLUMNS, "line"]].reset_index(drop=True)
    kept["track_id"] = ids[~rejected_mask].to_numpy(dtype=object)
    order = _neighbours(kept)
    upward = order[order["streams"] > order["above"]]
    out_of_order = pd.DataFrame(
        {
            "file": upward["source_file"].to_numpy(dtype=object),
            "line": upward["line"].to_numpy(dtype=np.int64),
            "reason": "streams_out_of_order",
            "detail": [
                f"streams {s} at rank {r} exceed {a:.0f} at rank {ra:.0f}"
                for s, r, a, ra in zip(
                    upward["streams"],
                    upward["rank"],
                    upward["above"],
                    upward["rank_above"],
                    strict=True,
                )
            ],
        }
    )
    return kept, rejected, out_of_order


def _neighbours(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the streams and rank of their neighbours in rank order within the same
    file's chart (``above``: the next better rank, ``below``: the next worse; NaN at the ends)."""
    keys = ["source_file", *CHART_KEY]
    ordered = rows.sort_values([*keys, "rank"], kind="stable")
    groups = ordered.groupby(keys, sort=False)
    return ordered.assign(
        above=groups["streams"].shift(1),
        rank_above=groups["rank"].shift(1),
        below=groups["streams"].shift(-1),
        rank_below=groups["rank"].shift(-1),
    )


class _Reader:
    """Base of the registered readers: ``read`` = ``read_rows`` + :func:`check_rows`."""

    name = ""

    def read_rows(self, path: Path) -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, path: Path) -> pd.DataFrame:
        """Read ``path`` into :data:`STREAMS_COLUMNS`: its plausible rows.

        ``attrs["rejected"]`` lists the rejected rows (dicts of ``file``, ``line``, ``reason``,
        ``detail``), ``attrs["invalid_track_ids"]`` counts those rejected for their track id and
        ``attrs["out_of_order"]`` lists the kept rows whose streams exceed the rank above them.
        """
        kept, rejected, out_of_order = check_rows(self.read_rows(path))
        out = kept[list(STREAMS_COLUMNS)].copy()
        out.attrs = {
            "rejected": rejected.to_dict("records"),
            "invalid_track_ids": int((rejected["reason"] == "invalid_track_id").sum()),
            "out_of_order": out_of_order.to_dict("records"),
        }
        return out


def _read_csv(
    path: Path, is_header: Callable[[list[str]], bool] | None = None
) -> tuple[pd.DataFrame, Origin]:
    """A chart CSV's rows after its header line, as text, and their origin.

    Parameters
    ----------
    path
        The file (UTF-8, with or without a byte-order mark).
    is_header
        Which record is the header (given its lower-cased, stripped fields); default the first
        non-blank record.

    Returns
    -------
    tuple of (pandas.DataFrame, Origin)
        The rows (one text column per header name, stripped and lower-case; blank lines
        skipped) and their origin (:func:`_origin`): ``line``, the row's first line in the
        file; ``malformed_line`` for a row with more or fewer fields than the header;
        ``cut_short`` for a last line that ends inside a quoted field; ``unterminated`` for the
        last row of a file without a final newline.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChartFileError(f"not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    fed: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            fed.append(line)
            yield line

    reader = csv.reader(lines())
    header: list[str] | None = None
    records: list[list[str]] = []
    starts: list[int] = []
    last_raw = ""
    try:
        while True:
            start = reader.line_num + 1
            fed.clear()
            try:
                record = next(reader)
            except StopIteration:
                break
            if not any(field.strip() for field in record):
                continue
            if header is None:
                fields = [field.strip().lower() for field in record]
                if is_header is None or is_header(fields):
                    header = fields
                continue
            records.append(record)
            starts.append(start)
            last_raw = "".join(fed)
    except csv.Error as exc:
        raise ChartFileError(f"CSV parse error at line {reader.line_num}: {exc}") from None
    if header is None:
        raise ChartFileError("no header line")
    width = len(header)
    origin = _origin(len(records), starts)
    malformed = np.array([len(r) != width for r in records], dtype=bool)
    _mark(
        origin,
        malformed,
        "malformed_line",
        (f"{len(r)} fields, the header has {width}" for r in records if len(r) != width),
    )
    if records and not text.endswith(("\n", "\r")):
        origin["unterminated"][-1] = True
        try:
            list(csv.reader(io.StringIO(last_raw, newline=""), strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                origin["reject"][-1] = "cut_short"
                origin["detail"][-1] = "the file ends inside a quoted field of this line"
    padded = [(r + [""] * width)[:width] for r in records]
    columns: dict[str, list[str]] = {}
    for i, name in enumerate(header):
        columns.setdefault(name, [r[i] for r in padded])
    return pd.DataFrame(columns, dtype=object), origin


def _require(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ChartFileError(f"missing columns {missing}")


# --- CSV formats ------------------------------------------------------------------------------


@register
class SpotifyChartsLegacyCSV(_Reader):
    """Old spotifycharts.com regional CSV (weekly or daily): a note line, then
    ``Position,"Track Name",Artist,Streams,URL``. Region and dates come from the file name."""

    name = "spotifycharts_legacy_csv"
    _COLUMNS = ("position", "track name", "artist", "streams", "url")
    _HEADER = re.compile(r'^"?position"?,"?track name"?,"?artist"?,"?streams"?,"?url"?', re.M)

    def sniff(self, path: Path, head: bytes) -> bool:
        return bool(self._HEADER.search(_text_head(head)[:4096].lower()))

    def read_rows(self, path: Path) -> pd.DataFrame:
        rows, origin = _read_csv(path, is_header=lambda fields: tuple(fields[:5]) == self._COLUMNS)
        _require(rows, self._COLUMNS)
        period, chart_date = self._period_and_date(path)
        return _frame(
            region=_region_from_name(path),
            period=period,
            chart_date=chart_date,
            track_refs=rows["url"],
            rank=rows["position"],
            streams=rows["streams"],
            title=rows["track name"],
            artist=rows["artist"],
            path=path,
            origin=origin,
        )

    @staticmethod
    def _period_and_date(path: Path) -> tuple[str, date]:
        dates = _dates_in_name(path)
        if len(dates) >= 2:
            days = (dates[1] - dates[0]).days
            if days == 7:
                return "weekly", dates[0]
            if days == 1:
                return "daily", dates[0]
            raise ChartFileError(f"file name dates are {days} days apart (expected 7 or 1)")
        if len(dates) == 1:
            lowered = str(path).lower()
            return ("weekly" if "weekly" in lowered else "daily"), dates[0]
        raise ChartFileError("no chart date (YYYY-MM-DD) in the file name")


@register
class SpotifyChartsCSV(_Reader):
    """New charts.spotify.com CSV ``regional-<cc>-weekly-<date>.csv`` / ``-daily-``:
    ``rank,uri,artist_names,track_name,source,peak_rank,previous_rank,weeks_on_chart,streams``."""

    name = "charts_spotify_csv"

    def sniff(self, path: Path, head: bytes) -> bool:
        cols = [c.strip('"') for c in _first_line(head).split(",")]
        return {"rank", "uri", "artist_names", "track_name", "streams"} <= set(cols)

    def read_rows(self, path: Path) -> pd.DataFrame:
        match = _REGIONAL_NAME_RE.search(path.name)
        dates = _dates_in_name(path)
        if not match or not dates:
            raise ChartFileError(
                "file name is not regional-<cc>-weekly-<YYYY-MM-DD>.csv or regional-<cc>-daily-..."
            )
        region, period = normalise_region(match.group(1)), match.group(2).lower()
        chart_date = dates[-1] - timedelta(days=6) if period == "weekly" else dates[-1]
        rows, origin = _read_csv(path)
        _require(rows, ["rank", "uri", "artist_names", "track_name", "streams"])
        return _frame(
            region=region,
            period=period,
            chart_date=chart_date,
            track_refs=rows["uri"],
            rank=rows["rank"],
            streams=rows["streams"],
            title=rows["track_name"],
            artist=rows["artist_names"],
            path=path,
            origin=origin,
        )


@register
class DailyExportCSV(_Reader):
    """A scraper's daily export, many regions in one file:
    ``date,track,artist,...,current_pos,...,streams,country,country_short,track_uri,...``."""

    name = "daily_export_csv"
    _NEEDED = ("date", "track", "artist", "current_pos", "streams", "country_short", "track_uri")

    def sniff(self, path: Path, head: bytes) -> bool:
        cols = {c.strip('"') for c in _first_line(head).split(",")}
        return set(self._NEEDED) <= cols

    def read_rows(self, path: Path) -> pd.DataFrame:
        rows, origin = _read_csv(path)
        _require(rows, self._NEEDED)
        regions = rows["country_short"].str.strip().str.lower()
        bad = ~regions.str.fullmatch(r"[a-z]{2}|global").to_numpy(dtype=bool)
        _mark(origin, bad, "bad_value", (f"region {r!r}" for r in rows["country_short"][bad]))
        dates = pd.to_datetime(rows["date"], format="%Y-%m-%d", errors="coerce")
        bad = dates.isna().to_numpy()
        _mark(
            origin, bad, "bad_value", (f"date {d!r} is not YYYY-MM-DD" for d in rows["date"][bad])
        )
        return _frame(
            region=regions,
            period="daily",
            chart_date=dates,
            track_refs=rows["track_uri"],
            rank=rows["current_pos"],
            streams=rows["streams"],
            title=rows["track"],
            artist=rows["artist"],
            path=path,
            origin=origin,
        )


# --- kworb HTML -------------------------------------------------------------------------------


@dataclass
class _Table:
    attrs: dict[str, str]
    context: str  # text seen before the table (headings), lower-case
    rows: list[list[tuple[str, list[str]]]] = field(default_factory=list)  # cells: (text, hrefs)
    lines: list[int] = field(default_factory=list)  # the line of each row's <tr> in the page


class _TableParser(HTMLParser):
    """Collects every table's cells (text and link targets), the page title and the page text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[_Table] = []
        self.title = ""
        self.text: list[str] = []
        self._stack: list[_Table] = []
        self._cell: list[str] | None = None
        self._hrefs: list[str] = []
        self._in_title = False
        self._outside = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            table = _Table({k: v or "" for k, v in attrs}, self._outside[-300:].lower())
            self.tables.append(table)
            self._stack.append(table)
        elif tag == "tr" and self._stack:
            self._stack[-1].rows.append([])
            self._stack[-1].lines.append(self.getpos()[0])
        elif tag in ("td", "th") and self._stack:
            self._cell, self._hrefs = [], []
        elif tag == "a" and self._cell is not None:
            href = dict(attrs).get("href")
            if href:
                self._hrefs.append(href)
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._stack:
            self._stack.pop()
        elif tag in ("td", "th") and self._cell is not None and self._stack:
            rows = self._stack[-1].rows
            if not rows:
                rows.append([])
                self._stack[-1].lines.append(self.getpos()[0])
            rows[-1].append((" ".join("".join(self._cell).split()), self._hrefs))
            self._cell = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)
        elif not self._stack:
            self._outside = (self._outside + " " + data)[-2000:]
        self.text.append(data)


def _parse_html(path: Path) -> _TableParser:
    parser = _TableParser()
    try:
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.close()
    except Exception as exc:  # html.parser is lenient; anything raised means a broken file
        raise ChartFileError(f"HTML parse error: {exc}") from None
    return parser


def _header(table: _Table) -> list[str]:
    return [text.strip().lower() for text, _ in table.rows[0]] if table.rows else []


_TRACK_HREF_RE = re.compile(r"track/([0-9A-Za-z]{22})(?:\.html)?(?:[?#].*)?$")
_PAGE_DATE_RE = re.compile(r"(\d{4})[/-](\d{2})[/-](\d{2})")


def _track_ref_from_hrefs(hrefs: list[str]) -> str:
    for href in hrefs:
        match = _TRACK_HREF_RE.search(href)
        if match:
            return match.group(1)
    return ""


_NUMBER_RE = re.compile(r"^\d{1,3}(?:,\d{3})*$|^\d+$")
_KWORB_COUNTRY_NAME_RE = re.compile(r"^([a-z]{2}|global)_(daily|weekly)\b")


def _kworb_country_period(head: bytes) -> str | None:
    """``daily`` or ``weekly`` for a kworb country chart page (table id, else the header's
    ``Days`` / ``Wks`` column), None for anything else."""
    text = head.decode("utf-8", errors="replace").lower()
    if "<table" not in text:
        return None
    if 'id="spotifyweekly"' in text or "id='spotifyweekly'" in text:
        return "weekly"
    if "spotifydaily" in text:
        return "daily"
    if "artist and title" not in text:
        return None
    return "weekly" if re.search(r"<th[^>]*>\s*(?:wks|weeks)\s*</th>", text) else "daily"


class _KworbCountryHTML(_Reader):
    """A kworb.net country chart page, read strictly: the page description is second-hand
    (see the class docstrings), so any row that does not look as described fails the whole
    file with the row and the reason instead of loading a guess."""

    period = ""
    table_id = ""

    def sniff(self, path: Path, head: bytes) -> bool:
        return _kworb_country_period(head) == self.period

    def read_rows(self, path: Path) -> pd.DataFrame:
        page = _parse_html(path)
        tables = [t for t in page.tables if t.attrs.get("id") == self.table_id] or [
            t for t in page.tables if "artist and title" in _header(t)
        ]
        if not tables:
            raise ChartFileError(
                f"no kworb {self.period} chart table (id {self.table_id!r} or an 'Artist and "
                "Title' column) in the page"
            )
        table = tables[0]
        header = _header(table)
        missing = [c for c in ("pos", "artist and title", "streams") if c not in header]
        if missing:
            raise ChartFileError(f"the kworb chart table lacks column(s) {missing}: {header}")
        pos_col = header.index("pos")
        name_col = header.index("artist and title")
        streams_col = header.index("streams")
        match = _KWORB_COUNTRY_NAME_RE.match(path.name.lower())
        if not match or match.group(2) != self.period:
            raise ChartFileError(
                f"file name is not <cc>_{self.period}.html: cannot tell the region"
            )
        page_date = _PAGE_DATE_RE.search(page.title + " " + " ".join(page.text))
        if not page_date:
            raise ChartFileError("no chart date (YYYY/MM/DD) on the page")
        try:
            printed = date(*(int(g) for g in page_date.groups()))
        except ValueError as exc:
            raise ChartFileError(f"bad chart date on the page: {exc}") from None
        chart_date = printed - timedelta(days=6) if self.period == "weekly" else printed
        refs, ranks, streams, titles, artists, lines = [], [], [], [], [], []
        for number, row in enumerate(table.rows[1:], start=1):
            if not row:
                continue
            where = f"table row {number}"
            if len(row) <= max(pos_col, name_col, streams_col):
                raise ChartFileError(f"{where}: {len(row)} cells, the header has {len(header)}")
            name_text, hrefs = row[name_col]
            ref = _track_ref_from_hrefs(hrefs)
            if not ref:
                raise ChartFileError(
                    f"{where} ({name_text[:60]!r}): no link to a track page (track/<id>.html)"
                )
            rank, count = row[pos_col][0].strip(), row[streams_col][0].strip()
            if not rank.isdigit():
                raise ChartFileError(f"{where}: position {rank!r} is not a number")
            if not _NUMBER_RE.match(count):
                raise ChartFileError(f"{where}: streams {count!r} is not a number")
            artist, _, title = name_text.partition(" - ")
            refs.append(ref)
            ranks.append(rank)
            streams.append(count)
            titles.append(title.strip() or name_text)
            artists.append(artist.strip())
            lines.append(table.lines[number])
        if not refs:
            raise ChartFileError("the kworb chart table has no rows")
        repeated = sorted({r for r in ranks if ranks.count(r) > 1}, key=int)
        if repeated:
            raise ChartFileError(f"position(s) {repeated[:5]} appear more than once")
        return _frame(
            region=normalise_region(match.group(1)),
            period=self.period,
            chart_date=chart_date,
            track_refs=pd.Series(refs),
            rank=pd.Series(ranks),
            streams=pd.Series(streams),
            title=pd.Series(titles),
            artist=pd.Series(artists),
            path=path,
            origin=_origin(len(refs), lines),
        )


@register
class KworbCountryDailyHTML(_KworbCountryHTML):
    """kworb.net country daily page (``<cc>_daily.html``): ``<table id="spotifydaily">`` with
    ``Pos | P+ | Artist and Title | Days | Pk | (x?) | Streams | ...``; the chart date is the first
    ``YYYY/MM/DD`` printed on the page."""

    name = "kworb_country_daily_html"
    period = "daily"
    table_id = "spotifydaily"


@register
class KworbCountryWeeklyHTML(_KworbCountryHTML):
    """kworb.net country weekly page (``<cc>_weekly.html``): ``<table id="spotifyweekly">`` (or a
    table with an ``Artist and Title`` and a ``Wks`` column) with ``Pos | P+ | Artist and Title |
    Wks | Pk | (x?) | Streams | Streams+ | Total``. The date printed on the page is taken to be
    Spotify's weekly chart date (the last day of the tracking week), so ``chart_date = date - 6
    days``, as for the track page's weekly table and the charts.spotify.com CSV."""

    name = "kworb_country_weekly_html"
    period = "weekly"
    table_id = "spotifyweekly"


_CELL_RE = re.compile(r"^\s*(\d+)\s*\(\s*([\d,]+)\s*\)\s*$")
_EMPTY_CELLS = frozenset({"", "-", "--", "\u2013", "\u2014"})
_ROW_DATE_RE = re.compile(r"^(\d{4})/(\d{2})/(\d{2})$")


@register
class KworbTrackHTML(_Reader):
    """kworb.net track page (``track/<id>.html``): weekly and daily tables with header
    ``Date | Global | US | ...``, rows ``Total``, ``Peak``, then ``YYYY/MM/DD`` rows whose cells
    are ``position (streams)``. Weekly vs daily is told by the table's heading, else by the date
    spacing."""

    name = "kworb_track_html"

    def sniff(self, path: Path, head: bytes) -> bool:
        text = head.decode("utf-8", errors="replace").lower()
        return "<table" in text and bool(
            re.search(r"<t[hd][^>]*>\s*date\s*</t[hd]>\s*<t[hd][^>]*>\s*global", text)
        )

    def read_rows(self, path: Path) -> pd.DataFrame:
        page = _parse_html(path)
        track_id = self._track_id(path, page)
        title, artist = self._title_artist(page)
        frames = []
        for table in page.tables:
            header = _header(table)
            if len(header) < 2 or header[0] != "date":
                continue
            dated = []
            for row, line in zip(table.rows[1:], table.lines[1:], strict=True):
                label = row[0][0].strip() if row else ""
                m = _ROW_DATE_RE.match(label)
                if m:
                    try:
                        dated.append((date(*(int(g) for g in m.groups())), row, line))
                    except ValueError as exc:
                        raise ChartFileError(f"row {label!r}: bad date ({exc})") from None
                elif row and label.lower() not in ("total", "peak", ""):
                    raise ChartFileError(
                        f"a row of a 'Date' table is labelled {label!r}: "
                        "neither Total, Peak nor a YYYY/MM/DD date"
                    )
            if not dated:
                continue
            period = self._period(table, [d for d, _, _ in dated])
            regions = header[1:]
            records = []
            for day, row, line in dated:
                chart_date = day - timedelta(days=6) if period == "weekly" else day
                if len(row) - 1 != len(regions):
                    raise ChartFileError(
                        f"row {day:%Y/%m/%d}: {len(row) - 1} cells for {len(regions)} regions"
                    )
                for region, (text, _) in zip(regions, row[1:], strict=True):
                    cell = _CELL_RE.match(text)
                    if cell:
                        records.append((region, chart_date, cell.group(1), cell.group(2), line))
                    elif text.strip() not in _EMPTY_CELLS:
                        raise ChartFileError(
                            f"row {day:%Y/%m/%d}, column {region!r}: cannot read {text!r} "
                            "(expected 'position (streams)' or an empty cell)"
                        )
            if not records:
                continue
            region_col, date_col, rank_col, streams_col, line_col = zip(*records, strict=True)
            bad = sorted({r for r in region_col if not is_region(r)})
            if bad:
                raise ChartFileError(f"unknown region column(s) {bad} in the kworb table")
            n = len(records)
            frames.append(
                _frame(
                    region=pd.Series([normalise_region(r) for r in region_col]),
                    period=period,
                    chart_date=pd.Series(pd.to_datetime(list(date_col))),
                    track_refs=pd.Series([track_id] * n),
                    rank=pd.Series(rank_col),
                    streams=pd.Series(streams_col),
                    title=pd.Series([title] * n, dtype=object),
                    artist=pd.Series([artist] * n, dtype=object),
                    path=path,
                    origin=_origin(n, line_col),
                )
            )
        if not frames:
            raise ChartFileError("no dated 'position (streams)' rows in the kworb track tables")
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def _track_id(path: Path, page: _TableParser) -> str:
        stem = path.stem
        if re.fullmatch(r"[0-9A-Za-z]{22}", stem):
            return stem
        text = " ".join(page.text)
        match = re.search(r"(?:open\.spotify\.com/track/|spotify:track:)([0-9A-Za-z]{22})", text)
        if match:
            return match.group(1)
        raise ChartFileError("no track id: the file stem is not a 22-character base62 id")

    @staticmethod
    def _title_artist(page: _TableParser) -> tuple[str | None, str | None]:
        title = html.unescape(page.title).strip()
        title = re.sub(r"\s*[-|]\s*(spotify|kworb).*$", "", title, flags=re.IGNORECASE)
        artist, sep, song = title.partition(" - ")
        if sep:
            return song.strip() or None, artist.strip() or None
        return (title or None), None

    @staticmethod
    def _period(table: _Table, dates: list[date]) -> str:
        context = table.context[-120:]
        weekly_at, daily_at = context.rfind("weekly"), context.rfind("daily")
        if weekly_at != daily_at:  # the heading nearest to the table wins
            return "weekly" if weekly_at > daily_at else "daily"
        if len(dates) > 1:
            gaps = np.diff(sorted(dates))
            if min(g.days for g in gaps) >= 7:
                return "weekly"
        return "daily"


# --- detection --------------------------------------------------------------------------------


def detect_format(path: Path, head: bytes) -> str | None:
    """Name of the first registered format whose ``sniff`` accepts the file, else None.

    Parameters
    ----------
    path
        The file (readers may look at its name, but decide from ``head``).
    head
        The first bytes of the file (:data:`SNIFF_BYTES`).

    Returns
    -------
    str or None
        A key of :data:`CHART_FORMATS`.
    """
    for name, reader in CHART_FORMATS.items():
        if reader.sniff(path, head):
            return name
    return None


def _skip_reason(head: bytes) -> str:
    if not head.strip():
        return "empty file"
    if _looks_like_html(head):
        return "HTML page that is not a known chart page (an error page saved under a chart name?)"
    if b"\x00" in head[:1024]:
        return "binary file, not a chart"
    return "unknown format (no registered chart format recognises the content)"


def read_chart_file(path: Path, validate: bool = True) -> tuple[str, pd.DataFrame]:
    """Detect the format of one file and read it.

    Parameters
    ----------
    path
        A chart file.
    validate
        Check the rows (:func:`check_rows`: track ids validated, implausible rows rejected);
        False returns the reader's rows as they are (raw track references, plus the
        :data:`ORIGIN_COLUMNS`), for callers that check many files in one pass.

    Returns
    -------
    tuple of (str, pandas.DataFrame)
        The format name and the rows (:data:`STREAMS_COLUMNS`; with ``validate``, the rejected
        ones are in ``attrs["rejected"]``, see ``_Reader.read``).

    Raises
    ------
    ChartFileError
        If the file is not a chart in a registered format, or is broken; the message is the reason.
    """
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    name = detect_format(path, head)
    if name is None:
        raise ChartFileError(_skip_reason(head))
    reader = CHART_FORMATS[name]
    try:
        frame = reader.read(path) if validate else reader.read_rows(path)
    except DataError as exc:
        raise ChartFileError(str(exc)) from None
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as exc:
        # a reader tripping over content it did not foresee: skip the file, say why
        raise ChartFileError(f"cannot read it ({type(exc).__name__}: {exc})") from None
    if validate and frame.empty and frame.attrs["rejected"]:
        reasons = pd.Series([row["reason"] for row in frame.attrs["rejected"]])
        raise ChartFileError(_nothing_kept(reasons))
    if frame.empty:
        raise ChartFileError("no chart rows")
    return name, frame


def _nothing_kept(reasons: pd.Series) -> str:
    """Why a file gave no row: every row was rejected (see the ingest report for each)."""
    if (reasons == "invalid_track_id").all():
        return "no chart rows with a valid track id"
    counts = ", ".join(f"{n} {r}" for r, n in reasons.value_counts().sort_index().items())
    return f"every chart row was rejected ({counts})"


# --- ingestion --------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What one :func:`ingest_charts` call did."""

    data_dir: str
    files_read: int = 0
    formats: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    rows_read: int = 0
    rows_added: int = 0
    rows_present: int = 0
    conflicts: int = 0
    conflict_examples: list[dict[str, Any]] = field(default_factory=list)
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_by_file: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected_examples: list[dict[str, Any]] = field(default_factory=list)
    out_of_order: int = 0
    out_of_order_examples: list[dict[str, Any]] = field(default_factory=list)
    charts_with_rank_gaps: int = 0
    rank_gap_examples: list[dict[str, Any]] = field(default_factory=list)
    rows_total: int = 0
    seconds: float = 0.0

    @property
    def invalid_track_ids(self) -> int:
        """Rows rejected because they have no valid track id."""
        return self.rejected_by_reason.get("invalid_track_id", 0)

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        """Number of skipped files per reason."""
        return dict(Counter(reason for _, reason in self.skipped))

    def add_rejected(self, rejected: pd.DataFrame, max_examples: int = EXAMPLES_PER_REASON) -> None:
        """Count rejected rows (``file``, ``line``, ``reason``, ``detail``) and keep examples."""
        if rejected.empty:
            return
        self.rows_rejected += len(rejected)
        for reason, count in rejected["reason"].value_counts().items():
            self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + int(count)
        for (file, reason), count in rejected.groupby(["file", "reason"]).size().items():
            per_file = self.rejected_by_file.setdefault(file, {})
            per_file[reason] = per_file.get(reason, 0) + int(count)
        shown = Counter(example["reason"] for example in self.rejected_examples)
        for example in _examples(rejected, max_examples):
            if shown[example["reason"]] < max_examples:
                shown[example["reason"]] += 1
                self.rejected_examples.append(example)

    def summary(self) -> str:
        """A few human-readable lines: files, skips by reason, rows, rejected rows, conflicts."""
        fmt = ", ".join(f"{n} {name}" for name, n in sorted(self.formats.items())) or "none"
        lines = [
            f"read {self.files_read:,} chart files ({fmt}) in {self.seconds:.1f} s",
            f"skipped {len(self.skipped):,} files",
        ]
        for reason, count in sorted(self.skipped_by_reason.items(), key=lambda kv: -kv[1]):
            examples = [p for p, r in self.skipped if r == reason][:3]
            lines.append(f"  {count:,} x {reason}: e.g. {', '.join(examples)}")
        lines.append(
            f"rows: {self.rows_read:,} read, {self.rows_added:,} added, "
            f"{self.rows_present:,} already present; the streams table now has {self.rows_total:,} rows"
        )
        if self.rows_rejected:
            lines.append(
                f"REJECTED {self.rows_rejected:,} rows (not stored; every one is listed by "
                "reason and file in ingest_report.json):"
            )
            for reason, count in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
                examples = [e for e in self.rejected_examples if e["reason"] == reason][:3]
                shown = "; ".join(f"{e['file']}:{e['line']} ({e['detail']})" for e in examples)
                lines.append(f"  {count:,} x {reason} ({REJECT_REASONS[reason]}): e.g. {shown}")
        if self.out_of_order:
            shown = "; ".join(
                f"{e['file']}:{e['line']} ({e['detail']})" for e in self.out_of_order_examples[:3]
            )
            lines.append(
                f"warning: {self.out_of_order:,} rows have more streams than the rank above them "
                f"(kept: which of the two is wrong cannot be told): e.g. {shown}"
            )
        if self.charts_with_rank_gaps:
            shown = "; ".join(_gap_text(e) for e in self.rank_gap_examples[:3])
            lines.append(
                f"{self.charts_with_rank_gaps:,} charts have gaps in their ranks (kept; their "
                f"chart size and floor are only bounds, see docs/targets.md): e.g. {shown}"
            )
        if self.conflicts:
            lines.append(
                f"CONFLICTS: {self.conflicts:,} rows disagree with a row already stored for the "
                "same (region, period, chart_date, track_id); the stored row was kept. Examples:"
            )
            lines.extend(f"  {json.dumps(ex, default=str)}" for ex in self.conflict_examples)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (written to ``ingest_report.json``)."""
        return {
            "data_dir": self.data_dir,
            "files_read": self.files_read,
            "formats": self.formats,
            "files_skipped": len(self.skipped),
            "skipped_by_reason": self.skipped_by_reason,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "rows_read": self.rows_read,
            "rows_added": self.rows_added,
            "rows_present": self.rows_present,
            "invalid_track_ids": self.invalid_track_ids,
            "rows_rejected": self.rows_rejected,
            "rejected_by_reason": self.rejected_by_reason,
            "rejected_by_file": self.rejected_by_file,
            "rejected_examples": self.rejected_examples,
            "out_of_order": self.out_of_order,
            "out_of_order_examples": self.out_of_order_examples,
            "charts_with_rank_gaps": self.charts_with_rank_gaps,
            "rank_gap_examples": self.rank_gap_examples,
            "conflicts": self.conflicts,
            "conflict_examples": self.conflict_examples,
            "rows_total": self.rows_total,
            "seconds": round(self.seconds, 3),
        }


def _gap_text(example: dict[str, Any]) -> str:
    missing = example["missing_ranks"]
    more = (
        f" and {example['n_missing'] - len(missing)} more"
        if example["n_missing"] > len(missing)
        else ""
    )
    return (
        f"{example['region']} {example['period']} {example['chart_date']} has no rank "
        f"{', '.join(map(str, missing))}{more} of 1-{example['max_rank']}"
    )


def _chart_files(paths: Sequence[Path | str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return sorted(dict.fromkeys(files))


def read_streams(data_dir: Path | str | DataLayout) -> pd.DataFrame:
    """Read the streams table (an empty frame with the right columns when absent).

    Parameters
    ----------
    data_dir
        The dataset folder or its layout.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`~features.layout.STREAMS_COLUMNS`.
    """
    layout = data_dir if isinstance(data_dir, DataLayout) else DataLayout(data_dir)
    frame = layout.streams.read_or_empty(_empty_streams)
    frame["chart_date"] = frame["chart_date"].astype("datetime64[ns]")
    return frame[list(STREAMS_COLUMNS)]


def _empty_streams() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": pd.Series(dtype=object),
            "period": pd.Series(dtype=object),
            "chart_date": pd.Series(dtype="datetime64[ns]"),
            "track_id": pd.Series(dtype=object),
            "rank": pd.Series(dtype=np.int64),
            "streams": pd.Series(dtype=np.int64),
            "title": pd.Series(dtype=object),
            "artist": pd.Series(dtype=object),
            "source_file": pd.Series(dtype=object),
        }
    )


def _merge(
    existing: pd.DataFrame, new: pd.DataFrame, report: IngestReport, max_examples: int = 5
) -> pd.DataFrame:
    """Union keeping the first row per key (existing rows first); count duplicates and
    conflicts; reject a new row whose rank of its chart is already held by another track."""
    combined = pd.concat([existing, new], ignore_index=True)
    duplicate = combined.duplicated(list(STREAMS_KEY), keep="first")
    kept = combined[~duplicate]
    dups = combined[duplicate]
    if len(dups):
        compared = dups.merge(
            kept[[*STREAMS_KEY, "rank", "streams", "source_file"]],
            on=list(STREAMS_KEY),
            suffixes=("", "_kept"),
            how="left",
        )
        same = (compared["rank"] == compared["rank_kept"]) & (
            compared["streams"] == compared["streams_kept"]
        )
        report.rows_present += int(same.sum())
        conflicts = compared[~same]
        report.conflicts += len(conflicts)
        for row in conflicts.head(max_examples - len(report.conflict_examples)).itertuples():
            report.conflict_examples.append(
                {
                    "region": row.region,
                    "period": row.period,
                    "chart_date": str(pd.Timestamp(row.chart_date).date()),
                    "track_id": row.track_id,
                    "kept": {
                        "rank": int(row.rank_kept),
                        "streams": int(row.streams_kept),
                        "file": row.source_file_kept,
                    },
                    "rejected": {
                        "rank": int(row.rank),
                        "streams": int(row.streams),
                        "file": row.source_file,
                    },
                }
            )
    chart_rank = [*CHART_KEY, "rank"]
    taken = kept.duplicated(chart_rank, keep="first").to_numpy() & (kept.index >= len(existing))
    if taken.any():
        holders = kept[~kept.duplicated(chart_rank, keep="first")][
            [*chart_rank, "track_id", "source_file"]
        ]
        clash = kept[taken].merge(holders, on=chart_rank, suffixes=("", "_holder"), how="left")
        report.add_rejected(
            pd.DataFrame(
                {
                    "file": clash["source_file"].to_numpy(dtype=object),
                    "line": clash["line"].fillna(0).to_numpy(dtype=np.int64),
                    "reason": "duplicate_rank",
                    "detail": [
                        f"rank {r} of this chart is already held by track {t} from {f}"
                        for r, t, f in zip(
                            clash["rank"],
                            clash["track_id_holder"],
                            clash["source_file_holder"],
                            strict=True,
                        )
                    ],
                }
            )
        )
        kept = kept[~taken]
    report.rows_added += len(kept) - len(existing)
    return kept.drop(columns="line", errors="ignore")


def _rank_gaps(
    streams: pd.DataFrame, charts: pd.DataFrame, report: IngestReport, limit: int = 10
) -> None:
    """Count the charts (of those in ``charts``) whose ranks skip a number below their largest."""
    touched = streams.merge(charts.drop_duplicates(), on=list(CHART_KEY))
    ranks = touched.groupby(list(CHART_KEY))["rank"].agg(["nunique", "max"])
    gapped = ranks[ranks["nunique"] < ranks["max"]]
    report.charts_with_rank_gaps = len(gapped)
    for key in gapped.index[:limit]:
        region, period, chart_date = key
        held = set(
            touched.loc[
                (touched["region"] == region)
                & (touched["period"] == period)
                & (touched["chart_date"] == chart_date),
                "rank",
            ]
        )
        top = int(gapped.loc[key, "max"])
        missing = [r for r in range(1, top) if r not in held]
        report.rank_gap_examples.append(
            {
                "region": region,
                "period": period,
                "chart_date": str(pd.Timestamp(chart_date).date()),
                "max_rank": top,
                "n_missing": len(missing),
                "missing_ranks": missing[:10],
            }
        )


def ingest_charts(
    paths: Sequence[Path | str],
    data_dir: Path | str,
    progress: bool | None = None,
    on_file: Callable[[Path, str | None], None] | None = None,
) -> IngestReport:
    """Load chart files and folders (recursively) into ``DIR/streams.parquet``.

    Each file's format is detected from its content (:data:`CHART_FORMATS`). Unknown or broken
    files are skipped with a reason; rows whose key is already stored are counted as present
    (same rank and streams) or as conflicts (different values: the stored row is kept and the
    conflict reported). The table is written atomically, the data dir's ingest report records
    the summary, and the catalog is rebuilt (:func:`features.catalog.build_catalog`).

    Parameters
    ----------
    paths
        Chart files and/or folders.
    data_dir
        The dataset folder (created when missing).
    progress
        Show a progress bar; None shows it only on a terminal.
    on_file
        Optional callback ``(path, format name or None when skipped)``.

    Returns
    -------
    IngestReport
        Counts of files read and skipped (with reasons), rows added/present, conflicts.

    Raises
    ------
    DataError
        If a path does not exist or the stored streams table is unreadable.
    """
    started = time.perf_counter()
    layout = DataLayout(data_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    report = IngestReport(data_dir=str(layout.root))
    files = _chart_files(paths)
    existing = read_streams(layout)
    frames: list[pd.DataFrame] = []
    format_of: dict[str, str] = {}
    disable = None if progress is None else not progress
    for path in tqdm(files, desc="ingest charts", unit="file", disable=disable):
        try:
            name, frame = read_chart_file(path, validate=False)
        except ChartFileError as exc:
            report.skipped.append((str(path), str(exc)))
            if on_file:
                on_file(path, None)
            continue
        except OSError as exc:
            report.skipped.append((str(path), f"cannot open: {exc.strerror}"))
            continue
        format_of[frame["source_file"].iloc[0]] = name
        frames.append(frame)
        if on_file:
            on_file(path, name)
    new = _empty_streams().assign(line=pd.Series(dtype=np.int64))
    if frames:
        # one pass over every file's rows
        new, rejected, out_of_order = check_rows(pd.concat(frames, ignore_index=True))
        report.add_rejected(rejected)
        report.out_of_order = len(out_of_order)
        report.out_of_order_examples = _examples(out_of_order, EXAMPLES_PER_REASON)
        for source in sorted(set(format_of) - set(new["source_file"].unique())):
            reasons = rejected.loc[rejected["file"] == source, "reason"]
            report.skipped.append((source, _nothing_kept(reasons)))
            del format_of[source]
    report.formats = dict(Counter(format_of.values()))
    report.files_read = len(format_of)
    report.rows_read = len(new)
    merged = _merge(existing, new, report)
    if report.rows_added or not layout.streams.exists():
        merged = merged.sort_values(["region", "period", "chart_date", "rank", "track_id"])
        layout.streams.write(merged.reset_index(drop=True))
    report.rows_total = len(merged)
    _rank_gaps(merged, new[list(CHART_KEY)], report)
    build_catalog(layout.root)
    report.seconds = time.perf_counter() - started
    layout.ingest_report.write(report.to_dict())
    return report


__all__ = [
    "CHART_FORMATS",
    "ORIGIN_COLUMNS",
    "REJECT_REASONS",
    "ChartFileError",
    "IngestReport",
    "check_rows",
    "detect_format",
    "ingest_charts",
    "read_chart_file",
    "read_streams",
    "register",
]
