"""Feast definitions of the music-popularity store: entities, feature views and feature services.

The views follow the feature-set registry (``musicpop.features.feature_sets``): every feature set
whose table exists in the data dir (``MUSICPOP_DATA_DIR``, default ``data/demo`` under the current
folder) gets a view of the same name and a FeatureService ``<set>_v<version>`` that serves that view
and nothing else (model inputs only). A tabular set's view reads its feature table; a clips set's
view reads per-track references (number of clips, array shape, SHA-256 of the arrays), written by
``benchmark store apply``. The ``popularity`` view holds the targets of ONE chart period
(``MUSICPOP_PERIOD``, default ``weekly``) for notebooks and online look-ups; no service serves it.

With a PostgreSQL offline store (``MUSICPOP_OFFLINE_SOURCE=postgres``) the views read tables
``musicpop_<source>`` instead, which ``benchmark store apply`` uploads; their schema is still taken
from the Parquet files.

Audio features are static (their event timestamp is the release date or first chart date) and
popularity targets never change once known, so every view has a TTL of 150 years: a point-in-time
join at any later time sees them, and ``materialize-incremental`` starts early enough to load them.
Column names are kept as written, dots included (``lowlevel.spectral_centroid.mean``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_source import DataSource
from feast.types import Array, Bool, Bytes, FeastType, Float32, Float64, Int32, Int64, String

from musicpop.features.feature_sets import available_feature_sets
from musicpop.features.layout import DataLayout, Table
from musicpop.features.store import (
    POPULARITY_VIEW,
    offline_table_name,
    popularity_source,
    view_source,
)

# default: the CLI's default data dir, relative to the current folder (never the installed package)
LAYOUT = DataLayout(Path(os.environ.get("MUSICPOP_DATA_DIR") or "data/demo").resolve())
PERIOD = os.environ.get("MUSICPOP_PERIOD") or "weekly"
# "parquet" (FileSource, for the duckdb offline store) or "postgres" (PostgreSQLSource tables that
# `benchmark store apply` fills from the same Parquet files); set by features.store from the config
OFFLINE_SOURCE = os.environ.get("MUSICPOP_OFFLINE_SOURCE") or "parquet"
STATIC_TTL = timedelta(days=365 * 150)

_SCALAR_TYPES: dict[pa.DataType, FeastType] = {
    pa.float64(): Float64,
    pa.float32(): Float32,
    pa.float16(): Float32,
    pa.int64(): Int64,
    pa.int32(): Int32,
    pa.int16(): Int32,
    pa.int8(): Int32,
    pa.bool_(): Bool,
    pa.string(): String,
    pa.large_string(): String,
    pa.binary(): Bytes,
    pa.large_binary(): Bytes,
}


def _feast_type(source: Table, name: str, dtype: pa.DataType) -> FeastType:
    if dtype in _SCALAR_TYPES:
        return _SCALAR_TYPES[dtype]
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and (
        dtype.value_type in _SCALAR_TYPES
    ):
        return Array(_SCALAR_TYPES[dtype.value_type])
    raise TypeError(f"{source.path}: column {name!r} has type {dtype}, which a view cannot hold")


def _schema(source: Table, keys: tuple[str, ...]) -> list[Field]:
    """One Feast field per column of ``source`` except join keys and the event timestamp."""
    if not source.exists():
        raise FileNotFoundError(
            f"{source.path} is missing: run `benchmark store apply --data-dir {LAYOUT.root}` "
            "(it writes the derived sources) after extracting features and building targets"
        )
    skip = {*keys, "event_timestamp", "created_timestamp"}
    return [
        Field(name=f.name, dtype=_feast_type(source, f.name, f.type))
        for f in source.schema()
        if f.name not in skip
    ]


def _source(name: str, source: Table) -> DataSource:
    """The Parquet file itself, or its copy in PostgreSQL."""
    if OFFLINE_SOURCE == "postgres":
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            PostgreSQLSource,
        )

        return PostgreSQLSource(
            name=name, table=offline_table_name(source), timestamp_field="event_timestamp"
        )
    return FileSource(name=name, path=str(source.path), timestamp_field="event_timestamp")


track = Entity(
    name="track",
    join_keys=["track_id"],
    value_type=ValueType.STRING,
    description="A Spotify track (22-char base62 id); each version of a song is its own track.",
)
region = Entity(
    name="region",
    join_keys=["region"],
    value_type=ValueType.STRING,
    description="A chart region: lower-case ISO 3166-1 alpha-2 code or 'global'.",
)

_popularity = popularity_source(LAYOUT, PERIOD)
popularity = FeatureView(
    name=POPULARITY_VIEW,
    entities=[track, region],
    ttl=STATIC_TTL,
    schema=_schema(_popularity, ("track_id", "region")),
    source=_source(f"popularity_{PERIOD}_source", _popularity),
    description=f"Popularity targets per (track, region) from {PERIOD} charts: curve, sum, ranks.",
)

# one view and one service per feature set of the registry that the data dir holds
for _set in available_feature_sets(LAYOUT):
    _view_source = view_source(LAYOUT, _set)
    _view = FeatureView(
        name=_set.name,
        entities=[track],
        ttl=STATIC_TTL,
        schema=_schema(_view_source, ("track_id",)),
        source=_source(f"{_set.name}_source", _view_source),
        description=_set.description,
    )
    globals()[f"{_set.name}_view"] = _view
    globals()[_set.service] = FeatureService(
        name=_set.service,
        features=[_view],
        description=f"Model inputs: feature set {_set.name} ({_set.kind}, version {_set.version}).",
    )

del _set, _view_source, _view  # the loop's names: each object is bound once, under its own name
