"""The Feast store on a tiny synthetic data dir: apply, materialize, joins, references, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers import write_synthetic_tables

from musicpop.benchmark.cli import main as cli_main
from musicpop.features import store
from musicpop.features.errors import DataError
from musicpop.features.feature_sets import CLIP_SCHEMA, decode_array, feature_sets, get_feature_set

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
    frame = store.training_frame(data_dir, "essentia_v1", rows)

    assert len(frame) == len(rows)
    assert list(frame.index) == list(rows.index)
    assert frame["track_id"].tolist() == rows["track_id"].tolist()
    assert frame["fold"].tolist() == rows["fold"].tolist()

    essentia = pd.read_parquet(data_dir / "features" / "essentia.parquet").set_index("track_id")
    column = "lowlevel.descriptor_0.mean"  # dotted names come back unchanged
    assert column in frame.columns
    assert frame.loc[50, column] == pytest.approx(essentia.loc[ids[3], column])
    assert frame.loc[30, column] == pytest.approx(essentia.loc[ids[3], column])
    assert frame.loc[40, column] == pytest.approx(essentia.loc[ids[0], column])
    # before release (2019) and before track 11's release (2020-01-12): nothing is known yet
    assert np.isnan(frame.loc[20, column])
    assert np.isnan(frame.loc[10, column])
    # services serve model inputs only: no target ever comes back
    assert not {"sum", "debut", "curve", "peak"} & set(frame.columns)


def test_every_feature_set_has_a_view_and_a_service(applied: tuple[Path, list[str]]) -> None:
    data_dir, _ = applied
    fs = store.feature_store(data_dir)
    views = {v.name for v in fs.list_feature_views()}
    services = {s.name: s for s in fs.list_feature_services()}
    assert views == {"essentia", "mel", "popularity"}
    assert set(services) == {"essentia_v1", "mel_v1"}
    for name, service in services.items():
        assert service.description
        assert [p.name for p in service.feature_view_projections] == [name.rsplit("_v", 1)[0]]


def test_clip_sets_are_served_as_checked_references(applied: tuple[Path, list[str]]) -> None:
    data_dir, ids = applied
    rows = _entity_rows(ids).iloc[:2]
    refs, arrays = store.feature_inputs(data_dir, "mel", rows)
    assert refs.loc[50, "mel__n_clips"] == 2 and list(refs.loc[50, "mel__shape"]) == [8, 10]
    assert set(arrays) == {ids[3], ids[0]} and len(arrays[ids[3]]) == 2
    mel = pd.read_parquet(data_dir / "features" / "mel.parquet")
    source = mel[mel["track_id"] == ids[3]].sort_values("clip_id")
    for array, (_, row) in zip(arrays[ids[3]], source.iterrows(), strict=True):
        assert array.dtype == np.float32 and array.shape == (8, 10)
        np.testing.assert_array_equal(array, decode_array(row["array"], row["dtype"], row["shape"]))


def test_changed_arrays_are_refused_until_the_store_is_applied_again(tmp_path: Path) -> None:
    ids = write_synthetic_tables(tmp_path, tracks=3, regions=1, features=2, seed=4)
    store.apply(tmp_path)
    mel_table = get_feature_set("mel").table(store.DataLayout(tmp_path))
    mel = mel_table.read_arrow().to_pandas()
    mel.loc[0, "array"] = np.zeros(80, np.float16).tobytes()
    mel_table.write(pa.Table.from_pandas(mel, schema=CLIP_SCHEMA, preserve_index=False))
    rows = pd.DataFrame(
        {"track_id": ids, "region": "us", "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")}
    )
    with pytest.raises(DataError, match="differ from what the Feast store references"):
        store.feature_inputs(tmp_path, "mel", rows)
    store.apply(tmp_path)
    _, arrays = store.feature_inputs(tmp_path, "mel", rows)
    assert not np.any(arrays[mel.loc[0, "track_id"]][0])


def test_popularity_view_serves_one_period(tmp_path: Path) -> None:
    ids = write_synthetic_tables(tmp_path, tracks=3, regions=1, features=2, seed=2)
    store.apply(tmp_path, period="daily")
    fs = store.feature_store(tmp_path)
    online_before = fs.get_feature_view("popularity").description
    assert "daily" in online_before
    rows = pd.DataFrame(
        {"track_id": ids, "region": "us", "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC")}
    )
    joined = fs.get_historical_features(entity_df=rows, features=["popularity:sum"]).to_df()
    popularity = pd.read_parquet(tmp_path / "popularity.parquet")
    daily = popularity[popularity["period"] == "daily"].set_index("track_id")
    joined = joined.set_index("track_id").loc[ids]
    np.testing.assert_allclose(joined["sum"], daily.loc[ids, "sum"])
    assert (tmp_path / "feast" / "popularity_daily.parquet").is_file()


def test_online_features_after_materialize(applied: tuple[Path, list[str]]) -> None:
    data_dir, ids = applied
    fs = store.feature_store(data_dir)
    column = "lowlevel.descriptor_1.stdev"
    online = fs.get_online_features(
        features=[f"essentia:{column}"], entity_rows=[{"track_id": ids[5]}]
    ).to_dict()
    essentia = pd.read_parquet(data_dir / "features" / "essentia.parquet")
    expected = essentia.set_index("track_id").loc[ids[5], column]
    assert online[column][0] == pytest.approx(expected)


def test_info_describes_views_and_services(applied: tuple[Path, list[str]]) -> None:
    data_dir, _ = applied
    text = store.info(data_dir)
    for name in ("essentia", "mel", "popularity", "essentia_v1", "mel_v1"):
        assert name in text
    assert "online keys 24" in text  # 12 tracks x 2 regions materialized
    assert "popularity_weekly.parquet" in text


def test_bad_input_gives_one_clear_error(tmp_path: Path, applied: tuple[Path, list[str]]) -> None:
    with pytest.raises(DataError, match=r"no feature table"):
        store.apply(tmp_path)
    data_dir, ids = applied
    with pytest.raises(DataError, match="unknown feature service"):
        store.training_frame(data_dir, "nope_v1", _entity_rows(ids))
    with pytest.raises(DataError, match="lack column"):
        store.training_frame(data_dir, "essentia_v1", _entity_rows(ids).drop(columns="region"))
    broken = tmp_path / "broken"
    write_synthetic_tables(broken, tracks=2, regions=1, features=2)
    pd.read_parquet(broken / "popularity.parquet").drop(columns="sum").to_parquet(
        broken / "popularity.parquet"
    )
    with pytest.raises(DataError, match=r"popularity\.parquet: missing column\(s\) sum"):
        store.apply(broken)


def test_damaged_registry_and_online_store_are_rebuilt(tmp_path: Path) -> None:
    ids = write_synthetic_tables(tmp_path, tracks=4, regions=1, features=2, seed=5)
    store.apply(tmp_path)
    store.materialize(tmp_path)
    registry, online = tmp_path / "feast" / "registry.db", tmp_path / "feast" / "online_store.db"
    rng = np.random.default_rng(0)
    for path in (registry, online):
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="benchmark store apply"):
        store.info(tmp_path)  # one clear line, no traceback
    with pytest.warns(UserWarning, match="damaged; rebuilding"):
        store.apply(tmp_path)
    store.materialize(tmp_path)
    online.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.warns(UserWarning, match="damaged; rebuilding"):
        store.materialize(tmp_path)
    fs = store.feature_store(tmp_path)
    values = fs.get_online_features(
        features=["essentia:lowlevel.descriptor_0.mean"], entity_rows=[{"track_id": ids[1]}]
    ).to_dict()
    assert values["lowlevel.descriptor_0.mean"][0] is not None


def test_file_offline_store_trap_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feast's `file` offline store drops repeated entity rows; training_frame refuses that."""
    config = (store.REPO_DIR / "feature_store.yaml").read_text()
    (tmp_path / "file_store.yaml").write_text(config.replace("type: duckdb", "type: file"))
    monkeypatch.setenv(store.CONFIG_ENV, str(tmp_path / "file_store.yaml"))
    data_dir = tmp_path / "data"
    ids = write_synthetic_tables(data_dir, tracks=12, regions=2, features=2, seed=1)
    store.apply(data_dir)
    with pytest.raises(RuntimeError, match=r"Feast returned [0-5] rows for 6 entity rows"):
        store.training_frame(data_dir, "essentia_v1", _entity_rows(ids))


def test_cli_store_info(applied: tuple[Path, list[str]], capsys: pytest.CaptureFixture) -> None:
    data_dir, _ = applied
    assert cli_main(["store", "info", "--data-dir", str(data_dir)]) == 0
    assert "essentia_v1" in capsys.readouterr().out
    assert set(feature_sets()) >= {"essentia", "mel"}


@pytest.mark.slow  # three `feast` processes: about 30 s on 2 cores
def test_plain_feast_cli_works_on_the_repo(tmp_path: Path) -> None:
    ids = write_synthetic_tables(tmp_path, tracks=4, regions=1, features=2, seed=3)
    store.write_sources(store.DataLayout(tmp_path))
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

    assert "Created feature service mel_v1" in feast("apply")
    listed = feast("feature-views", "list")
    for name in ("essentia", "mel", "popularity"):
        assert name in listed
    feast("materialize-incremental", "2030-01-01T00:00:00")
    fs = store.feature_store(tmp_path)
    online = fs.get_online_features(
        features=fs.get_feature_service("essentia_v1"), entity_rows=[{"track_id": ids[0]}]
    ).to_dict()
    assert online["lowlevel.descriptor_0.mean"][0] is not None
