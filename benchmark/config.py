"""The benchmark's one configuration system: typed settings loaded from TOML presets.

Precedence: dataclass defaults < the preset ``benchmark/configs/<profile>.toml`` < the user's
``--config`` file < keyword overrides (what the CLI passes; ``None`` means "not given", so a
config file is never silently overridden by a command-line default).

Every setting of a benchmark run lives here, the models' included: a ``[models.<name>]`` table
holds the estimator parameters of one registry entry (nested tables for nested settings, e.g.
``[models.mp2.training]``), plus the reserved key ``features`` (the feature set the model reads).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..features.errors import DataError
from ..features.targets import CHARTED, TARGETS
from .registry import ModelRun, resolve_suite
from .splits import GROUPINGS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PROFILES = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
SPLITS = ("kfold", "temporal")
RESERVED_MODEL_KEYS = ("features",)
"""Keys of a ``[models.<name>]`` table that are not estimator parameters."""

# Settings that say where outputs go (or may come from), not what is computed: left out of the
# config hash.
_OUTPUT_FIELDS = (
    "allow_download",
    "tracking_uri",
    "optuna_storage",
    "study_name",
    "optuna_heartbeat",
    "results_dir",
    "artifact_location",
    "final_models",
    "write_report",
)


@dataclass
class BenchmarkConfig:
    """Every setting of one benchmark run.

    Attributes
    ----------
    data_dir : Path
        Dataset folder (``popularity.parquet``, ``catalog.parquet``, Feast features).
    dataset : str
        Dataset name: the MLflow experiment and the ``results/<dataset>/`` folder. Empty: the name of
        ``data_dir``.
    suite : str
        Suite name (``classical``, ``deep``, ``all``) or a comma-separated list of model names
        (``lightgbm[musicnn]`` names a feature set).
    profile : str
        The preset the settings came from (``quick`` or ``full``).
    features : str or None
        Feature set of every tabular model that does not name one (``--features``); None: each
        model's own default.
    seed : int
        Seed of the split, the Optuna samplers, the models and the bootstrap.
    n_folds : int
        Outer song-grouped folds (``split = "kfold"``).
    split : str
        ``kfold`` (song-grouped K-fold) or ``temporal`` (train on earlier debuts, test on later).
    test_fraction : float
        Share of songs in the test part of the temporal split.
    inner_folds : int
        Tuning inside each outer training part: 0 is one song-grouped holdout of
        ``validation_fraction``; k > 1 is a song-grouped inner k-fold.
    validation_fraction : float
        Share of training songs held out for validation when ``inner_folds`` is 0.
    n_trials : int
        Optuna trials per outer fold for tunable models (0: default parameters, no search): the
        budget of each study, shared by every worker that tunes it (see ``study_name``).
    pruning : bool
        Median pruning of unpromising trials from intermediate validation scores.
    bootstrap : int
        Bootstrap resamples (over songs) for the 95% intervals.
    period : str
        ``weekly`` or ``daily`` rows of ``popularity.parquet``.
    horizon : int
        Curve length of the targets (``curve_00..``), used when the pipeline builds them.
    null_policy : str
        Off-chart periods in the curves: ``missing``, ``zero`` or ``floor``.
    drop_incomplete : bool
        Leave out (track, region) rows whose horizon the data does not cover
        (``complete_horizon`` false): their sum is a partial sum that mostly measures how close
        to the end of the data the track debuted, not its audio.
    drop_left_censored : bool
        Leave out rows whose debut falls within the burn-in at the start of the data (the track
        may have charted before the data began, so its debut and sum are cut short).
    drop_reentries : bool
        Leave out re-entries (a debut long after the track first charted anywhere, or long
        after its release: Christmas songs, revivals), whose "debut" is not a debut.
    two_part : bool
        Also benchmark the tracks with audio that never charted in a region (popularity rows
        with ``charted = false``, from ``benchmark targets --uncharted``): the target
        ``charted`` (P(charts), on every row) is added, and the regression targets are size
        given charting (NaN, so masked, on the uncharted rows).
    group : str
        The split unit: ``song`` (every version of a song on one side), ``artist`` (connected
        components over credited artists), ``main_artist``, ``track`` or ``row`` (careless
        splits, for the ``grouping`` experiment).
    targets : list[str]
        Scalar target columns (``features.targets.TARGETS``: ``log1p_charted_sum``,
        ``log1p_floor_sum``, ``log1p_debut``).
    primary_metric : str
        The lead metric of the paired comparisons (within-region Spearman: knowing a region's
        market size is not audio skill).
    reference_model : str or None
        The model every other model is compared with (paired bootstrap), fixed before the run
        so that it is never chosen by looking at the test folds. None: the first classical model
        of the suite (the tuned LightGBM), else ``region_mean``.
    tune_metric : str
        Metric Optuna optimises (averaged over targets); its direction comes from the metric.
    tracking_uri : str
        MLflow tracking URI.
    artifact_location : str or None
        MLflow artifact root for a new experiment; None: ``mlartifacts/`` next to a sqlite store.
    optuna_storage : str or None
        Optuna RDB URL (e.g. ``sqlite:///optuna.db``); None keeps studies in memory.
    study_name : str or None
        Prefix of the Optuna study names (``<prefix>.<model>.fold<k>``); workers given the same
        name and ``optuna_storage`` share the studies and their ``n_trials`` budget, and all fit
        the best trial of the whole study (:mod:`benchmark.tuning`). None:
        ``<dataset>.<MLflow run id>``, a study of this run alone.
    optuna_heartbeat : int
        Seconds between the heartbeats of a running trial in an RDB ``optuna_storage``; a trial
        silent for twice as long (its worker died) is failed and its budget run again.
    results_dir : Path
        Root of the report folders.
    num_threads : int
        Threads per LightGBM model.
    final_models : bool
        After the folds, tune and fit LightGBM once more on all rows and log that model (with its
        signature and feature importance); off for controls and experiments, whose numbers do
        not use it.
    write_report : bool
        Write ``results_dir/<dataset>/`` (off for the many runs of a control).
    allow_download : bool
        Let models download pretrained weights they do not find locally (an AST hub id not in
        the Hugging Face cache); ``benchmark run --allow-download``. Off: nothing is downloaded.
    models : dict[str, dict[str, Any]]
        Per-model tables: fixed estimator parameters (they override the search space and the
        defaults) and the reserved key ``features``.
    """

    data_dir: Path = Path("data/demo")
    dataset: str = ""
    suite: str = "all"
    profile: str = "quick"
    features: str | None = None
    seed: int = 0
    n_folds: int = 5
    split: str = "kfold"
    test_fraction: float = 0.2
    inner_folds: int = 0
    validation_fraction: float = 0.2
    n_trials: int = 6
    pruning: bool = True
    bootstrap: int = 1000
    period: str = "weekly"
    horizon: int = 26
    null_policy: str = "missing"
    drop_incomplete: bool = True
    drop_left_censored: bool = True
    drop_reentries: bool = True
    two_part: bool = False
    group: str = "song"
    targets: list[str] = field(default_factory=lambda: ["log1p_charted_sum", "log1p_debut"])
    primary_metric: str = "spearman_region"
    reference_model: str | None = None
    tune_metric: str = "rmse"
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str | None = None
    optuna_storage: str | None = None
    study_name: str | None = None
    optuna_heartbeat: int = 60
    results_dir: Path = Path("results")
    num_threads: int = 1
    final_models: bool = True
    write_report: bool = True
    allow_download: bool = False
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.results_dir = Path(self.results_dir)
        self.targets = list(self.targets)
        if not self.dataset:
            self.dataset = self.data_dir.resolve().name or "dataset"
        problems = []
        if self.profile not in PROFILES:
            problems.append(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.split not in SPLITS:
            problems.append(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.split == "kfold" and self.n_folds < 2:
            problems.append(f"n_folds must be at least 2, got {self.n_folds}")
        if not 0.0 < self.test_fraction < 1.0:
            problems.append(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 < self.validation_fraction < 1.0:
            problems.append(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        if self.inner_folds == 1 or self.inner_folds < 0:
            problems.append(
                f"inner_folds must be 0 (holdout) or at least 2, got {self.inner_folds}"
            )
        if self.two_part and CHARTED not in self.targets:
            self.targets = [*self.targets, CHARTED]
        unknown_targets = sorted(set(self.targets) - set(TARGETS) - {CHARTED})
        if unknown_targets:
            problems.append(f"unknown target(s) {unknown_targets}; choose from {sorted(TARGETS)}")
        if self.group not in GROUPINGS:
            problems.append(f"group must be one of {GROUPINGS}, got {self.group!r}")
        if self.null_policy not in ("missing", "zero", "floor"):
            problems.append(f"null_policy must be missing, zero or floor, got {self.null_policy!r}")
        if self.optuna_heartbeat < 1:
            problems.append(f"optuna_heartbeat must be at least 1 s, got {self.optuna_heartbeat}")
        if self.n_trials < 0 or self.bootstrap < 0:
            problems.append("n_trials and bootstrap must not be negative")
        if problems:
            raise DataError("invalid benchmark config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting.

        Returns
        -------
        dict[str, Any]
            Field name to value (paths as strings).
        """
        out = dataclasses.asdict(self)
        out["data_dir"] = str(self.data_dir)
        out["results_dir"] = str(self.results_dir)
        return out

    def config_hash(self) -> str:
        """SHA-256 of the settings that change the numbers (output locations left out).

        Returns
        -------
        str
            64 hex digits.
        """
        content = {k: v for k, v in self.to_dict().items() if k not in _OUTPUT_FIELDS}
        content["data_dir"] = str(Path(self.data_dir).resolve())
        text = json.dumps(content, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def model_runs(self) -> list[ModelRun]:
        """The model runs of ``suite``, each bound to its feature set.

        Returns
        -------
        list[ModelRun]
            In run order.
        """
        model_features = {
            name: table["features"] for name, table in self.models.items() if "features" in table
        }
        return resolve_suite(self.suite, self.features, model_features)

    def model_params(self, name: str) -> dict[str, Any]:
        """The estimator parameters the configuration fixes for model ``name``."""
        table = self.models.get(name, {})
        return {k: v for k, v in table.items() if k not in RESERVED_MODEL_KEYS}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from exc


def _merge(base: dict[str, Any], update: dict[str, Any], source: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(BenchmarkConfig)}
    unknown = sorted(set(update) - known)
    if unknown:
        raise DataError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    out = dict(base)
    for key, value in update.items():
        if key == "models":
            merged = {name: dict(p) for name, p in out.get("models", {}).items()}
            for name, params in value.items():
                merged[name] = deep_update(merged.get(name, {}), params)
            out[key] = merged
        else:
            out[key] = value
    return out


def deep_update(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` laid over it, nested tables merged key by key (new dicts).

    Parameters
    ----------
    base, update : Mapping
        Tables (e.g. a registry entry's parameters, then the configuration's or a tuning
        sample).

    Returns
    -------
    dict
        The merge; neither argument is modified.
    """
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_update(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_config(
    profile: str | None = None, path: Path | str | None = None, **overrides: Any
) -> BenchmarkConfig:
    """Build a :class:`BenchmarkConfig` from a profile, a user TOML and overrides.

    Parameters
    ----------
    profile : str, optional
        Preset name (``benchmark/configs/<profile>.toml``); default: the ``profile`` key of the
        user's TOML, else ``quick``.
    path : Path or str, optional
        User TOML whose settings override the preset's (same keys as the dataclass).
    **overrides : Any
        Final overrides (e.g. from the CLI); ``None`` values are ignored.

    Returns
    -------
    BenchmarkConfig
        The merged configuration.

    Raises
    ------
    DataError
        Unknown profile, unreadable TOML, unknown keys or invalid values.
    """
    user = _read_toml(Path(path)) if path is not None else {}
    profile = profile or user.get("profile") or "quick"
    if profile not in PROFILES:
        raise DataError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    profile_path = CONFIG_DIR / f"{profile}.toml"
    settings = _merge({}, _read_toml(profile_path), str(profile_path))
    settings["profile"] = profile
    if path is not None:
        settings = _merge(settings, {**user, "profile": profile}, str(path))
    settings = _merge(
        settings, {k: v for k, v in overrides.items() if v is not None}, "config overrides"
    )
    try:
        return BenchmarkConfig(**settings)
    except TypeError as exc:
        raise DataError(f"invalid benchmark config: {exc}") from exc
