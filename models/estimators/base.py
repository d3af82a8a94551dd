"""The one estimator contract every model of the benchmark follows.

An estimator is a scikit-learn estimator (``sklearn.base.BaseEstimator``: ``get_params``,
``set_params`` and ``sklearn.base.clone`` work; ``__init__`` only stores its parameters) that

- learns from ``fit(X, y) -> self`` and keeps learned state in attributes ending in ``_``;
- returns ``predict(X) -> DataFrame`` with ``index = X.index`` and one column per target;
- declares, as class attributes, what the benchmark runner must give it. The runner reads these
  declarations and nothing else (no probing of signatures or attributes).

``X`` always has ``track_id``, ``song_id`` and ``region``; what else it has depends on
:attr:`BenchmarkEstimator.inputs`:

- ``None``: nothing else (baselines);
- ``"tabular"``: one float column per feature of the model's feature set;
- ``"clips"``: a column ``clips`` holding, per row, the list of the track's clip arrays of the
  model's feature set (rows of one track share the same list object);

plus a column ``appeal`` when :attr:`needs_appeal` (the demo's noise-free truth). ``y`` has the
scalar target columns, and the ``curve_..`` columns when :attr:`predicts_curve`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from sklearn.base import BaseEstimator

ID_COLUMNS = ("track_id", "song_id", "region")
"""Columns every ``X`` has."""
CLIPS_COLUMN = "clips"
"""The column of ``X`` that holds each row's clip arrays for ``inputs = "clips"``."""
APPEAL_COLUMN = "appeal"
"""The column of ``X`` that holds the noise-free appeal for ``needs_appeal``."""
PROVENANCE_KEYS = ("encoder", "encoder_weights_sha256", "encoder_frozen")
"""What a model's provenance says about the encoder behind its inputs or in its network."""


class Trial(Protocol):
    """The part of ``optuna.trial.Trial`` a search space uses."""

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        """Suggest an integer."""
        ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        """Suggest a float."""
        ...

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        """Suggest one of ``choices``."""
        ...


class BenchmarkEstimator(BaseEstimator):
    """Base class of the benchmark's estimators: the declarations the runner reads.

    Attributes
    ----------
    inputs : str or None
        What ``X`` carries besides the identifiers: ``None``, ``"tabular"`` or ``"clips"``.
    needs_appeal : bool
        ``X`` must carry the ``appeal`` column (only datasets with a ground truth have it).
    predicts_curve : bool
        The model also predicts the ``curve_..`` targets.
    accepts_encoder : bool
        The estimator has an ``encoder_state_dict`` parameter: the runner passes the fine-tuned
        encoder of the registry entry's ``warm_start_from`` model fitted on the same fold.
    exposes_encoder : bool
        After ``fit`` the estimator has ``encoder_state_dict_`` (another model can start from it).
    checkpoints : bool
        The estimator has a ``checkpoint_dir`` parameter and checkpoints its training there
        (an interrupted fit resumes).
    reports_progress : bool
        ``fit(X, y, eval_set=(X_val, y_val), report=callback)`` calls
        ``report(step, validation_loss)`` during training, and ``callback`` may raise to stop it
        (Optuna pruning).
    logs_model : str or None
        How the runner logs a fitted model to MLflow (with its signature): ``"lightgbm"``: tuned
        and fitted once more on all rows after the folds, logged per target with its feature
        importance; ``"pytorch"``: the network fitted on the first fold; None: not logged.
    search_settings : tuple[str, ...]
        Keys of the configuration's model table that steer the search space (e.g. LightGBM's
        ``max_estimators``) rather than being estimator parameters.
    runtime : tuple[str, ...]
        Parameters the runner sets from the run's settings: any of ``seed``, ``num_threads``,
        ``regions`` (the dataset's region list), ``progress``.
    """

    inputs: ClassVar[str | None] = None
    needs_appeal: ClassVar[bool] = False
    predicts_curve: ClassVar[bool] = False
    accepts_encoder: ClassVar[bool] = False
    exposes_encoder: ClassVar[bool] = False
    checkpoints: ClassVar[bool] = False
    reports_progress: ClassVar[bool] = False
    logs_model: ClassVar[str | None] = None
    search_settings: ClassVar[tuple[str, ...]] = ()
    runtime: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def search_space(cls, trial: Trial, fixed: Mapping[str, Any]) -> dict[str, Any] | None:
        """Sample hyper-parameters for one Optuna trial; None for a model that is not tuned.

        Parameters
        ----------
        trial : Trial
            The trial (anything with ``suggest_*``).
        fixed : Mapping[str, Any]
            Parameters held fixed by the configuration: they are not searched and override the
            sampled values.

        Returns
        -------
        dict or None
            Keyword arguments of the estimator.
        """
        return None

    def provenance(self) -> dict[str, Any]:
        """The pretrained encoder a fitted estimator used itself; ``{}`` when none.

        Keys (:data:`PROVENANCE_KEYS`, each optional): ``encoder`` (the network; ``scratch`` for
        an encoder trained from scratch), ``encoder_weights_sha256`` (sha256 of the pretrained
        weights it loaded) and ``encoder_frozen`` (bool). The runner lays the feature set's
        provenance over it (a set of stored encoder outputs names its encoder, weights and
        frozen=True) and records the result with the model's rows and MLflow run.

        Returns
        -------
        dict
            Provenance keys to values.
        """
        return {}

    @classmethod
    def is_tunable(cls) -> bool:
        """Whether the class defines a search space."""
        return cls.search_space.__func__ is not BenchmarkEstimator.search_space.__func__


__all__ = [
    "APPEAL_COLUMN",
    "CLIPS_COLUMN",
    "ID_COLUMNS",
    "PROVENANCE_KEYS",
    "BenchmarkEstimator",
    "Trial",
]
