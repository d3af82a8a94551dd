"""The feature-set registry: every representation of a track a model can read, declared once.

A :class:`FeatureSet` is a name, a version, a kind, where its values come from, and (for
tabular sets) its columns. Extraction (:mod:`features.extract`), the Feast store
(:mod:`features.store` and ``feature_repo/definitions.py``), the benchmark runner and the report
iterate this registry; none of them names a feature set.

Kinds
-----
``tabular``
    One row per track, one float column per value (Essentia statistics, MusiCNN tags, a user's
    descriptor table). Feast serves the columns themselves; tabular models read them.
``clips``
    One array per audio clip of a track (a log-mel spectrogram, a sequence of patch
    embeddings). Feast serves a *reference* per track (number of clips, array shape and the
    SHA-256 of the track's arrays); :func:`read_clip_arrays` resolves it from the feature table
    and checks the hash, so a model gets exactly the arrays the store pointed to.

Sources
-------
An **audio** set is computed from each clip by an :class:`Extractor` (a picklable function run
in the extraction pool on the decoded signal at the extractor's sample rate; several sets may
share one extractor, which then runs once per clip). An **ingested** set is a user's table
brought in by ``benchmark ingest features``: it is not declared in code but found in the data
dir (``features/<name>.json`` with ``"source": "table"``), see :func:`feature_sets`.

Adding an audio feature set is one module (the computation) plus one :func:`register_feature_set`
call in this file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import fbank, lowlevel, mel, pretrained
from .errors import DataError
from .layout import DataLayout

TABULAR = "tabular"
CLIPS = "clips"
KINDS = (TABULAR, CLIPS)
AUDIO = "audio"
INGESTED = "table"

CLIP_SCHEMA = pa.schema(
    [
        ("track_id", pa.string()),
        ("clip_id", pa.int64()),
        ("event_timestamp", pa.timestamp("ns", tz="UTC")),
        ("array", pa.binary()),
        ("dtype", pa.string()),
        ("shape", pa.list_(pa.int32())),
    ]
)
"""Schema of a ``clips`` feature table: one C-order array per (track, clip)."""


@dataclass(frozen=True)
class Extractor:
    """Computes arrays from one decoded clip (runs in a worker process).

    Attributes
    ----------
    name : str
        Cache namespace and error label.
    version : int
        Bump when the computation changes: cached results of older versions are not reused.
    sample_rate : int
        Rate (Hz) of the mono float32 signal ``compute`` receives.
    compute : Callable[[np.ndarray], dict[str, np.ndarray]]
        A module-level (picklable) function ``signal -> {output name: array}``.
    parameters : Callable[[], dict[str, Any]]
        Everything that determines the output (library versions, settings): part of the cache
        key and of ``features/<set>.json``.
    outputs : tuple[str, ...]
        Names of the arrays ``compute`` returns (all of them are cached).
    """

    name: str
    version: int
    sample_rate: int
    compute: Callable[[np.ndarray], dict[str, np.ndarray]]
    parameters: Callable[[], dict[str, Any]]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class FeatureSet:
    """One representation of a track that models can read.

    Attributes
    ----------
    name : str
        Registry key; also the feature table's name (``features/<name>.parquet``) and the Feast
        feature view's name.
    version : int
        Version of the set's definition: the Feast FeatureService is ``<name>_v<version>``.
    kind : str
        ``tabular`` or ``clips``.
    description : str
        One line (Feast view and service descriptions, ``benchmark store info``).
    source : str
        ``audio`` (computed by ``extractor``) or ``table`` (ingested).
    extractor : Extractor or None
        The computation of an audio set.
    outputs : tuple[str, ...]
        The extractor outputs this set is made of (a tabular set concatenates them in order
        and averages over the track's clips, ignoring NaN; a clips set takes the one output).
    columns : tuple[str, ...]
        Column names of a tabular set (for an ingested set: taken from its table).
    default : bool
        Extracted by ``benchmark features extract`` when no ``--sets`` are given.
    dtype : str
        Storage dtype of a clips set's arrays (``float16`` keeps spectrograms small).
    metadata : Mapping[str, Any]
        An ingested table's record (``features/<name>.json``).
    encoder : str or None
        The pretrained network whose (frozen) outputs the set holds, e.g. ``MSD_musicnn``; its
        weights' sha256 is the extractor parameter ``weights_sha256``. Every model reading the set
        names it in its provenance (:func:`encoder_provenance`).
    """

    name: str
    version: int
    kind: str
    description: str
    source: str = AUDIO
    extractor: Extractor | None = None
    outputs: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    default: bool = True
    dtype: str = "float32"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    encoder: str | None = None

    @property
    def service(self) -> str:
        """The Feast FeatureService that serves this set: ``<name>_v<version>``."""
        return f"{self.name}_v{self.version}"

    def table(self, layout: DataLayout) -> Any:
        """The set's feature table in a data dir."""
        rebuild = (
            f"benchmark ingest features FILE --name {self.name}"
            if self.source == INGESTED
            else f"benchmark features extract --sets {self.name}"
        )
        return layout.feature_table(self.name, rebuild=rebuild)


FEATURE_SETS: dict[str, FeatureSet] = {}
"""The feature sets declared in code (audio sets); see :func:`feature_sets` for the full list."""


def register_feature_set(feature_set: FeatureSet) -> FeatureSet:
    """Add a feature set to :data:`FEATURE_SETS`.

    Parameters
    ----------
    feature_set : FeatureSet
        The declaration.

    Returns
    -------
    FeatureSet
        The same object.
    """
    if feature_set.kind not in KINDS:
        raise ValueError(f"feature set {feature_set.name!r}: kind must be one of {KINDS}")
    if feature_set.source == AUDIO and feature_set.extractor is None:
        raise ValueError(f"feature set {feature_set.name!r}: an audio set needs an extractor")
    if feature_set.kind == CLIPS and len(feature_set.outputs) != 1:
        raise ValueError(f"feature set {feature_set.name!r}: a clips set takes one output")
    FEATURE_SETS[feature_set.name] = feature_set
    return feature_set


def ingested_feature_set(name: str, info: Mapping[str, Any]) -> FeatureSet:
    """The :class:`FeatureSet` of a user's table from its ``features/<name>.json`` record.

    Parameters
    ----------
    name : str
        The set's name.
    info : Mapping[str, Any]
        The record written by ``benchmark ingest features`` (``version``, ``columns``,
        ``description``).

    Returns
    -------
    FeatureSet
        A tabular set with source ``table``.
    """
    return FeatureSet(
        name=name,
        version=int(info.get("version", 1)),
        kind=TABULAR,
        description=str(info.get("description") or f"user feature table {name}"),
        source=INGESTED,
        columns=tuple(info.get("columns", ())),
        default=False,
        metadata=dict(info),
    )


def feature_sets(layout: DataLayout | None = None) -> dict[str, FeatureSet]:
    """Every feature set: those declared in code, plus the ingested tables of a data dir.

    Parameters
    ----------
    layout : DataLayout, optional
        The data dir whose ingested tables are added.

    Returns
    -------
    dict[str, FeatureSet]
        Name to set, declared ones first.
    """
    found = dict(FEATURE_SETS)
    if layout is not None and layout.features_dir.is_dir():
        for path in sorted(layout.features_dir.glob("*.json")):
            name = path.stem
            if name in found:
                continue
            info = layout.feature_info(name).read()
            if isinstance(info, dict) and info.get("source") == INGESTED:
                found[name] = ingested_feature_set(name, info)
    return found


def get_feature_set(name: str, layout: DataLayout | None = None) -> FeatureSet:
    """Look a feature set up by name.

    Raises
    ------
    DataError
        Unknown name (the message lists the known ones).
    """
    known = feature_sets(layout)
    if name not in known:
        raise DataError(f"unknown feature set {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def available_feature_sets(layout: DataLayout) -> list[FeatureSet]:
    """The feature sets whose table exists in the data dir (what the store serves)."""
    return [fs for fs in feature_sets(layout).values() if fs.table(layout).exists()]


def encoder_provenance(layout: DataLayout | None, feature_set: FeatureSet) -> dict[str, Any]:
    """What a model reading ``feature_set`` must say about the pretrained encoder behind it.

    Parameters
    ----------
    layout : DataLayout or None
        The data dir whose table the model read (None: data built in memory).
    feature_set : FeatureSet
        The set.

    Returns
    -------
    dict
        Empty for a set that holds no encoder's outputs; else ``encoder`` (the network),
        ``encoder_weights_sha256`` (the sha256 of the weights that computed the stored table, as
        recorded in ``features/<name>.json`` by extraction; ``unknown`` without the record) and
        ``encoder_frozen`` (True: stored outputs cannot be fine-tuned).
    """
    if feature_set.encoder is None:
        return {}
    sha256 = "unknown"
    info = layout.feature_info(feature_set.name) if layout is not None else None
    if info is not None and info.exists():
        record = info.read()
        fingerprint = record.get("fingerprint", {}) if isinstance(record, dict) else {}
        sha256 = str(fingerprint.get("parameters", {}).get("weights_sha256", "unknown"))
    return {
        "encoder": feature_set.encoder,
        "encoder_weights_sha256": sha256,
        "encoder_frozen": True,
    }


# --- clip arrays ------------------------------------------------------------------------------


def encode_array(array: np.ndarray, dtype: str) -> tuple[bytes, str, list[int]]:
    """``(C-order bytes, dtype name, shape)`` of ``array`` stored as ``dtype``."""
    stored = np.ascontiguousarray(array, dtype=np.dtype(dtype))
    return stored.tobytes(), stored.dtype.name, list(stored.shape)


def decode_array(blob: bytes, dtype: str, shape: Iterable[int]) -> np.ndarray:
    """The array stored by :func:`encode_array` (a read-only view of the bytes).

    Raises
    ------
    DataError
        The bytes do not hold ``prod(shape)`` values of ``dtype``.
    """
    shape = tuple(int(s) for s in shape)
    values = np.frombuffer(blob, dtype=np.dtype(dtype))
    if values.size != int(np.prod(shape)):
        raise DataError(f"stored array holds {values.size} values, expected shape {shape}")
    return values.reshape(shape)


def clip_digest(blobs: Iterable[bytes]) -> str:
    """SHA-256 of a track's clip arrays in clip order (the reference Feast serves)."""
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest()


def read_clip_arrays(
    layout: DataLayout,
    feature_set: FeatureSet,
    references: pd.DataFrame,
    dtype: str = "float32",
) -> dict[str, list[np.ndarray]]:
    """Resolve the references Feast served for a clips set into arrays.

    Parameters
    ----------
    layout : DataLayout
        The data dir.
    feature_set : FeatureSet
        A ``clips`` set.
    references : pandas.DataFrame
        ``track_id`` and the set's ``<name>__sha256`` reference column (one row per track or
        per entity row; repeats are read once).
    dtype : str
        Dtype of the returned arrays.

    Returns
    -------
    dict[str, list[np.ndarray]]
        Track id to its clips in ``clip_id`` order.

    Raises
    ------
    DataError
        A track has no arrays, or its arrays differ from the reference (the table changed since
        ``benchmark store apply``).
    """
    column = reference_columns(feature_set)["sha256"]
    wanted = references[["track_id", column]].drop_duplicates("track_id")
    wanted = wanted[wanted[column].notna()]
    table = feature_set.table(layout).read_arrow(
        ["track_id", "clip_id", "array", "dtype", "shape"],
        filters=pc.field("track_id").isin(wanted["track_id"].tolist()),
    )
    table = table.sort_by([("track_id", "ascending"), ("clip_id", "ascending")])
    blobs: dict[str, list[bytes]] = {}
    arrays: dict[str, list[np.ndarray]] = {}
    columns = [table[c].to_pylist() for c in ("track_id", "array", "dtype", "shape")]
    for track, blob, stored_dtype, shape in zip(*columns, strict=True):
        blobs.setdefault(track, []).append(blob)
        arrays.setdefault(track, []).append(
            decode_array(blob, stored_dtype, shape).astype(dtype, copy=True)
        )
    path = feature_set.table(layout).path
    for track, expected in zip(wanted["track_id"], wanted[column], strict=True):
        if track not in blobs:
            raise DataError(f"{path}: no {feature_set.name} arrays for track {track}")
        if clip_digest(blobs[track]) != expected:
            raise DataError(
                f"{path}: the {feature_set.name} arrays of track {track} differ from what the "
                "Feast store references; run `benchmark store apply`"
            )
    return arrays


def reference_columns(feature_set: FeatureSet) -> dict[str, str]:
    """Names of the reference features a clips set's Feast view holds."""
    return {
        "n_clips": f"{feature_set.name}__n_clips",
        "shape": f"{feature_set.name}__shape",
        "sha256": f"{feature_set.name}__sha256",
    }


def clip_references(layout: DataLayout, feature_set: FeatureSet) -> pa.Table:
    """One row per track of a clips set: ``track_id``, ``event_timestamp`` and the references.

    Parameters
    ----------
    layout : DataLayout
        The data dir.
    feature_set : FeatureSet
        A ``clips`` set.

    Returns
    -------
    pyarrow.Table
        The source of the set's Feast view.
    """
    names = reference_columns(feature_set)
    table = feature_set.table(layout).read_arrow(
        ["track_id", "clip_id", "event_timestamp", "array", "shape"]
    )
    table = table.sort_by([("track_id", "ascending"), ("clip_id", "ascending")])
    tracks, stamps, counts, shapes, digests = [], [], [], [], []
    current: str | None = None
    blobs: list[bytes] = []
    columns = [table[c].to_pylist() for c in ("track_id", "event_timestamp", "array", "shape")]
    for track, stamp, blob, shape in zip(*columns, strict=True):
        if track != current:
            if current is not None:
                counts.append(len(blobs))
                digests.append(clip_digest(blobs))
            current, blobs = track, []
            tracks.append(track)
            stamps.append(stamp)
            shapes.append(shape)
        blobs.append(blob)
    if current is not None:
        counts.append(len(blobs))
        digests.append(clip_digest(blobs))
    return pa.table(
        {
            "track_id": pa.array(tracks, pa.string()),
            "event_timestamp": pa.array(stamps, pa.timestamp("ns", tz="UTC")),
            names["n_clips"]: pa.array(counts, pa.int64()),
            names["shape"]: pa.array(shapes, pa.list_(pa.int64())),
            names["sha256"]: pa.array(digests, pa.string()),
        }
    )


# --- the declared sets --------------------------------------------------------------------------


ESSENTIA_EXTRACTOR = Extractor(
    name="essentia_lowlevel",
    version=1,
    sample_rate=lowlevel.LOWLEVEL_SAMPLE_RATE,
    compute=lowlevel.compute,
    parameters=lowlevel.parameters,
    outputs=("lowlevel",),
)
LOGMEL_EXTRACTOR = Extractor(
    name="logmel",
    version=1,
    sample_rate=mel.MelConfig().sample_rate,
    compute=mel.compute,
    parameters=mel.parameters,
    outputs=("mel",),
)

register_feature_set(
    FeatureSet(
        name="essentia",
        version=1,
        kind=TABULAR,
        description="Essentia low-level, rhythm and tonal statistics per track (mean over clips).",
        extractor=ESSENTIA_EXTRACTOR,
        outputs=("lowlevel",),
        columns=lowlevel.LOWLEVEL_COLUMNS,
    )
)
register_feature_set(
    FeatureSet(
        name="mel",
        version=1,
        kind=CLIPS,
        description="AST-style log-mel spectrogram of every clip (128 bins, 10 ms hop, float16).",
        extractor=LOGMEL_EXTRACTOR,
        outputs=("mel",),
        dtype="float16",
    )
)
MUSICNN_EXTRACTOR = Extractor(
    name="musicnn",
    version=1,
    sample_rate=pretrained.SAMPLE_RATE,
    compute=pretrained.musicnn_compute,
    parameters=pretrained.musicnn_parameters,
    outputs=("embedding", "tags", "patch_embeddings"),
)
MUSICNN_FRONTEND_EXTRACTOR = Extractor(
    name="musicnn_frontend",
    version=1,
    sample_rate=pretrained.SAMPLE_RATE,
    compute=pretrained.musicnn_input_compute,
    parameters=pretrained.musicnn_input_parameters,
    outputs=("musicnn_input",),
)
AST_FBANK_EXTRACTOR = Extractor(
    name="ast_fbank",
    version=1,
    sample_rate=fbank.FbankConfig().sample_rate,
    compute=fbank.compute,
    parameters=fbank.parameters,
    outputs=("ast_fbank",),
)

register_feature_set(
    FeatureSet(
        name="musicnn",
        version=1,
        kind=TABULAR,
        description=(
            "MSD MusiCNN per track: 200-d penultimate embedding and 50 tag probabilities "
            "(means over 3 s patches and clips)."
        ),
        extractor=MUSICNN_EXTRACTOR,
        outputs=("embedding", "tags"),
        columns=pretrained.EMBEDDING_COLUMNS + pretrained.MSD_TAG_COLUMNS,
        encoder=pretrained.MUSICNN_MODEL,
    )
)
register_feature_set(
    FeatureSet(
        name="musicnn_patches",
        version=1,
        kind=CLIPS,
        description="MSD MusiCNN 200-d embedding of every 3 s patch of every clip (P, 200).",
        extractor=MUSICNN_EXTRACTOR,
        outputs=("patch_embeddings",),
        encoder=pretrained.MUSICNN_MODEL,
    )
)
register_feature_set(
    FeatureSet(
        name="musicnn_input",
        version=1,
        kind=CLIPS,
        description="MusiCNN front end of every clip: 3 s log-mel patches (P, 187, 96), float16.",
        extractor=MUSICNN_FRONTEND_EXTRACTOR,
        outputs=("musicnn_input",),
        default=False,
        dtype="float16",
    )
)
register_feature_set(
    FeatureSet(
        name="ast_fbank",
        version=1,
        kind=CLIPS,
        description="AST front end of every clip: 10.24 s Kaldi fbank windows (W, 1024, 128), float16.",
        extractor=AST_FBANK_EXTRACTOR,
        outputs=("ast_fbank",),
        default=False,
        dtype="float16",
    )
)


__all__ = [
    "CLIPS",
    "CLIP_SCHEMA",
    "FEATURE_SETS",
    "TABULAR",
    "Extractor",
    "FeatureSet",
    "available_feature_sets",
    "clip_digest",
    "clip_references",
    "decode_array",
    "encode_array",
    "encoder_provenance",
    "feature_sets",
    "get_feature_set",
    "ingested_feature_set",
    "read_clip_arrays",
    "reference_columns",
    "register_feature_set",
]
