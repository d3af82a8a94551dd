"""The model and suite registries: what ``benchmark run --suite ...`` can run.

A model is one :func:`register_model` call: a name, an estimator class (the contract of
:mod:`models.estimators.base`), a family, the feature set it reads by default, and any fixed
parameters. A suite is one :func:`register_suite` call: a name and model names in run order.

A suite entry may name a feature set in brackets: ``lightgbm[musicnn]`` runs the ``lightgbm``
entry on the ``musicnn`` feature set. Tabular models are shown with their feature set
(``lightgbm[essentia]``), so two feature sets of one model sit side by side in every table. A
classical model on the stored outputs of a pretrained encoder (a feature set with an
``encoder``, e.g. ``lightgbm[musicnn]``) is a *probe* of that representation (HEAR, MARBLE): it
is judged like a deep model, against the best classical model on hand-crafted features.

The pretrained-encoder transformers are entries of their own: ``mp2_musicnn`` (frozen MusiCNN,
its stored patch embeddings as tokens), ``mp3_musicnn`` (starts from ``mp2_musicnn``'s encoder),
``mp2_musicnn_finetune`` (MusiCNN fine-tuned on its front-end patches) and ``mp2_ast`` (an AST
checkpoint fine-tuned on fbank windows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..features.errors import DataError
from ..features.feature_sets import FEATURE_SETS
from ..models.estimators.base import BenchmarkEstimator
from ..models.estimators.baselines import GlobalMean, Oracle, RegionMean
from ..models.estimators.deep import MP2Estimator, MP3Estimator
from ..models.estimators.gbm import LightGBMRegressor

FAMILIES = ("baseline", "classical", "deep", "reference")
"""``baseline`` and ``classical`` models compete for "best classical model"; ``reference`` (the
oracle) and ``deep`` models are compared against it."""
PROBE = "probe"
"""The family of a classical model run on a pretrained encoder's outputs (:attr:`ModelRun.family`);
compared against the best classical model, like a deep one."""
FROZEN_MUSICNN_TRAINING = {"cpu_threads": 1, "batch_size": 64, "epochs": 40, "patience": 10}
"""Training of the models on stored MusiCNN embeddings (a small transformer over 12 tokens of
width 96). One torch thread: two were 7-15x slower per epoch on the busy 2-core machine (0.37 s
against 2.9-6.1 s), where waiting threads spin. Batches of 64 and at most 40 epochs with patience
10: on three song splits of the demo, 3.7 s of CPU per fit and Spearman 0.600 (log1p sum),
against 9.8 s and 0.582 with the scratch model's 16 / 60 / 20 (docs/models.md)."""
AST_AUDIOSET = "MIT/ast-finetuned-audioset-10-10-0.4593"
"""The AudioSet AST checkpoint ``mp2_ast`` loads by default (download it first: docs/models.md)."""

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

    @property
    def family(self) -> str:
        """The entry's family; ``probe`` for a classical model on a pretrained encoder's outputs."""
        fs = FEATURE_SETS.get(self.features or "")
        if self.spec.family == "classical" and fs is not None and fs.encoder is not None:
            return PROBE
        return self.spec.family


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

register_model(
    ModelSpec(
        "mp2_musicnn",
        MP2Estimator,
        "deep",
        features="musicnn_patches",
        params={
            "encoder": "musicnn",
            "config": {"conditioning": "token"},
            "training": FROZEN_MUSICNN_TRAINING,
        },
        description="MP2 on frozen MSD MusiCNN: each 3 s patch embedding a token beside the region token",
    )
)
register_model(
    ModelSpec(
        "mp3_musicnn",
        MP3Estimator,
        "deep",
        features="musicnn_patches",
        params={"encoder": "musicnn", "training": FROZEN_MUSICNN_TRAINING},
        warm_start_from="mp2_musicnn",
        description="MP3 on frozen MSD MusiCNN patch embeddings (starts from mp2_musicnn's encoder)",
    )
)
register_model(
    ModelSpec(
        "mp2_musicnn_finetune",
        MP2Estimator,
        "deep",
        features="musicnn_input",
        params={"encoder": "musicnn", "frozen": False, "config": {"conditioning": "token"}},
        description="MP2 fine-tuning MSD MusiCNN (at 0.1x the learning rate) on its 3 s patches",
    )
)
register_model(
    ModelSpec(
        "mp2_ast",
        MP2Estimator,
        "deep",
        features="ast_fbank",
        params={
            "encoder": "ast",
            "frozen": False,
            "ast_checkpoint": AST_AUDIOSET,
            "config": {"conditioning": "token"},
        },
        description="MP2 fine-tuning an AST checkpoint (at 0.1x the learning rate) on 10.24 s windows",
    )
)

CLASSICAL = register_suite("classical", ["global_mean", "region_mean", "lightgbm", "oracle"])
DEEP = register_suite("deep", ["mp2", "mp3"])
PRETRAINED = register_suite("pretrained", ["lightgbm[musicnn]", "mp2_musicnn", "mp3_musicnn"])
register_suite("all", [*CLASSICAL, "lightgbm[musicnn]", *DEEP, "mp2_musicnn"])
