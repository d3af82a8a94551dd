"""What the models see: one row per (track, region), its targets, and its inputs from Feast.

:func:`load_benchmark_data` builds the rows from the data dir's popularity table (for the
configured chart period, censored rows left out) and asks the Feast store, through each feature
set's FeatureService, for the inputs of every feature set the suite's models read: the only way a
model gets its inputs. Rows lacking any of those inputs are left out for every model, so all
models are evaluated on the same rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..features import store
from ..features.errors import DataError
from ..features.feature_sets import CLIPS, get_feature_set, reference_columns
from ..features.layout import DataLayout
from ..features.targets import CHARTED, TARGETS, curve_columns
from ..models.estimators.base import APPEAL_COLUMN, CLIPS_COLUMN, ID_COLUMNS
from .config import BenchmarkConfig
from .registry import ModelRun

log = logging.getLogger(__name__)


@dataclass
class FeatureInputs:
    """One feature set's values for the rows of a :class:`BenchmarkData`.

    Attributes
    ----------
    name : str
        Feature-set name.
    kind : str
        ``tabular`` or ``clips``.
    service : str
        The Feast FeatureService they came from (``in memory`` for data built in memory).
    columns : pandas.DataFrame or None
        Tabular values, aligned with the rows.
    clips : dict[str, list[np.ndarray]] or None
        Clip arrays per track.
    """

    name: str
    kind: str
    service: str
    columns: pd.DataFrame | None = None
    clips: Mapping[str, list[np.ndarray]] | None = None

    def available(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` have these inputs."""
        if self.kind == CLIPS:
            assert self.clips is not None
            return frame["track_id"].isin(list(self.clips)).to_numpy()
        assert self.columns is not None
        return self.columns.notna().any(axis=1).to_numpy()


@dataclass
class BenchmarkData:
    """Every row the models see, with targets and inputs.

    Attributes
    ----------
    frame : pandas.DataFrame
        ``track_id``, ``song_id``, ``region``, optional ``debut_date`` and ``known_date``, the
        scalar target columns and optional ``curve_..`` columns; one row per (track, region).
    inputs : dict[str, FeatureInputs]
        Feature-set name to its values for these rows.
    targets : list[str]
        Scalar target columns.
    name : str
        Dataset name.
    data_dir : Path or None
        Folder the data came from (None for data built in memory).
    ground_truth : pandas.DataFrame or None
        ``song_id`` (or ``track_id``), ``region``, ``appeal`` when the dataset knows its truth.
    fingerprint : str
        Hash of the dataset's tables (or of ``frame`` when built in memory).
    """

    frame: pd.DataFrame
    inputs: dict[str, FeatureInputs] = field(default_factory=dict)
    targets: list[str] = field(default_factory=lambda: ["log1p_charted_sum", "log1p_debut"])
    name: str = "dataset"
    data_dir: Path | None = None
    ground_truth: pd.DataFrame | None = None
    fingerprint: str = ""

    def __post_init__(self) -> None:
        where = str(self.data_dir) if self.data_dir is not None else f"dataset {self.name!r}"
        missing = [c for c in (*ID_COLUMNS, *self.targets) if c not in self.frame.columns]
        if missing:
            raise DataError(f"{where}: the rows lack column(s) {', '.join(missing)}")
        if self.frame.empty:
            raise DataError(f"{where}: no rows to benchmark")
        self.frame = self.frame.reset_index(drop=True)
        for name, values in self.inputs.items():
            if values.columns is not None:
                values.columns = values.columns.reset_index(drop=True)
                if len(values.columns) != len(self.frame):
                    raise DataError(f"{where}: feature set {name} has a row count unlike the rows")
        if self.ground_truth is not None:
            lacks = {"region", "appeal"} - set(self.ground_truth.columns)
            if not {"song_id", "track_id"} & set(self.ground_truth.columns):
                lacks.add("song_id or track_id")
            if lacks:
                raise DataError(f"{where}: ground truth lacks column(s) {', '.join(sorted(lacks))}")
        if not self.fingerprint:
            digest = hashlib.sha256(",".join(map(str, self.frame.columns)).encode())
            digest.update(pd.util.hash_pandas_object(self.frame, index=True).to_numpy().tobytes())
            self.fingerprint = digest.hexdigest()

    @property
    def curve_columns(self) -> list[str]:
        """The ``curve_..`` target columns (empty when the frame has none)."""
        return curve_columns(self.frame.columns)

    def X(self, run: ModelRun) -> pd.DataFrame:
        """The input frame of a model: identifiers plus what its estimator declares.

        Parameters
        ----------
        run : ModelRun
            The model and its feature set.

        Returns
        -------
        pandas.DataFrame
            Index = the rows' positions.
        """
        estimator = run.spec.estimator
        X = self.frame[list(ID_COLUMNS)].copy()
        if estimator.inputs is not None:
            if run.features not in self.inputs:
                raise DataError(
                    f"model {run.name}: feature set {run.features!r} was not loaded "
                    f"(loaded: {', '.join(self.inputs) or 'none'})"
                )
            values = self.inputs[run.features]
            if estimator.inputs != values.kind:
                raise DataError(
                    f"model {run.name} reads {estimator.inputs} inputs, but feature set "
                    f"{run.features} is {values.kind}"
                )
            if values.kind == CLIPS:
                assert values.clips is not None
                X[CLIPS_COLUMN] = X["track_id"].map(values.clips)
            else:
                assert values.columns is not None
                X = pd.concat([X, values.columns.astype(float)], axis=1)
        if estimator.needs_appeal:
            X[APPEAL_COLUMN] = self.appeal_of(X)
        return X

    def y(self, run: ModelRun) -> pd.DataFrame:
        """The targets of a model: the scalar targets, plus the curves for curve models."""
        curves = self.curve_columns if run.spec.estimator.predicts_curve else []
        return self.frame[self.targets + curves]

    def appeal_of(self, X: pd.DataFrame) -> np.ndarray:
        """Noise-free appeal of each row, looked up by ``(track_id, region)`` or
        ``(song_id, region)`` in the ground truth (NaN where unknown)."""
        if self.ground_truth is None:
            raise DataError(f"dataset {self.name!r} has no ground truth")
        key = "track_id" if "track_id" in self.ground_truth.columns else "song_id"
        truth = self.ground_truth.drop_duplicates([key, "region"])
        index = pd.MultiIndex.from_arrays(
            [truth[key].astype(str), truth["region"].astype(str)], names=[key, "region"]
        )
        appeal = pd.Series(truth["appeal"].to_numpy(dtype=float), index=index)
        rows = pd.MultiIndex.from_arrays([X[key].astype(str), X["region"].astype(str)])
        return appeal.reindex(rows).to_numpy(dtype=float)

    def feature_service(self, run: ModelRun) -> str:
        """The FeatureService a model's inputs came from (``none`` for models without inputs)."""
        if run.features is None or run.features not in self.inputs:
            return "none"
        return self.inputs[run.features].service


LEFT_OUT = {
    "drop_incomplete": ("complete_horizon", False, "horizon not covered by the data"),
    "drop_left_censored": ("left_censored", True, "debut within the burn-in"),
    "drop_reentries": ("reentry", True, "re-entry"),
}
"""Config switch -> (popularity column, value that leaves a row out, reason)."""


def _popularity_rows(layout: DataLayout, config: BenchmarkConfig) -> pd.DataFrame:
    """The popularity rows of the configured period, censored rows and re-entries left out."""
    pop = layout.popularity.read()
    pop = pop[pop["period"] == config.period]
    if pop.empty:
        raise DataError(f"{layout.popularity.path}: no rows with period {config.period!r}")
    if "charted" in pop.columns and not config.two_part:
        pop = pop[pop["charted"].astype(bool)]  # size given charting only
    elif config.two_part and "charted" not in pop.columns:
        raise DataError(
            f"{layout.popularity.path}: two_part needs the uncharted rows; rebuild it with "
            "`benchmark targets --uncharted`"
        )
    out = np.zeros(len(pop), dtype=bool)
    for switch, (column, value, reason) in LEFT_OUT.items():
        if getattr(config, switch) and column in pop.columns:
            hit = (pop[column].astype(bool) == value).to_numpy()
            if hit.any():
                log.warning("leaving out %d of %d rows: %s", int(hit.sum()), len(pop), reason)
            out |= hit
    if out.all():
        raise DataError(
            f"{layout.popularity.path}: every {config.period} row is left out (horizon "
            f"{config.horizon} not covered by the data, debut within the burn-in, or a "
            "re-entry); use a shorter --horizon in `benchmark targets`, or relax "
            "drop_incomplete / drop_left_censored / drop_reentries"
        )
    pop = pop[~out]
    return pop.sort_values(["region", "track_id"], kind="stable").reset_index(drop=True)


def dataset_fingerprint(layout: DataLayout) -> str:
    """SHA-256 over the bytes of the data dir's tables (changes whenever any table changes).

    Parameters
    ----------
    layout : DataLayout
        The data dir.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    for path in layout.fingerprint_files():
        if not path.is_file():
            continue
        digest.update(str(path.relative_to(layout.root)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_benchmark_data(config: BenchmarkConfig, runs: list[ModelRun]) -> BenchmarkData:
    """Rows, targets and (through Feast) the inputs of every feature set ``runs`` read.

    Entity rows are the (track_id, region) rows of the popularity table for the configured
    period, with the debut date as their timestamp: inputs are joined at prediction time, so
    nothing known later can reach a model. ``song_id``, ``artist`` and ``title`` come from the
    catalog (the split groups); the targets are those of ``config.targets`` (``log1p`` of a
    popularity statistic, :data:`features.targets.TARGETS`) and the log1p curve.

    Parameters
    ----------
    config : BenchmarkConfig
        Uses ``data_dir``, ``dataset``, ``period``, ``targets`` and the censoring settings.
    runs : list[ModelRun]
        The models to feed.

    Returns
    -------
    BenchmarkData
        Sorted by (region, track_id); rows lacking an input of any feature set left out.
    """
    layout = DataLayout(config.data_dir)
    pop = _popularity_rows(layout, config)
    catalog = layout.catalog.read(["track_id", "song_id", "title", "artist"])
    catalog = catalog.drop_duplicates("track_id").set_index("track_id")
    song_of = catalog["song_id"]
    unknown = ~pop["track_id"].isin(song_of.index)
    if unknown.any():
        raise DataError(
            f"{layout.catalog.path}: {int(unknown.sum())} popularity track(s) are not in "
            f"the catalog, e.g. {pop.loc[unknown, 'track_id'].iloc[0]}"
        )
    frame = pd.DataFrame(
        {
            "track_id": pop["track_id"].astype(str),
            "song_id": pop["track_id"].map(song_of).astype(str),
            "artist": pop["track_id"].map(catalog["artist"]),
            "title": pop["track_id"].map(catalog["title"]),
            "region": pop["region"].astype(str),
            "debut_date": pd.to_datetime(pop["debut_date"]),
            "known_date": pd.to_datetime(pop["event_timestamp"]),
        }
    )
    charted = pop["charted"].astype(bool).to_numpy() if config.two_part else None
    for target in config.targets:
        if target == CHARTED:
            frame[target] = charted.astype(float)
            continue
        statistic = TARGETS[target]
        if statistic not in pop.columns:
            raise DataError(
                f"{layout.popularity.path}: no {statistic!r} column for target {target}; "
                "rebuild it with `benchmark targets`"
            )
        values = np.log1p(pop[statistic].to_numpy(dtype=float))
        # two-part: the regression targets are size given charting (masked elsewhere)
        frame[target] = values if charted is None else np.where(charted, values, np.nan)
    if "curve" in pop.columns:
        curves = np.log1p(np.vstack([np.asarray(c, dtype=float) for c in pop["curve"]]))  # (N, H)
        for h in range(curves.shape[1]):
            frame[f"curve_{h:02d}"] = curves[:, h]

    entity_rows = pd.DataFrame(
        {
            "track_id": frame["track_id"],
            "region": frame["region"],
            "event_timestamp": pd.to_datetime(pop["debut_date"], utc=True),
        }
    )
    inputs: dict[str, FeatureInputs] = {}
    for name in sorted({run.features for run in runs if run.features}):
        fs = get_feature_set(name, layout)
        values, arrays = store.feature_inputs(layout.root, name, entity_rows)
        if fs.kind == CLIPS:
            sha = values[reference_columns(fs)["sha256"]]
            clips = {
                t: a for t, a in (arrays or {}).items() if t in set(values["track_id"][sha.notna()])
            }
            inputs[name] = FeatureInputs(name, CLIPS, fs.service, clips=clips)
        else:
            numeric = [
                c
                for c in values.columns
                if c not in entity_rows.columns and pd.api.types.is_numeric_dtype(values[c])
            ]
            if not numeric:
                raise DataError(f"{layout.root}: the feature service {fs.service} gave no columns")
            inputs[name] = FeatureInputs(
                name, fs.kind, fs.service, columns=values[numeric].reset_index(drop=True)
            )
    keep = np.ones(len(frame), dtype=bool)
    for name, values in inputs.items():
        has = values.available(frame)
        if not has.any():
            raise DataError(
                f"{layout.root}: no popularity row has {name} features; run "
                "`benchmark features extract` (or `benchmark ingest features`)"
            )
        if (~has).any():
            log.warning("leaving out %d rows whose track has no %s features", (~has).sum(), name)
        keep &= has
    frame = frame[keep].reset_index(drop=True)
    for values in inputs.values():
        if values.columns is not None:
            values.columns = values.columns[keep].reset_index(drop=True)

    truth = layout.ground_truth.read() if layout.ground_truth.exists() else None
    return BenchmarkData(
        frame=frame,
        inputs=inputs,
        targets=list(config.targets),
        name=config.dataset,
        data_dir=layout.root,
        ground_truth=truth,
        fingerprint=dataset_fingerprint(layout),
    )
