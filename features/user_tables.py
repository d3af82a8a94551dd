"""Bring-your-own features: a per-track table of descriptors or embeddings as a feature set.

``benchmark ingest features FILE --name NAME`` reads a CSV or Parquet table keyed by track id
with numeric columns (Spotify's audio features, MERT/CLAP embeddings, one's own Essentia run),
checks it, and stores it in the data dir as a versioned feature set of the registry
(:mod:`features.feature_sets`): ``features/<name>.parquet`` plus ``features/<name>.json`` with
``"source": "table"``. From there on it is a feature set like any other: ``benchmark store
apply`` registers a Feast view ``<name>`` and a FeatureService ``<name>_v<version>``, and any
tabular model reads it (``benchmark run --features NAME`` or ``lightgbm[NAME]``).

Checks (nothing is stored silently)
-----------------------------------
The file as a whole must have the id column, unique column names, and numeric columns only
(``--exclude-columns`` leaves others out). Row by row, every problem is reported with its line
(CSV: the line of the file, the header being line 1; Parquet: the row, 1-based):

- an id that is not a Spotify track id (bare, URL or URI spellings are accepted);
- a cell that is not a number, or is infinite;
- the same track on two lines with different values (identical repeats are kept once and
  counted);
- a line whose every value is missing.

Such lines make the command fail (nothing is written) unless ``skip_bad_rows``, which leaves
them out and records them. Missing values in otherwise good lines are kept as missing (Feast
serves them as null, LightGBM handles them natively) and counted per column in the summary and
the record.

Versions
--------
The record keeps the source file's name and SHA-256, the options, and when it was ingested.
Ingesting the same file with the same options again changes nothing. A different file (or
different options) under the same name is a new version: the table is replaced, ``version``
goes up by one (so the FeatureService becomes ``<name>_v<version+1>`` at the next ``benchmark
store apply``, which removes the old service from the registry), and ``history`` lists every
earlier version. Results and MLflow runs made with the old version keep its service name and the
old dataset fingerprint in their tags; to compare two versions side by side, ingest them under
two names.

Event timestamps follow the rule of the audio feature sets
(:func:`features.extract.event_timestamps`): the earlier of the track's release date and its
first chart date, so point-in-time joins at the debut see the values.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .extract import event_timestamps
from .feature_sets import FEATURE_SETS, INGESTED, TABULAR
from .identifiers import parse_track_ids
from .layout import DataLayout, file_sha256

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""A feature-set name: lower case, digits and underscores (it names a Feast view and service)."""
RESERVED_COLUMNS = ("track_id", "region", "event_timestamp", "created_timestamp", "clip_id")
"""Column names the store and the benchmark use themselves."""
RESERVED_NAMES = ("popularity",)
"""Feature-set names taken by the store's own views."""
_BAD_COLUMN_CHARS = re.compile(r'[",:\[\]{}\n\r\t]')
"""Characters LightGBM refuses in feature names (JSON syntax) and control characters."""
SHOWN_PROBLEMS = 5
"""Problems quoted in an error message or a summary line."""
RECORDED_PROBLEMS = 200
"""Problems kept in the feature set's record (all are counted)."""


@dataclass
class Problem:
    """One bad line of the input table."""

    line: int
    message: str

    def text(self, unit: str) -> str:
        """``line 17: column energy: 'x' is not a number``."""
        return f"{unit} {self.line}: {self.message}"


@dataclass
class FeatureTableReport:
    """What one :func:`ingest_feature_table` call found and did.

    Attributes
    ----------
    name : str
        Feature-set name.
    path : Path
        The source file.
    version : int
        Version stored (the existing one when ``unchanged``).
    unchanged : bool
        The same file with the same options was already ingested: nothing was written.
    rows_read : int
        Data lines (rows) of the file.
    rows_stored : int
        Tracks stored.
    columns : list[str]
        Feature columns stored.
    excluded : list[str]
        Columns left out on request.
    duplicates : int
        Lines that repeat an earlier line of the same track with identical values (kept once).
    problems : list[Problem]
        Bad lines (left out with ``skip_bad_rows``).
    missing : dict[str, int]
        Missing values per column in the stored rows.
    missing_lines : list[int]
        First lines with a missing value.
    not_in_catalog : int or None
        Stored tracks the data dir's catalog does not know (None without a catalog).
    catalog_tracks : int or None
        Tracks of the catalog.
    catalog_covered : int or None
        Catalog tracks the table covers.
    unit : str
        ``line`` (CSV) or ``row`` (Parquet).
    """

    name: str
    path: Path
    version: int = 1
    unchanged: bool = False
    rows_read: int = 0
    rows_stored: int = 0
    columns: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    missing: dict[str, int] = field(default_factory=dict)
    missing_lines: list[int] = field(default_factory=list)
    not_in_catalog: int | None = None
    catalog_tracks: int | None = None
    catalog_covered: int | None = None
    unit: str = "line"

    @property
    def service(self) -> str:
        """The FeatureService that will serve the set: ``<name>_v<version>``."""
        return f"{self.name}_v{self.version}"

    def summary(self) -> str:
        """A few readable lines: what was stored, what was left out and why, what to run next."""
        if self.unchanged:
            return (
                f"{self.path}: already ingested as feature set {self.name} version "
                f"{self.version} (same file, same options); nothing changed"
            )
        lines = [
            f"feature set {self.name} version {self.version} (Feast service {self.service}): "
            f"{self.rows_stored:,} tracks x {len(self.columns)} columns from {self.path} "
            f"({self.rows_read:,} {self.unit}s read)"
        ]
        if self.excluded:
            lines.append(f"  columns left out on request: {', '.join(self.excluded)}")
        if self.duplicates:
            lines.append(
                f"  {self.duplicates:,} {self.unit}s repeat an earlier {self.unit} of the same "
                "track with identical values: kept once"
            )
        if self.problems:
            shown = "; ".join(p.text(self.unit) for p in self.problems[:SHOWN_PROBLEMS])
            lines.append(f"  {len(self.problems):,} bad {self.unit}s left out: {shown}")
        if self.missing:
            counts = ", ".join(f"{c} {n:,}" for c, n in self.missing.items())
            where = ", ".join(str(n) for n in self.missing_lines[:SHOWN_PROBLEMS])
            lines.append(f"  missing values kept as missing: {counts} (e.g. {self.unit}s {where})")
        if self.catalog_tracks is not None:
            lines.append(
                f"  covers {self.catalog_covered:,} of the catalog's {self.catalog_tracks:,} "
                f"tracks; {self.not_in_catalog:,} stored tracks are not in the catalog (they "
                "join no row)"
            )
        lines.append("next: benchmark store apply (benchmark run does it for you)")
        return "\n".join(lines)


def _read_table(path: Path, id_column: str) -> tuple[pd.DataFrame, list[int], str]:
    """The file as a frame (ids as text), the line of each row, and the line unit."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        names = table.column_names
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DataError(f"{path}: duplicate column name(s) {', '.join(duplicated)}")
        frame = table.to_pandas().reset_index(drop=True)
        return frame, list(range(1, len(frame) + 1)), "row"
    if suffix not in (".csv", ".tsv", ".txt"):
        raise DataError(
            f"{path}: unknown table format {suffix or '(none)'}; give a .csv or .parquet"
        )
    delimiter = "\t" if suffix == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file")
            header = [h.strip() for h in header]
            duplicated = sorted({h for h in header if header.count(h) > 1})
            if duplicated:
                raise DataError(f"{path}: duplicate column name(s) {', '.join(duplicated)}")
            # the line each record ends on (quoted cells may span lines)
            lines = []
            width_problems = []
            for record in reader:
                if not record:
                    continue
                lines.append(reader.line_num)
                if len(record) != len(header):
                    width_problems.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if width_problems:
        shown = ", ".join(str(n) for n in width_problems[:SHOWN_PROBLEMS])
        raise DataError(
            f"{path}: {len(width_problems):,} line(s) do not have the header's "
            f"{len(header)} cells (lines {shown})"
        )
    try:
        frame = pd.read_csv(
            path,
            sep=delimiter,
            dtype={id_column: str},
            skip_blank_lines=True,
            encoding="utf-8-sig",
            low_memory=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    frame.columns = header
    if len(frame) != len(lines):
        raise DataError(f"{path}: read {len(frame)} rows but counted {len(lines)} data lines")
    return frame, lines, "line"


def _numeric(column: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """The column as float, and a mask of cells that held something that is not a number."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype(float), np.zeros(len(column), dtype=bool)
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float), np.zeros(len(column), dtype=bool)
    text = column.astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce").astype(float)
    bad = (values.isna() & text.notna() & (text != "")).to_numpy()
    return values, bad


def validate_feature_table(
    frame: pd.DataFrame,
    lines: list[int],
    id_column: str,
    exclude: list[str],
    where: str,
    unit: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check a table and return its good rows (``track_id`` + float columns) and what was found.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table as read.
    lines : list[int]
        The line (or row) of each row of ``frame``, for messages.
    id_column : str
        Column holding the track ids.
    exclude : list[str]
        Columns to leave out.
    where : str
        The file, for messages.
    unit : str
        ``line`` or ``row``.

    Returns
    -------
    tuple[pandas.DataFrame, dict]
        The rows to store (one per track, sorted by id) and the findings: ``problems``
        (list of :class:`Problem`), ``duplicates``, ``missing``, ``missing_lines``, ``columns``.

    Raises
    ------
    DataError
        A problem of the whole table (no id column, a non-numeric column, a bad column name).
    """
    if id_column not in frame.columns:
        raise DataError(
            f"{where}: no id column {id_column!r} (columns: {', '.join(map(str, frame.columns))});"
            " name it with --id-column"
        )
    unknown = [c for c in exclude if c not in frame.columns]
    if unknown:
        raise DataError(f"{where}: --exclude-columns names unknown column(s) {', '.join(unknown)}")
    columns = [c for c in frame.columns if c != id_column and c not in exclude]
    if not columns:
        raise DataError(f"{where}: no feature column besides the id column {id_column!r}")
    for column in columns:
        if not isinstance(column, str) or not column.strip():
            raise DataError(f"{where}: a column has no name")
        if column in RESERVED_COLUMNS:
            raise DataError(
                f"{where}: column {column!r} is a name the store uses itself; rename it, or "
                f"leave it out with --exclude-columns {column}"
            )
        if _BAD_COLUMN_CHARS.search(column):
            raise DataError(f'{where}: column name {column!r} holds one of , : " [ ] {{ }}')

    line_of = np.asarray(lines)
    problems: dict[int, str] = {}  # row position -> first problem found
    ids = parse_track_ids(frame[id_column].astype("string").astype(object))
    for pos in np.flatnonzero(ids.isna().to_numpy()):
        problems[pos] = f"{frame[id_column].iloc[pos]!r} is not a Spotify track id"

    values = {}
    for column in columns:
        numbers, bad = _numeric(frame[column])
        if bad.all() or (bad.any() and numbers.notna().sum() == 0):
            example = frame[column][bad].iloc[0]
            raise DataError(
                f"{where}: column {column!r} is not numeric (e.g. {example!r} on {unit} "
                f"{line_of[np.argmax(bad)]}); leave it out with --exclude-columns {column}"
            )
        for pos in np.flatnonzero(bad):
            problems.setdefault(
                pos, f"column {column}: {frame[column].iloc[pos]!r} is not a number"
            )
        infinite = np.isinf(numbers.to_numpy())
        for pos in np.flatnonzero(infinite):
            problems.setdefault(pos, f"column {column}: {numbers.iloc[pos]} is not finite")
        values[column] = numbers.where(~infinite)
    table = pd.DataFrame(values)
    table.insert(0, "track_id", ids.to_numpy())
    empty = table[columns].isna().all(axis=1).to_numpy()
    for pos in np.flatnonzero(empty):
        problems.setdefault(pos, "every value is missing")

    # repeats of a track: identical ones are kept once, conflicting ones are problems
    duplicates = 0
    keep = np.array([p not in problems for p in range(len(table))])
    good = table[keep]
    repeated = good[good["track_id"].duplicated(keep=False)]
    for track, positions in repeated.groupby("track_id", sort=False).groups.items():
        rows = table.loc[positions, columns]
        if len(rows.drop_duplicates()) == 1:  # NaN equals NaN here
            duplicates += len(rows) - 1
            keep[positions[1:]] = False
        else:
            shown = ", ".join(str(line_of[p]) for p in positions)
            for pos in positions:
                problems.setdefault(pos, f"track {track} has different values on {unit}s {shown}")
                keep[pos] = False
    stored = table[keep].sort_values("track_id", kind="stable").reset_index(drop=True)
    missing_mask = stored[columns].isna()
    missing = {c: int(n) for c, n in missing_mask.sum().items() if n}
    kept_lines = line_of[keep][np.argsort(table["track_id"][keep].to_numpy(), kind="stable")]
    missing_lines = sorted(kept_lines[missing_mask.any(axis=1).to_numpy()].tolist())
    found = {
        "problems": [Problem(int(line_of[p]), m) for p, m in sorted(problems.items())],
        "duplicates": duplicates,
        "missing": missing,
        "missing_lines": missing_lines,
        "columns": columns,
    }
    return stored, found


def ingest_feature_table(
    path: Path | str,
    data_dir: Path | str,
    name: str,
    id_column: str = "track_id",
    exclude_columns: list[str] | None = None,
    description: str | None = None,
    skip_bad_rows: bool = False,
) -> FeatureTableReport:
    """Check a per-track table and store it as feature set ``name`` of a data dir.

    Parameters
    ----------
    path : Path or str
        CSV (``.csv``, ``.tsv``) or Parquet (``.parquet``) file, one row per track.
    data_dir : Path or str
        The data dir (its catalog and streams give the event timestamps).
    name : str
        Feature-set name (lower case, digits, underscores): the Feast view, the FeatureService
        ``<name>_v<version>``, and the ``[name]`` of result rows (``lightgbm[name]``).
    id_column : str
        Column of track ids (bare ids, ``open.spotify.com`` URLs or ``spotify:track:`` URIs).
    exclude_columns : list[str], optional
        Columns not to store (e.g. text columns, or metadata that is not a descriptor).
    description : str, optional
        One line for Feast and ``benchmark features list``.
    skip_bad_rows : bool
        Leave bad lines out (reported and recorded) instead of failing.

    Returns
    -------
    FeatureTableReport
        What was stored; ``summary()`` prints it.

    Raises
    ------
    DataError
        A bad name, an unreadable file, a problem of the whole table, or bad lines without
        ``skip_bad_rows`` (nothing is written then).
    """
    path = Path(path)
    layout = DataLayout(data_dir)
    exclude = [c.strip() for c in (exclude_columns or []) if c.strip()]
    if not NAME_RE.match(name):
        raise DataError(
            f"feature set name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter"
        )
    if name in FEATURE_SETS or name in RESERVED_NAMES:
        raise DataError(f"feature set name {name!r} is taken by a built-in feature set or view")
    info_file = layout.feature_info(name)
    previous = info_file.read() if info_file.exists() else None
    if previous is not None and previous.get("source") != INGESTED:
        raise DataError(f"{info_file.path}: {name!r} is an extracted feature set, not a table")

    sha = file_sha256(path) if path.is_file() else ""
    options = {
        "id_column": id_column,
        "exclude_columns": sorted(exclude),
        "skip_bad_rows": skip_bad_rows,
    }
    if previous is not None:
        source = previous.get("provenance", {})
        if (
            source.get("sha256") == sha
            and source.get("options") == options
            and layout.feature_table(name).exists()
        ):
            layout.feature_table(name).check()
            return FeatureTableReport(
                name, path, version=int(previous.get("version", 1)), unchanged=True
            )

    frame, lines, unit = _read_table(path, id_column)
    stored, found = validate_feature_table(frame, lines, id_column, exclude, str(path), unit)
    problems: list[Problem] = found["problems"]
    if problems and not skip_bad_rows:
        shown = "; ".join(p.text(unit) for p in problems[:SHOWN_PROBLEMS])
        raise DataError(
            f"{path}: {len(problems):,} bad {unit}(s): {shown}; fix them, or leave them out "
            "with --skip-bad-rows (nothing was stored)"
        )
    if stored.empty:
        raise DataError(f"{path}: no good {unit} to store")
    columns: list[str] = found["columns"]

    report = FeatureTableReport(
        name=name,
        path=path,
        rows_read=len(frame),
        rows_stored=len(stored),
        columns=columns,
        excluded=exclude,
        duplicates=found["duplicates"],
        problems=problems,
        missing=found["missing"],
        missing_lines=found["missing_lines"],
        unit=unit,
    )
    if layout.catalog.exists():
        catalog = set(layout.catalog.read(["track_id"])["track_id"].astype(str))
        ids = set(stored["track_id"])
        report.catalog_tracks = len(catalog)
        report.catalog_covered = len(catalog & ids)
        report.not_in_catalog = len(ids - catalog)

    timestamps = event_timestamps(layout, stored["track_id"].tolist())
    stored.insert(1, "event_timestamp", timestamps.reindex(stored["track_id"]).to_numpy())
    stored["event_timestamp"] = pd.to_datetime(stored["event_timestamp"], utc=True)

    version = 1 if previous is None else int(previous.get("version", 1)) + 1
    report.version = version
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    history = list(previous.get("history", [])) if previous is not None else []
    if previous is not None:
        old = previous.get("provenance", {})
        history.append(
            {
                "version": previous.get("version", 1),
                "file": old.get("file"),
                "sha256": old.get("sha256"),
                "ingested_at": old.get("ingested_at"),
                "rows": old.get("rows_stored"),
                "columns": previous.get("columns", []),
            }
        )
    record = {
        "name": name,
        "version": version,
        "kind": TABULAR,
        "source": INGESTED,
        "description": description
        or f"user feature table {path.name}: {len(columns)} columns per track",
        "columns": columns,
        "provenance": {
            "file": path.name,
            "path": str(path.resolve()),
            "sha256": sha,
            "ingested_at": now,
            "options": options,
            "rows_read": report.rows_read,
            "rows_stored": report.rows_stored,
            "duplicates": report.duplicates,
            "bad_rows": len(problems),
            "bad_row_examples": [p.text(unit) for p in problems[:RECORDED_PROBLEMS]],
            "missing_values": report.missing,
            "not_in_catalog": report.not_in_catalog,
        },
        "history": history,
    }
    metadata = {"feature_set": name, "version": str(version), "source_sha256": sha}
    layout.feature_table(name, rebuild=f"benchmark ingest features FILE --name {name}").write(
        stored, metadata=metadata
    )
    info_file.write(record)
    return report


__all__ = [
    "FeatureTableReport",
    "Problem",
    "ingest_feature_table",
    "validate_feature_table",
]
