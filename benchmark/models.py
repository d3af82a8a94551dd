"""Model registry: a model name maps to its factory, family, feature service and search space.

Adding a model is adding one :func:`register_model` call. A factory is a callable or an import path
``"package.module:Name"`` resolved only when the model is built, so a registered model whose code
is not written yet breaks nothing until a suite runs it. Every estimator follows the contract of
``docs/architecture.md``: ``Model(**params).fit(X, y) -> self``, ``predict(X) -> DataFrame``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..features.errors import DataError

FAMILIES = ("baseline", "classical", "deep", "reference")
"""``baseline`` and ``classical`` compete for "best classical model"; ``reference`` (the oracle)
and ``deep`` models are compared against it."""

RESOURCES = ("appeal", "spectrograms")
"""Data a factory may ask for at construction (passed as keyword arguments of the same name)."""

RUNTIME = ("seed", "num_threads", "profile", "regions")
"""Run settings a factory may ask for (from the benchmark config)."""


def _resolve(target: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"model code {target!r} is not available ({exc})") from exc


@dataclass(frozen=True)
class ModelSpec:
    """How to build and run one model.

    Attributes
    ----------
    name : str
        Registry key and MLflow child-run name.
    factory : str or Callable
        Estimator class/factory or its import path ``"module:Name"``.
    family : str
        One of :data:`FAMILIES`.
    feature_service : str or None
        Feast FeatureService the model's inputs come from (tagged on its MLflow run).
    resources : tuple[str, ...]
        Entries of :data:`RESOURCES` passed to the factory.
    runtime : tuple[str, ...]
        Entries of :data:`RUNTIME` passed to the factory.
    search_space : str or Callable or None
        ``space(trial, fixed) -> params`` for Optuna; None: not tuned.
    curve : bool
        The model also predicts the ``curve_..`` targets.
    final_model : bool
        After the folds, tune and fit once on all rows and log that model (with its signature)
        and its feature importance to MLflow.
    warm_start_from : str or None
        Name of a model run earlier in the suite whose fitted ``encoder_state_dict_`` on the same
        fold initialises this one (passed as ``encoder_state_dict``): MP3 starts from MP2.
    """

    name: str
    factory: str | Callable[..., Any]
    family: str
    feature_service: str | None = None
    resources: tuple[str, ...] = ()
    runtime: tuple[str, ...] = ()
    search_space: str | Callable[..., dict[str, Any]] | None = None
    curve: bool = False
    final_model: bool = False
    warm_start_from: str | None = None

    def build(
        self,
        params: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        runtime: Mapping[str, Any] | None = None,
    ) -> Any:
        """Construct a fresh, unfitted estimator.

        Parameters
        ----------
        params : Mapping[str, Any], optional
            Hyper-parameters.
        resources : Mapping[str, Any], optional
            Values for the names in ``self.resources``.
        runtime : Mapping[str, Any], optional
            Values for the names in ``self.runtime``.

        Returns
        -------
        Any
            The estimator.
        """
        kwargs: dict[str, Any] = {}
        for name in self.resources:
            if resources is None or name not in resources:
                raise DataError(f"model {self.name!r} needs {name!r}, which the dataset lacks")
            kwargs[name] = resources[name]
        for name in self.runtime:
            if runtime is not None and name in runtime:
                kwargs[name] = runtime[name]
        kwargs.update(params or {})
        return _resolve(self.factory)(**kwargs)

    def factory_callable(self) -> Callable[..., Any]:
        """The resolved factory (imports it when given as a path).

        Returns
        -------
        Callable
            The estimator class or factory.

        Raises
        ------
        DataError
            The import path does not resolve.
        """
        return _resolve(self.factory)

    def space(self) -> Callable[..., dict[str, Any]] | None:
        """The resolved search-space function, or None for an untuned model.

        Returns
        -------
        Callable or None
            ``space(trial, fixed) -> params``.
        """
        return None if self.search_space is None else _resolve(self.search_space)


MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    factory: str | Callable[..., Any],
    family: str,
    **options: Any,
) -> ModelSpec:
    """Add a model to :data:`MODELS`.

    Parameters
    ----------
    name : str
        Registry key.
    factory : str or Callable
        Estimator class/factory or its import path ``"module:Name"``.
    family : str
        One of :data:`FAMILIES`.
    **options : Any
        Further :class:`ModelSpec` fields.

    Returns
    -------
    ModelSpec
        The registered spec.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    spec = ModelSpec(name=name, factory=factory, family=family, **options)
    unknown = (set(spec.resources) - set(RESOURCES)) | (set(spec.runtime) - set(RUNTIME))
    if unknown:
        raise ValueError(f"model {name!r}: unknown resources/runtime {sorted(unknown)}")
    MODELS[name] = spec
    return spec


def get_model(name: str) -> ModelSpec:
    """Look a model up by name.

    Parameters
    ----------
    name : str
        Registry key.

    Returns
    -------
    ModelSpec
        The spec.

    Raises
    ------
    DataError
        Unknown name.
    """
    if name not in MODELS:
        raise DataError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


register_model("global_mean", "musicpop.models.baselines:GlobalMean", "baseline", curve=True)
register_model("region_mean", "musicpop.models.baselines:RegionMean", "baseline", curve=True)
register_model(
    "lightgbm",
    "musicpop.models.gbm:LightGBMRegressor",
    "classical",
    feature_service="classical_v1",
    runtime=("seed", "num_threads"),
    search_space="musicpop.models.gbm:lightgbm_search_space",
    final_model=True,
)
register_model("oracle", "musicpop.models.baselines:Oracle", "reference", resources=("appeal",))
register_model(
    "mp2",
    "musicpop.benchmark.training:MP2Estimator",
    "deep",
    feature_service="mp2_v1",
    resources=("spectrograms",),
    runtime=("seed", "profile", "regions"),
)
register_model(
    "mp3",
    "musicpop.benchmark.training:MP3Estimator",
    "deep",
    feature_service="mp3_v1",
    resources=("spectrograms",),
    runtime=("seed", "profile", "regions"),
    curve=True,
    warm_start_from="mp2",
)
