"""The Feast feature store of a data dir: apply, materialize, describe, and retrieve.

The Feast repository is ``feature_repo/`` (``feature_store.yaml`` plus ``definitions.py``, which
declares one feature view and one FeatureService per feature set of the registry
(:mod:`features.feature_sets`) whose table exists, and a ``popularity`` view of the targets).
Its paths follow the data dir through the ``MUSICPOP_DATA_DIR`` environment variable, which this
module sets (for the duration of each call only) to the absolute data dir it is given.

What each view reads:

- a **tabular** feature set: its feature table itself (``track_id``, ``event_timestamp`` and the
  columns, names kept exactly, dots included: Feast's duckdb offline and sqlite online stores
  handle them);
- a **clips** feature set: a derived source, one row per track with the reference features
  ``<set>__n_clips``, ``<set>__shape`` and ``<set>__sha256``
  (:func:`features.feature_sets.clip_references`), written by :func:`apply`; a model resolves
  the reference with :func:`features.feature_sets.read_clip_arrays`;
- ``popularity``: the popularity rows of the store's ONE chart period (weekly by default;
  ``apply(data_dir, period="daily")``, or ``MUSICPOP_PERIOD=daily`` for plain ``feast apply``),
  written by :func:`apply` as a derived source, so a (track, region) never mixes periods;
  ``debut_date`` becomes an ISO date string there (Feast cannot materialize timestamp features).

FeatureServices serve model inputs only: ``<set>_v<version>`` holds the set's view and nothing
else; targets never reach a model through the store.

Registry, online store and derived sources live in the data dir's Feast folder. A damaged
registry or online store (they are derived from our tables) is rebuilt by :func:`apply` and
:func:`materialize`; other commands name the file and say to run them.

Past one machine
----------------
Set ``MUSICPOP_FEAST_CONFIG`` to a YAML file that replaces ``feature_repo/feature_store.yaml``
(``${MUSICPOP_DATA_DIR}`` is still expanded in it), e.g. a PostgreSQL registry, offline store and
online store (``pip install 'music-popularity[postgres]'``; see docs/scale-out.md). With
``offline_store: type: postgres`` :func:`apply` uploads every view source to a table
``musicpop_<source name>`` and the views read those tables (``MUSICPOP_OFFLINE_SOURCE=postgres``
does the same for plain ``feast apply``); column names are quoted in Feast's SQL, so dotted names
work unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sqlite3
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from .. import feature_repo
from .errors import DataError
from .feature_sets import (
    CLIPS,
    FeatureSet,
    available_feature_sets,
    clip_references,
    feature_sets,
    get_feature_set,
    read_clip_arrays,
)
from .layout import DataLayout, Table

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
ENTITY_COLUMNS = ("track_id", "region", "event_timestamp")
POPULARITY_VIEW = "popularity"
REGISTRY_FILE = "registry.db"
ONLINE_FILE = "online_store.db"

_ROW = "__entity_row__"


# --- where each view reads ---------------------------------------------------------------------


def popularity_source(layout: DataLayout, period: str) -> Table:
    """The derived source of the ``popularity`` view for ``period``."""
    return layout.store_source(f"popularity_{period}")


def view_source(layout: DataLayout, feature_set: FeatureSet) -> Table:
    """The table a feature set's view reads: the feature table, or a clips set's references."""
    if feature_set.kind == CLIPS:
        return layout.store_source(f"{feature_set.name}_refs")
    return feature_set.table(layout)


def offline_table_name(source: Table) -> str:
    """Name of a view source's copy in a PostgreSQL offline store."""
    return f"musicpop_{source.path.stem}"


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


def _utc(column: pd.Series, where: str, name: str) -> pd.Series:
    """A timestamp column as tz-aware UTC (naive values are taken as UTC)."""
    try:
        values = pd.to_datetime(column)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: column {name!r} is not a timestamp ({exc})") from exc
    if values.dt.tz is None:
        return values.dt.tz_localize("UTC")
    return values.dt.tz_convert("UTC")


def write_sources(layout: DataLayout, period: str = DEFAULT_PERIOD) -> dict[str, Table]:
    """Check the data dir's tables and write the derived Feast sources.

    Parameters
    ----------
    layout : DataLayout
        The data dir; needs the popularity table and at least one feature table.
    period : str
        Chart period served by the ``popularity`` view: ``weekly`` or ``daily``.

    Returns
    -------
    dict[str, Table]
        View name to the table it reads.

    Raises
    ------
    DataError
        A table is missing, damaged, lacks a contract column, or has no row for ``period``.
    """
    if period not in PERIODS:
        raise DataError(f"unknown chart period {period!r}; expected one of {', '.join(PERIODS)}")
    sets = available_feature_sets(layout)
    if not sets:
        raise DataError(
            f"{layout.features_dir}: no feature table; run `benchmark features extract` "
            "(or `benchmark ingest features`) first"
        )
    popularity = layout.popularity.read()
    popularity = popularity[popularity["period"] == period].drop(columns="period")
    if popularity.empty:
        raise DataError(f"{layout.popularity.path}: no rows for period {period!r}")
    popularity["event_timestamp"] = _utc(
        popularity["event_timestamp"], str(layout.popularity.path), "event_timestamp"
    )
    if "debut_date" in popularity:
        popularity["debut_date"] = pd.to_datetime(popularity["debut_date"]).dt.strftime("%Y-%m-%d")
    sources = {POPULARITY_VIEW: popularity_source(layout, period)}
    sources[POPULARITY_VIEW].write(popularity)
    for fs in sets:
        source = view_source(layout, fs)
        fs.table(layout).check()
        if fs.kind == CLIPS:
            source.write(clip_references(layout, fs))
        sources[fs.name] = source
    return sources


# --- the store ----------------------------------------------------------------------------------


def feature_store(data_dir: Path | str) -> feast.FeatureStore:
    """Open the Feast store of a data dir.

    The configuration is ``feature_repo/feature_store.yaml``, or the file named by
    ``MUSICPOP_FEAST_CONFIG``, with ``${MUSICPOP_DATA_DIR}`` expanded to the absolute data dir.

    Parameters
    ----------
    data_dir : Path or str
        The data dir; its Feast folder is created if needed.

    Returns
    -------
    feast.FeatureStore
        A store whose registry, online store and sources follow ``data_dir``. Reuse one instance
        for many online look-ups: opening one costs far more than a look-up.

    Raises
    ------
    DataError
        Something other than a file (a folder) sits where the local registry or online store
        database should be.
    """
    from feast import FeatureStore
    from feast.repo_config import FeastConfigError, load_repo_config

    layout = DataLayout(Path(data_dir).resolve())
    layout.store_dir.mkdir(parents=True, exist_ok=True)
    for name in (REGISTRY_FILE, ONLINE_FILE):
        path = _local_file(layout, name)
        if path.exists() and not path.is_file():
            raise DataError(
                f"{path}: not a file (a folder?) where the Feast store keeps a database; "
                "remove it, then run `benchmark store apply`"
            )
    path = _config_path()
    with _env({DATA_DIR_ENV: str(layout.root)}):
        try:
            config = load_repo_config(REPO_DIR, path)
        except FeastConfigError as exc:
            detail = " ".join(str(exc).split())
            raise DataError(f"{path}: not a valid Feast configuration ({detail})") from None
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
    """A Parquet cell (as pyarrow gives it) as psycopg sends it: NaN becomes NULL."""
    if isinstance(value, float) and value != value:
        return None
    return value


#: Rows per record batch read from a source while it is copied to PostgreSQL.
_UPLOAD_BATCH_ROWS = 4096


def _upload_to_postgres(store: feast.FeatureStore, sources: dict[str, Table]) -> None:
    """Replace the PostgreSQL table of every view source with the rows of its Parquet file.

    Each table is dropped, created and filled with ``COPY ... FROM STDIN`` in one transaction,
    so a reader sees the old rows or the new ones, never a part.
    """
    from feast.infra.utils.postgres.connection_utils import _get_conn

    with _get_conn(store.config.offline_store) as conn, conn.cursor() as cur:
        for source in tqdm(sources.values(), desc="upload to PostgreSQL", unit="table"):
            table = offline_table_name(source)
            source.check()
            schema = source.schema()
            columns = ", ".join(f'"{f.name}" {_pg_type(source.path, f)}' for f in schema)
            cur.execute(f'DROP TABLE IF EXISTS "{table}"')
            cur.execute(f'CREATE TABLE "{table}" ({columns})')
            names = ", ".join(f'"{name}"' for name in schema.names)
            with cur.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                for batch in pq.ParquetFile(source.path).iter_batches(_UPLOAD_BATCH_ROWS):
                    for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                        copy.write_row([_sql_value(value) for value in row])
        conn.commit()


def _local_file(layout: DataLayout, name: str) -> Path:
    return layout.store_dir / name


def _is_damaged_database(error: BaseException) -> bool:
    """Whether an exception says a sqlite file is not a database (or is malformed)."""
    text = str(error).lower()
    return isinstance(error, sqlite3.DatabaseError | DataError) or any(
        marker in text
        for marker in (
            "not a database",
            "malformed",
            "file is encrypted",
            "unable to open database file",
        )
    )


@contextlib.contextmanager
def _store_errors(layout: DataLayout, action: str) -> Iterator[None]:
    """Turn a damaged registry or online store into a one-line error saying what to run."""
    try:
        yield
    except DataError:
        raise
    except Exception as exc:
        if _is_damaged_database(exc) or "DatabaseError" in type(exc).__name__:
            raise DataError(
                f"{layout.store_dir}: the Feast registry or online store is damaged ({exc}); "
                f"run `benchmark store apply` and `benchmark store materialize` to rebuild it"
            ) from None
        raise


def _reset_if_damaged(layout: DataLayout, name: str) -> bool:
    """Remove a local sqlite file of the store that is not a readable database."""
    path = _local_file(layout, name)
    if not path.is_file():
        return False
    try:
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute("PRAGMA schema_version").fetchone()
            db.execute("PRAGMA quick_check").fetchone()
        return False
    except sqlite3.DatabaseError:
        warnings.warn(f"{path}: damaged; rebuilding it from the data dir's tables", stacklevel=3)
        path.unlink()
        return True


def apply(data_dir: Path | str, period: str | None = None) -> None:
    """Write the derived sources and register every entity, view and service (``feast apply``).

    A damaged local registry is removed and rebuilt (it is derived from our tables).

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

    layout = DataLayout(Path(data_dir).resolve())
    period = period or os.environ.get(PERIOD_ENV) or DEFAULT_PERIOD
    sources = write_sources(layout, period)
    if _reset_if_damaged(layout, REGISTRY_FILE):
        # the online store's tables belong to the old registry: start both afresh
        _local_file(layout, ONLINE_FILE).unlink(missing_ok=True)
    _reset_if_damaged(layout, ONLINE_FILE)
    store = feature_store(layout.root)
    offline_source = _offline_source(store)
    if offline_source == "postgres":
        _upload_to_postgres(store, sources)
    module = _load_definitions(layout.root, period, offline_source)
    objects = [
        value
        for kind in (Entity, FeatureView, FeatureService)
        for value in vars(module).values()
        if isinstance(value, kind)
    ]
    names = {o.name for o in objects}
    with _env({DATA_DIR_ENV: str(layout.root)}), _store_errors(layout, "apply"):
        # views and services of feature sets whose table is gone are removed from the registry
        stale = [s for s in store.list_feature_services() if s.name not in names]
        stale += [v for v in store.list_feature_views() if v.name not in names]
        store.apply(objects, objects_to_delete=stale, partial=False)


def _registered_views(store: feast.FeatureStore, layout: DataLayout) -> list[feast.FeatureView]:
    with _store_errors(layout, "read"):
        views = store.list_feature_views()
    if not views:
        raise DataError(
            f"{layout.root}: no Feast feature views registered; run `benchmark store apply` first"
        )
    for view in views:
        source = _source_table(layout, view)
        if source is not None:
            source.check()  # Feast reads it unchecked: a damaged one is a one-line error here
    return views


def _source_table(layout: DataLayout, view: feast.FeatureView) -> Table | None:
    """The data dir's table a registered view reads (None for a source outside the data dir)."""
    path = getattr(view.batch_source, "path", None)
    tables = [popularity_source(layout, period) for period in PERIODS]
    tables += [view_source(layout, fs) for fs in feature_sets(layout).values()]
    return next((t for t in tables if path and str(t.path) == str(path)), None)


def materialize(data_dir: Path | str) -> None:
    """Load the online store with the latest feature values up to now (incremental).

    A damaged local online store is removed and loaded again from scratch.

    Parameters
    ----------
    data_dir : Path or str
        A data dir on which :func:`apply` has run.

    Raises
    ------
    DataError
        Nothing has been applied yet, or the registry is damaged.
    """
    layout = DataLayout(Path(data_dir).resolve())
    rebuilt = _reset_if_damaged(layout, ONLINE_FILE)
    store = feature_store(layout.root)
    views = _registered_views(store, layout)
    with _env({DATA_DIR_ENV: str(layout.root)}), _store_errors(layout, "materialize"):
        if rebuilt:
            store.apply(views, partial=True)  # recreates the online tables
            start = datetime(1900, 1, 1, tzinfo=UTC)
            store.materialize(start_date=start, end_date=datetime.now(UTC))
        else:
            store.materialize_incremental(end_date=datetime.now(UTC))


def _postgres_count(config: object, sql: str) -> int | None:
    """The count a query returns on a PostgreSQL store (None when the table is missing)."""
    import psycopg
    from feast.infra.utils.postgres.connection_utils import _get_conn

    with _get_conn(config) as conn:
        try:
            (count,) = conn.execute(sql).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return int(count)


def _online_rows(store: feast.FeatureStore, view: str) -> int | None:
    """Entity keys held by the online store for one view (None for a store of another kind)."""
    config = store.config.online_store
    if getattr(config, "type", "") == "postgres":
        table = f"{store.project}_{view}"
        return _postgres_count(config, f'SELECT COUNT(DISTINCT entity_key) FROM "{table}"') or 0
    if getattr(config, "type", "") != "sqlite":
        return None
    path = Path(config.path)
    if not path.is_absolute():
        path = store.repo_path / path
    if not path.is_file():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
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

    layout = DataLayout(Path(data_dir).resolve())
    store = feature_store(layout.root)
    config = store.config
    lines = [
        f"Feast project {store.project} on {layout.root}",
        f"  config:   {_config_path()}",
        f"  registry: {_hide_password(str(config.registry.path))}",
        f"  offline:  {config.offline_store.type}",
        f"  online:   {config.online_store.type} {getattr(config.online_store, 'path', '')}",
    ]
    with _store_errors(layout, "info"):
        views = store.list_feature_views()
        services = store.list_feature_services()
        if not views:
            lines.append("no feature views registered: run `benchmark store apply`")
            return "\n".join(lines)
        lines.append("feature views:")
        for view in sorted(views, key=lambda v: v.name):
            source = view.batch_source
            path = getattr(source, "path", None) or getattr(source, "table", None) or source.name
            table = _source_table(layout, view)
            if table is not None:
                try:
                    table.check()
                    rows: int | str = pq.read_metadata(path).num_rows
                except DataError as exc:
                    rows = "unusable (" + str(exc).removeprefix(f"{table.path}: ") + ")"
            elif isinstance(source, FileSource):
                is_file = Path(path).is_file()
                rows = pq.read_metadata(path).num_rows if is_file else "missing"
            elif _offline_source(store) == "postgres":
                path = source.get_table_query_string()  # the quoted table name
                count = _postgres_count(config.offline_store, f"SELECT count(*) FROM {path}")
                rows = "missing" if count is None else count
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
        for service in sorted(services, key=lambda s: s.name):
            parts = ", ".join(
                f"{p.name}[{len(p.features)}]" for p in service.feature_view_projections
            )
            lines.append(f"  {service.name:<16} {parts}: {service.description}")
    return "\n".join(lines)


# --- retrieval ----------------------------------------------------------------------------------


def training_frame(data_dir: Path | str, service: str, entity_rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of a feature service onto entity rows (offline store).

    Parameters
    ----------
    data_dir : Path or str
        A data dir on which :func:`apply` has run.
    service : str
        Feature service name (``<feature set>_v<version>``).
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
    missing = [c for c in ENTITY_COLUMNS if c not in entity_rows.columns]
    if missing:
        raise DataError(f"entity rows lack column(s) {', '.join(missing)}")
    layout = DataLayout(Path(data_dir).resolve())
    store = feature_store(layout.root)
    _registered_views(store, layout)
    with _store_errors(layout, "read"):
        known = {s.name: s for s in store.list_feature_services()}
    if service not in known:
        raise DataError(
            f"unknown feature service {service!r}; registered: {', '.join(sorted(known))} "
            "(run `benchmark store apply` after extracting or ingesting a feature set)"
        )
    entity_df = entity_rows.reset_index(drop=True)
    entity_df["event_timestamp"] = _utc(
        entity_df["event_timestamp"], "entity rows", "event_timestamp"
    )
    entity_df[_ROW] = np.arange(len(entity_df))
    with _env({DATA_DIR_ENV: str(layout.root)}), _store_errors(layout, "read"):
        joined = store.get_historical_features(entity_df=entity_df, features=known[service]).to_df()
    joined = joined.sort_values(_ROW, kind="stable")
    if len(joined) != len(entity_df) or not np.array_equal(
        joined[_ROW].to_numpy(), entity_df[_ROW]
    ):
        raise RuntimeError(
            f"Feast returned {len(joined)} rows for {len(entity_df)} entity rows; check the "
            "offline store (the `file` store drops rows; use duckdb)"
        )
    front = list(entity_rows.columns)
    joined = joined.drop(columns=_ROW).reset_index(drop=True)
    # the entity columns as they went in (a PostgreSQL offline store returns naive timestamps)
    joined[front] = entity_df[front]
    joined = joined[front + [c for c in joined.columns if c not in front]]
    joined.index = entity_rows.index
    return joined


def feature_inputs(
    data_dir: Path | str, feature_set: str, entity_rows: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, list[np.ndarray]] | None]:
    """A feature set's values for entity rows, through its FeatureService.

    Parameters
    ----------
    data_dir : Path or str
        A data dir on which :func:`apply` has run.
    feature_set : str
        Name of a registered feature set.
    entity_rows : pandas.DataFrame
        As for :func:`training_frame`.

    Returns
    -------
    tuple
        ``(frame, arrays)``. For a tabular set ``frame`` has the set's columns and ``arrays`` is
        None. For a clips set ``frame`` has the reference columns and ``arrays`` maps each
        referenced track to its clip arrays (float32), checked against the reference.
    """
    layout = DataLayout(Path(data_dir).resolve())
    fs = get_feature_set(feature_set, layout)
    frame = training_frame(layout.root, fs.service, entity_rows)
    if fs.kind != CLIPS:
        return frame, None
    return frame, read_clip_arrays(layout, fs, frame)


__all__ = [
    "POPULARITY_VIEW",
    "apply",
    "feature_inputs",
    "feature_store",
    "info",
    "materialize",
    "offline_table_name",
    "popularity_source",
    "training_frame",
    "view_source",
    "write_sources",
]
