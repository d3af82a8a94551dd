"""Integration on the real data of ../shared/data: two regions of the weekly 2019-2021 charts and
Spotify's descriptor table, through the real CLI and the real Feast store (skipped without it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicpop.benchmark.config import load_config
from musicpop.benchmark.data import load_benchmark_data
from musicpop.benchmark.experiments import seasonal_tracks
from musicpop.benchmark.runner import select_runs
from musicpop.features.charts import read_streams
from musicpop.features.feature_sets import get_feature_set
from musicpop.features.layout import DataLayout

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CHARTS = "charts/spotifycharts-weekly-2019-2021"
TABLE = "charts/spotify-audio-features-dev-regions.csv"
MARIAH = "0bYg9bo50gSsH3LtXe2SQn"  # "All I Want for Christmas Is You", Mariah Carey
TINY = """
suite = "region_mean,lightgbm"
features = "spotify_audio_features"
n_folds = 3
n_trials = 2
bootstrap = 100

[models.lightgbm]
max_estimators = 60
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(BIN / "benchmark"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def real(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The `se` and `mx` weekly charts with the descriptor table (12 columns) ingested."""
    work = tmp_path_factory.mktemp("real")
    charts = [str(shared_data / CHARTS / region) for region in ("se", "mx")]
    ingest = _cli("ingest", "charts", *charts, "--data-dir", "data", cwd=work)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    args = ["--name", "spotify_audio_features", "--data-dir", "data"]
    table = _cli(
        "ingest",
        "features",
        str(shared_data / TABLE),
        *args,
        "--exclude-columns",
        "duration_ms",
        cwd=work,
    )
    assert table.returncode == 0, table.stderr[-2000:]
    return work, ingest.stdout, table.stdout


def test_the_real_descriptor_table_is_stored_with_its_provenance(
    real: tuple[Path, str, str], shared_data: Path
) -> None:
    work, _, summary = real
    source = pd.read_csv(shared_data / TABLE)
    assert f"{len(source):,} tracks x 12 columns" in summary
    assert "columns left out on request: duration_ms" in summary
    layout = DataLayout(work / "data")
    fs = get_feature_set("spotify_audio_features", layout)
    assert fs.source == "table" and "duration_ms" not in fs.columns and len(fs.columns) == 12
    stored = fs.table(layout).read().set_index("track_id")
    np.testing.assert_allclose(
        stored.loc[MARIAH, list(fs.columns)].to_numpy(dtype=float),
        source.set_index("track_id").loc[MARIAH, list(fs.columns)].to_numpy(dtype=float),
    )
    catalog = layout.catalog.read(["track_id"])["track_id"]
    covered = int(catalog.isin(stored.index).sum())
    assert f"covers {covered:,} of the catalog's {len(catalog):,} tracks" in summary
    # two regions' tracks only: most of the table's tracks are not in this catalog
    assert f"{len(source) - covered:,} stored tracks are not in the catalog" in summary
    again = _cli(
        "ingest",
        "features",
        str(shared_data / TABLE),
        "--name",
        "spotify_audio_features",
        "--exclude-columns",
        "duration_ms",
        "--data-dir",
        "data",
        cwd=work,
    )
    assert again.returncode == 0 and "nothing changed" in again.stdout


def test_feast_serves_every_row_its_descriptors_at_the_debut(real: tuple[Path, str, str]) -> None:
    work, _, _ = real
    data_dir = work / "data"
    targets = _cli("targets", "--data-dir", "data", cwd=work)
    assert targets.returncode == 0, targets.stderr[-2000:]
    applied = _cli("store", "apply", "--data-dir", "data", cwd=work)
    assert applied.returncode == 0, applied.stderr[-2000:]
    config = load_config(
        "quick", suite="lightgbm", features="spotify_audio_features", data_dir=data_dir
    )
    data = load_benchmark_data(config, select_runs(config))
    values = data.inputs["spotify_audio_features"].columns
    assert len(data.frame) > 1000 and set(data.frame["region"]) == {"se", "mx"}
    assert values.notna().all().all()  # every kept row got all 12 descriptors, point in time
    source = get_feature_set("spotify_audio_features", DataLayout(data_dir))
    stored = source.table(DataLayout(data_dir)).read().set_index("track_id")
    np.testing.assert_allclose(
        values.to_numpy(), stored.loc[data.frame["track_id"], list(values.columns)].to_numpy()
    )


def test_christmas_songs_are_seasonal_on_real_charts(real: tuple[Path, str, str]) -> None:
    work, _, _ = real
    flags = seasonal_tracks(read_streams(work / "data"), "weekly").set_index("track_id")
    mariah = flags.loc[MARIAH]
    assert mariah["seasonal"] and mariah["seasons"] == 2 and mariah["share"] > 0.95
    assert 44 <= mariah["window_start"] <= 48  # a window around December
    assert flags["seasonal"].mean() < 0.1  # a few percent of the charting tracks


def test_a_real_run_on_the_ingested_table(real: tuple[Path, str, str]) -> None:
    work, _, _ = real
    (work / "tiny.toml").write_text(TINY)
    run = _cli("run", "--data-dir", "data", "--config", "tiny.toml", cwd=work)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = pd.read_csv(work / "results" / "data" / "summary.csv")
    lead = summary[(summary.metric == "spearman_region") & (summary.target == "log1p_charted_sum")]
    row = lead.set_index("model").loc["lightgbm[spotify_audio_features]"]
    assert np.isfinite(row["value"]) and row["ci_low"] <= row["value"] <= row["ci_high"]
    text = (work / "results" / "data" / "summary.md").read_text()
    assert "chart period: weekly" in text and "no oracle" in text
    assert "ingested from spotify-audio-features-dev-regions.csv" in text
