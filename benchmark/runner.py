"""The benchmark runner: ``run_suite(config) -> Results``.

One run: assemble the training frame (through Feast), build the song-grouped split, run every model
of the suite on the same folds (LightGBM tuned by Optuna on the training part of each fold only),
evaluate the out-of-fold predictions with song-level bootstrap intervals and paired differences,
log everything to MLflow and write ``results/<dataset>/``.
"""

from __future__ import annotations

import inspect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..features.errors import DataError
from ..features.tables import read_table
from .config import BenchmarkConfig
from .metrics import METRICS, curve_columns, evaluate
from .models import ModelSpec, get_model
from .splits import Fold, inner_splits, make_splits, split_table

log = logging.getLogger(__name__)

ID_COLUMNS = ("track_id", "song_id", "region")
CLASSICAL_SERVICE = "classical_v1"
REFERENCE_FAMILIES = ("baseline", "classical")
DEFAULT_TABLE_METRICS = ("rmse", "r2", "spearman", "spearman_region", "top10_precision")


# --- data ----------------------------------------------------------------------------------


@dataclass
class BenchmarkData:
    """Everything the models see: one row per (track, region), features and targets.

    Attributes
    ----------
    frame : pd.DataFrame
        Columns ``track_id``, ``song_id``, ``region``, optional ``debut_date``, the feature columns,
        the target columns and optional ``curve_..`` columns.
    feature_columns : list[str]
        Audio feature columns (inputs of classical models).
    targets : list[str]
        Scalar target columns.
    name : str
        Dataset name.
    data_dir : Path or None
        Folder the data came from (None for data built in memory).
    ground_truth : pd.DataFrame or None
        ``song_id``, ``region``, ``appeal`` when the dataset knows its noise-free truth.
    feature_service : str
        Feast FeatureService of ``feature_columns``.
    fingerprint : str
        Hash of the dataset's tables (or of ``frame`` when built in memory).
    """

    frame: pd.DataFrame
    feature_columns: list[str]
    targets: list[str] = field(default_factory=lambda: ["log1p_sum", "log1p_debut"])
    name: str = "synthetic"
    data_dir: Path | None = None
    ground_truth: pd.DataFrame | None = None
    feature_service: str = CLASSICAL_SERVICE
    fingerprint: str = ""

    def __post_init__(self) -> None:
        where = str(self.data_dir) if self.data_dir is not None else f"dataset {self.name!r}"
        missing = [
            c
            for c in (*ID_COLUMNS, *self.feature_columns, *self.targets)
            if c not in self.frame.columns
        ]
        if missing:
            raise DataError(f"{where}: training frame lacks column(s) {', '.join(missing)}")
        if self.frame.empty:
            raise DataError(f"{where}: the training frame has no rows")
        self.frame = self.frame.reset_index(drop=True)
        if self.ground_truth is not None:
            lacks = {"region", "appeal"} - set(self.ground_truth.columns)
            if not {"song_id", "track_id"} & set(self.ground_truth.columns):
                lacks.add("song_id or track_id")
            if lacks:
                raise DataError(f"{where}: ground truth lacks column(s) {', '.join(sorted(lacks))}")
        if not self.fingerprint:
            from .tracking import frame_fingerprint

            self.fingerprint = frame_fingerprint(self.frame)

    @property
    def curve_columns(self) -> list[str]:
        """The ``curve_..`` target columns (empty when the frame has none)."""
        return curve_columns(self.frame.columns)

    def inputs(self, spec: ModelSpec) -> pd.DataFrame:
        """``X`` for a model: identifiers and region, plus the audio features for classical models.

        Parameters
        ----------
        spec : ModelSpec
            The model.

        Returns
        -------
        pd.DataFrame
            The input frame.
        """
        columns = list(ID_COLUMNS)
        if spec.feature_service == CLASSICAL_SERVICE:
            columns += self.feature_columns
        return self.frame[columns]

    def outputs(self, spec: ModelSpec) -> pd.DataFrame:
        """``y`` for a model: the scalar targets, plus the curves for curve models.

        Parameters
        ----------
        spec : ModelSpec
            The model.

        Returns
        -------
        pd.DataFrame
            The target frame.
        """
        return self.frame[self.targets + (self.curve_columns if spec.curve else [])]

    def appeal(self) -> pd.Series:
        """Noise-free appeal by ``(track_id, region)``, or ``(song_id, region)`` (the oracle's input).

        Returns
        -------
        pd.Series
            The appeal.
        """
        if self.ground_truth is None:
            raise DataError(f"dataset {self.name!r} has no ground truth")
        key = "track_id" if "track_id" in self.ground_truth.columns else "song_id"
        truth = self.ground_truth.drop_duplicates([key, "region"])
        index = pd.MultiIndex.from_arrays(
            [truth[key].astype(str), truth["region"].astype(str)], names=[key, "region"]
        )
        return pd.Series(truth["appeal"].to_numpy(dtype=float), index=index)


def load_training_data(config: BenchmarkConfig) -> BenchmarkData:
    """Assemble the training frame of a data dir through the Feast FeatureService ``classical_v1``.

    Entity rows are the (track_id, region, event_timestamp) rows of ``popularity.parquet`` for the
    configured period; ``song_id`` comes from ``catalog.parquet``; targets are ``log1p(sum)``,
    ``log1p(debut)`` and the log1p curve. Rows of tracks without audio features are dropped.

    Parameters
    ----------
    config : BenchmarkConfig
        Uses ``data_dir``, ``dataset``, ``period`` and ``targets``.

    Returns
    -------
    BenchmarkData
        The frame, sorted by (region, track_id).
    """
    from ..features.store import training_frame
    from .tracking import dataset_fingerprint

    data_dir = Path(config.data_dir)
    pop = read_table(
        data_dir / "popularity.parquet",
        {"track_id", "region", "period", "event_timestamp", "debut_date", "sum", "debut"},
        hint="run `benchmark targets` first",
    )
    catalog = read_table(data_dir / "catalog.parquet", {"track_id", "song_id"})
    if not (data_dir / "features" / "essentia_lowlevel.parquet").is_file():
        raise DataError(
            f"{data_dir / 'features' / 'essentia_lowlevel.parquet'}: not found; "
            "run `benchmark features extract` first"
        )
    pop = pop[pop["period"] == config.period]
    if pop.empty:
        raise DataError(f"{data_dir / 'popularity.parquet'}: no rows with period {config.period!r}")
    censored = np.zeros(len(pop), dtype=bool)
    if config.drop_incomplete and "complete_horizon" in pop.columns:
        censored |= ~pop["complete_horizon"].astype(bool).to_numpy()
    if config.drop_left_censored and "left_censored" in pop.columns:
        censored |= pop["left_censored"].astype(bool).to_numpy()
    if censored.all():
        raise DataError(
            f"{data_dir / 'popularity.parquet'}: every {config.period} row is censored (horizon "
            f"{config.horizon} not covered by the data, or on the first chart); use a shorter "
            "--horizon in `benchmark targets`, or set drop_incomplete = false"
        )
    if censored.any():
        log.warning("leaving out %d censored rows of %d", int(censored.sum()), len(pop))
    pop = pop[~censored]
    pop = pop.sort_values(["region", "track_id"], kind="stable").reset_index(drop=True)
    song_of = catalog.drop_duplicates("track_id").set_index("track_id")["song_id"]
    unknown = ~pop["track_id"].isin(song_of.index)
    if unknown.any():
        raise DataError(
            f"{data_dir / 'catalog.parquet'}: {int(unknown.sum())} popularity track(s) are not in "
            f"the catalog, e.g. {pop.loc[unknown, 'track_id'].iloc[0]}"
        )

    # inputs are joined at prediction time, the debut: nothing known later can reach them
    entity_rows = pd.DataFrame(
        {
            "track_id": pop["track_id"],
            "region": pop["region"],
            "event_timestamp": pd.to_datetime(pop["debut_date"], utc=True),
        }
    )
    features = training_frame(data_dir, CLASSICAL_SERVICE, entity_rows)
    if len(features) != len(entity_rows):
        raise DataError(
            f"{data_dir}: Feast returned {len(features)} rows for {len(entity_rows)} entity rows"
        )
    features = features.reset_index(drop=True)
    # inputs are the audio features only: the service also carries the popularity targets
    # (sum, debut, peak, rank metrics...), which must never reach a model as features
    audio_columns = set(
        pq.read_schema(data_dir / "features" / "essentia_lowlevel.parquet").names
    ) - {"track_id", "event_timestamp"}
    feature_columns = [
        c
        for c in features.columns
        if c in audio_columns and pd.api.types.is_numeric_dtype(features[c])
    ]
    if not feature_columns:
        raise DataError(
            f"{data_dir}: the feature service {CLASSICAL_SERVICE} gave no feature columns"
        )

    frame = pd.DataFrame(
        {
            "track_id": pop["track_id"].astype(str),
            "song_id": pop["track_id"].map(song_of).astype(str),
            "region": pop["region"].astype(str),
            "debut_date": pd.to_datetime(pop["debut_date"]),
            "known_date": pd.to_datetime(pop["event_timestamp"]),
            "log1p_sum": np.log1p(pop["sum"].to_numpy(dtype=float)),
            "log1p_debut": np.log1p(pop["debut"].to_numpy(dtype=float)),
        }
    )
    if "curve" in pop.columns:
        curves = np.log1p(np.vstack([np.asarray(c, dtype=float) for c in pop["curve"]]))  # (N, H)
        for h in range(curves.shape[1]):
            frame[f"curve_{h:02d}"] = curves[:, h]
    frame = pd.concat([frame, features[feature_columns].astype(float)], axis=1)
    has_audio = frame[feature_columns].notna().any(axis=1)
    if not has_audio.any():
        raise DataError(f"{data_dir}: no popularity row has audio features; run `features extract`")
    if (~has_audio).any():
        log.warning("dropping %d rows whose track has no audio features", int((~has_audio).sum()))
    frame = frame[has_audio].reset_index(drop=True)

    truth_path = data_dir / "ground_truth.parquet"
    truth = read_table(truth_path, {"region", "appeal"}) if truth_path.is_file() else None
    return BenchmarkData(
        frame=frame,
        feature_columns=feature_columns,
        targets=list(config.targets),
        name=config.dataset,
        data_dir=data_dir,
        ground_truth=truth,
        feature_service=CLASSICAL_SERVICE,
        fingerprint=dataset_fingerprint(data_dir),
    )


def synthetic_data(
    n_songs: int = 120,
    regions: tuple[str, ...] = ("us", "gb", "de", "jp"),
    n_features: int = 8,
    signal: bool = True,
    noise: float = 0.5,
    seed: int = 0,
) -> BenchmarkData:
    """A small in-memory dataset where the target is a known function of one feature.

    Each song has one or two versions (tracks with near-identical features); each track charts in
    a random non-empty subset of regions. ``log1p_sum = 8 + region offset + 1.5 * f0 + noise`` when
    ``signal`` (else the feature term is left out); ``log1p_debut`` follows it with extra noise.
    The ground truth holds the noise-free appeal.

    Parameters
    ----------
    n_songs : int
        Songs.
    regions : tuple[str, ...]
        Region codes.
    n_features : int
        Feature columns ``lowlevel.f0 ..``.
    signal : bool
        Whether the target depends on the audio features.
    noise : float
        Noise standard deviation.
    seed : int
        Seed.

    Returns
    -------
    BenchmarkData
        The dataset (name ``synthetic``).
    """
    rng = np.random.default_rng(seed)
    song_feats = rng.normal(size=(n_songs, n_features))
    offsets = dict(zip(regions, np.linspace(-1.0, 1.0, len(regions)), strict=True))
    start = np.datetime64("2020-01-03")
    rows, truth = [], {}
    for s in range(n_songs):
        song = f"song{s:04d}"
        debut = start + np.timedelta64(int(rng.integers(0, 700)), "D")
        for v in range(int(rng.integers(1, 3))):
            feats = song_feats[s] + (0.05 * rng.normal(size=n_features) if v else 0.0)
            chosen = [r for r in regions if rng.random() < 0.6] or [regions[0]]
            for region in chosen:
                appeal = 8.0 + offsets[region] + (1.5 * song_feats[s, 0] if signal else 0.0)
                truth[(song, region)] = appeal
                value = appeal + noise * rng.normal()
                rows.append(
                    {
                        "track_id": f"{song}v{v}",
                        "song_id": song,
                        "region": region,
                        "debut_date": debut + np.timedelta64(7 * v, "D"),
                        "log1p_sum": value,
                        "log1p_debut": 0.8 * value + 0.3 * noise * rng.normal(),
                        **{f"lowlevel.f{j}": feats[j] for j in range(n_features)},
                    }
                )
    ground_truth = pd.DataFrame(
        [(s, r, a) for (s, r), a in truth.items()], columns=["song_id", "region", "appeal"]
    )
    return BenchmarkData(
        frame=pd.DataFrame(rows),
        feature_columns=[f"lowlevel.f{j}" for j in range(n_features)],
        ground_truth=ground_truth,
    )


# --- results -------------------------------------------------------------------------------


@dataclass
class Results:
    """What a benchmark run produced.

    Attributes
    ----------
    metrics : pd.DataFrame
        Tidy table, one row per model x target x metric (see :func:`benchmark.metrics.evaluate`).
    predictions : dict[str, pd.DataFrame]
        Model name to out-of-fold predictions (index = the data frame's row, plus ``fold``).
    split : pd.DataFrame
        The split table (``benchmark.splits.split_table``).
    config : BenchmarkConfig
        The configuration.
    run_id : str or None
        MLflow parent run id.
    child_run_ids : dict[str, str]
        Model name to MLflow child run id.
    results_dir : Path or None
        The ``results/<dataset>/`` folder written.
    seconds : float
        Wall time of the run.
    feature_importance : dict[str, pd.DataFrame]
        Model name to the gain importance (feature x target) of its final model.
    """

    metrics: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    split: pd.DataFrame
    config: BenchmarkConfig
    run_id: str | None = None
    child_run_ids: dict[str, str] = field(default_factory=dict)
    results_dir: Path | None = None
    seconds: float = 0.0
    feature_importance: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def best_classical(self) -> str | None:
        """The reference of the paired comparison (best classical model) for the first target."""
        if self.metrics.empty or "reference" not in self.metrics:
            return None
        first = self.metrics[self.metrics.target == self.config.targets[0]]
        refs = first["reference"].dropna()
        return str(refs.iloc[0]) if len(refs) else None

    def value(self, model: str, target: str, metric: str, column: str = "value") -> float:
        """One number of the metrics table.

        Parameters
        ----------
        model, target, metric : str
            Row keys.
        column : str
            ``value``, ``ci_low``, ``ci_high``, ``diff``, ``baseline_diff_ci_low``, ...

        Returns
        -------
        float
            The number.
        """
        t = self.metrics
        rows = t[(t.model == model) & (t.target == target) & (t.metric == metric)]
        if rows.empty:
            raise KeyError(f"no metric {metric!r} for model {model!r}, target {target!r}")
        return float(rows[column].iloc[0])

    def table(self, metrics: tuple[str, ...] = DEFAULT_TABLE_METRICS) -> str:
        """A readable terminal table: value [95% interval] per model, target and metric.

        Parameters
        ----------
        metrics : tuple[str, ...]
            Metric columns to show.

        Returns
        -------
        str
            The table.
        """
        from .report import metrics_wide

        blocks = []
        for target, wide in metrics_wide(self.metrics, metrics).items():
            blocks.append(f"target: {target}\n{wide.to_string(index=False)}")
        return "\n\n".join(blocks)


# --- running one model ---------------------------------------------------------------------


def _accepts(function: Any, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _check_prediction(pred: Any, X: pd.DataFrame, columns: list[str], model: str) -> pd.DataFrame:
    if not isinstance(pred, pd.DataFrame):
        raise TypeError(f"model {model!r}: predict must return a DataFrame, got {type(pred)}")
    if not pred.index.equals(X.index):
        raise ValueError(f"model {model!r}: predictions must have index = X.index")
    missing = [c for c in columns if c not in pred.columns]
    if missing:
        raise ValueError(f"model {model!r}: predictions lack column(s) {missing}")
    return pred[columns]


class _ModelRun:
    """Fits one model on every fold (tuning where the model has a search space)."""

    def __init__(self, spec: ModelSpec, data: BenchmarkData, config: BenchmarkConfig) -> None:
        self.spec = spec
        self.data = data
        self.config = config
        self.X = data.inputs(spec)
        self.y = data.outputs(spec)
        self.fixed = dict(config.model_params.get(spec.name, {}))
        self.resources: dict[str, Any] = {}
        if "appeal" in spec.resources:
            self.resources["appeal"] = data.appeal()
        if "spectrograms" in spec.resources:
            from ..features.store import load_mels

            if data.data_dir is None:
                raise DataError(f"model {spec.name!r} needs spectrograms from a data dir")
            self.resources["spectrograms"] = load_mels(
                data.data_dir, sorted(data.frame["track_id"].unique())
            )
        self.tuned = spec.search_space is not None and config.n_trials > 0
        # fold index -> encoder weights of ``spec.warm_start_from`` fitted on that fold
        self.warm_start: dict[int, Any] = {}
        self.last_estimator: Any = None
        # per-epoch checkpoints of models that take ``checkpoint_dir``: an interrupted run
        # resumes, and a finished fit of the same code, data, config and fold is not redone
        self.checkpoint_root: Path | None = None

    def build(self, params: dict[str, Any], seed: int, **extra: Any) -> Any:
        runtime = {
            "seed": seed,
            "num_threads": self.config.num_threads,
            "profile": self.config.profile,
            "regions": sorted(self.data.frame["region"].unique()),
        }
        return self.spec.build({**params, **extra}, self.resources, runtime)

    def default_params(self) -> dict[str, Any]:
        fixed = dict(self.fixed)
        fixed.pop("max_estimators", None)
        return fixed

    def tune(self, rows: np.ndarray, seed: int, study_name: str) -> tuple[dict, pd.DataFrame]:
        """Optuna search on ``rows`` only (an outer training part): inner song-grouped splits."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metric = METRICS[self.config.tune_metric]
        space = self.spec.space()
        X, y = self.X.iloc[rows], self.y.iloc[rows][self.data.targets]
        pairs = inner_splits(
            X["song_id"], self.config.inner_folds, self.config.validation_fraction, seed
        )
        pruner: optuna.pruners.BasePruner = (
            optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
            if self.config.pruning
            else optuna.pruners.NopPruner()
        )
        study = optuna.create_study(
            study_name=study_name,
            storage=self.config.optuna_storage,
            direction="maximize" if metric.maximize else "minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner,
        )
        sign = -1.0 if metric.maximize else 1.0  # intermediate values are RMSE: lower is better

        def objective(trial: optuna.Trial) -> float:
            params = space(trial, self.fixed)
            scores = []
            for i, (fit_rows, val_rows) in enumerate(pairs):
                est = self.build(params, seed)
                Xf, yf, Xv, yv = (
                    X.iloc[fit_rows],
                    y.iloc[fit_rows],
                    X.iloc[val_rows],
                    y.iloc[val_rows],
                )
                if self.config.pruning and _accepts(est.fit, "report"):

                    def report(step: int, value: float, offset: int = i * 10**7) -> None:
                        trial.report(sign * value, offset + step)
                        if trial.should_prune():
                            raise optuna.TrialPruned()

                    est.fit(Xf, yf, eval_set=(Xv, yv), report=report)
                else:
                    est.fit(Xf, yf)
                pred = _check_prediction(est.predict(Xv), Xv, list(yv.columns), self.spec.name)
                scores += [
                    metric(yv[t].to_numpy(), pred[t].to_numpy(), Xv["region"].to_numpy())
                    for t in yv.columns
                ]
            return float(np.nanmean(scores))

        study.optimize(objective, n_trials=self.config.n_trials)
        trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
        trials["duration"] = trials["duration"].dt.total_seconds()
        trials["state"] = trials["state"].astype(str)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            return self.default_params(), trials
        best = dict(study.best_params)
        best = space(optuna.trial.FixedTrial(best), self.fixed)
        return best, trials

    def fit_predict(
        self, fold: Fold, study_name: str
    ) -> tuple[pd.DataFrame, dict, pd.DataFrame | None]:
        seed = self.config.seed + 1000 * (fold.index + 1)
        trials = None
        params = self.default_params()
        if self.tuned:
            params, trials = self.tune(fold.train, seed, study_name)
        extra: dict[str, Any] = {}
        if fold.index in self.warm_start:
            extra["encoder_state_dict"] = self.warm_start[fold.index]
        if self.checkpoint_root is not None and _accepts(
            self.spec.factory_callable(), "checkpoint_dir"
        ):
            extra["checkpoint_dir"] = self.checkpoint_root / f"{self.spec.name}-fold{fold.index}"
        est = self.build(params, seed, **extra)
        est.fit(self.X.iloc[fold.train], self.y.iloc[fold.train])
        self.last_estimator = est
        X_test = self.X.iloc[fold.test]
        pred = _check_prediction(est.predict(X_test), X_test, list(self.y.columns), self.spec.name)
        return pred, params, trials

    def fit_final(self, study_name: str) -> tuple[Any, dict, pd.DataFrame | None]:
        """Tune (on all rows) and fit the model that is logged: not used for evaluation."""
        rows = np.arange(len(self.X))
        trials = None
        params = self.default_params()
        if self.tuned:
            params, trials = self.tune(rows, self.config.seed, study_name)
        return self.build(params, self.config.seed).fit(self.X, self.y), params, trials


# --- the suite -----------------------------------------------------------------------------


def _selected_specs(config: BenchmarkConfig, data: BenchmarkData) -> list[ModelSpec]:
    specs = []
    for name in config.model_names():
        spec = get_model(name)
        if "appeal" in spec.resources and data.ground_truth is None:
            log.info("skipping %s: the dataset has no ground_truth.parquet", name)
            continue
        spec.factory_callable()  # fail before training anything when a model's code is missing
        specs.append(spec)
    if not specs:
        raise DataError(f"suite {config.suite!r} has no model that can run on this dataset")
    return specs


def _fold_metrics(
    truth: pd.DataFrame, pred: pd.DataFrame, regions: np.ndarray, targets: list[str]
) -> dict[str, float]:
    out = {}
    for target in targets:
        keep = np.isfinite(truth[target].to_numpy(dtype=float))
        for name in ("rmse", "spearman"):
            value = METRICS[name](
                truth[target].to_numpy()[keep], pred[target].to_numpy()[keep], regions[keep]
            )
            if np.isfinite(value):
                out[f"{target}.{name}"] = value
    return out


def run_suite(config: BenchmarkConfig, data: BenchmarkData | None = None) -> Results:
    """Run every model of the configured suite on the same song-grouped folds.

    Parameters
    ----------
    config : BenchmarkConfig
        The run's settings.
    data : BenchmarkData, optional
        Pre-built data (notebooks, tests); default :func:`load_training_data` of ``config``.

    Returns
    -------
    Results
        Metrics with intervals, out-of-fold predictions, the split, MLflow run ids and the report
        folder.
    """
    import mlflow

    from . import report, tracking

    started = time.perf_counter()
    if data is None:
        data = load_training_data(config)
    specs = _selected_specs(config, data)
    folds = make_splits(data.frame, config.split, config.n_folds, config.seed, config.test_fraction)
    split = split_table(data.frame, folds)
    evaluated = np.flatnonzero(split["test_fold"].to_numpy() >= 0)

    experiment_id = tracking.setup_experiment(
        config.tracking_uri, config.dataset, config.artifact_location
    )
    config_hash = config.config_hash()
    tags = {
        "git_commit": tracking.git_commit(),
        "dataset": config.dataset,
        "dataset_fingerprint": data.fingerprint,
        "config_hash": config_hash,
        "profile": config.profile,
        "suite": config.suite,
    }
    predictions: dict[str, pd.DataFrame] = {}
    child_ids: dict[str, str] = {}
    importances: dict[str, pd.DataFrame] = {}
    open_runs: list[str] = []
    parent = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"{config.suite}-{config.profile}-seed{config.seed}",
        tags={**tags, "feature_service": data.feature_service, "role": "benchmark"},
    )
    open_runs.append(parent.info.run_id)
    study_prefix = f"{config.dataset}.{parent.info.run_id}"
    progress = tqdm(total=len(specs) * len(folds), desc="benchmark", unit="fold", leave=False)
    try:
        tracking.log_params(config.to_dict())
        mlflow.log_params({"n_rows": len(data.frame), "n_songs": data.frame["song_id"].nunique()})
        tracking.log_frame(split, "split.csv")
        encoders: dict[tuple[str, int], Any] = {}  # (model, fold) -> fine-tuned encoder weights
        for spec in specs:
            runner = _ModelRun(spec, data, config)
            if data.data_dir is not None:
                code = tags["git_commit"]
                if code == "unknown" or code.endswith("-dirty"):
                    # uncommitted code: checkpoints of this run only, never reused by another
                    code = f"{code[:12]}-{parent.info.run_id[:8]}"
                runner.checkpoint_root = (
                    Path(data.data_dir)
                    / "checkpoints"
                    / f"{code[:21]}-{data.fingerprint[:12]}-{config_hash[:12]}"
                )
            if spec.warm_start_from is not None:
                runner.warm_start = {
                    fold: state
                    for (name, fold), state in encoders.items()
                    if name == spec.warm_start_from
                }
            child = mlflow.start_run(
                run_name=spec.name,
                nested=True,
                tags={
                    **tags,
                    "model": spec.name,
                    "family": spec.family,
                    "feature_service": spec.feature_service or "none",
                    "role": "model",
                },
            )
            open_runs.append(child.info.run_id)
            child_ids[spec.name] = child.info.run_id
            tracking.log_params(runner.fixed, prefix="fixed.")
            fold_preds = []
            for fold in folds:
                with mlflow.start_run(run_name=f"{spec.name}-fold{fold.index}", nested=True) as fr:
                    open_runs.append(fr.info.run_id)
                    mlflow.set_tags({**tags, "model": spec.name, "fold": str(fold.index)})
                    pred, params, trials = runner.fit_predict(
                        fold, f"{study_prefix}.{spec.name}.fold{fold.index}"
                    )
                    tracking.log_params(
                        {"n_train": len(fold.train), "n_test": len(fold.test), **params}
                    )
                    if trials is not None:
                        tracking.log_frame(trials, "optuna_trials.csv")
                        mlflow.log_metric("optuna_trials", len(trials))
                    truth = data.frame.iloc[fold.test]
                    mlflow.log_metrics(
                        _fold_metrics(truth, pred, truth["region"].to_numpy(), data.targets)
                    )
                    est = runner.last_estimator
                    if getattr(est, "history_", None):
                        tracking.log_history(est.history_)
                    if getattr(est, "encoder_state_dict_", None) is not None:
                        encoders[(spec.name, fold.index)] = est.encoder_state_dict_
                        tracking.log_torch_state(est.encoder_state_dict_, "encoder.pt")
                        if runner.warm_start:
                            mlflow.set_tag("warm_start_from", spec.warm_start_from)
                    if fold.index == 0 and hasattr(est, "model_") and hasattr(est, "config_"):
                        tracking.log_spectrogram_model(est, spec.name)
                    open_runs.pop()
                fold_preds.append(pred.assign(fold=fold.index))
                progress.update(1)
            predictions[spec.name] = pd.concat(fold_preds).sort_index()
            out = data.frame.loc[predictions[spec.name].index, list(ID_COLUMNS)].join(
                predictions[spec.name].add_prefix("pred_")
            )
            tracking.log_frame(out.reset_index(names="row"), "predictions.csv")
            if spec.final_model:
                model, params, trials = runner.fit_final(f"{study_prefix}.{spec.name}.final")
                tracking.log_params(params, prefix="final.")
                if trials is not None:
                    tracking.log_frame(trials, "optuna_trials_final.csv")
                if hasattr(model, "boosters_"):
                    tracking.log_lightgbm(model, runner.X.head(50), name_prefix=spec.name)
                if hasattr(model, "feature_importance"):
                    importance = model.feature_importance("gain")
                    importances[spec.name] = importance
                    tracking.log_frame(
                        importance.reset_index(names="feature"), "feature_importance.csv"
                    )
                    mlflow.log_figure(
                        report.plot_feature_importance(importance), "feature_importance.png"
                    )
            mlflow.end_run()
            open_runs.pop()
        progress.close()

        truth = data.frame.iloc[evaluated]
        metrics = evaluate(
            truth=truth[data.targets + data.curve_columns],
            predictions={m: p.loc[truth.index] for m, p in predictions.items()},
            songs=truth["song_id"],
            regions=truth["region"],
            targets=data.targets,
            n_resamples=config.bootstrap,
            seed=config.seed,
            candidates=[s.name for s in specs if s.family in REFERENCE_FAMILIES],
            primary_metric=config.primary_metric,
            folds=split["test_fold"].iloc[evaluated],
        )
        metrics.insert(1, "kind", metrics["model"].map({s.name: s.family for s in specs}))
        tracking.log_metric_table(child_ids, metrics)
        results = Results(
            metrics=metrics,
            predictions=predictions,
            split=split,
            config=config,
            run_id=parent.info.run_id,
            child_run_ids=child_ids,
            feature_importance=importances,
        )
        results.seconds = time.perf_counter() - started
        out_dir = report.write_report(results, data, tags)
        results.results_dir = out_dir
        mlflow.log_artifacts(str(out_dir), artifact_path="report")
        mlflow.log_metric("seconds", results.seconds)
        mlflow.end_run()
        open_runs.pop()
    except BaseException as error:
        progress.close()
        tracking.mark_failed(reversed(open_runs), error)
        raise
    results.seconds = time.perf_counter() - started
    return results
