"""Feast definitions: entities, feature views and feature services of the music-popularity store.

Feature views read Parquet files of one data dir, given by ``MUSICPOP_DATA_DIR`` (default
``data/demo`` under the current folder, as for the ``benchmark`` command). ``features.store.apply``
first writes the two derived sources under ``DIR/feast/`` that the views need, then applies these
definitions:

- ``DIR/feast/popularity_<period>.parquet``: the rows of ``popularity.parquet`` for ONE chart period
  (``MUSICPOP_PERIOD``, default ``weekly``), so that the (track, region) view never mixes weekly and
  daily targets; ``debut_date`` is stored as an ISO date string.
- ``DIR/feast/mel_clip0.parquet``: the first clip of every track. Feast serves one row per entity
  key, so the ``mel_spectrogram`` view holds clip 0; ``features.store.load_mels`` reads all clips.

With a PostgreSQL offline store (``MUSICPOP_OFFLINE_SOURCE=postgres``) the same views read tables
``musicpop_essentia_lowlevel``, ``musicpop_mel_clip0`` and ``musicpop_popularity_<period>`` instead;
their schema is still taken from the Parquet files, which ``features.store.apply`` uploads.

Audio features are static (their event timestamp is the release date or first chart date) and
popularity targets never change once known, so every view has a TTL of 150 years: a point-in-time
join at any later time sees them, and ``materialize-incremental`` starts early enough to load them.
Column names are kept as written by the extractor, dots included
(``lowlevel.spectral_centroid.mean``): Feast's duckdb offline store and sqlite online store handle
them unchanged.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_source import DataSource
from feast.types import (
    Array,
    Bool,
    Bytes,
    FeastType,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
)

# default: the CLI's default data dir, relative to the current folder (never the installed package)
DATA_DIR = Path(os.environ.get("MUSICPOP_DATA_DIR") or Path("data") / "demo").resolve()
PERIOD = os.environ.get("MUSICPOP_PERIOD") or "weekly"
# "parquet" (FileSource, for the duckdb offline store) or "postgres" (PostgreSQLSource tables that
# `features.store.apply` fills from the same Parquet files); set by features.store from the config
OFFLINE_SOURCE = os.environ.get("MUSICPOP_OFFLINE_SOURCE") or "parquet"
STATIC_TTL = timedelta(days=365 * 150)

LOWLEVEL_PATH = DATA_DIR / "features" / "essentia_lowlevel.parquet"
MEL_PATH = DATA_DIR / "feast" / "mel_clip0.parquet"
POPULARITY_PATH = DATA_DIR / "feast" / f"popularity_{PERIOD}.parquet"
CURVE = "curve"

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


def _feast_type(path: Path, name: str, dtype: pa.DataType) -> FeastType:
    if dtype in _SCALAR_TYPES:
        return _SCALAR_TYPES[dtype]
    if (pa.types.is_list(dtype) or pa.types.is_large_list(dtype)) and (
        dtype.value_type in _SCALAR_TYPES
    ):
        return Array(_SCALAR_TYPES[dtype.value_type])
    raise TypeError(f"{path}: column {name!r} has type {dtype}, which the Feast view cannot hold")


def _schema(path: Path, keys: tuple[str, ...]) -> list[Field]:
    """One Feast field per column of ``path`` except join keys and the event timestamp."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `benchmark store apply --data-dir {DATA_DIR}` "
            "(it writes the derived sources) after extracting features and building targets"
        )
    skip = {*keys, "event_timestamp", "created_timestamp"}
    return [
        Field(name=f.name, dtype=_feast_type(path, f.name, f.type))
        for f in pq.read_schema(path)
        if f.name not in skip
    ]


def _source(name: str, path: Path) -> DataSource:
    """The Parquet file itself, or its copy in PostgreSQL (table ``musicpop_<file stem>``)."""
    if OFFLINE_SOURCE == "postgres":
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (
            PostgreSQLSource,
        )

        return PostgreSQLSource(
            name=name, table=f"musicpop_{path.stem}", timestamp_field="event_timestamp"
        )
    return FileSource(name=name, path=str(path), timestamp_field="event_timestamp")


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

essentia_lowlevel = FeatureView(
    name="essentia_lowlevel",
    entities=[track],
    ttl=STATIC_TTL,
    schema=_schema(LOWLEVEL_PATH, ("track_id",)),
    source=_source("essentia_lowlevel_source", LOWLEVEL_PATH),
    description="Essentia low-level, rhythm and tonal statistics per track (mean over its clips).",
)
mel_spectrogram = FeatureView(
    name="mel_spectrogram",
    entities=[track],
    ttl=STATIC_TTL,
    schema=_schema(MEL_PATH, ("track_id",)),
    source=_source("mel_clip0_source", MEL_PATH),
    description="AST log-mel of the track's clip 0: float16 C-order bytes plus n_mels, n_frames.",
)
popularity = FeatureView(
    name="popularity",
    entities=[track, region],
    ttl=STATIC_TTL,
    schema=_schema(POPULARITY_PATH, ("track_id", "region")),
    source=_source(f"popularity_{PERIOD}_source", POPULARITY_PATH),
    description=f"Popularity targets per (track, region) from {PERIOD} charts: curve, sum, ranks.",
)

_targets = [f.name for f in popularity.features if f.name != CURVE]

classical_v1 = FeatureService(
    name="classical_v1",
    features=[essentia_lowlevel, popularity[_targets]],
    description="Classical models: Essentia low-level features and the scalar popularity targets.",
)
mp2_v1 = FeatureService(
    name="mp2_v1",
    features=[mel_spectrogram, popularity[_targets]],
    description="MP2 transformer: log-mel spectrogram and the scalar popularity targets.",
)
mp3_v1 = FeatureService(
    name="mp3_v1",
    features=[mel_spectrogram, popularity],
    description="MP3 transformer: log-mel spectrogram, popularity curve and scalar targets.",
)
