"""The PostgreSQL paths, run for real: MLflow, shared Optuna studies and Feast on one server.

The server is the session's ``postgres`` fixture (a PostgreSQL 16 started by ``pgserver``); each
test gets a fresh database. The MLflow and Optuna tests run the real ``benchmark run`` CLI on a
tiny demo (``benchmark demo``), prepared once per module by a first run on the embedded sqlite
store, which is also the reference the PostgreSQL-backed run must equal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_synthetic_tables
from servers import PostgresDatabase, PostgresServer

from musicpop.features import store
from musicpop.features.layout import DataLayout

pytestmark = pytest.mark.postgres

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
FEAST_CONFIG = REPO / "docs" / "scale-out" / "feature_store.yaml"
SUITE = "global_mean,region_mean,lightgbm"
TINY_CONFIG = """
n_folds = 2
n_trials = {n_trials}
bootstrap = 100
{extra}

[models.lightgbm]
max_estimators = 40
min_child_samples = 3     # a tiny demo: the default 20 rows per leaf would allow no split
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "benchmark"), *args],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _config(work: Path, name: str, n_trials: int, **settings: str) -> Path:
    extra = "\n".join(f"{key} = {value!r}" for key, value in settings.items())
    path = work / name
    path.write_text(TINY_CONFIG.format(n_trials=n_trials, extra=extra).replace("'", '"'))
    return path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny demo, prepared and benchmarked once on the embedded stores (the reference run)."""
    work = tmp_path_factory.mktemp("pg-demo")
    made = _cli("demo", "--out", "tiny", "--songs", "16", "--regions", "2", "--seed", "3", cwd=work)
    assert made.returncode == 0, made.stderr[-3000:]
    config = _config(work, "sqlite.toml", n_trials=3)
    run = _cli(
        "run",
        *("--data-dir", "tiny", "--suite", SUITE, "--config", str(config), "--workers", "2"),
        *("--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--results-dir", "results-sqlite"),
        cwd=work,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work, work / "tiny"


def _runs(tracking_uri: str, experiment: str) -> dict[str, list]:
    """The runs of an experiment by role: parents, model children, fold runs."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {tracking_uri}"
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return {
        "parents": [r for r in runs if r.data.tags.get("role") == "benchmark"],
        "children": [r for r in runs if r.data.tags.get("role") == "model"],
        "folds": [r for r in runs if "fold" in r.data.tags],
    }


def _model_metrics(runs: list) -> dict[str, dict[str, float]]:
    return {r.data.tags["model"]: r.data.metrics for r in runs}


@pytest.mark.slow
def test_mlflow_on_postgres_holds_the_same_runs_and_metrics_as_sqlite(
    demo: tuple[Path, Path], postgres_db: PostgresDatabase
) -> None:
    work, data_dir = demo
    artifacts = work / "pg-artifacts"
    config = _config(work, "pg.toml", n_trials=3, artifact_location=artifacts.as_uri())
    run = _cli(
        "run",
        *("--data-dir", str(data_dir), "--suite", SUITE, "--config", str(config)),
        *("--tracking-uri", postgres_db.url, "--results-dir", "results-pg"),
        cwd=work,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    pg = _runs(postgres_db.url, "tiny")
    lite = _runs(f"sqlite:///{work / 'mlflow.db'}", "tiny")
    (parent,) = pg["parents"]
    assert parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in pg["children"]} == {parent.info.run_id}
    models = {"global_mean", "region_mean", "lightgbm[essentia]"}
    assert {r.data.tags["model"] for r in pg["children"]} == models
    children = {r.info.run_id: r.data.tags["model"] for r in pg["children"]}
    fold_runs = {
        (children[r.data.tags["mlflow.parentRunId"]], r.data.tags["fold"]) for r in pg["folds"]
    }
    assert fold_runs == {(m, f) for m in models for f in ("0", "1")}
    # the same numbers as on sqlite: every metric of every model, and every fold
    assert _model_metrics(pg["children"]) == _model_metrics(lite["children"])
    fold_metrics = {
        (r.data.tags["model"], r.data.tags["fold"]): r.data.metrics for r in pg["folds"]
    }
    assert fold_metrics == {
        (r.data.tags["model"], r.data.tags["fold"]): r.data.metrics for r in lite["folds"]
    }
    assert parent.data.params["tracking_uri"] == postgres_db.url
    # artifacts went to the configured location, the logged model with them
    assert postgres_db.count("SELECT count(*) FROM experiments WHERE name = 'tiny'") == 1
    assert (artifacts / parent.info.run_id / "artifacts" / "split.csv").is_file()
    assert list(artifacts.glob("models/*/artifacts/MLmodel")) or list(artifacts.rglob("MLmodel"))
    pd.testing.assert_frame_equal(
        pd.read_csv(work / "results-pg" / "tiny" / "summary.csv"),
        pd.read_csv(work / "results-sqlite" / "tiny" / "summary.csv"),
    )


def test_unusable_configurations_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking_uri: str
) -> None:
    from helpers import synthetic_data

    from musicpop.benchmark.config import load_config
    from musicpop.benchmark.runner import run_suite
    from musicpop.features.errors import DataError

    # the PostgreSQL Feast configuration without its PG* variables
    for key in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv(store.CONFIG_ENV, str(FEAST_CONFIG))
    with pytest.raises(DataError, match="not a valid Feast configuration") as error:
        store.feature_store(tmp_path)
    assert str(FEAST_CONFIG) in str(error.value) and "\n" not in str(error.value)
    # an Optuna storage URL no database driver knows
    config = load_config(
        "quick",
        dataset="synthetic",
        suite="lightgbm",
        features="synthetic",
        n_folds=2,
        n_trials=1,
        tracking_uri=tracking_uri,
        optuna_storage="nosuchdb://somewhere/optuna",
        study_name="named",
        results_dir=tmp_path,
    )
    with pytest.raises(DataError, match="Optuna storage 'nosuchdb://somewhere/optuna'"):
        run_suite(config, synthetic_data(n_songs=30, n_features=2))


# --- Optuna: two workers, one study ------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_tune_one_named_study_at_once(
    demo: tuple[Path, Path], postgres: PostgresServer
) -> None:
    import optuna

    work, data_dir = demo
    tracking, studies = postgres.create_database("mlflow"), postgres.create_database("optuna")
    budget = 10
    config = _config(
        work, "shared.toml", n_trials=budget, artifact_location=(work / "shared-art").as_uri()
    )
    args = [
        *("--data-dir", str(data_dir), "--suite", "lightgbm", "--config", str(config)),
        *("--tracking-uri", tracking.url, "--optuna-storage", studies.url),
        *("--study-name", "tiny-shared"),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    workers = [
        subprocess.Popen(
            [str(BIN / "benchmark"), "run", *args, "--results-dir", f"results-w{i}"],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    for worker, output in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, output[-3000:]

    names = sorted(optuna.get_all_study_names(studies.url))
    model = "lightgbm[essentia]"
    assert names == sorted(f"tiny-shared.{model}.{part}" for part in ("fold0", "fold1", "final"))
    runs = _runs(tracking.url, "tiny")
    parents = {r.info.run_id for r in runs["parents"]}
    assert len(parents) == 2
    ran_by: dict[str, list] = {}
    for name in names:
        trials = optuna.load_study(study_name=name, storage=studies.url).trials
        finished = [t for t in trials if t.state.is_finished()]
        # the budget is the study's: n_trials in all (a race at the last trial adds at most one)
        assert budget <= len(finished) <= budget + 1 and len(finished) == len(trials)
        for trial in trials:
            ran_by.setdefault(trial.user_attrs["worker"], []).append(trial)
        # seeded per trial number: two workers never propose the same parameters
        params = [tuple(sorted(t.params.items())) for t in finished]
        assert len(set(params)) == len(params)
    # every trial of both workers is in the shared studies, and they ran at the same time
    assert set(ran_by) == parents
    first, second = (sorted(ran_by[p], key=lambda t: t.datetime_start) for p in sorted(parents))
    assert first[0].datetime_start < second[-1].datetime_complete
    assert second[0].datetime_start < first[-1].datetime_complete
    # both fit the best trial of the whole study: the same parameters and the same numbers
    folds = runs["folds"]
    for fold in ("0", "1"):
        logged = [r.data.params for r in folds if r.data.tags["fold"] == fold]
        assert len(logged) == 2 and logged[0] == logged[1]
        own = sum(r.data.metrics["optuna_own_trials"] for r in folds if r.data.tags["fold"] == fold)
        assert own == len(
            optuna.load_study(
                study_name=f"tiny-shared.{model}.fold{fold}", storage=studies.url
            ).trials
        )
    pd.testing.assert_frame_equal(
        pd.read_csv(work / "results-w0" / "tiny" / "summary.csv"),
        pd.read_csv(work / "results-w1" / "tiny" / "summary.csv"),
    )


def _synthetic_config(tmp: Path, db: PostgresDatabase, tracking_uri: str, **overrides: object):
    from helpers import SYNTHETIC_SET

    from musicpop.benchmark.config import load_config

    settings = {
        "dataset": "synthetic",
        "suite": "lightgbm",
        "features": SYNTHETIC_SET,
        "n_folds": 2,
        "n_trials": 4,
        "bootstrap": 100,
        "tracking_uri": tracking_uri,
        "optuna_storage": db.url,
        "study_name": "named",
        "results_dir": tmp / "results",
        "models": {"lightgbm": {"max_estimators": 60}},
        **overrides,
    }
    return load_config("quick", **settings)


@pytest.mark.slow
def test_a_named_study_is_resumed_and_never_mixed_with_another_protocol(
    tmp_path: Path, postgres_db: PostgresDatabase, tracking_uri: str
) -> None:
    import optuna
    from helpers import synthetic_data

    from musicpop.benchmark.runner import run_suite
    from musicpop.features.errors import DataError

    data = synthetic_data(n_songs=60, n_features=4, seed=2)
    first = run_suite(_synthetic_config(tmp_path, postgres_db, tracking_uri), data)
    study = "named.lightgbm[synthetic].fold0"
    assert len(optuna.load_study(study_name=study, storage=postgres_db.url).trials) == 4
    # the same protocol again: the finished studies are reused, no trial is run, same numbers
    again = run_suite(_synthetic_config(tmp_path, postgres_db, tracking_uri), data)
    assert len(optuna.load_study(study_name=study, storage=postgres_db.url).trials) == 4
    pd.testing.assert_frame_equal(again.metrics, first.metrics)
    # another seed (other inner splits), or another direction, may not join those trials
    with pytest.raises(DataError, match="made for another dataset or configuration"):
        run_suite(_synthetic_config(tmp_path, postgres_db, tracking_uri, seed=1), data)
    with pytest.raises(DataError, match="choose another --study-name"):
        run_suite(
            _synthetic_config(tmp_path, postgres_db, tracking_uri, tune_metric="spearman"), data
        )


_WORKER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from helpers import synthetic_data
from test_postgres import _synthetic_config
from servers import PostgresDatabase
from musicpop.benchmark.runner import run_suite
db = PostgresDatabase(sys.argv[2], int(sys.argv[3]), sys.argv[4])
config = _synthetic_config(Path(sys.argv[5]), db, sys.argv[6], n_trials=12, optuna_heartbeat=5)
run_suite(config, synthetic_data(n_songs=60, n_features=4, seed=2))
"""


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_its_budget_run_again(
    tmp_path: Path, postgres_db: PostgresDatabase, tracking_uri: str
) -> None:
    import optuna
    from helpers import synthetic_data

    from musicpop.benchmark.runner import run_suite

    db = postgres_db
    args = [str(Path(__file__).parent), db.host, str(db.port), db.name, str(tmp_path)]
    victim = subprocess.Popen(
        [sys.executable, "-c", _WORKER, *args, tracking_uri], stderr=subprocess.DEVNULL
    )
    study = "named.lightgbm[synthetic].fold0"
    running = optuna.trial.TrialState.RUNNING
    try:
        deadline = time.monotonic() + 300
        while True:
            assert victim.poll() is None, "the worker ended before it could be killed"
            assert time.monotonic() < deadline, "no trial started within 300 s"
            if study in optuna.get_all_study_names(db.url):
                trials = optuna.load_study(study_name=study, storage=db.url).trials
                if len(trials) >= 3 and trials[-1].state == running:
                    break
            time.sleep(0.05)
    finally:
        victim.kill()  # SIGKILL: its running trial stays RUNNING in the storage
        victim.wait()
    left = optuna.load_study(study_name=study, storage=db.url).trials
    assert [t.state for t in left].count(running) == 1

    config = _synthetic_config(tmp_path, db, tracking_uri, n_trials=12, optuna_heartbeat=5)
    run_suite(config, synthetic_data(n_songs=60, n_features=4, seed=2))
    trials = optuna.load_study(study_name=study, storage=db.url).trials
    states = [t.state.name for t in trials]
    # the dead worker's trial failed after its heartbeat stopped; 12 trials finished all the same
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert sum(state in ("COMPLETE", "PRUNED") for state in states) == 12
    assert len({t.user_attrs["worker"] for t in trials}) == 2


@pytest.mark.slow
def test_a_trial_left_running_before_its_first_heartbeat_is_failed(
    tmp_path: Path, postgres_db: PostgresDatabase, tracking_uri: str
) -> None:
    """A worker killed between creating its trial and its first heartbeat leaves a RUNNING trial
    that Optuna's stale-trial check never fails (it has no heartbeat to be stale); the other
    workers must not wait for it for ever (they did: a run of the test above hung)."""
    import optuna
    from helpers import synthetic_data

    from musicpop.benchmark.metrics import METRICS
    from musicpop.benchmark.runner import run_suite

    config = _synthetic_config(tmp_path, postgres_db, tracking_uri, n_trials=4, optuna_heartbeat=1)
    direction = "maximize" if METRICS[config.tune_metric].maximize else "minimize"
    study = optuna.create_study(
        study_name="named.lightgbm[synthetic].fold0", storage=postgres_db.url, direction=direction
    )
    study.ask()  # RUNNING, and no heartbeat was ever recorded for it
    run_suite(config, synthetic_data(n_songs=60, n_features=4, seed=2))
    states = [t.state.name for t in study.trials]
    assert states.count("FAIL") == 1 and "RUNNING" not in states
    assert sum(state in ("COMPLETE", "PRUNED") for state in states) == 4


# --- Feast: registry, offline store and online store on PostgreSQL -----------------------------


def _use_postgres(db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the Feast store at ``db`` through the documented configuration file."""
    for key, value in {**db.env, store.CONFIG_ENV: str(FEAST_CONFIG)}.items():
        monkeypatch.setenv(key, value)


def _ready(data_dir: Path) -> None:
    store.apply(data_dir)
    store.materialize(data_dir)


def _entity_rows(data_dir: Path) -> pd.DataFrame:
    """Every weekly popularity row at its own time, the same rows long before, and repeats."""
    popularity = DataLayout(data_dir).popularity.read(
        ["track_id", "region", "period", "event_timestamp"]
    )
    rows = popularity[popularity["period"] == "weekly"].drop(columns="period")
    early = rows.head(5).assign(event_timestamp=pd.Timestamp("2001-01-01", tz="UTC"))
    rows = pd.concat([rows, early, rows.head(3)], ignore_index=True)
    rows["row"] = np.arange(len(rows))  # a passed-through column
    return rows.set_index(np.arange(len(rows))[::-1] * 10)


def _online(data_dir: Path, rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    fs = store.feature_store(data_dir)
    out = {}
    tracks = [{"track_id": t} for t in rows["track_id"].unique()]
    pairs = rows[["track_id", "region"]].drop_duplicates().to_dict("records")
    for view in fs.list_feature_views():
        keys = pairs if "region" in view.entities else tracks
        features = [f"{view.name}:{f.name}" for f in view.features]
        frame = fs.get_online_features(features=features, entity_rows=keys).to_df()
        out[view.name] = frame.sort_values(list(keys[0])).reset_index(drop=True)
    return out


def _assert_same_online(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert set(left) == set(right)
    for view in left:
        a, b = left[view], right[view][left[view].columns]
        for column in a.columns:
            x, y = a[column].tolist(), b[column].tolist()
            assert len(x) == len(y), (view, column)
            for u, v in zip(x, y, strict=True):
                if isinstance(u, float) and np.isnan(u):
                    assert isinstance(v, float) and np.isnan(v), (view, column, u, v)
                else:
                    np.testing.assert_array_equal(u, v, err_msg=f"{view}.{column}")


@pytest.mark.slow
def test_feast_on_postgres_serves_the_same_frames_as_the_embedded_store(
    tmp_path: Path, postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every kind of column: dotted float names, clip references (strings, ints, int lists),
    # popularity curves (float lists with NaN), ranks, dates as strings
    embedded, remote = tmp_path / "embedded", tmp_path / "postgres"
    ids = write_synthetic_tables(embedded, tracks=12, regions=2, features=6, clips=2, seed=5)
    shutil.copytree(embedded, remote)
    popularity = DataLayout(embedded).popularity
    frame = popularity.read()
    frame.loc[frame.index[::3], "sum"] = np.nan
    frame["curve"] = [np.where(np.arange(len(c)) % 4 == 3, np.nan, c) for c in frame["curve"]]
    for root in (embedded, remote):
        DataLayout(root).popularity.write(frame)
    _ready(embedded)
    rows = _entity_rows(embedded)
    expected = {s: store.training_frame(embedded, s, rows) for s in ("essentia_v1", "mel_v1")}
    _, expected_arrays = store.feature_inputs(embedded, "mel", rows)
    expected_online = _online(embedded, rows)

    _use_postgres(postgres_db, monkeypatch)
    _ready(remote)
    # registry, offline store and online store all live in the database
    assert postgres_db.count("SELECT count(*) FROM feature_views") == 3
    assert postgres_db.count('SELECT count(*) FROM "musicpop_essentia"') == len(ids)
    assert (
        postgres_db.count('SELECT count(DISTINCT entity_key) FROM "music_popularity_popularity"')
        == 24
    )
    assert not (remote / "feast" / "registry.db").exists()
    assert not (remote / "feast" / "online_store.db").exists()
    for service, frame in expected.items():
        got = store.training_frame(remote, service, rows)
        pd.testing.assert_frame_equal(got, frame, check_exact=True)
    _, arrays = store.feature_inputs(remote, "mel", rows)
    assert set(arrays) == set(expected_arrays)
    for track, clips in arrays.items():
        for a, b in zip(clips, expected_arrays[track], strict=True):
            np.testing.assert_array_equal(a, b)
    _assert_same_online(_online(remote, rows), expected_online)
    text = store.info(remote)
    assert "offline:  postgres" in text and "online:   postgres" in text
    assert "***" not in text or "postgres:***@" in text
    assert "source rows 12" in text and "online keys 24" in text


@pytest.mark.slow
def test_the_demo_training_frame_on_postgres_equals_the_embedded_one(
    demo: tuple[Path, Path],
    postgres_db: PostgresDatabase,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from musicpop.benchmark.config import load_config
    from musicpop.benchmark.data import load_benchmark_data
    from musicpop.benchmark.runner import select_runs

    _, data_dir = demo
    remote = tmp_path / "tiny"
    shutil.copytree(data_dir, remote, ignore=shutil.ignore_patterns("cache", "checkpoints"))
    config = load_config("quick", data_dir=data_dir, suite="lightgbm")
    rows = _entity_rows(data_dir)
    expected = store.training_frame(data_dir, "essentia_v1", rows)
    data = load_benchmark_data(config, select_runs(config))

    _use_postgres(postgres_db, monkeypatch)
    _ready(remote)
    got = store.training_frame(remote, "essentia_v1", rows)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # the benchmark's own inputs, loaded through the PostgreSQL store
    again = load_benchmark_data(
        load_config("quick", data_dir=remote, suite="lightgbm"), select_runs(config)
    )
    pd.testing.assert_frame_equal(again.frame, data.frame, check_exact=True)
    (name,) = data.inputs
    pd.testing.assert_frame_equal(
        again.inputs[name].columns, data.inputs[name].columns, check_exact=True
    )
