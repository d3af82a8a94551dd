"""The MLflow store, read back with MLflow's own client: parent, children, folds, metrics, model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import SYNTHETIC_SET, synthetic_data

from musicpop.benchmark.config import load_config
from musicpop.benchmark.data import dataset_fingerprint
from musicpop.benchmark.registry import MODELS, ModelSpec
from musicpop.benchmark.results import Results
from musicpop.benchmark.runner import run_suite
from musicpop.benchmark.tracking import ERROR_TAG, RunLogger, metric_key
from musicpop.features.layout import DataLayout
from musicpop.models.estimators.base import BenchmarkEstimator

LIGHTGBM = f"lightgbm[{SYNTHETIC_SET}]"


class ExplodingModel(BenchmarkEstimator):
    """A model whose fit fails, to prove a failed benchmark run is recorded as FAILED."""

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> ExplodingModel:
        raise RuntimeError("boom in fit")

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("never reached")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture(scope="module")
def run(store: Path) -> Results:
    config = load_config(
        "quick",
        dataset="tracked",
        suite="region_mean,lightgbm",
        features=SYNTHETIC_SET,
        n_folds=2,
        n_trials=2,
        bootstrap=100,
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        results_dir=store / "results",
        models={"lightgbm": {"max_estimators": 50}},
    )
    return run_suite(config, synthetic_data(n_songs=50, n_features=4, seed=2))


def client(store: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")


def test_parent_children_and_fold_runs(store: Path, run: Results) -> None:
    c = client(store)
    experiment = c.get_experiment_by_name("tracked")
    assert experiment is not None
    assert experiment.artifact_location.startswith("file://")
    runs = c.search_runs([experiment.experiment_id], max_results=100)
    by_id = {r.info.run_id: r for r in runs}
    parent = by_id[run.run_id]
    assert parent.info.status == "FINISHED"
    assert "mlflow.parentRunId" not in parent.data.tags
    for key in ("git_commit", "dataset_fingerprint", "config_hash"):
        assert parent.data.tags[key]
    assert parent.data.params["n_folds"] == "2"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.run_id]
    assert {r.data.tags["mlflow.runName"] for r in children} == {"region_mean", LIGHTGBM}
    assert {r.info.run_id for r in children} == set(run.child_run_ids.values())
    lgbm = by_id[run.child_run_ids[LIGHTGBM]]
    assert lgbm.data.tags["feature_set"] == SYNTHETIC_SET
    assert lgbm.data.tags["feature_service"] == "in memory"
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == lgbm.info.run_id]
    assert sorted(r.data.tags["fold"] for r in folds) == ["0", "1"]
    for fold in folds:
        assert "learning_rate" in fold.data.params  # the tuned parameters of that fold
        assert fold.data.metrics["optuna_trials"] == 2
        assert "log1p_charted_sum.rmse" in fold.data.metrics


def test_metrics_with_intervals_match_the_results(store: Path, run: Results) -> None:
    c = client(store)
    metrics = c.get_run(run.child_run_ids[LIGHTGBM]).data.metrics
    for suffix, column in (("", "value"), ("ci_low", "ci_low"), ("ci_high", "ci_high")):
        key = metric_key("log1p_charted_sum", "spearman", suffix)
        assert metrics[key] == pytest.approx(
            run.value(LIGHTGBM, "log1p_charted_sum", "spearman", column)
        )
    region = c.get_run(run.child_run_ids["region_mean"]).data.metrics
    assert "log1p_debut.rmse.diff_ci_low" in region  # paired difference to the best model


def test_artifacts_and_logged_model(store: Path, run: Results) -> None:
    c = client(store)
    parent_files = {f.path for f in c.list_artifacts(run.run_id)}
    assert {"split.csv", "report"} <= parent_files
    report_files = {Path(f.path).name for f in c.list_artifacts(run.run_id, "report")}
    assert {"summary.md", "summary.csv", "pred_vs_true_log1p_charted_sum.png"} <= report_files
    child = run.child_run_ids[LIGHTGBM]
    child_files = {f.path for f in c.list_artifacts(child)}
    assert {"predictions.csv", "feature_importance.png", "feature_importance.csv"} <= child_files

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    name = f"lightgbm-{SYNTHETIC_SET}_log1p_charted_sum"
    model = mlflow.lightgbm.load_model(f"runs:/{child}/{name}")
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{child}/{name}")
    inputs = pyfunc.input_example
    assert inputs is not None and "region" in inputs.columns
    assert pyfunc.metadata.get_input_schema().input_names()[: len(inputs.columns)] == list(
        inputs.columns
    )
    np.testing.assert_allclose(
        np.asarray(pyfunc.predict(inputs)).ravel(), model.predict(inputs), rtol=1e-9
    )


def test_failed_run_is_marked_failed_with_its_error(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(MODELS, "exploding", ModelSpec("exploding", ExplodingModel, "baseline"))
    config = load_config(
        "quick",
        dataset="tracked",
        suite="region_mean,exploding",
        n_folds=2,
        bootstrap=10,
        tracking_uri=f"sqlite:///{store / 'mlflow.db'}",
        results_dir=store / "results-failed",
    )
    with pytest.raises(RuntimeError, match="boom in fit"):
        run_suite(config, synthetic_data(n_songs=20, n_features=2, seed=3))
    c = client(store)
    experiment = c.get_experiment_by_name("tracked")
    failed = c.search_runs([experiment.experiment_id], "attributes.status = 'FAILED'")
    names = {r.data.tags["mlflow.runName"] for r in failed}
    assert {"exploding", "exploding-fold0"} <= names
    assert all("boom in fit" in r.data.tags[ERROR_TAG] for r in failed)
    parents = [r for r in failed if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    assert mlflow.active_run() is None


def test_file_store_is_refused_and_fingerprint_tracks_content(tmp_path: Path) -> None:
    from musicpop.features.errors import DataError

    with pytest.raises(DataError, match="file store"):
        RunLogger(f"file://{tmp_path}/mlruns", "x")
    layout = DataLayout(tmp_path)
    layout.popularity.path.write_bytes(b"one")
    first = dataset_fingerprint(layout)
    assert first == dataset_fingerprint(layout)
    layout.popularity.path.write_bytes(b"two")
    assert dataset_fingerprint(layout) != first


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_benchmark_ui_lists_the_runs_and_leaves_nothing_behind(
    store: Path, run: Results, stop: signal.Signals
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (
        "from musicpop.benchmark.tracking import launch_ui; "
        f"launch_ui('sqlite:///{store / 'mlflow.db'}', port={port})"
    )
    ui = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server_group = None
    try:
        url = f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/get?run_id={run.run_id}"
        deadline = time.time() + 240  # a loaded 2-core machine starts the UI slowly
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = response.read().decode()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        assert run.run_id in body
        server_group = _server_group(ui.pid)
        assert server_group is not None
    finally:
        ui.send_signal(stop)  # SIGKILL: launch_ui cannot react; its reaper stops the server
        ui.wait(timeout=60)
    deadline = time.time() + 40
    while time.time() < deadline and (_port_open(port) or _group_alive(server_group)):
        time.sleep(0.5)
    assert not _port_open(port), "the MLflow server is still listening"
    assert not _group_alive(server_group), "processes of the MLflow server are still running"


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _server_group(pid: int) -> int | None:
    """Process group of the MLflow server started by ``pid`` (the child leading its own group)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.is_file():
        return None
    for child in map(int, children.read_text().split()):
        if os.getpgid(child) == child:
            return child
    return None
