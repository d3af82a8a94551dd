"""The model and suite registries: what ``benchmark run --suite ...`` can run.

A model is one :func:`register_model` call: a name, an estimator class (the contract of
:mod:`models.estimators.base`), a family, the feature set it reads by default, and any fixed
parameters. A suite is one :func:`register_suite` call: a name and model names in run order.

A suite entry may name a feature set in brackets: ``lightgbm[musicnn]`` runs the ``lightgbm``
entry on the ``musicnn`` feature set. Tabular models are shown with their feature set
(``lightgbm[essentia]``), so two feature sets of one model sit side by side in every table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..features.errors import DataError
from ..models.estimators.base import BenchmarkEstimator
from ..models.estimators.baselines import GlobalMean, Oracle, RegionMean
from ..models.estimators.deep import MP2Estimator, MP3Estimator
from ..models.estimators.gbm import LightGBMRegressor

FAMILIES = ("baseline", "classical", "deep", "reference")
"""``baseline`` and ``classical`` models compete for "best classical model"; ``reference`` (the
oracle) and ``deep`` models are compared against it."""

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:\[(?P<features>[A-Za-z0-9_.-]+)\])?$")


@dataclass(frozen=True)
class ModelSpec:
    """One runnable model.

    Attributes
    ----------
    name : str
        Registry key (MLflow child-run name, result rows).
    estimator : type[BenchmarkEstimator]
        The estimator class.
    family : str
        One of :data:`FAMILIES`.
    features : str or None
        The feature set it reads by default (None for models without inputs).
    params : Mapping[str, Any]
        Fixed estimator parameters of this entry (the configuration's ``[models.<name>]`` table
        and the tuner's samples go on top).
    warm_start_from : str or None
        A model run earlier in the suite whose fine-tuned encoder on the same fold initialises
        this one (MP3 starts from MP2); the estimator must declare ``accepts_encoder``.
    description : str
        One line for ``--help`` and the report.
    """

    name: str
    estimator: type[BenchmarkEstimator]
    family: str
    features: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    warm_start_from: str | None = None
    description: str = ""


@dataclass(frozen=True)
class ModelRun:
    """A registry entry bound to the feature set it runs on.

    Attributes
    ----------
    spec : ModelSpec
        The entry.
    features : str or None
        Feature set (None for models without inputs).
    """

    spec: ModelSpec
    features: str | None

    @property
    def name(self) -> str:
        """Result-row name: ``lightgbm[essentia]`` for tabular models, else the entry's name."""
        if self.spec.estimator.inputs == "tabular" and self.features:
            return f"{self.spec.name}[{self.features}]"
        return self.spec.name


MODELS: dict[str, ModelSpec] = {}
SUITES: dict[str, list[str]] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to :data:`MODELS`.

    Parameters
    ----------
    spec : ModelSpec
        The entry.

    Returns
    -------
    ModelSpec
        The same object.
    """
    if spec.family not in FAMILIES:
        raise ValueError(f"model {spec.name!r}: family must be one of {FAMILIES}")
    if spec.estimator.inputs is not None and spec.features is None:
        raise ValueError(f"model {spec.name!r} reads inputs: give it a default feature set")
    if spec.warm_start_from is not None and not spec.estimator.accepts_encoder:
        raise ValueError(f"model {spec.name!r}: {spec.estimator.__name__} takes no encoder")
    MODELS[spec.name] = spec
    return spec


def register_suite(name: str, models: list[str]) -> list[str]:
    """Register a suite: model names (optionally with ``[feature set]``) in run order."""
    SUITES[name] = list(models)
    return SUITES[name]


def resolve_suite(
    suite: str, features: str | None = None, model_features: Mapping[str, str] | None = None
) -> list[ModelRun]:
    """The model runs of a suite name or a comma-separated list of model entries.

    Parameters
    ----------
    suite : str
        ``classical``, ``deep``, ``all``, or e.g. ``"region_mean,lightgbm[musicnn]"``.
    features : str, optional
        Feature set for every tabular model whose entry does not name one (``--features``).
    model_features : Mapping[str, str], optional
        Per-model default feature set from the configuration (``[models.<name>] features``).

    Returns
    -------
    list[ModelRun]
        Runs in order, duplicates removed.

    Raises
    ------
    DataError
        An unknown suite or model, or a malformed entry.
    """
    entries: list[str] = []
    for part in (p.strip() for p in suite.split(",")):
        if not part:
            continue
        entries.extend(SUITES.get(part, [part]))
    if not entries:
        raise DataError("empty suite: name a suite or at least one model")
    runs: list[ModelRun] = []
    for entry in entries:
        match = _ENTRY.match(entry)
        if match is None or match["name"] not in MODELS:
            raise DataError(
                f"unknown suite or model {entry!r}; suites: {', '.join(sorted(SUITES))}; "
                f"models: {', '.join(sorted(MODELS))} (a model may name a feature set: "
                "lightgbm[musicnn])"
            )
        spec = MODELS[match["name"]]
        chosen = match["features"]
        if spec.estimator.inputs is None:
            if chosen:
                raise DataError(f"model {spec.name!r} reads no feature set; drop [{chosen}]")
        elif chosen is None:
            configured = (model_features or {}).get(spec.name)
            tabular = spec.estimator.inputs == "tabular"
            chosen = configured or (features if tabular else None) or spec.features
        runs.append(ModelRun(spec, chosen))
    return list({run.name: run for run in runs}.values())


register_model(ModelSpec("global_mean", GlobalMean, "baseline", description="training mean"))
register_model(
    ModelSpec("region_mean", RegionMean, "baseline", description="training mean of the region")
)
register_model(
    ModelSpec(
        "lightgbm",
        LightGBMRegressor,
        "classical",
        features="essentia",
        description="LightGBM tuned by Optuna, region as a categorical feature",
    )
)
register_model(
    ModelSpec(
        "oracle",
        Oracle,
        "reference",
        description="the demo's noise-free appeal, linearly calibrated (not a bound)",
    )
)
register_model(
    ModelSpec(
        "mp2",
        MP2Estimator,
        "deep",
        features="mel",
        description="spectrogram transformer predicting the scalar targets",
    )
)
register_model(
    ModelSpec(
        "mp3",
        MP3Estimator,
        "deep",
        features="mel",
        warm_start_from="mp2",
        description="spectrogram transformer with a curve decoder (starts from MP2's encoder)",
    )
)

CLASSICAL = register_suite("classical", ["global_mean", "region_mean", "lightgbm", "oracle"])
DEEP = register_suite("deep", ["mp2", "mp3"])
register_suite("all", CLASSICAL + DEEP)
