"""The Feast store on a tiny synthetic data dir: apply, materialize, joins, mels, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicpop.benchmark.cli import main as cli_main
from musicpop.benchmark.perf.store import write_synthetic_tables
from musicpop.features import store
from musicpop.features.errors import DataError

FEAST = Path(sys.executable).with_name("feast")


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A tiny data dir (12 tracks x 2 regions, 2 clips each), applied and materialized."""
    data_dir = tmp_path_factory.mktemp("store") / "data"
    ids = write_synthetic_tables(data_dir, tracks=12, regions=2, features=4, clips=2, seed=1)
    store.apply(data_dir)
    store.materialize(data_dir)
    return data_dir, ids


def _entity_rows(ids: list[str]) -> pd.DataFrame:
    # track i is released 2020-01-01 + i days; weekly targets are known 8 weeks after debut
    return pd.DataFrame(
        {
            "track_id": [ids[3], ids[0], ids[3], ids[3], ids[11], ids[0]],
            "region": ["us", "gb", "us", "us", "us", "gb"],
            "event_timestamp": pd.to_datetime(
                [
                    "2024-01-01",
                    "2024-01-01",
                    "2024-01-01",
                    "2019-06-01",
                    "2020-01-05",
                    "2024-01-01",
                ],
                utc=True,
            ),
            "fold": [0, 1, 2, 3, 4, 5],
        },
        index=[50, 40, 30, 20, 10, 0],
    )


def test_training_frame_one_row_per_entity_row_in_order(applied: tuple[Path, list[str]]) -> None:
    data_dir, ids = applied
    rows = _entity_rows(ids)
    frame = store.training_frame(data_dir, "classical_v1", rows)

    assert len(frame) == len(rows)
    assert list(frame.index) == list(rows.index)
    assert frame["track_id"].tolist() == rows["track_id"].tolist()
    assert frame["fold"].tolist() == rows["fold"].tolist()

    lowlevel = pd.read_parquet(data_dir / "features" / "essentia_lowlevel.parquet").set_index(
        "track_id"
    )
    column = "lowlevel.descriptor_0.mean"  # dotted names come back unchanged
    assert column in frame.columns
    assert frame.loc[50, column] == pytest.approx(lowlevel.loc[ids[3], column])
    assert frame.loc[30, column] == pytest.approx(lowlevel.loc[ids[3], column])
    assert frame.loc[40, column] == pytest.approx(lowlevel.loc[ids[0], column])
    # before release (2019) and before track 11's release (2020-01-12): nothing is known yet
    assert np.isnan(frame.loc[20, column])
    assert np.isnan(frame.loc[10, column])

    popularity = pd.read_parquet(data_dir / "popularity.parquet")
    weekly = popularity[popularity["period"] == "weekly"].set_index(["track_id", "region"])
    assert frame.loc[50, "sum"] == pytest.approx(weekly.loc[(ids[3], "us"), "sum"])
    assert frame.loc[0, "sum"] == pytest.approx(weekly.loc[(ids[0], "gb"), "sum"])
    assert "curve" not in frame.columns  # classical_v1 holds the scalar targets only


def test_services_hold_their_views(applied: tuple[Path, list[str]]) -> None:
    data_dir, ids = applied
    rows = _entity_rows(ids).iloc[:2]
    mp2 = store.training_frame(data_dir, "mp2_v1", rows)
    mp3 = store.training_frame(data_dir, "mp3_v1", rows)
    assert {"mel", "n_mels", "n_frames", "sum", "debut"} <= set(mp2.columns)
    assert "curve" not in mp2.columns and "curve" in mp3.columns
    assert len(mp3.loc[50, "curve"]) == 8
    mel = store.decode_mel(mp2.loc[50, "mel"], mp2.loc[50, "n_mels"], mp2.loc[50, "n_frames"])
    clip0 = store.load_mels(data_dir, [ids[3]])[ids[3]][0]
    np.testing.assert_array_equal(mel, clip0)

    fs = store.feature_store(data_dir)
    for name in store.SERVICES:
        assert fs.get_feature_service(name).description


def test_popularity_view_serves_one_period(tmp_path: Path) -> None:
    ids = write_synthetic_tables(tmp_path, tracks=3, regions=1, features=2, seed=2)
    store.apply(tmp_path, period="daily")
    rows = pd.DataFrame(
        {"track_id": ids, "region": "us", "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")}
    )
    frame = store.training_frame(tmp_path, "classical_v1", rows)
    popularity = pd.read_parquet(tmp_path / "popularity.parquet")
    daily = popularity[popularity["period"] == "daily"].set_index("track_id")
    np.testing.assert_allclose(frame["sum"], daily.loc[ids, "sum"])
    assert (tmp_path / "feast" / "popularity_daily.parquet").is_file()


def test_online_features_after_materialize(applied: tuple[Path, list[str]]) -> None:
    data_dir, ids = applied
    fs = store.feature_store(data_dir)
    column = "lowlevel.descriptor_1.stdev"
    online = fs.get_online_features(
        features=[f"essentia_lowlevel:{column}"], entity_rows=[{"track_id": ids[5]}]
    ).to_dict()
    lowlevel = pd.read_parquet(data_dir / "features" / "essentia_lowlevel.parquet")
    expected = lowlevel.set_index("track_id").loc[ids[5], column]
    assert online[column][0] == pytest.approx(expected)


def test_load_mels_returns_every_clip(applied: tuple[Path, list[str]]) -> None:
    data_dir, ids = applied
    mels = store.load_mels(data_dir, [ids[2], ids[1], ids[2]])
    assert list(mels) == [ids[2], ids[1]]
    mel = pd.read_parquet(data_dir / "features" / "mel.parquet")
    source = mel[mel["track_id"] == ids[1]].sort_values("clip_id")
    assert len(mels[ids[1]]) == 2
    for array, blob in zip(mels[ids[1]], source["mel"], strict=True):
        assert array.dtype == np.float32 and array.shape == (8, 10)
        np.testing.assert_array_equal(array, np.frombuffer(blob, np.float16).reshape(8, 10))
    with pytest.raises(DataError, match="no spectrogram"):
        store.load_mels(data_dir, ["0" * 22])


def test_info_describes_views_and_services(applied: tuple[Path, list[str]]) -> None:
    data_dir, _ = applied
    text = store.info(data_dir)
    for name in ("essentia_lowlevel", "mel_spectrogram", "popularity", *store.SERVICES):
        assert name in text
    assert "online keys 24" in text  # 12 tracks x 2 regions materialized
    assert "popularity_weekly.parquet" in text


def test_bad_input_gives_one_clear_error(tmp_path: Path, applied: tuple[Path, list[str]]) -> None:
    with pytest.raises(DataError, match=r"essentia_lowlevel\.parquet: missing"):
        store.apply(tmp_path)
    data_dir, ids = applied
    with pytest.raises(DataError, match="unknown feature service"):
        store.training_frame(data_dir, "nope_v1", _entity_rows(ids))
    with pytest.raises(DataError, match="lack column"):
        store.training_frame(data_dir, "classical_v1", _entity_rows(ids).drop(columns="region"))
    broken = tmp_path / "broken"
    write_synthetic_tables(broken, tracks=2, regions=1, features=2)
    pd.read_parquet(broken / "popularity.parquet").drop(columns="sum").to_parquet(
        broken / "popularity.parquet"
    )
    with pytest.raises(DataError, match=r"popularity\.parquet: missing column\(s\) sum"):
        store.apply(broken)


def test_file_offline_store_trap_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feast's `file` offline store drops repeated entity rows; training_frame refuses that."""
    config = (store.REPO_DIR / "feature_store.yaml").read_text()
    (tmp_path / "file_store.yaml").write_text(config.replace("type: duckdb", "type: file"))
    monkeypatch.setenv(store.CONFIG_ENV, str(tmp_path / "file_store.yaml"))
    data_dir = tmp_path / "data"
    ids = write_synthetic_tables(data_dir, tracks=12, regions=2, features=2, seed=1)
    store.apply(data_dir)
    with pytest.raises(RuntimeError, match=r"Feast returned [0-5] rows for 6 entity rows"):
        store.training_frame(data_dir, "classical_v1", _entity_rows(ids))


def test_cli_store_info(applied: tuple[Path, list[str]], capsys: pytest.CaptureFixture) -> None:
    data_dir, _ = applied
    assert cli_main(["store", "info", "--data-dir", str(data_dir)]) == 0
    assert "classical_v1" in capsys.readouterr().out


@pytest.mark.slow  # three `feast` processes: about 30 s on 2 cores
def test_plain_feast_cli_works_on_the_repo(tmp_path: Path) -> None:
    ids = write_synthetic_tables(tmp_path, tracks=4, regions=1, features=2, seed=3)
    store.write_sources(tmp_path)
    env = {**os.environ, "MUSICPOP_DATA_DIR": str(tmp_path)}
    env.pop("MUSICPOP_FEAST_CONFIG", None)
    repo = store.REPO_DIR

    def feast(*args: str) -> str:
        done = subprocess.run(
            [str(FEAST), "-c", str(repo), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "Created feature service mp3_v1" in feast("apply")
    listed = feast("feature-views", "list")
    for name in ("essentia_lowlevel", "mel_spectrogram", "popularity"):
        assert name in listed
    feast("materialize-incremental", "2030-01-01T00:00:00")
    fs = store.feature_store(tmp_path)
    online = fs.get_online_features(
        features=fs.get_feature_service("classical_v1"),
        entity_rows=[{"track_id": ids[0], "region": "us"}],
    ).to_dict()
    assert online["sum"][0] is not None
