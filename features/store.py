"""Writing and reading the Feast feature store of a data dir.

The Feast repository is ``feature_repo/`` (``feature_store.yaml`` plus ``definitions.py``). Its
paths follow the data dir through the ``MUSICPOP_DATA_DIR`` environment variable, which this module
sets (for the duration of each call only) to the absolute data dir it is given. State lives in
``DIR/feast/``: ``registry.db`` (sqlite SQL registry), ``online_store.db`` (sqlite online store) and
two derived sources written by :func:`apply`:

- ``popularity_<period>.parquet``: the rows of ``popularity.parquet`` for the store's ONE chart
  period (``weekly`` by default; ``apply(data_dir, period="daily")``, or ``MUSICPOP_PERIOD=daily``
  for ``benchmark store apply`` and plain ``feast apply``); the ``popularity`` view reads it, so a
  (track, region) never mixes periods. ``debut_date`` becomes an ISO date string there (Feast
  cannot materialize timestamp features).
  Re-applying with another period re-points the view; both files may coexist.
- ``mel_clip0.parquet``: clip 0 of every track for the ``mel_spectrogram`` view (Feast serves one
  row per entity key); :func:`load_mels` reads every clip straight from ``features/mel.parquet``.

Column names are kept exactly as in the source tables, dots included
(``lowlevel.spectral_centroid.mean``): Feast's duckdb offline and sqlite online stores handle them,
so nothing is renamed and there is no name mapping to undo.

Past one machine
----------------
Set ``MUSICPOP_FEAST_CONFIG`` to a YAML file that replaces ``feature_repo/feature_store.yaml``
(``${MUSICPOP_DATA_DIR}`` is still expanded in it). For example, a shared PostgreSQL registry and
online store (``pip install -e .[postgres]``), with the offline store reading the Parquet sources
from storage every worker mounts::

    project: music_popularity
    provider: local
    registry:
      registry_type: sql
      path: postgresql+psycopg://feast:${PGPASSWORD}@db:5432/feast
      cache_ttl_seconds: 60
    offline_store:
      type: duckdb        # or: type: postgres, plus host/port/database/user/password (see below)
    online_store:
      type: postgres
      host: db
      port: 5432
      database: feast
      user: feast
      password: ${PGPASSWORD}
    entity_key_serialization_version: 3

With ``offline_store: type: postgres`` :func:`apply` uploads the three view sources to tables
``musicpop_essentia_lowlevel``, ``musicpop_mel_clip0`` and ``musicpop_popularity_<period>`` and
registers ``PostgreSQLSource`` views on them (``MUSICPOP_OFFLINE_SOURCE=postgres`` does the same for
plain ``feast apply``); column names are quoted in Feast's SQL, so dotted names work unchanged.
Only the embedded default (duckdb + sqlite) is tested.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from .. import feature_repo
from .errors import DataError

if TYPE_CHECKING:
    import feast

# package data: the Feast repository ships inside the installed package (musicpop/feature_repo/)
REPO_DIR = Path(feature_repo.__file__).resolve().parent
DATA_DIR_ENV = "MUSICPOP_DATA_DIR"
PERIOD_ENV = "MUSICPOP_PERIOD"
OFFLINE_SOURCE_ENV = "MUSICPOP_OFFLINE_SOURCE"
CONFIG_ENV = "MUSICPOP_FEAST_CONFIG"
DEFAULT_PERIOD = "weekly"
PERIODS = ("weekly", "daily")
SERVICES = ("classical_v1", "mp2_v1", "mp3_v1")
ENTITY_COLUMNS = ("track_id", "region", "event_timestamp")

LOWLEVEL_FILE = Path("features") / "essentia_lowlevel.parquet"
MEL_FILE = Path("features") / "mel.parquet"
POPULARITY_FILE = Path("popularity.parquet")
STORE_DIR = Path("feast")
MEL_CLIP0_FILE = STORE_DIR / "mel_clip0.parquet"

_REQUIRED = {
    LOWLEVEL_FILE: ("track_id", "event_timestamp"),
    MEL_FILE: ("track_id", "clip_id", "event_timestamp", "mel", "n_mels", "n_frames"),
    POPULARITY_FILE: ("track_id", "region", "period", "event_timestamp", "curve", "sum", "debut"),
}
_ROW = "__entity_row__"


def _popularity_source(period: str) -> Path:
    return STORE_DIR / f"popularity_{period}.parquet"


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (hushing ibis deprecation notices), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="ibis")
            yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _config_path() -> Path:
    override = os.environ.get(CONFIG_ENV)
    path = Path(override) if override else REPO_DIR / "feature_store.yaml"
    if not path.is_file():
        raise DataError(f"{path}: Feast configuration file not found (set by {CONFIG_ENV})")
    return path


def _check_table(data_dir: Path, relative: Path) -> pa.Schema:
    path = data_dir / relative
    if not path.is_file():
        raise DataError(
            f"{path}: missing; build it first (see docs/architecture.md, Data directory)"
        )
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in _REQUIRED[relative] if c not in schema.names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return schema


def _utc(column: pd.Series, path: Path, name: str) -> pd.Series:
    """A timestamp column as tz-aware UTC (naive values are taken as UTC)."""
    try:
        values = pd.to_datetime(column)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: column {name!r} is not a timestamp ({exc})") from exc
    if values.dt.tz is None:
        return values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC")


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_sources(data_dir: Path | str, period: str = DEFAULT_PERIOD) -> dict[str, Path]:
    """Check the data dir's feature tables and write the derived Feast sources in ``DIR/feast/``.

    Parameters
    ----------
    data_dir : Path or str
        Data dir holding ``features/essentia_lowlevel.parquet``, ``features/mel.parquet`` and
        ``popularity.parquet``.
    period : str
        Chart period served by the ``popularity`` view: ``weekly`` or ``daily``.

    Returns
    -------
    dict[str, Path]
        The source file of each feature view.

    Raises
    ------
    DataError
        A table is missing, unreadable, lacks a contract column, or has no row for ``period``.
    """
    data_dir = Path(data_dir).resolve()
    if period not in PERIODS:
        raise DataError(f"unknown chart period {period!r}; expected one of {', '.join(PERIODS)}")
    for relative in _REQUIRED:
        _check_table(data_dir, relative)

    pop_path = data_dir / POPULARITY_FILE
    popularity = pd.read_parquet(pop_path)
    popularity = popularity[popularity["period"] == period].drop(columns="period")
    if popularity.empty:
        raise DataError(f"{pop_path}: no rows for period {period!r}")
    popularity["event_timestamp"] = _utc(popularity["event_timestamp"], pop_path, "event_timestamp")
    if "debut_date" in popularity:
        # Feast's online store cannot materialize a timestamp-typed feature: keep an ISO date
        popularity["debut_date"] = pd.to_datetime(popularity["debut_date"]).dt.strftime("%Y-%m-%d")
    pop_out = data_dir / _popularity_source(period)
    _write_atomic(pa.Table.from_pandas(popularity, preserve_index=False), pop_out)

    mel_path = data_dir / MEL_FILE
    mel = pq.read_table(mel_path, filters=[("clip_id", "=", 0)]).drop_columns(["clip_id"])
    if mel.num_rows == 0:
        raise DataError(f"{mel_path}: no clip 0 rows; every track's clips are numbered from 0")
    mel_out = data_dir / MEL_CLIP0_FILE
    _write_atomic(mel, mel_out)
    return {
        "essentia_lowlevel": data_dir / LOWLEVEL_FILE,
        "mel_spectrogram": mel_out,
        "popularity": pop_out,
    }


def feature_store(data_dir: Path | str) -> feast.FeatureStore:
    """Open the Feast store of a data dir.

    The configuration is ``feature_repo/feature_store.yaml``, or the file named by
    ``MUSICPOP_FEAST_CONFIG``, with ``${MUSICPOP_DATA_DIR}`` expanded to the absolute data dir.

    Parameters
    ----------
    data_dir : Path or str
        The data dir; its ``feast/`` folder is created if needed.

    Returns
    -------
    feast.FeatureStore
        A store whose registry, online store and sources follow ``data_dir``. Reuse one instance
        for many online look-ups: opening one costs far more than a look-up.
    """
    from feast import FeatureStore
    from feast.repo_config import load_repo_config

    data_dir = Path(data_dir).resolve()
    (data_dir / STORE_DIR).mkdir(parents=True, exist_ok=True)
    with _env({DATA_DIR_ENV: str(data_dir)}):
        config = load_repo_config(REPO_DIR, _config_path())
    return FeatureStore(repo_path=str(REPO_DIR), config=config)


def _offline_source(store: feast.FeatureStore) -> str:
    """``postgres`` when the configured offline store is PostgreSQL, else ``parquet``."""
    kind = str(getattr(store.config.offline_store, "type", ""))
    return (
        "postgres" if kind == "postgres" or kind.endswith("PostgreSQLOfflineStore") else "parquet"
    )


def _load_definitions(data_dir: Path, period: str, offline_source: str) -> ModuleType:
    """Import ``feature_repo/definitions.py`` afresh for this data dir, period and source kind."""
    spec = importlib.util.spec_from_file_location(
        "musicpop_feature_definitions", REPO_DIR / "definitions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    values = {DATA_DIR_ENV: str(data_dir), PERIOD_ENV: period, OFFLINE_SOURCE_ENV: offline_source}
    with _env(values):
        spec.loader.exec_module(module)
    return module


_PG_TYPES = {
    "double": "double precision",
    "float": "real",
    "halffloat": "real",
    "int64": "bigint",
    "int32": "integer",
    "int16": "integer",
    "int8": "integer",
    "bool": "boolean",
    "string": "text",
    "large_string": "text",
    "binary": "bytea",
    "large_binary": "bytea",
}


def _pg_type(path: Path, field: pa.Field) -> str:
    if pa.types.is_timestamp(field.type):
        return "timestamptz"
    if pa.types.is_list(field.type) and str(field.type.value_type) in _PG_TYPES:
        return _PG_TYPES[str(field.type.value_type)] + "[]"
    if str(field.type) in _PG_TYPES:
        return _PG_TYPES[str(field.type)]
    raise DataError(f"{path}: column {field.name!r} has type {field.type}, unknown to PostgreSQL")


def _sql_value(value: object) -> object:
    """A Parquet cell as a value psycopg can send (NaN becomes NULL, arrays become lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value


def _upload_to_postgres(store: feast.FeatureStore, sources: dict[str, Path]) -> None:
    """Replace the PostgreSQL table of every view source with the rows of its Parquet file.

    Used only when the offline store is PostgreSQL; not covered by the test suite (the embedded
    duckdb default is). Tables are named ``musicpop_<file stem>`` as in ``definitions.py``.
    """
    from feast.infra.utils.postgres.connection_utils import _get_conn

    with _get_conn(store.config.offline_store) as conn, conn.cursor() as cur:
        for path in tqdm(sources.values(), desc="upload to PostgreSQL", unit="table"):
            table = f"musicpop_{path.stem}"
            schema = pq.read_schema(path)
            columns = ", ".join(f'"{f.name}" {_pg_type(path, f)}' for f in schema)
            cur.execute(f'DROP TABLE IF EXISTS "{table}"')
            cur.execute(f'CREATE TABLE "{table}" ({columns})')
            names = ", ".join(f'"{name}"' for name in schema.names)
            marks = ", ".join(["%s"] * len(schema.names))
            frame = pd.read_parquet(path)
            rows = [[_sql_value(v) for v in row] for row in frame.itertuples(index=False)]
            cur.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', rows)
        conn.commit()


def apply(data_dir: Path | str, period: str | None = None) -> None:
    """Write the derived sources and register every entity, view and service (``feast apply``).

    Parameters
    ----------
    data_dir : Path or str
        The data dir (see :func:`write_sources` for the tables it needs).
    period : str, optional
        Chart period served by the ``popularity`` view: ``weekly`` or ``daily``. Default: the
        ``MUSICPOP_PERIOD`` environment variable, else ``weekly``.

    Raises
    ------
    DataError
        A feature table is missing or malformed.
    """
    from feast import Entity, FeatureService, FeatureView

    data_dir = Path(data_dir).resolve()
    period = period or os.environ.get(PERIOD_ENV) or DEFAULT_PERIOD
    sources = write_sources(data_dir, period)
    store = feature_store(data_dir)
    offline_source = _offline_source(store)
    if offline_source == "postgres":
        _upload_to_postgres(store, sources)
    module = _load_definitions(data_dir, period, offline_source)
    objects = [
        value
        for kind in (Entity, FeatureView, FeatureService)
        for value in vars(module).values()
        if isinstance(value, kind)
    ]
    with _env({DATA_DIR_ENV: str(data_dir)}):
        store.apply(objects)


def _registered_views(store: feast.FeatureStore, data_dir: Path) -> list[feast.FeatureView]:
    views = store.list_feature_views()
    if not views:
        raise DataError(
            f"{data_dir}: no Feast feature views registered; run `benchmark store apply` first"
        )
    return views


def materialize(data_dir: Path | str) -> None:
    """Load the online store with the latest feature values up to now (incremental).

    Parameters
    ----------
    data_dir : Path or str
        A data dir on which :func:`apply` has run.

    Raises
    ------
    DataError
        Nothing has been applied yet.
    """
    data_dir = Path(data_dir).resolve()
    store = feature_store(data_dir)
    _registered_views(store, data_dir)
    with _env({DATA_DIR_ENV: str(data_dir)}):
        store.materialize_incremental(end_date=datetime.now(UTC))


def _online_rows(store: feast.FeatureStore, view: str) -> int | None:
    """Entity keys held by the sqlite online store for one view (None for other stores)."""
    config = store.config.online_store
    if getattr(config, "type", "") != "sqlite":
        return None
    path = Path(config.path)
    if not path.is_absolute():
        path = store.repo_path / path
    if not path.is_file():
        return 0
    with sqlite3.connect(path) as db:
        try:
            (count,) = db.execute(
                f'SELECT COUNT(DISTINCT entity_key) FROM "{store.project}_{view}"'
            ).fetchone()
        except sqlite3.OperationalError:
            return 0
    return int(count)


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def info(data_dir: Path | str) -> str:
    """Describe the store: configuration, views with row counts, services.

    Parameters
    ----------
    data_dir : Path or str
        The data dir.

    Returns
    -------
    str
        Readable multi-line text.
    """
    from feast import FileSource

    data_dir = Path(data_dir).resolve()
    store = feature_store(data_dir)
    config = store.config
    lines = [
        f"Feast project {store.project} on {data_dir}",
        f"  config:   {_config_path()}",
        f"  registry: {_hide_password(str(config.registry.path))}",
        f"  offline:  {config.offline_store.type}",
        f"  online:   {config.online_store.type} {getattr(config.online_store, 'path', '')}",
    ]
    views = store.list_feature_views()
    if not views:
        lines.append("no feature views registered: run `benchmark store apply`")
        return "\n".join(lines)
    lines.append("feature views:")
    for view in sorted(views, key=lambda v: v.name):
        source = view.batch_source
        path = getattr(source, "path", None) or getattr(source, "table", None) or source.name
        if isinstance(source, FileSource):
            is_file = Path(path).is_file()
            rows: int | str = pq.read_metadata(path).num_rows if is_file else "missing"
        else:
            rows = "?"
        online = _online_rows(store, view.name)
        done = view.most_recent_end_time
        lines.append(
            f"  {view.name:<18} keys {'+'.join(view.entities):<13} "
            f"{len(view.features):>4} features  source rows {rows}  online keys "
            f"{'?' if online is None else online}  materialized to "
            f"{done.strftime('%Y-%m-%d %H:%M UTC') if done else 'never'}"
        )
        lines.append(f"  {'':<18} source {path}")
    lines.append("feature services:")
    for service in sorted(store.list_feature_services(), key=lambda s: s.name):
        parts = ", ".join(f"{p.name}[{len(p.features)}]" for p in service.feature_view_projections)
        lines.append(f"  {service.name:<13} {parts}: {service.description}")
    return "\n".join(lines)


def training_frame(data_dir: Path | str, service: str, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of a feature service onto entity rows (offline store).

    Parameters
    ----------
    data_dir : Path or str
        A data dir on which :func:`apply` has run.
    service : str
        Feature service name: ``classical_v1``, ``mp2_v1`` or ``mp3_v1``.
    entity_rows : pandas.DataFrame
        Columns ``track_id``, ``region``, ``event_timestamp`` (prediction time; naive values are
        UTC) and any others, which are passed through. Rows may repeat.

    Returns
    -------
    pandas.DataFrame
        Exactly one row per entity row, in the same order and with the same index: the entity
        columns followed by the service's features under their original names (dots kept).
        Features not known at a row's timestamp are missing (NaN/None).

    Raises
    ------
    DataError
        Unknown service, missing entity columns, or nothing applied yet.
    """
    if service not in SERVICES:
        raise DataError(
            f"unknown feature service {service!r}; expected one of {', '.join(SERVICES)}"
        )
    missing = [c for c in ENTITY_COLUMNS if c not in entity_rows.columns]
    if missing:
        raise DataError(f"entity rows lack column(s) {', '.join(missing)}")
    data_dir = Path(data_dir).resolve()
    store = feature_store(data_dir)
    _registered_views(store, data_dir)
    entity_df = entity_rows.reset_index(drop=True)
    entity_df["event_timestamp"] = _utc(
        entity_df["event_timestamp"], Path("entity rows"), "event_timestamp"
    )
    entity_df[_ROW] = np.arange(len(entity_df))
    with _env({DATA_DIR_ENV: str(data_dir)}):
        joined = store.get_historical_features(
            entity_df=entity_df, features=store.get_feature_service(service)
        ).to_df()
    joined = joined.sort_values(_ROW, kind="stable")
    if len(joined) != len(entity_df) or not np.array_equal(
        joined[_ROW].to_numpy(), entity_df[_ROW]
    ):
        raise RuntimeError(
            f"Feast returned {len(joined)} rows for {len(entity_df)} entity rows; check the "
            "offline store (the `file` store drops rows; use duckdb)"
        )
    front = [c for c in entity_rows.columns]
    joined = joined.drop(columns=_ROW)
    joined = joined[front + [c for c in joined.columns if c not in front]]
    joined.index = entity_rows.index
    return joined


def decode_mel(blob: bytes, n_mels: int, n_frames: int) -> np.ndarray:
    """Decode one stored log-mel spectrogram.

    Parameters
    ----------
    blob : bytes
        float16 values in C order, as in ``features/mel.parquet`` and the ``mel`` feature.
    n_mels, n_frames : int
        Its shape.

    Returns
    -------
    numpy.ndarray
        float32 array of shape (n_mels, n_frames).
    """
    values = np.frombuffer(blob, dtype=np.float16)
    if values.size != n_mels * n_frames:
        raise DataError(f"mel blob holds {values.size} values, expected {n_mels} x {n_frames}")
    return values.reshape(n_mels, n_frames).astype(np.float32)


def load_mels(data_dir: Path | str, track_ids: Iterable[str]) -> dict[str, list[np.ndarray]]:
    """Every clip's log-mel spectrogram for the given tracks, read from ``features/mel.parquet``.

    Parameters
    ----------
    data_dir : Path or str
        The data dir.
    track_ids : iterable of str
        Tracks to load; repeats are loaded once.

    Returns
    -------
    dict[str, list[numpy.ndarray]]
        For each track (in first-seen order) its clips in ``clip_id`` order, float32 arrays of
        shape (n_mels, n_frames).

    Raises
    ------
    DataError
        The table is missing or malformed, or a track has no spectrogram.
    """
    data_dir = Path(data_dir).resolve()
    _check_table(data_dir, MEL_FILE)
    wanted = list(dict.fromkeys(track_ids))
    path = data_dir / MEL_FILE
    table = pq.read_table(path, columns=["track_id", "clip_id", "mel", "n_mels", "n_frames"])
    table = table.filter(pc.is_in(table["track_id"], value_set=pa.array(wanted, pa.string())))
    table = table.sort_by([("track_id", "ascending"), ("clip_id", "ascending")])
    mels: dict[str, list[np.ndarray]] = {track: [] for track in wanted}
    columns = [table[c].to_pylist() for c in ("track_id", "mel", "n_mels", "n_frames")]
    for track, blob, n_mels, n_frames in zip(*columns, strict=True):
        mels[track].append(decode_mel(blob, n_mels, n_frames))
    absent = [track for track, clips in mels.items() if not clips]
    if absent:
        raise DataError(
            f"{path}: no spectrogram for {len(absent)} track(s), e.g. {', '.join(absent[:3])}"
        )
    return mels
