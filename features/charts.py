"""Chart ingestion: every supported chart file format into ``streams.parquet``.

Each format is one reader object in :data:`CHART_FORMATS`, found by :func:`detect_format` from the
file's *content* (the name only supplies what the content lacks: region and date). Adding a format
is adding one ``@register``-decorated class; ``tests/test_charts.py`` covers every entry.

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

import html
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
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


def _to_int(values: pd.Series, column: str) -> np.ndarray:
    """Integers from numbers that may be quoted or carry thousands separators."""
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64)
    try:  # fast path: plain digit strings
        return values.to_numpy(dtype=object).astype(np.int64)
    except (TypeError, ValueError, OverflowError):
        pass
    cleaned = values.astype("string").str.replace(",", "", regex=False).str.strip()
    numbers = pd.to_numeric(cleaned, errors="coerce")
    if numbers.isna().any():
        bad = values[numbers.isna()].iloc[0]
        raise ChartFileError(f"non-numeric value {bad!r} in column {column!r}")
    if (numbers % 1 != 0).any():
        raise ChartFileError(f"non-integer value in column {column!r}")
    return numbers.to_numpy(dtype=np.int64)


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
) -> pd.DataFrame:
    """Assemble a streams frame whose ``track_id`` still holds the raw track references
    (URL, URI or bare id); :func:`validate_track_ids` turns them into ids."""
    track_ids = track_refs.to_numpy(dtype=object)
    n = len(track_ids)
    if isinstance(chart_date, date):
        dates = np.full(n, np.datetime64(chart_date, "ns"))
    else:
        dates = pd.to_datetime(chart_date).to_numpy(dtype="datetime64[ns]")

    def text(values: str | pd.Series) -> str | np.ndarray:
        return values if isinstance(values, str) else values.to_numpy(dtype=object)

    frame = pd.DataFrame(
        {
            "region": text(region),
            "period": text(period),
            "chart_date": dates,
            "track_id": track_ids,
            "rank": _to_int(rank, "rank"),
            "streams": _to_int(streams, "streams"),
            "title": text(title),
            "artist": text(artist),
            "source_file": str(path.resolve()),
        },
        columns=list(STREAMS_COLUMNS),
    )
    return frame


def validate_track_ids(frame: pd.DataFrame) -> pd.DataFrame:
    """Replace raw track references by validated ids; drop the rows without a valid id.

    Vectorised (one RE2 pass over the column), so ingestion validates all files at once.

    Parameters
    ----------
    frame
        Rows from a reader's ``read_rows``: ``track_id`` holds URLs, URIs or bare ids.

    Returns
    -------
    pandas.DataFrame
        The valid rows (new index); ``attrs["invalid_track_ids"]`` is the number dropped and
        ``attrs["invalid_by_file"]`` maps ``source_file`` to its count of dropped rows.
    """
    ids = parse_track_ids(frame["track_id"])
    valid = ids.notna().to_numpy()
    out = frame[valid].reset_index(drop=True)
    out["track_id"] = ids[valid].to_numpy(dtype=object)
    out.attrs["invalid_track_ids"] = int((~valid).sum())
    out.attrs["invalid_by_file"] = frame.loc[~valid, "source_file"].value_counts().to_dict()
    return out


class _Reader:
    """Base of the registered readers: ``read`` = ``read_rows`` + track-id validation."""

    name = ""

    def read_rows(self, path: Path) -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, path: Path) -> pd.DataFrame:
        """Read ``path`` into :data:`STREAMS_COLUMNS` (invalid track ids dropped and counted)."""
        return validate_track_ids(self.read_rows(path))


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    try:
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ChartFileError(f"CSV parse error: {str(exc).splitlines()[0]}") from None


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
    _HEADER = re.compile(r'^"?position"?,"?track name"?,"?artist"?,"?streams"?,"?url"?', re.M)

    def sniff(self, path: Path, head: bytes) -> bool:
        return bool(self._HEADER.search(_text_head(head)[:4096].lower()))

    def read_rows(self, path: Path) -> pd.DataFrame:
        with path.open("rb") as handle:
            head = handle.read(4096)
        lines = _text_head(head).lower().splitlines()
        header_at = next(i for i, line in enumerate(lines) if self._HEADER.match(line))
        rows = _read_csv(path, skiprows=header_at)
        rows.columns = [c.strip().lower() for c in rows.columns]
        _require(rows, ["position", "track name", "artist", "streams", "url"])
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
        rows = _read_csv(path)
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
        rows = _read_csv(path)
        _require(rows, self._NEEDED)
        regions = rows["country_short"].str.strip().str.lower()
        bad = ~regions.str.fullmatch(r"[a-z]{2}|global")
        if bad.any():
            raise ChartFileError(f"bad region code {rows['country_short'][bad].iloc[0]!r}")
        dates = pd.to_datetime(rows["date"], format="%Y-%m-%d", errors="coerce")
        if dates.isna().any():
            raise ChartFileError(f"bad date {rows['date'][dates.isna()].iloc[0]!r}")
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
        )


# --- kworb HTML -------------------------------------------------------------------------------


@dataclass
class _Table:
    attrs: dict[str, str]
    context: str  # text seen before the table (headings), lower-case
    rows: list[list[tuple[str, list[str]]]] = field(default_factory=list)  # cells: (text, hrefs)


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
        refs, ranks, streams, titles, artists = [], [], [], [], []
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
            for row in table.rows[1:]:
                label = row[0][0].strip() if row else ""
                m = _ROW_DATE_RE.match(label)
                if m:
                    try:
                        dated.append((date(*(int(g) for g in m.groups())), row))
                    except ValueError as exc:
                        raise ChartFileError(f"row {label!r}: bad date ({exc})") from None
                elif row and label.lower() not in ("total", "peak", ""):
                    raise ChartFileError(
                        f"a row of a 'Date' table is labelled {label!r}: "
                        "neither Total, Peak nor a YYYY/MM/DD date"
                    )
            if not dated:
                continue
            period = self._period(table, [d for d, _ in dated])
            regions = header[1:]
            records = []
            for day, row in dated:
                chart_date = day - timedelta(days=6) if period == "weekly" else day
                if len(row) - 1 != len(regions):
                    raise ChartFileError(
                        f"row {day:%Y/%m/%d}: {len(row) - 1} cells for {len(regions)} regions"
                    )
                for region, (text, _) in zip(regions, row[1:], strict=True):
                    cell = _CELL_RE.match(text)
                    if cell:
                        records.append((region, chart_date, cell.group(1), cell.group(2)))
                    elif text.strip() not in _EMPTY_CELLS:
                        raise ChartFileError(
                            f"row {day:%Y/%m/%d}, column {region!r}: cannot read {text!r} "
                            "(expected 'position (streams)' or an empty cell)"
                        )
            if not records:
                continue
            region_col, date_col, rank_col, streams_col = zip(*records, strict=True)
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
        Validate track ids (:func:`validate_track_ids`); False leaves the raw references, for
        callers that validate many files in one pass.

    Returns
    -------
    tuple of (str, pandas.DataFrame)
        The format name and the rows (:data:`STREAMS_COLUMNS`).

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
    if frame.empty:
        raise ChartFileError("no chart rows" + (" with a valid track id" if validate else ""))
    return name, frame


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
    invalid_track_ids: int = 0
    conflicts: int = 0
    conflict_examples: list[dict[str, Any]] = field(default_factory=list)
    rows_total: int = 0
    seconds: float = 0.0

    @property
    def skipped_by_reason(self) -> dict[str, int]:
        """Number of skipped files per reason."""
        return dict(Counter(reason for _, reason in self.skipped))

    def summary(self) -> str:
        """A few human-readable lines: files, skips by reason, rows, conflicts."""
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
        if self.invalid_track_ids:
            lines.append(f"dropped {self.invalid_track_ids:,} rows without a valid track id")
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
            "conflicts": self.conflicts,
            "conflict_examples": self.conflict_examples,
            "rows_total": self.rows_total,
            "seconds": round(self.seconds, 3),
        }


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
    """Union keeping the first row per key (existing rows first); count duplicates and conflicts."""
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
    report.rows_added += len(kept) - len(existing)
    return kept


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
    new = _empty_streams()
    if frames:
        new = validate_track_ids(pd.concat(frames, ignore_index=True))  # one pass for all files
        report.invalid_track_ids = new.attrs["invalid_track_ids"]
        for source in set(format_of) - set(new["source_file"].unique()):
            report.skipped.append((source, "no chart rows with a valid track id"))
            del format_of[source]
    report.formats = dict(Counter(format_of.values()))
    report.files_read = len(format_of)
    report.rows_read = len(new)
    merged = _merge(existing, new, report)
    if report.rows_added or not layout.streams.exists():
        merged = merged.sort_values(["region", "period", "chart_date", "rank", "track_id"])
        layout.streams.write(merged.reset_index(drop=True))
    report.rows_total = len(merged)
    build_catalog(layout.root)
    report.seconds = time.perf_counter() - started
    layout.ingest_report.write(report.to_dict())
    return report


__all__ = [
    "CHART_FORMATS",
    "ChartFileError",
    "IngestReport",
    "detect_format",
    "ingest_charts",
    "read_chart_file",
    "read_streams",
    "register",
    "validate_track_ids",
]
