"""Bring-your-own features: `benchmark ingest features` checks a table, stores a versioned
feature set, Feast serves it, and tabular models run on it (through the real CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_chart_files

from musicpop.benchmark.cli import main as cli_main
from musicpop.features import store
from musicpop.features.charts import ingest_charts
from musicpop.features.errors import DataError
from musicpop.features.feature_sets import feature_sets, get_feature_set
from musicpop.features.layout import DataLayout
from musicpop.features.targets import build_targets
from musicpop.features.user_tables import ingest_feature_table

BIN = Path(sys.executable).parent


@pytest.fixture()
def charted(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """A data dir with ingested weekly charts (2 regions) and the tracks' descriptor table."""
    table = write_chart_files(tmp_path / "charts", n_tracks=40, n_charts=12, seed=2)
    data_dir = tmp_path / "data"
    ingest_charts([tmp_path / "charts"], data_dir)
    return data_dir, table


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_a_good_table_becomes_a_feature_set_with_its_provenance(
    charted: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    data_dir, table = charted
    source = _csv(tmp_path / "desc.csv", table)
    report = ingest_feature_table(source, data_dir, "descriptors")
    assert (report.version, report.rows_stored, report.columns) == (1, 40, ["f0", "f1", "f2", "f3"])
    layout = DataLayout(data_dir)
    fs = get_feature_set("descriptors", layout)
    assert (fs.source, fs.kind, fs.service) == ("table", "tabular", "descriptors_v1")
    assert "descriptors" in feature_sets(layout) and "descriptors" not in feature_sets()
    stored = fs.table(layout).read()
    assert list(stored.columns) == ["track_id", "event_timestamp", "f0", "f1", "f2", "f3"]
    expected = table.set_index("track_id").loc[stored["track_id"]]
    np.testing.assert_allclose(stored[["f0", "f1", "f2", "f3"]].to_numpy(), expected.to_numpy())
    # event time: the track's first chart date (no release dates in these charts); a track
    # that never charted here gets the fallback (it joins no row anyway)
    streams = layout.streams.read(["track_id", "chart_date"])
    first = pd.to_datetime(streams.groupby("track_id")["chart_date"].min(), utc=True)
    expected_time = first.reindex(stored["track_id"]).fillna(pd.Timestamp("2000-01-01", tz="UTC"))
    assert (stored["event_timestamp"].to_numpy() == expected_time.to_numpy()).all()
    record = layout.feature_info("descriptors").read()
    provenance = record["provenance"]
    assert provenance["file"] == "desc.csv" and len(provenance["sha256"]) == 64
    assert provenance["ingested_at"].endswith("Z") and record["history"] == []
    charted_tracks = len(first)
    assert 0 < charted_tracks < 40
    assert (
        f"covers {charted_tracks} of the catalog's {charted_tracks} tracks; "
        f"{40 - charted_tracks} stored tracks are not in the catalog"
    ) in report.summary()


def test_the_same_file_again_changes_nothing_and_a_changed_file_is_a_new_version(
    charted: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    data_dir, table = charted
    layout = DataLayout(data_dir)
    source = _csv(tmp_path / "desc.csv", table)
    ingest_feature_table(source, data_dir, "descriptors")
    stamp = get_feature_set("descriptors", layout).table(layout).path.stat().st_mtime_ns
    again = ingest_feature_table(source, data_dir, "descriptors")
    assert again.unchanged and again.version == 1 and "nothing changed" in again.summary()
    assert get_feature_set("descriptors", layout).table(layout).path.stat().st_mtime_ns == stamp

    changed = table.assign(f0=table["f0"] + 1.0)
    newer = ingest_feature_table(_csv(source, changed), data_dir, "descriptors")
    assert newer.version == 2 and not newer.unchanged
    fs = get_feature_set("descriptors", layout)
    assert fs.service == "descriptors_v2"
    history = layout.feature_info("descriptors").read()["history"]
    assert [h["version"] for h in history] == [1]
    assert history[0]["sha256"] != fs.metadata["provenance"]["sha256"]
    # other options on the same file are a new version too
    fewer = ingest_feature_table(source, data_dir, "descriptors", exclude_columns=["f3"])
    assert fewer.version == 3 and get_feature_set("descriptors", layout).columns == (
        "f0",
        "f1",
        "f2",
    )


def test_bad_lines_are_reported_by_line_and_nothing_is_stored(
    charted: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    data_dir, table = charted
    ids = table["track_id"].tolist()
    text = [
        "track_id,f0,f1",
        f"{ids[0]},1.0,2.0",  # line 2: good
        "not-an-id,1.0,2.0",  # line 3: bad id
        f"{ids[1]},abc,2.0",  # line 4: not a number
        f"{ids[2]},1.0,2.0",  # line 5 and 6: the same track with different values
        f"{ids[2]},1.5,2.0",
        f"{ids[3]},,",  # line 7: every value missing
        f"{ids[4]},inf,1.0",  # line 8: not finite
        f"https://open.spotify.com/track/{ids[5]}?si=x,3.0,",  # line 9: URL id, one missing
        f"{ids[0]},1.0,2.0",  # line 10: identical repeat of line 2
    ]
    source = tmp_path / "bad.csv"
    source.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as caught:
        ingest_feature_table(source, data_dir, "bad")
    message = str(caught.value)
    assert "\n" not in message and "6 bad line(s)" in message and "--skip-bad-rows" in message
    for part in ("line 3: 'not-an-id'", "line 4: column f0: 'abc'", "line 5: track", "line 6"):
        assert part in message
    assert not DataLayout(data_dir).feature_info("bad").exists()

    report = ingest_feature_table(source, data_dir, "bad", skip_bad_rows=True)
    assert [p.line for p in report.problems] == [3, 4, 5, 6, 7, 8]
    assert "every value is missing" in report.problems[4].message
    assert "not finite" in report.problems[5].message
    assert report.duplicates == 1 and report.missing == {"f1": 1} and report.missing_lines == [9]
    stored = get_feature_set("bad", DataLayout(data_dir)).table(DataLayout(data_dir)).read()
    assert sorted(stored["track_id"]) == sorted([ids[0], ids[5]])
    assert (
        stored.set_index("track_id").loc[ids[5], "f1"]
        != stored.set_index("track_id").loc[ids[5], "f1"]
    )  # NaN: kept as missing
    record = DataLayout(data_dir).feature_info("bad").read()["provenance"]
    assert record["bad_rows"] == 6 and record["missing_values"] == {"f1": 1}
    assert record["bad_row_examples"][0].startswith("line 3:")


def test_whole_table_problems_are_one_line_errors(
    charted: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    data_dir, table = charted
    with_text = table.assign(genre="pop")
    source = _csv(tmp_path / "t.csv", with_text)
    with pytest.raises(DataError, match=r"column 'genre' is not numeric.*--exclude-columns genre"):
        ingest_feature_table(source, data_dir, "t")
    assert ingest_feature_table(source, data_dir, "t", exclude_columns=["genre"]).columns == [
        "f0",
        "f1",
        "f2",
        "f3",
    ]
    renamed = _csv(tmp_path / "r.csv", table.rename(columns={"track_id": "uri"}))
    with pytest.raises(DataError, match=r"no id column 'track_id'.*--id-column"):
        ingest_feature_table(renamed, data_dir, "r")
    assert ingest_feature_table(renamed, data_dir, "r", id_column="uri").rows_stored == 40
    for name, problem in (
        ("essentia", "taken"),
        ("Bad-Name", "lower-case"),
        ("popularity", "taken"),
    ):
        with pytest.raises(DataError, match=problem):
            ingest_feature_table(source, data_dir, name, exclude_columns=["genre"])
    reserved = _csv(tmp_path / "x.csv", table.rename(columns={"f0": "region"}))
    with pytest.raises(DataError, match="'region' is a name the store uses"):
        ingest_feature_table(reserved, data_dir, "x")
    (tmp_path / "dup.csv").write_text("track_id,a,a\n")
    with pytest.raises(DataError, match="duplicate column name"):
        ingest_feature_table(tmp_path / "dup.csv", data_dir, "dup")
    (tmp_path / "short.csv").write_text(f"track_id,a,b\n{table.track_id[0]},1\n")
    with pytest.raises(DataError, match=r"line.* do not have the header's 3 cells \(lines 2\)"):
        ingest_feature_table(tmp_path / "short.csv", data_dir, "short")


def test_parquet_tables_with_uri_ids(charted: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    data_dir, table = charted
    frame = table.assign(track_id="spotify:track:" + table["track_id"]).astype({"f1": "float32"})
    frame.index = np.arange(100, 140)  # a stored pandas index must not matter
    frame.to_parquet(tmp_path / "emb.parquet")
    report = ingest_feature_table(tmp_path / "emb.parquet", data_dir, "emb")
    assert report.unit == "row" and report.rows_stored == 40
    stored = get_feature_set("emb", DataLayout(data_dir)).table(DataLayout(data_dir)).read()
    assert set(stored["track_id"]) == set(table["track_id"])


def test_feast_serves_the_table_at_the_debut(
    charted: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    data_dir, table = charted
    ingest_feature_table(_csv(tmp_path / "desc.csv", table), data_dir, "descriptors")
    build_targets(data_dir, horizon=4)
    store.apply(data_dir)
    pop = DataLayout(data_dir).popularity.read(["track_id", "region", "period", "debut_date"])
    rows = pop[pop["period"] == "weekly"].drop(columns="period")
    rows = rows.rename(columns={"debut_date": "event_timestamp"}).reset_index(drop=True)
    frame, arrays = store.feature_inputs(data_dir, "descriptors", rows)
    assert arrays is None and len(frame) == len(rows)
    expected = table.set_index("track_id").loc[rows["track_id"], "f2"].to_numpy()
    np.testing.assert_allclose(frame["f2"].to_numpy(), expected)
    # before the track's first chart the descriptors are not known yet
    early = rows.assign(event_timestamp=rows["event_timestamp"] - pd.Timedelta(days=1))
    frame, _ = store.feature_inputs(data_dir, "descriptors", early)
    assert frame["f2"].isna().all()
    assert "descriptors_v1" in store.info(data_dir)


def test_cli_ingest_features_prints_the_summary_and_fails_cleanly(
    charted: tuple[Path, pd.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data_dir, table = charted
    source = _csv(tmp_path / "desc.csv", table.assign(note="x"))
    args = ["ingest", "features", str(source), "--name", "desc", "--data-dir", str(data_dir)]
    assert cli_main(args) == 2
    assert "benchmark: error:" in capsys.readouterr().err
    assert cli_main([*args, "--exclude-columns", "note", "--description", "four numbers"]) == 0
    out = capsys.readouterr().out
    assert "feature set desc version 1 (Feast service desc_v1): 40 tracks x 4 columns" in out
    assert "columns left out on request: note" in out and "benchmark store apply" in out
    assert get_feature_set("desc", DataLayout(data_dir)).description == "four numbers"
    assert cli_main(["features", "list", "--data-dir", str(data_dir)]) == 0
    assert "desc_v1" in capsys.readouterr().out


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(BIN / "benchmark"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


TINY = """
n_folds = 3
n_trials = 2
bootstrap = 100
horizon = 4

[models.lightgbm]
max_estimators = 50
min_child_samples = 3
"""


@pytest.mark.slow
@pytest.mark.parametrize("period", ["weekly", "daily"])
def test_cli_runs_tabular_models_on_ingested_tables_side_by_side(
    tmp_path: Path, period: str
) -> None:
    # daily: the 28-day burn-in at the start of the data is 28 charts
    charts = 16 if period == "weekly" else 45
    table = write_chart_files(
        tmp_path / "charts", n_tracks=90, n_charts=charts, chart_size=30, period=period, seed=4
    )
    _csv(tmp_path / "a.csv", table)
    _csv(tmp_path / "b.csv", table[["track_id", "f1", "f2"]])
    (tmp_path / "tiny.toml").write_text(TINY)
    data = str(tmp_path / "data")
    steps = [
        ("ingest", "charts", str(tmp_path / "charts"), "--data-dir", data),
        ("ingest", "features", "a.csv", "--name", "table_a", "--data-dir", data),
        ("ingest", "features", "b.csv", "--name", "table_b", "--data-dir", data),
        (
            "run",
            "--data-dir",
            data,
            "--suite",
            "region_mean,lightgbm,lightgbm[table_b],oracle",
            "--features",
            "table_a",
            "--period",
            period,
            "--config",
            "tiny.toml",
        ),
    ]
    for step in steps:
        done = _cli(*step, cwd=tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "peak memory:" in done.stdout and "evaluate (bootstrap)" in done.stdout
    summary = pd.read_csv(tmp_path / "results" / "data" / "summary.csv")
    assert {"region_mean", "lightgbm[table_a]", "lightgbm[table_b]"} == set(summary["model"])
    text = (tmp_path / "results" / "data" / "summary.md").read_text()
    assert f"chart period: {period}" in text and "no oracle" in text
    assert "feature set table_a" in text and "ingested from a.csv" in text

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("data")
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'model'")
    tags = {r.data.tags["model"]: r.data.tags for r in runs}
    assert tags["lightgbm[table_b]"]["feature_service"] == "table_b_v1"
    assert tags["lightgbm[table_a]"]["feature_set_source"] == "table"
    assert tags["lightgbm[table_a]"]["feature_set_version"] == "1"
    record = json.loads((tmp_path / "data" / "features" / "table_a.json").read_text())
    assert tags["lightgbm[table_a]"]["feature_set_sha256"] == record["provenance"]["sha256"]
