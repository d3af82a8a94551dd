"""The experiments registry: seasonal flags, the grouping setting, and every experiment through
the real CLI on a small chart data dir (pages with intervals, CSV, MLflow runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_data, write_catalog, write_chart_files, write_synthetic_tables

from musicpop.benchmark.cli import main as cli_main
from musicpop.benchmark.config import load_config
from musicpop.benchmark.experiments import EXPERIMENTS, SeasonRule, not_applicable, seasonal_tracks
from musicpop.benchmark.runner import run_suite

BIN = Path(sys.executable).parent
TABULAR = [name for name in EXPERIMENTS if name != "deep-design"]
"""The experiments the chart data dir below can run (deep-design needs spectrograms: its own
test)."""


def _entries(track: str, dates: list[str], streams: float = 1e6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "track_id": track,
            "period": "weekly",
            "chart_date": pd.to_datetime(dates),
            "streams": streams,
            "title": f"title {track}",
            "artist": "someone",
        }
    )


def _weeks(start: str, n: int) -> list[str]:
    return [str(d.date()) for d in pd.date_range(start, periods=n, freq="7D")]


def test_seasonal_tracks_come_back_in_the_same_weeks_of_several_years() -> None:
    streams = pd.concat(
        [
            # Christmas: December of 2019 and of 2020, nothing in between
            _entries("xmas", _weeks("2019-11-29", 5) + _weeks("2020-11-27", 5)),
            # a December-to-January hit: concentrated, but one season only
            _entries("hit", _weeks("2019-12-06", 7)),
            # all year round
            _entries("evergreen", _weeks("2019-01-04", 100)),
            # mostly December, but a quarter of its streams in the summer
            _entries("half", _weeks("2019-12-06", 3) + _weeks("2020-12-04", 3)),
            _entries("half", _weeks("2020-06-05", 2), streams=1e6),
        ],
        ignore_index=True,
    )
    flags = seasonal_tracks(streams, "weekly").set_index("track_id")
    assert flags.loc["xmas", "seasonal"] and flags.loc["xmas", "seasons"] == 2
    assert flags.loc["xmas", "share"] == pytest.approx(1.0)
    assert 45 <= flags.loc["xmas", "window_start"] <= 48  # weeks 48-52 in the window
    assert not flags.loc["hit", "seasonal"] and flags.loc["hit", "seasons"] == 1
    assert not flags.loc["evergreen", "seasonal"] and flags.loc["evergreen", "share"] < 0.2
    assert not flags.loc["half", "seasonal"] and flags.loc["half", "share"] == pytest.approx(0.75)
    loose = seasonal_tracks(streams, "weekly", SeasonRule(min_share=0.7))
    assert set(loose.loc[loose["seasonal"], "track_id"]) == {"xmas", "half"}


def test_the_group_setting_decides_what_a_split_keeps_together(
    tmp_path: Path, tracking_uri: str
) -> None:
    data = synthetic_data(n_songs=60, seed=3)
    assert data.frame.groupby("song_id")["track_id"].nunique().max() == 2  # versions exist
    spread = {}
    for group in ("song", "track", "row"):
        config = load_config(
            "quick",
            suite="region_mean",
            group=group,
            n_folds=3,
            bootstrap=50,
            tracking_uri=tracking_uri,
            results_dir=tmp_path,
            dataset=f"grouping-{group}",
        )
        split = run_suite(config, data).split
        spread[group] = (
            split.groupby("song_id")["test_fold"].nunique().max(),
            split.groupby("track_id")["test_fold"].nunique().max(),
        )
    assert spread["song"] == (1, 1)  # every song in one fold
    assert spread["track"][0] > 1 and spread["track"][1] == 1  # versions straddle, tracks do not
    assert spread["row"][1] > 1  # one track's regions straddle
    with pytest.raises(Exception, match="group must be one of"):
        load_config("quick", group="album")


def test_experiment_list_names_every_registered_experiment(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert name in out and EXPERIMENTS[name].question[:40] in out
    assert cli_main(["experiment", "nonsense", "--data-dir", "."]) == 2
    assert "unknown experiment 'nonsense'" in capsys.readouterr().err


TINY = """
n_folds = 3
n_trials = 2
bootstrap = 100
suite = "classical"
features = "desc"

[models.lightgbm]
max_estimators = 40
min_child_samples = 3
"""


@pytest.fixture(scope="module")
def experiments_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``benchmark experiment all`` (every tabular experiment; deep-design skipped, as the suite
    has no MP2) on two years of weekly charts of 3 regions, 6 of whose tracks come back every
    December, with a 4-column descriptor table."""
    work = tmp_path_factory.mktemp("experiments")
    table = write_chart_files(
        work / "charts",
        n_tracks=150,
        regions=("us", "gb", "de"),
        n_charts=110,
        chart_size=40,
        seed=6,
        seasonal=6,
    )
    table.to_csv(work / "desc.csv", index=False)
    (work / "tiny.toml").write_text(TINY)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    steps = [
        ("ingest", "charts", "charts", "--data-dir", "data"),
        ("ingest", "features", "desc.csv", "--name", "desc", "--data-dir", "data"),
        # all: every tabular experiment in one process; deep-design is skipped (no MP2 in the suite)
        ("experiment", "all", "--data-dir", "data", "--config", "tiny.toml"),
    ]
    stdout = ""
    for step in steps:
        done = subprocess.run(
            [str(BIN / "benchmark"), *step], cwd=work, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        stdout += done.stdout if step[0] == "experiment" else ""
    return work, stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", TABULAR)
def test_every_experiment_writes_its_page_csv_and_mlflow_runs(
    experiments_run: tuple[Path, str], name: str
) -> None:
    work, stdout = experiments_run
    page = work / "results" / "data" / "experiments" / f"{name}.md"
    text = page.read_text()
    assert text.startswith(f"# {EXPERIMENTS[name].title}")
    assert EXPERIMENTS[name].question in text and "## Run time" in text
    assert f"[{name}]" in stdout and "peak memory" in stdout
    assert "[deep-design] skipped: suite 'classical' has no MP2" in stdout
    tidy = pd.read_csv(page.with_suffix(".csv"))
    assert {"table", "model", "target", "metric", "value", "ci_low", "ci_high", "diff"} <= set(
        tidy.columns
    )
    scored = tidy.dropna(subset=["value", "ci_low", "ci_high"])
    assert len(scored) > 0
    assert (scored["ci_low"] <= scored["value"] + 1e-9).all()
    assert (scored["value"] <= scored["ci_high"] + 1e-9).all()
    assert "] | " in text  # intervals in the tables

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("data")
    runs = client.search_runs([experiment.experiment_id], f"tags.experiment = '{name}'")
    parents = [r for r in runs if r.data.tags.get("role") == "experiment"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    variants = {
        r.data.tags["variant"]
        for r in runs
        if r.data.tags.get("role") == "benchmark"
        and r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert len(variants) >= 2
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id, "experiment")}
    assert {f"experiment/{name}.md", f"experiment/{name}.csv"} <= artifacts


@pytest.mark.slow
def test_experiment_pages_answer_their_questions(experiments_run: tuple[Path, str]) -> None:
    work, _ = experiments_run
    pages = work / "results" / "data" / "experiments"
    tidy = {name: pd.read_csv(pages / f"{name}.csv") for name in TABULAR}

    regional = tidy["regions"][tidy["regions"]["table"] == "per region"]
    assert set(regional["region"]) == {"de", "gb", "us"}
    variants = set(tidy["regions"]["model"])
    for label in ("region categorical", "region one-hot", "no region", "one model per region"):
        assert any(label in model for model in variants)

    grouping = tidy["grouping"]
    lead = grouping[
        (grouping.metric == "spearman_region") & (grouping.target == "log1p_charted_sum")
    ]
    song = lead[lead.model == "lightgbm[desc] (song-grouped folds)"]["value"].iloc[0]
    rows = lead[lead.model == "lightgbm[desc] (row-random folds)"]["value"].iloc[0]
    assert np.isfinite(song) and np.isfinite(rows)
    leak = (pages / "grouping.md").read_text()
    assert "| song-grouped folds | 0.0% | 0.0% |" in leak

    null = tidy["null-policy"]
    missing = null[null.table == "policy missing"].set_index(["model", "metric"])
    zero = null[null.table == "policy zero"].set_index(["model", "metric"])
    scalar = missing.index.get_level_values("metric") != "curve_rmse"
    np.testing.assert_allclose(
        missing[scalar]["value"].to_numpy(), zero.loc[missing[scalar].index, "value"].to_numpy()
    )
    assert "scalar results are identical" in (pages / "null-policy.md").read_text()

    horizon = (pages / "horizon.md").read_text()
    for weeks in (4, 13, 26, 52):
        assert f"## {weeks} weeks" in horizon

    season = (pages / "season.md").read_text()
    assert "6 of " in season and "charting tracks are seasonal" in season
    assert "On the seasonal rows" in season


TINY_MP2 = {
    "config": {
        "encoder": {
            "n_frames": 8,
            "patch_size": 4,
            "stride": 4,
            "dim": 16,
            "n_layers": 1,
            "n_heads": 2,
            "pos_dim": 8,
        },
        "region_dim": 8,
        "head_hidden": 16,
    },
    "training": {"epochs": 2, "batch_size": 8, "val_fraction": 0.0, "cpu_threads": 1},
    "augment": {"different_clip": False},
}


@pytest.mark.slow
def test_deep_design_runs_four_mp2_variants_under_one_budget(tmp_path: Path) -> None:
    """deep-design on a tiny data dir with spectrograms: the 2x2 variants of MP2 with the
    configured settings, the same tuning budget and folds for each, page and CSV written."""
    from mlflow import MlflowClient

    from musicpop.benchmark.experiments import DEEP_DESIGN_VARIANTS, run_experiment
    from musicpop.features import store
    from musicpop.features.errors import DataError

    data_dir = tmp_path / "data"
    ids = write_synthetic_tables(data_dir, tracks=20, regions=2, clips=1, n_mels=8, seed=4)
    write_catalog(data_dir, ids)
    store.apply(data_dir)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(
        "quick",
        data_dir=data_dir,
        dataset="deep",
        suite="global_mean,region_mean,mp2",
        n_folds=2,
        n_trials=2,
        bootstrap=100,
        tracking_uri=tracking,
        results_dir=tmp_path / "results",
        models={"mp2": TINY_MP2},
    )
    result = run_experiment("deep-design", config)
    labels = [label for label, _, _ in DEEP_DESIGN_VARIANTS]
    assert list(result.variant_seconds) == labels

    page = tmp_path / "results" / "deep" / "experiments" / "deep-design.md"
    text = page.read_text()
    assert "2 Optuna trials per outer fold (2 folds, 4 trials per variant)" in text
    assert "at most 2 epochs" in text
    quick = load_config("quick")
    epochs = quick.model_params("mp2").get("training", {}).get("epochs", 60)
    assert (
        f"not the `quick` preset's ({quick.n_folds} folds, {quick.n_trials} trials per fold, "
        f"at most {epochs} epochs)"
    ) in text
    tidy = pd.read_csv(page.with_suffix(".csv"))
    lead = tidy[(tidy.metric == "spearman_region") & (tidy.target == "log1p_charted_sum")]
    lead = lead.set_index("model")
    reference = f"mp2 ({labels[0]})"
    assert (lead["reference"] == reference).all()
    summary = text.split("**log1p_charted_sum**")[1].split("**log1p_debut**")[0]
    for label in labels[1:]:
        row = lead.loc[f"mp2 ({label})"]
        low, diff, high = row["diff_ci_low"], row["diff"], row["diff_ci_high"]
        assert low <= diff <= high
        verdict = "not distinguishable" if low <= 0 <= high else "better" if low > 0 else "worse"
        (line,) = [ln for ln in summary.splitlines() if ln.startswith(f"| {label} |")]
        assert f"{diff:+.3f} [{low:+.3f}, {high:+.3f}] | {verdict} |" in line
    assert {"global_mean", "region_mean"} <= set(lead.index)

    # MLflow: each variant's MP2 ran every fold with its own settings and the same budget
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name("deep")
    runs = client.search_runs([experiment.experiment_id], "tags.experiment = 'deep-design'")
    parent = [r for r in runs if r.data.tags.get("role") == "experiment"]
    assert len(parent) == 1
    variants = {
        r.info.run_id: r.data.tags["variant"]
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id
    }
    assert sorted(variants.values()) == sorted(labels)
    everything = client.search_runs([experiment.experiment_id], max_results=1000)
    children: dict[str, list] = {}
    for r in everything:
        children.setdefault(r.data.tags.get("mlflow.parentRunId", ""), []).append(r)
    settings = {}
    for variant_id, label in variants.items():
        fold_runs = [
            fold
            for model in children[variant_id]
            if model.info.run_name.startswith("mp2")
            for fold in children.get(model.info.run_id, [])
        ]
        assert len(fold_runs) == 2
        assert [f.data.metrics["optuna_trials"] for f in fold_runs] == [2.0, 2.0]
        settings[label] = {
            (f.data.params["config.encoder.pos_mode"], f.data.params["config.conditioning"])
            for f in fold_runs
        }
    assert settings == {label: {(pos, cond)} for label, pos, cond in DEEP_DESIGN_VARIANTS}

    without = load_config("quick", data_dir=data_dir, suite="region_mean", tracking_uri=tracking)
    with pytest.raises(DataError, match="varies MP2 on log-mel clips"):
        run_experiment("deep-design", without)


def test_all_skips_deep_design_without_a_spectrogram_mp2(tmp_path: Path) -> None:
    """`experiment all` on a data dir of descriptor tables runs the tabular experiments and says
    why it leaves deep-design out; with MP2 on log-mel clips in the suite nothing is skipped."""
    tabular = load_config("quick", data_dir=tmp_path, suite="classical")
    reason = not_applicable("deep-design", tabular)
    assert reason is not None and "classical" in reason and "mp2" in reason
    assert all(
        not_applicable(name, tabular) is None for name in EXPERIMENTS if name != "deep-design"
    )
    deep = load_config("quick", data_dir=tmp_path, suite="global_mean,region_mean,mp2")
    assert not_applicable("deep-design", deep) is None
    musicnn_only = load_config("quick", data_dir=tmp_path, suite="mp2_musicnn")
    assert not_applicable("deep-design", musicnn_only) is not None
