"""MLflow logging for benchmark runs, and the ``benchmark ui`` launcher.

Layout in the tracking store: one experiment per dataset; a parent run per ``benchmark run``; a child
run per model; a run per outer fold below each child (Optuna trials go into a table artifact of the
fold run, not into thousands of runs). Tags on every run: git commit, dataset fingerprint, feature
service, config hash. MLflow is imported inside functions so that importing this module is cheap.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..features.errors import DataError

ERROR_TAG = "error"
FINGERPRINT_FILES = ("streams.parquet", "catalog.parquet", "popularity.parquet", "clips.parquet")


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out git commit (with ``-dirty`` when the tree has changes), or ``unknown``.

    Parameters
    ----------
    cwd : Path, optional
        Folder inside the repository (default: this package's folder, when it is a checkout of
        this project; an installed copy, for example a wheel in a virtual environment inside the
        user's own repository, gives ``unknown``).

    Returns
    -------
    str
        Commit hash or ``unknown``.
    """
    here = Path(__file__).resolve()
    where = str(cwd or here.parent)
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return "unknown"
        if cwd is None:
            ours = subprocess.run(
                ["git", "ls-files", "--error-unmatch", "--", here.name],
                cwd=where,
                capture_output=True,
                timeout=10,
            )
            if ours.returncode != 0:
                return "unknown"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def dataset_fingerprint(data_dir: Path) -> str:
    """SHA-256 over the bytes of the data dir's tables (and ``features/*.parquet``).

    Parameters
    ----------
    data_dir : Path
        Dataset folder.

    Returns
    -------
    str
        64 hex digits; changes whenever any table changes.
    """
    data_dir = Path(data_dir)
    files = [data_dir / name for name in FINGERPRINT_FILES] + [data_dir / "ground_truth.parquet"]
    files += sorted((data_dir / "features").glob("*.parquet"))
    digest = hashlib.sha256()
    for path in files:
        if not path.is_file():
            continue
        digest.update(str(path.relative_to(data_dir)).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a frame's values and column names (for data built in memory).

    Parameters
    ----------
    frame : pd.DataFrame
        The frame.

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return digest.hexdigest()


def _default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """``mlartifacts/<experiment>`` next to a sqlite store; None for other stores (server default)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    db = Path(tracking_uri[len(prefix) :]).resolve()
    return (db.parent / "mlartifacts" / experiment).as_uri()


def setup_experiment(
    tracking_uri: str, experiment: str, artifact_location: str | None = None
) -> str:
    """Point MLflow at the store and select (creating if needed) the dataset's experiment.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI, e.g. ``sqlite:///mlflow.db``.
    experiment : str
        Experiment name (the dataset name).
    artifact_location : str, optional
        Artifact root for a new experiment (default: ``mlartifacts/`` next to a sqlite store).

    Returns
    -------
    str
        The experiment id.
    """
    import mlflow

    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise DataError(
            f"tracking URI {tracking_uri!r}: the MLflow file store is not supported; "
            "use sqlite:///mlflow.db or an http(s):// server"
        )
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        experiment_id = found.experiment_id
    else:
        location = artifact_location or _default_artifact_location(tracking_uri, experiment)
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_params(params: Mapping[str, Any], prefix: str = "") -> None:
    """Log a (possibly nested) mapping as flat MLflow params of the active run.

    Parameters
    ----------
    params : Mapping[str, Any]
        Parameters; nested mappings become ``outer.inner`` keys.
    prefix : str
        Key prefix.
    """
    import mlflow

    flat: dict[str, str] = {}

    def walk(mapping: Mapping[str, Any], head: str) -> None:
        for key, value in mapping.items():
            name = f"{head}{key}"
            if isinstance(value, Mapping):
                walk(value, name + ".")
            else:
                flat[name] = str(value)[:6000]

    walk(params, prefix)
    if flat:
        mlflow.log_params(flat)


def log_frame(frame: pd.DataFrame, name: str, artifact_path: str | None = None) -> None:
    """Log a frame as a CSV artifact of the active run.

    Parameters
    ----------
    frame : pd.DataFrame
        The table.
    name : str
        File name (``.csv``).
    artifact_path : str, optional
        Folder inside the run's artifacts.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_csv(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def metric_key(target: str, metric: str, suffix: str = "") -> str:
    """MLflow metric key, e.g. ``log1p_sum.spearman.ci_low``.

    Parameters
    ----------
    target, metric : str
        Target and metric names.
    suffix : str
        ``""``, ``ci_low``, ``ci_high``, ``diff``, ...

    Returns
    -------
    str
        The key.
    """
    return ".".join(part for part in (target, metric, suffix) if part)


def log_metric_table(run_ids: Mapping[str, str], table: pd.DataFrame) -> None:
    """Log every model's metrics with intervals and paired differences to its run.

    Parameters
    ----------
    run_ids : Mapping[str, str]
        Model name to MLflow run id.
    table : pd.DataFrame
        Output of :func:`benchmark.metrics.evaluate`.
    """
    import math
    import time

    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    columns = {
        "": "value",
        "ci_low": "ci_low",
        "ci_high": "ci_high",
        "diff": "diff",
        "diff_ci_low": "diff_ci_low",
        "diff_ci_high": "diff_ci_high",
        "baseline_diff": "baseline_diff",
        "baseline_diff_ci_low": "baseline_diff_ci_low",
        "baseline_diff_ci_high": "baseline_diff_ci_high",
    }
    for model, rows in table.groupby("model", sort=False):
        if model not in run_ids:
            continue
        metrics = []
        for row in rows.to_dict("records"):
            for suffix, column in columns.items():
                value = row.get(column)
                if value is None or not math.isfinite(float(value)):
                    continue
                key = metric_key(row["target"], row["metric"], suffix)
                metrics.append(Metric(key, float(value), now, 0))
        for start in range(0, len(metrics), 500):
            client.log_batch(run_ids[model], metrics=metrics[start : start + 500])


def log_lightgbm(model: Any, X_example: pd.DataFrame, name_prefix: str = "lightgbm") -> list[str]:
    """Log each booster of a fitted :class:`models.gbm.LightGBMRegressor` with mlflow.lightgbm.

    Parameters
    ----------
    model : LightGBMRegressor
        The fitted estimator.
    X_example : pd.DataFrame
        A few input rows (its ``model_inputs`` become the input example and the signature).
    name_prefix : str
        Logged model name prefix; one model per target: ``<prefix>_<target>``.

    Returns
    -------
    list[str]
        The logged models' URIs.
    """
    import lightgbm
    import mlflow.lightgbm
    from mlflow.models import infer_signature

    inputs = model.model_inputs(X_example)
    requirements = [f"lightgbm=={lightgbm.__version__}", f"pandas=={pd.__version__}"]
    uris = []
    for target, booster in model.boosters_.items():
        output = pd.DataFrame({target: booster.predict(inputs)})
        with warnings.catch_warnings():
            # the region codes are int32 on purpose (-1 = unknown region, never NaN)
            warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
            info = mlflow.lightgbm.log_model(
                booster,
                name=f"{name_prefix}_{target}",
                signature=infer_signature(inputs, output),
                input_example=inputs.head(5),
                # explicit requirements: inferring them imports the world in a subprocess (~6 s)
                pip_requirements=requirements,
            )
        uris.append(info.model_uri)
    return uris


def mark_failed(run_ids: Iterable[str], error: BaseException) -> None:
    """Tag runs with the error and end them with status FAILED (KILLED for Ctrl+C).

    Parameters
    ----------
    run_ids : Iterable[str]
        Runs to mark (innermost first).
    error : BaseException
        The error; ``type: message`` goes into the ``error`` tag.
    """
    import mlflow

    client = mlflow.MlflowClient()
    message = f"{type(error).__name__}: {error}"[:5000]
    status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
    for run_id in run_ids:
        client.set_tag(run_id, ERROR_TAG, message)
        client.set_terminated(run_id, status=status)
    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def launch_ui(tracking_uri: str = "sqlite:///mlflow.db", port: int = 5000) -> int:
    """Run ``mlflow ui`` on 127.0.0.1 over a tracking store (blocks until it is stopped).

    Parameters
    ----------
    tracking_uri : str
        Backend store URI.
    port : int
        Port.

    Returns
    -------
    int
        The UI process's exit code.
    """
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    print(f"MLflow UI on http://127.0.0.1:{port} (Ctrl+C stops it)")
    # The UI starts a server and job workers; run them in their own process group so that
    # stopping this function (Ctrl+C or SIGTERM) stops all of them, not only the first process.
    process = subprocess.Popen(command, start_new_session=True)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def log_history(history: Sequence[Mapping[str, Any]]) -> None:
    """Log per-epoch training curves (``train_loss``, ``val_loss``, ``lr``...) with step = epoch.

    Parameters
    ----------
    history : Sequence[Mapping[str, Any]]
        One record per epoch, as a deep estimator's ``history_``.
    """
    import mlflow

    for epoch, record in enumerate(history):
        values = {
            f"epoch.{key}": float(value)
            for key, value in record.items()
            if isinstance(value, int | float) and np.isfinite(value)
        }
        if values:
            mlflow.log_metrics(values, step=epoch)


def log_torch_state(state: Mapping[str, Any], name: str) -> None:
    """Save a torch state dict as an artifact of the active run (e.g. MP2's fine-tuned encoder).

    Parameters
    ----------
    state : Mapping[str, torch.Tensor]
        The state dict.
    name : str
        File name (``.pt``).
    """
    import mlflow
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        torch.save(dict(state), path)
        mlflow.log_artifact(str(path))


def log_spectrogram_model(estimator: Any, name: str) -> str:
    """Log a fitted MP2/MP3 network with mlflow.pytorch, its config and a signature.

    The signature documents the network's inputs: a batch of standardised log-mel crops
    ``x`` (B, n_mels, n_frames) and region indices ``region`` (B,), and its output (B, K).

    Parameters
    ----------
    estimator : MP2Estimator or MP3Estimator
        A fitted deep estimator (``model_``, ``config_``, ``regions_``).
    name : str
        Logged model name.

    Returns
    -------
    str
        The logged model's URI.
    """
    import dataclasses

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    model = estimator.model_.to("cpu").eval()
    config = estimator.config_
    n_mels, n_frames = config.encoder.n_mels, config.encoder.n_frames
    x = torch.zeros(2, n_mels, n_frames)  # (B, n_mels, T)
    region = torch.zeros(2, dtype=torch.long)  # (B,)
    with torch.no_grad():
        preds, _ = model(x, region)
    mlflow.log_dict(dataclasses.asdict(config), f"{name}_config.json")
    mlflow.log_dict({"regions": list(estimator.regions_)}, f"{name}_regions.json")
    info = mlflow.pytorch.log_model(
        model,
        name=name,
        signature=infer_signature(
            {"x": x.numpy(), "region": region.numpy()}, preds.detach().numpy()
        ),
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        # the network takes (x, region): pickled eager module, not a traced pt2 graph
        serialization_format="pickle",
    )
    return info.model_uri
