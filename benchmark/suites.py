"""Suite registry: a suite name maps to the model names it runs, in order.

Adding a suite is adding one ``register_suite`` call; ``resolve_suite`` also accepts a
comma-separated list of model names from :data:`benchmark.models.MODELS`.
"""

from __future__ import annotations

from ..features.errors import DataError

SUITES: dict[str, list[str]] = {}


def register_suite(name: str, models: list[str]) -> list[str]:
    """Register a suite.

    Parameters
    ----------
    name : str
        Suite name (``benchmark run --suite NAME``).
    models : list[str]
        Model names from :data:`benchmark.models.MODELS`, in run order.

    Returns
    -------
    list[str]
        ``models``.
    """
    SUITES[name] = list(models)
    return SUITES[name]


CLASSICAL = register_suite("classical", ["global_mean", "region_mean", "lightgbm", "oracle"])
DEEP = register_suite("deep", ["mp2", "mp3"])
register_suite("all", CLASSICAL + DEEP)


def resolve_suite(suite: str) -> list[str]:
    """Model names of a suite name or of a comma-separated list of model names.

    Parameters
    ----------
    suite : str
        ``classical``, ``deep``, ``all`` or e.g. ``"region_mean,lightgbm"``.

    Returns
    -------
    list[str]
        Model names, duplicates removed, order kept.

    Raises
    ------
    DataError
        An unknown suite or model name.
    """
    from .models import MODELS

    names: list[str] = []
    for part in (p.strip() for p in suite.split(",")):
        if not part:
            continue
        if part in SUITES:
            names.extend(SUITES[part])
        elif part in MODELS:
            names.append(part)
        else:
            raise DataError(
                f"unknown suite or model {part!r}; suites: {', '.join(sorted(SUITES))}; "
                f"models: {', '.join(sorted(MODELS))}"
            )
    if not names:
        raise DataError("empty suite: name a suite or at least one model")
    return list(dict.fromkeys(names))
