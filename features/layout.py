"""The data dir: where every table lives, what it holds, and how it is written and read.

One :class:`DataLayout` per data dir is the only owner of file names: no other module spells a
table's path. Each table is a :class:`Table` declared once in :data:`TABLES` (relative path,
the columns its readers may rely on, the command that rebuilds it). A table is

- **written atomically**: to a temporary file in the same folder, then ``os.replace``, so a
  killed command never leaves half a file;
- **checksummed**: the SHA-256 of the Parquet file's bytes (its footer included, but for the
  checksum's own characters) is stored in the footer's key-value metadata (``musicpop.sha256``),
  so a change to any byte is caught;
- **read with checks**: a missing, unreadable or corrupted file, or one without a contract
  column, is a :class:`~features.errors.DataError` of one line that names the file and the
  command that rebuilds it.

Commands that write tables hold the data dir's lock (:meth:`DataLayout.writing`, a
``filelock`` on ``DIR/.lock``): a second writer waits, or fails fast with ``no_wait``.

::

    DIR/
      raw/                       input files as given or fetched (demo, kworb pages, ...)
      streams.parquet            chart entries              <- benchmark ingest charts
      catalog.parquet            one row per track          <- ingest charts / ingest audio
      catalog_mapping.parquet    user overrides             <- ingest audio --mapping
      clips.parquet              audio clips of tracks      <- ingest audio
      popularity.parquet         targets per (track, region, period)  <- benchmark targets
      features/<set>.parquet     one table per feature set  <- features extract / ingest features
      features/<set>.json        how the set was made (extractor fingerprint, columns)
      extract_errors.parquet     clips that failed          <- features extract
      feast/                     Feast registry, online store and derived sources <- store apply
      cache/extract/             content-addressed per-clip extraction results
      checkpoints/               per-epoch checkpoints of deep models
      pipeline_state.json        fingerprints of the pipeline's finished stages
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import struct
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError
from .identifiers import TRACK_ID_RE

CHECKSUM_KEY = b"musicpop.sha256"
"""Footer metadata key of a table's checksum: SHA-256 of the file's bytes (see
:data:`CHECKSUM_SCOPE_KEY`)."""
CHECKSUM_BYTES_KEY = b"musicpop.bytes"
"""Footer metadata key of the number of bytes before the footer."""
CHECKSUM_SCOPE_KEY = b"musicpop.sha256_scope"
"""Footer metadata key saying what the checksum covers: ``file`` = every byte of the file, the
footer included, with :data:`_PLACEHOLDER` in place of the checksum's own 64 characters (a
damaged footer can rename a column or change statistics without failing to parse; in a wide
table of few rows the footer is most of the file). Absent: the bytes before the footer only
(tables written before the footer was covered)."""
_PLACEHOLDER = b"musicpop-sha256-placeholder".ljust(64, b"-")
LOCK_NAME = ".lock"

STREAMS_COLUMNS = (
    "region",
    "period",
    "chart_date",
    "track_id",
    "rank",
    "streams",
    "title",
    "artist",
    "source_file",
)
STREAMS_KEY = ("region", "period", "chart_date", "track_id")
CATALOG_COLUMNS = ("track_id", "song_id", "title", "artist", "audio_path", "release_date")
MAPPING_COLUMNS = ("track_id", "song_id", "release_date", "title", "artist")
CLIPS_COLUMNS = ("track_id", "clip_id", "audio_path")
POPULARITY_KEY = ("track_id", "region", "period")
EXTRACT_ERROR_COLUMNS = ("path", "error_type", "message")


@dataclass(frozen=True)
class TableSpec:
    """A table of the data dir.

    Attributes
    ----------
    path : str
        Path relative to the data dir.
    columns : tuple[str, ...]
        Columns every reader may rely on (checked on read).
    rebuild : str
        The command that (re)builds it, named in errors.
    description : str
        One line: what a row is.
    accumulates : bool
        Each run of ``rebuild`` adds to the rows already stored (it reads them first), so a
        damaged file must be deleted and every source ingested again; errors say so.
    """

    path: str
    columns: tuple[str, ...]
    rebuild: str
    description: str
    accumulates: bool = False


TABLES: dict[str, TableSpec] = {
    "streams": TableSpec(
        "streams.parquet",
        STREAMS_COLUMNS,
        "benchmark ingest charts PATH...",
        "one row per chart entry, unique on (region, period, chart_date, track_id)",
        accumulates=True,
    ),
    "catalog": TableSpec(
        "catalog.parquet",
        CATALOG_COLUMNS,
        "benchmark ingest charts PATH... (or ingest audio)",
        "one row per track: song grouping, title, artist, first clip, release date",
    ),
    "catalog_mapping": TableSpec(
        "catalog_mapping.parquet",
        MAPPING_COLUMNS,
        "benchmark ingest audio FOLDER --mapping CSV",
        "accumulated user overrides of song_id, release_date, title and artist",
        accumulates=True,
    ),
    "clips": TableSpec(
        "clips.parquet",
        CLIPS_COLUMNS,
        "benchmark ingest audio FOLDER",
        "one row per audio clip of a track",
        accumulates=True,
    ),
    "popularity": TableSpec(
        "popularity.parquet",
        (*POPULARITY_KEY, "debut_date", "event_timestamp", "curve", "sum", "debut"),
        "benchmark targets",
        "popularity targets per (track, region, period), see docs/targets.md",
    ),
    "ground_truth": TableSpec(
        "ground_truth.parquet",
        ("region", "appeal"),
        "benchmark demo",
        "the demo's noise-free appeal per (song or track, region)",
    ),
    "extract_errors": TableSpec(
        "extract_errors.parquet",
        EXTRACT_ERROR_COLUMNS,
        "benchmark features extract",
        "one row per clip whose extraction failed",
    ),
    "collected_previews": TableSpec(
        "collect/previews.parquet",
        (),
        "benchmark collect previews",
        "every preview-matching decision of the collectors",
        accumulates=True,
    ),
}


# --- atomic writes ----------------------------------------------------------------------------


def _temporary(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (hidden, unique per process and call)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Parameters
    ----------
    path : Path or str
        The final file.

    Yields
    ------
    Path
        Where to write. On an exception it is removed and ``path`` is left as it was.

    Raises
    ------
    DataError
        The temporary file cannot be made, or cannot replace ``path`` (a folder in its place).
    """
    path = Path(path)
    try:
        tmp = _temporary(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot write beside it ({exc.strerror or exc})") from None
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. a folder where the file should be
            raise DataError(f"{path}: cannot replace it ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: Path | str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success flush, fsync and replace ``path``.

    Parameters
    ----------
    path : Path or str
        The final file.
    mode : str
        ``"wb"`` or ``"w"`` (text, UTF-8).

    Yields
    ------
    file object
        The open temporary file.
    """
    with atomic_path(path) as tmp:
        encoding = None if "b" in mode else "utf-8"
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, "w") as handle:
        handle.write(text)


def write_json_atomic(path: Path | str, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


# --- checksummed Parquet ----------------------------------------------------------------------


class _HashingSink(io.RawIOBase):
    """A binary file wrapper that hashes every byte written through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.digest.update(data)
        self.count += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


class ChecksummedWriter:
    """Streams record batches into a Parquet file whose footer carries the data checksum.

    Use :meth:`Table.writer`; call :meth:`write` with tables or batches of one schema.
    """

    def __init__(self, sink: _HashingSink, schema: pa.Schema) -> None:
        self._sink = sink
        self._writer = pq.ParquetWriter(sink, schema)
        self.rows = 0

    def write(self, data: pa.Table | pa.RecordBatch) -> None:
        """Append rows (a table or a record batch of the writer's schema)."""
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        self._writer.write_table(data)
        self.rows += data.num_rows

    def close(self, metadata: Mapping[str, str] | None = None) -> None:
        """Write the footer with the checksum (and ``metadata``) and close the file.

        The footer is written with a placeholder for the checksum, which is then computed over
        every byte of the file and written over the placeholder (same length, in place).
        """
        extra = {key: str(value) for key, value in (metadata or {}).items()}
        extra[CHECKSUM_KEY.decode()] = _PLACEHOLDER.decode()
        extra[CHECKSUM_BYTES_KEY.decode()] = str(self._sink.count)
        extra[CHECKSUM_SCOPE_KEY.decode()] = "file"
        data_bytes = self._sink.count
        self._writer.add_key_value_metadata(extra)
        self._writer.close()
        handle = self._sink.handle
        handle.flush()
        handle.seek(data_bytes)
        at = handle.read().rfind(_PLACEHOLDER)
        handle.seek(data_bytes + at)
        handle.write(self._sink.digest.hexdigest().encode())
        handle.seek(0, io.SEEK_END)


_VERIFIED: dict[tuple[str, int, int], str] = {}
"""Files verified by this process: (path, size, mtime_ns) -> checksum (read once, trusted)."""


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file's bytes (read in 1 MiB blocks), as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_checksum(path: Path) -> str | None:
    """The checksum stored in a Parquet file's footer, after checking it against the bytes.

    Parameters
    ----------
    path : Path
        A Parquet file.

    Returns
    -------
    str or None
        The checksum, or None when the file carries none (written by other software).

    Raises
    ------
    DataError
        The file is not Parquet, or its bytes do not match the checksum.
    """
    stat = path.stat()
    memo = (str(path), stat.st_size, stat.st_mtime_ns)
    if memo in _VERIFIED:
        return _VERIFIED[memo]
    try:
        metadata = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    stored = metadata.get(CHECKSUM_KEY)
    if stored is None:
        return None
    with path.open("rb") as handle:
        handle.seek(stat.st_size - 8)
        (footer_length,) = struct.unpack("<I", handle.read(4))
        data_bytes = stat.st_size - 8 - footer_length
        if str(data_bytes).encode() != metadata.get(CHECKSUM_BYTES_KEY):
            raise DataError(f"{path}: damaged (its footer does not match its length)")
        handle.seek(0)
        digest = hashlib.sha256()
        left = data_bytes
        while left:
            block = handle.read(min(left, 1 << 22))
            if not block:
                break
            digest.update(block)
            left -= len(block)
        if metadata.get(CHECKSUM_SCOPE_KEY) == b"file":
            footer = handle.read()
            at = footer.rfind(stored)
            if len(stored) != len(_PLACEHOLDER) or at < 0:
                raise DataError(f"{path}: damaged (its checksum is not where it was written)")
            digest.update(footer[:at] + _PLACEHOLDER + footer[at + len(stored) :])
    if digest.hexdigest() != stored.decode():
        raise DataError(f"{path}: damaged (checksum mismatch: its bytes changed after writing)")
    _VERIFIED[memo] = stored.decode()
    return stored.decode()


class Table:
    """One table of a data dir: its path, contract, and checked read/write.

    Parameters
    ----------
    root : Path
        The data dir.
    spec : TableSpec
        What the table is.
    """

    def __init__(self, root: Path, spec: TableSpec) -> None:
        self.root = root
        self.spec = spec
        self.path = root / spec.path

    def __repr__(self) -> str:
        return f"Table({self.path})"

    def exists(self) -> bool:
        """Whether the file exists."""
        return self.path.is_file()

    def _fail(self, problem: str) -> DataError:
        if self.spec.accumulates:
            return DataError(
                f"{self.path}: {problem}; it holds what every earlier run added: delete it, then "
                f"run `{self.spec.rebuild}` again for each source"
            )
        return DataError(f"{self.path}: {problem}; rebuild it with `{self.spec.rebuild}`")

    def check(self) -> str | None:
        """Verify the file (exists, readable, checksum, contract columns).

        Returns
        -------
        str or None
            The checksum (None for a file written without one).
        """
        if not self.exists():
            raise DataError(f"{self.path}: not found; build it with `{self.spec.rebuild}`")
        try:
            checksum = file_checksum(self.path)
            names = pq.read_schema(self.path).names
        except DataError as exc:
            raise self._fail(str(exc).removeprefix(f"{self.path}: ")) from None
        except (OSError, pa.ArrowException) as exc:
            raise self._fail(f"not a readable Parquet file ({exc})") from None
        missing = [c for c in self.spec.columns if c not in names]
        if missing:
            raise self._fail(f"missing column(s) {', '.join(missing)}")
        return checksum

    def schema(self) -> pa.Schema:
        """The table's Arrow schema (after :meth:`check`)."""
        self.check()
        return pq.read_schema(self.path)

    def metadata(self) -> dict[str, str]:
        """The footer's key-value metadata, decoded (after :meth:`check`)."""
        self.check()
        raw = pq.read_metadata(self.path).metadata or {}
        return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"ARROW")}

    def read_arrow(self, columns: Iterable[str] | None = None, filters: Any = None) -> pa.Table:
        """Read the table as Arrow, checked.

        Parameters
        ----------
        columns : Iterable[str], optional
            Columns to read (default all).
        filters : optional
            pyarrow ``filters`` (row selection on read).

        Returns
        -------
        pyarrow.Table
            The rows.
        """
        self.check()
        try:
            return pq.read_table(
                self.path, columns=list(columns) if columns is not None else None, filters=filters
            )
        except (OSError, pa.ArrowException) as exc:
            raise self._fail(f"cannot read ({exc})") from None

    def read(
        self, columns: Iterable[str] | None = None, filters: Any = None, missing_ok: bool = False
    ) -> pd.DataFrame:
        """Read the table as a DataFrame, checked (see :meth:`read_arrow`).

        With ``missing_ok``, a table that does not exist yet reads as an empty frame with the
        requested columns (or the contract's).
        """
        if missing_ok and not self.exists():
            return pd.DataFrame(columns=list(columns) if columns is not None else self.spec.columns)
        return self.read_arrow(columns, filters).to_pandas()

    def read_or_empty(self, empty: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The table, or ``empty()`` when the file does not exist yet."""
        return self.read() if self.exists() else empty()

    @contextlib.contextmanager
    def writer(
        self, schema: pa.Schema, metadata: Mapping[str, str] | None = None
    ) -> Iterator[ChecksummedWriter]:
        """Stream rows into the table; it replaces the old one only when the block succeeds.

        Parameters
        ----------
        schema : pyarrow.Schema
            Schema of every batch written.
        metadata : Mapping[str, str], optional
            Extra footer metadata (e.g. ``horizon``).

        Yields
        ------
        ChecksummedWriter
            Call ``write(table_or_batch)``.
        """
        with atomic_path(self.path) as tmp, open(tmp, "w+b") as handle:
            sink = _HashingSink(handle)
            writer = ChecksummedWriter(sink, schema)
            try:
                yield writer
            except BaseException:
                with contextlib.suppress(Exception):
                    writer._writer.close()
                raise
            writer.close(metadata)
            handle.flush()
            os.fsync(handle.fileno())

    def write(
        self, data: pd.DataFrame | pa.Table, metadata: Mapping[str, str] | None = None
    ) -> None:
        """Replace the table with ``data`` (atomically, with its checksum).

        Parameters
        ----------
        data : pandas.DataFrame or pyarrow.Table
            The rows (a DataFrame's index is dropped).
        metadata : Mapping[str, str], optional
            Extra footer metadata.
        """
        table = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        missing = [c for c in self.spec.columns if c not in table.column_names]
        if missing:
            raise ValueError(f"{self.path}: refusing to write without column(s) {missing}")
        with self.writer(table.schema, metadata) as writer:
            writer.write(table)


class JsonFile:
    """A small JSON document of the data dir (reports, state), written atomically.

    Parameters
    ----------
    path : Path
        The file.
    rebuild : str
        What writes it (named in errors).
    """

    def __init__(self, path: Path, rebuild: str) -> None:
        self.path = path
        self.rebuild = rebuild

    def exists(self) -> bool:
        """Whether the file exists."""
        return self.path.is_file()

    def read(self) -> Any:
        """The parsed document.

        Raises
        ------
        DataError
            Missing or not valid JSON (naming the file and what writes it).
        """
        if not self.exists():
            raise DataError(f"{self.path}: not found; it is written by `{self.rebuild}`")
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(
                f"{self.path}: not valid JSON ({exc}); it is rewritten by `{self.rebuild}`"
            ) from None

    def write(self, value: Any) -> None:
        """Replace the document atomically."""
        write_json_atomic(self.path, value)


# --- the layout -------------------------------------------------------------------------------


class DataLayout:
    """Every path of one data dir.

    Parameters
    ----------
    root : Path or str
        The data dir (need not exist yet).

    Examples
    --------
    >>> layout = DataLayout("data/demo")
    >>> layout.streams.path.name
    'streams.parquet'
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        for name, spec in TABLES.items():
            setattr(self, name, Table(self.root, spec))

    # the tables of TABLES, declared for type checkers and readers
    streams: Table
    catalog: Table
    catalog_mapping: Table
    clips: Table
    popularity: Table
    ground_truth: Table
    extract_errors: Table
    collected_previews: Table

    def __repr__(self) -> str:
        return f"DataLayout({self.root})"

    # -- feature sets --

    @property
    def features_dir(self) -> Path:
        """``DIR/features``: one table per feature set."""
        return self.root / "features"

    def feature_table(self, name: str, rebuild: str = "benchmark features extract") -> Table:
        """The table of feature set ``name`` (``DIR/features/<name>.parquet``).

        Parameters
        ----------
        name : str
            Feature-set name.
        rebuild : str
            The command that builds it.

        Returns
        -------
        Table
            Keyed by ``track_id`` (and ``clip_id`` for per-clip sets) with ``event_timestamp``.
        """
        spec = TableSpec(
            f"features/{name}.parquet",
            ("track_id", "event_timestamp"),
            rebuild,
            f"feature set {name}",
        )
        return Table(self.root, spec)

    def feature_info(self, name: str) -> JsonFile:
        """``DIR/features/<name>.json``: how feature set ``name`` was made."""
        return JsonFile(self.features_dir / f"{name}.json", "benchmark features extract")

    # -- other files and folders --

    @property
    def raw_dir(self) -> Path:
        """``DIR/raw``: input files as generated or fetched."""
        return self.root / "raw"

    @property
    def store_dir(self) -> Path:
        """``DIR/feast``: Feast registry, online store and derived view sources."""
        return self.root / "feast"

    def store_source(self, name: str) -> Table:
        """A derived Feast source table ``DIR/feast/<name>.parquet``."""
        return Table(
            self.root,
            TableSpec(f"feast/{name}.parquet", (), "benchmark store apply", f"Feast source {name}"),
        )

    @property
    def collect_dir(self) -> Path:
        """``DIR/collect``: what the collectors decided and fetched."""
        return self.root / "collect"

    def cache_dir(self, kind: str) -> Path:
        """``DIR/cache/<kind>``: content-addressed results that can always be recomputed."""
        return self.root / "cache" / kind

    @property
    def checkpoints_dir(self) -> Path:
        """``DIR/checkpoints``: deep models' per-epoch checkpoints."""
        return self.root / "checkpoints"

    @property
    def ingest_report(self) -> JsonFile:
        """``DIR/ingest_report.json``: the last chart ingest's summary."""
        return JsonFile(self.root / "ingest_report.json", "benchmark ingest charts PATH...")

    @property
    def pipeline_state(self) -> JsonFile:
        """``DIR/pipeline_state.json``: fingerprints of the pipeline's finished stages."""
        return JsonFile(self.root / "pipeline_state.json", "benchmark run")

    def fingerprint_files(self) -> list[Path]:
        """The tables whose bytes define the dataset (for the dataset fingerprint)."""
        tables = [self.streams, self.catalog, self.popularity, self.clips, self.ground_truth]
        files = [t.path for t in tables]
        files += sorted(self.features_dir.glob("*.parquet"))
        return files

    # -- one writer at a time --

    @contextlib.contextmanager
    def writing(self, command: str, no_wait: bool = False) -> Iterator[None]:
        """Hold the data dir's exclusive writer lock for the block.

        Parameters
        ----------
        command : str
            What is writing (shown to a second writer).
        no_wait : bool
            Fail at once with a one-line error when another command holds the lock, instead
            of waiting for it.

        Raises
        ------
        DataError
            ``no_wait`` and the lock is held elsewhere.
        """
        import filelock

        self.root.mkdir(parents=True, exist_ok=True)
        lock = _lock_for(self.root / LOCK_NAME)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            if no_wait:
                raise DataError(
                    f"{self.root}: another benchmark command is writing this data dir "
                    f"(lock {lock.lock_file}); wait for it to finish or run without --no-wait"
                ) from None
            print(
                f"benchmark: {command}: waiting for another command writing {self.root} ...",
                file=sys.stderr,
                flush=True,
            )
            lock.acquire()
        try:
            yield
        finally:
            lock.release()


# --- the collectors' files --------------------------------------------------------------------

_EXT_RE = re.compile(r"^[a-z0-9]{2,4}$")


@dataclass(frozen=True)
class CollectLayout:
    """Paths of the collectors' files under a data dir and the audio folder they fill.

    ::

        DIR/raw/kworb/<fetch date>/country/<cc>_<period>.html   kworb country pages, as fetched
        DIR/raw/kworb/<fetch date>/track/<track_id>.html        kworb track pages, as fetched
        DIR/raw/kworb/<fetch date>/manifest.jsonl               one line per request
        DIR/collect/previews.parquet                            every preview decision
        DIR/collect/previews.journal.jsonl                      decisions not yet in the table
        AUDIO/<track_id>.<ext>                                  downloaded previews
        AUDIO/provenance.csv                                    a mapping CSV with provenance
    """

    data_dir: Path
    audio_dir: Path

    @classmethod
    def of(cls, data_dir: Path | str, audio_dir: Path | str | None = None) -> CollectLayout:
        """The layout of ``data_dir``; the audio folder defaults to ``data_dir/raw/audio``."""
        data_dir = Path(data_dir)
        return cls(data_dir, Path(audio_dir) if audio_dir is not None else data_dir / "raw/audio")

    # -- kworb

    @property
    def kworb_root(self) -> Path:
        """``DIR/raw/kworb``: one folder per fetch date."""
        return self.data_dir / "raw" / "kworb"

    def kworb_fetch(self, fetch_date: date) -> Path:
        """The folder of one fetch: ``DIR/raw/kworb/<YYYY-MM-DD>``."""
        return self.kworb_root / fetch_date.isoformat()

    def kworb_country_page(self, fetch_date: date, region: str, period: str) -> Path:
        """``.../<date>/country/<cc>_<period>.html`` (the name the chart reader expects)."""
        return self.kworb_fetch(fetch_date) / "country" / f"{region}_{period}.html"

    def kworb_track_page(self, fetch_date: date, track_id: str) -> Path:
        """``.../<date>/track/<track_id>.html`` (the id is validated)."""
        return self.kworb_fetch(fetch_date) / "track" / f"{_checked_id(track_id)}.html"

    def kworb_manifest(self, fetch_date: date) -> Path:
        """``.../<date>/manifest.jsonl``: what was requested, when, and what came back."""
        return self.kworb_fetch(fetch_date) / "manifest.jsonl"

    # -- previews

    @property
    def collect_dir(self) -> Path:
        """``DIR/collect``."""
        return self.data_dir / "collect"

    @property
    def previews_table(self) -> Path:
        """The decisions table (``DataLayout.collected_previews``)."""
        return DataLayout(self.data_dir).collected_previews.path

    @property
    def previews_journal(self) -> Path:
        """``DIR/collect/previews.journal.jsonl``: decisions not yet in the table."""
        return self.collect_dir / "previews.journal.jsonl"

    @property
    def provenance_csv(self) -> Path:
        """``AUDIO/provenance.csv``: path, track_id and the provenance of each collected clip."""
        return self.audio_dir / "provenance.csv"

    def clip(self, track_id: str, ext: str) -> Path:
        """``AUDIO/<track_id>.<ext>``; the id must be a 22-character base62 track id.

        Raises
        ------
        DataError
            If ``track_id`` or ``ext`` would make an unsafe or unlinkable file name.
        """
        if not _EXT_RE.match(ext):
            raise DataError(f"{self.audio_dir}: refusing audio extension {ext!r}")
        return self.audio_dir / f"{_checked_id(track_id)}.{ext}"

    def clip_part(self, track_id: str, pid: int) -> Path:
        """A temporary file in the audio folder for a download in flight (not an audio name)."""
        return self.audio_dir / f".{_checked_id(track_id)}.{pid}.part"


def _checked_id(track_id: str) -> str:
    if not isinstance(track_id, str) or not TRACK_ID_RE.match(track_id):
        raise DataError(f"not a 22-character base62 Spotify track id: {track_id!r}")
    return track_id


_LOCKS: dict[str, Any] = {}


def _lock_for(path: Path) -> Any:
    """One re-entrant ``filelock.FileLock`` per lock file and process."""
    import filelock

    key = str(path.resolve())
    if key not in _LOCKS:
        _LOCKS[key] = filelock.FileLock(key)
    return _LOCKS[key]


__all__ = [
    "CATALOG_COLUMNS",
    "CLIPS_COLUMNS",
    "EXTRACT_ERROR_COLUMNS",
    "MAPPING_COLUMNS",
    "POPULARITY_KEY",
    "STREAMS_COLUMNS",
    "STREAMS_KEY",
    "TABLES",
    "CollectLayout",
    "DataLayout",
    "JsonFile",
    "Table",
    "TableSpec",
    "atomic_file",
    "atomic_path",
    "file_checksum",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
