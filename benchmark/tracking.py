"""Every MLflow call of the benchmark, in one run-logger; and the ``benchmark ui`` launcher.

Layout in the tracking store: one experiment per dataset; a parent run per ``benchmark run``; a
child run per model; a run per outer fold below each child (Optuna trials go into a table
artifact of the fold run, not into thousands of runs). Tags on every run: git commit, dataset
fingerprint, feature set and service, config hash. :class:`RunLogger` is the only code that
talks to MLflow; MLflow is imported inside it so that importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..features.errors import DataError

ERROR_TAG = "error"


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


def _default_artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go when the configuration does not say.

    ``mlartifacts/<experiment>`` next to a sqlite store; in the current folder for another
    database (``postgresql+psycopg://...``: on several machines, set ``artifact_location`` to
    storage they all see); None for an MLflow server, which decides itself.
    """
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        db = Path(tracking_uri[len(prefix) :]).resolve()
        return (db.parent / "mlartifacts" / experiment).as_uri()
    if tracking_uri.split(":", 1)[0] in ("http", "https", "databricks"):
        return None
    return (Path.cwd() / "mlartifacts" / experiment).resolve().as_uri()


#: PostgreSQL advisory-lock key held while a worker opens (and so may create) the MLflow store.
_SETUP_LOCK_KEY = 0x6D75_7369_6370_6F70 >> 1  # "musicpop", as a positive 64-bit integer


@contextlib.contextmanager
def _store_setup_lock(tracking_uri: str) -> Iterator[None]:
    """Hold a lock that every worker opening this tracking store takes.

    Opening a database store creates or upgrades its tables (alembic migrations); two workers
    doing it at once on a new store break each other's migration. A sqlite store is guarded by
    a lock file next to it, a PostgreSQL store by an advisory lock of the database.
    """
    if tracking_uri.startswith("sqlite:///"):
        import filelock

        db = Path(tracking_uri[len("sqlite:///") :].split("?", 1)[0]).resolve()
        db.parent.mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(f"{db}.lock"):
            yield
    elif tracking_uri.startswith("postgresql"):
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        engine = sqlalchemy.create_engine(tracking_uri, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                lock = sqlalchemy.text("SELECT pg_advisory_lock(:key)")
                conn.execute(lock, {"key": _SETUP_LOCK_KEY})
                try:
                    yield
                finally:
                    unlock = sqlalchemy.text("SELECT pg_advisory_unlock(:key)")
                    conn.execute(unlock, {"key": _SETUP_LOCK_KEY})
        finally:
            engine.dispose()
    else:
        yield


def metric_key(target: str, metric: str, suffix: str = "") -> str:
    """MLflow metric key, e.g. ``log1p_charted_sum.spearman.ci_low``.

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


_TABLE_COLUMNS = {
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


class RunLogger:
    """The benchmark's only door to MLflow: runs, parameters, metrics, tables, models.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI (``sqlite:///mlflow.db``, ``postgresql+psycopg://...``, ``http://...``).
    experiment : str
        Experiment name (the dataset name); created when missing.
    artifact_location : str, optional
        Artifact root for a new experiment (default: ``mlartifacts/`` next to a sqlite store).
    """

    def __init__(
        self, tracking_uri: str, experiment: str, artifact_location: str | None = None
    ) -> None:
        import mlflow

        if tracking_uri.startswith("file:") or "://" not in tracking_uri:
            raise DataError(
                f"tracking URI {tracking_uri!r}: the MLflow file store is not supported; "
                "use sqlite:///mlflow.db, postgresql+psycopg://... or an http(s):// server"
            )
        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        with _store_setup_lock(tracking_uri):
            self.client = mlflow.MlflowClient()
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                location = artifact_location or _default_artifact_location(tracking_uri, experiment)
                try:
                    self.client.create_experiment(experiment, artifact_location=location)
                except mlflow.exceptions.MlflowException:
                    # an MLflow server's other client may have created it first: use theirs
                    if self.client.get_experiment_by_name(experiment) is None:
                        raise
                found = self.client.get_experiment_by_name(experiment)
                assert found is not None
        self.experiment_id = found.experiment_id
        mlflow.set_experiment(experiment_id=self.experiment_id)

    # -- runs --

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str]) -> Iterator[str]:
        """Start a run (nested below the active one, if any) for the block; yield its id.

        A block that raises ends the run as FAILED (KILLED for Ctrl+C) with the error in the
        ``error`` tag, and the exception goes on.
        """
        import mlflow

        nested = mlflow.active_run() is not None
        active = mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=name,
            nested=nested,
            tags={k: str(v) for k, v in tags.items()},
        )
        run_id = active.info.run_id
        try:
            yield run_id
        except BaseException as error:
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self.client.set_tag(run_id, ERROR_TAG, f"{type(error).__name__}: {error}"[:5000])
            mlflow.end_run(status=status)
            raise
        mlflow.end_run()

    # -- values --

    def params(self, params: Mapping[str, Any], prefix: str = "") -> None:
        """Log a (possibly nested) mapping as flat params of the active run (``outer.inner``)."""
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

    def tags(self, tags: Mapping[str, str]) -> None:
        """Set tags on the active run."""
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def metrics(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Log finite metrics to the active run."""
        import mlflow

        finite = {k: float(v) for k, v in values.items() if np.isfinite(v)}
        if finite:
            mlflow.log_metrics(finite, step=step)

    def history(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Log per-epoch training curves (``epoch.train_loss``, ...) with step = epoch."""
        for epoch, record in enumerate(history):
            values = {
                f"epoch.{key}": float(value)
                for key, value in record.items()
                if isinstance(value, int | float)
            }
            self.metrics(values, step=epoch)

    def metric_table(self, run_ids: Mapping[str, str], table: pd.DataFrame) -> None:
        """Log every model's metrics with intervals and paired differences to its run.

        Parameters
        ----------
        run_ids : Mapping[str, str]
            Model name to MLflow run id.
        table : pandas.DataFrame
            Output of :func:`benchmark.metrics.evaluate`.
        """
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for model, rows in table.groupby("model", sort=False):
            if model not in run_ids:
                continue
            metrics = []
            for row in rows.to_dict("records"):
                for suffix, column in _TABLE_COLUMNS.items():
                    value = row.get(column)
                    if value is None or not math.isfinite(float(value)):
                        continue
                    key = metric_key(row["target"], row["metric"], suffix)
                    metrics.append(Metric(key, float(value), now, 0))
            for start in range(0, len(metrics), 500):
                self.client.log_batch(run_ids[model], metrics=metrics[start : start + 500])

    # -- artifacts --

    def frame(self, frame: pd.DataFrame, name: str, artifact_path: str | None = None) -> None:
        """Log a frame as a CSV artifact of the active run."""
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            frame.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def figure(self, figure: Any, name: str) -> None:
        """Log a matplotlib figure as an image artifact of the active run."""
        import mlflow

        mlflow.log_figure(figure, name)

    def file(self, path: Path, artifact_path: str | None = None) -> None:
        """Log one file as an artifact of the active run."""
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def artifacts(self, folder: Path, artifact_path: str) -> None:
        """Log every file of ``folder`` under ``artifact_path``."""
        import mlflow

        mlflow.log_artifacts(str(folder), artifact_path=artifact_path)

    def state_dict(self, state: Mapping[str, Any], name: str) -> None:
        """Save a torch state dict as a safetensors artifact (e.g. MP2's fine-tuned encoder)."""
        import mlflow
        import torch
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        assert all(isinstance(v, torch.Tensor) for v in tensors.values())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            save_file(tensors, str(path))
            mlflow.log_artifact(str(path))

    # -- models --

    def lightgbm_model(self, model: Any, X_example: pd.DataFrame, name_prefix: str) -> list[str]:
        """Log each booster of a fitted LightGBM estimator with its signature and an example.

        Parameters
        ----------
        model : LightGBMRegressor
            The fitted estimator.
        X_example : pandas.DataFrame
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
                    name=_model_name(f"{name_prefix}_{target}"),
                    signature=infer_signature(inputs, output),
                    input_example=inputs.head(5),
                    # explicit requirements: inferring them imports the world in a subprocess
                    pip_requirements=requirements,
                )
            uris.append(info.model_uri)
        return uris

    def torch_network(self, estimator: Any, name: str) -> str:
        """Log a fitted MP2/MP3 network with mlflow.pytorch, its config and a signature.

        The signature documents the network's inputs: a batch of standardised input crops
        ``x`` (B, n_mels, n_frames), or (B, n_segments, ...) for a pretrained encoder (the
        estimator's ``crop_shape_``), and region indices ``region`` (B,), and its output.

        Parameters
        ----------
        estimator : SpectrogramEstimator
            A fitted deep estimator (``model_``, ``config_``, ``regions_``).
        name : str
            Logged model name.

        Returns
        -------
        str
            The logged model's URI.
        """
        import dataclasses

        import mlflow
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        model = estimator.model_.to("cpu").eval()
        config = estimator.config_
        x = torch.zeros(2, *estimator.crop_shape_)  # (B, n_mels, T) or (B, S, ...)
        region = torch.zeros(2, dtype=torch.long)  # (B,)
        with torch.no_grad():
            preds, _ = model(x, region)
        name = _model_name(name)
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


def _model_name(name: str) -> str:
    """A logged-model name MLflow accepts (``lightgbm[essentia]`` -> ``lightgbm-essentia``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name.replace("]", "")).strip("-")


# --- the UI -----------------------------------------------------------------------------------

_REAPER = """
import os, signal, sys, time
group = int(sys.argv[1])
def stop(*_):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        time.sleep(5)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
if os.getppid() != int(sys.argv[2]):
    stop()
while True:
    signal.pause()
"""


def _die_with_parent() -> None:
    """In a child before exec: receive SIGTERM when the parent dies (Linux ``prctl``)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def launch_ui(tracking_uri: str = "sqlite:///mlflow.db", port: int = 5000) -> int:
    """Run ``mlflow ui`` on 127.0.0.1 over a tracking store (blocks until it is stopped).

    The server and its workers run in a process group of their own. Stopping this function
    (Ctrl+C, SIGTERM) stops the whole group; and on Linux a small reaper process, which the
    kernel signals when this process dies, stops it too when this process is killed outright
    (SIGKILL), so no server is left listening.

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
    process = subprocess.Popen(command, start_new_session=True)
    reaper = None
    if sys.platform.startswith("linux"):
        reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(process.pid), str(os.getpid())],
            preexec_fn=_die_with_parent,
        )

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        return process.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return 0
    finally:
        if reaper is not None:
            reaper.kill()
            reaper.wait()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
