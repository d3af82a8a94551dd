"""The data-dir layout: checksummed atomic tables, checked reads, one writer at a time."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicpop.benchmark.cli import main as cli_main
from musicpop.benchmark.pipeline import Pipeline
from musicpop.features.errors import DataError
from musicpop.features.layout import TABLES, DataLayout, atomic_file, file_checksum


def _streams(n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "region": "us",
            "period": "weekly",
            "chart_date": pd.Timestamp("2020-01-03")
            + pd.to_timedelta(np.arange(n) // 200 * 7, "D"),
            "track_id": [f"{i:022d}" for i in range(n)],
            "rank": np.arange(n) % 200 + 1,
            "streams": rng.integers(10_000, 10_000_000, n),
            "title": "a title",
            "artist": "someone",
            "source_file": "charts.csv",
        }
    )


def test_a_table_round_trips_with_its_checksum(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    frame = _streams()
    layout.streams.write(frame, metadata={"note": "x"})
    pd.testing.assert_frame_equal(layout.streams.read(), frame)
    assert len(file_checksum(layout.streams.path)) == 64
    assert layout.streams.metadata()["note"] == "x"
    assert not list(tmp_path.glob(".*tmp"))


def test_zero_bytes_in_the_middle_are_caught_with_the_command_to_rebuild(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe that once changed 9 track ids silently: now a one-line error."""
    layout = DataLayout(tmp_path)
    layout.streams.write(_streams())
    data = bytearray(layout.streams.path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(8)
    layout.streams.path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"streams\.parquet: damaged .*benchmark ingest charts"):
        layout.streams.read()
    assert cli_main(["targets", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "streams.parquet" in err and "benchmark ingest charts" in err


def test_truncated_and_missing_tables_are_one_line_errors(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    with pytest.raises(
        DataError, match=r"clips\.parquet: not found; build it with `benchmark ingest"
    ):
        layout.clips.read()
    layout.streams.write(_streams())
    layout.streams.path.write_bytes(layout.streams.path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"streams\.parquet: not a readable Parquet file"):
        layout.streams.read()
    pd.DataFrame({"track_id": ["x"]}).to_parquet(layout.catalog.path)
    with pytest.raises(DataError, match=r"catalog\.parquet: missing column\(s\) song_id"):
        layout.catalog.read()
    assert layout.clips.read(["track_id"], missing_ok=True).empty


def test_a_failed_write_leaves_the_old_table_and_no_temporary_file(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    layout.streams.write(_streams(10))
    before = layout.streams.path.read_bytes()
    with pytest.raises(ValueError, match="refusing to write"):
        layout.streams.write(_streams(10).drop(columns="rank"))
    with pytest.raises(RuntimeError), atomic_file(layout.streams.path) as handle:
        handle.write(b"half")
        raise RuntimeError
    assert layout.streams.path.read_bytes() == before
    assert not list(tmp_path.glob(".*"))


def test_every_table_name_is_owned_by_the_layout() -> None:
    """No module but features/layout.py spells a table's file name."""
    root = Path(__file__).resolve().parents[1]
    names = [Path(spec.path).name for spec in TABLES.values()]
    offenders = []
    for path in (root / "benchmark").rglob("*.py"), (root / "features").rglob("*.py"):
        for file in path:
            if file.name == "layout.py":
                continue
            text = file.read_text()
            offenders += [f"{file.relative_to(root)}: {n}" for n in names if f'"{n}"' in text]
    assert offenders == []


def test_a_second_writer_waits_or_fails_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first writer is another process (within one process the lock is re-entrant)."""
    import multiprocessing

    layout = DataLayout(tmp_path)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    done = ctx.Event()
    process = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, done))
    process.start()
    try:
        assert ready.wait(60)
        with pytest.raises(DataError, match="another benchmark command is writing"):
            with layout.writing("second", no_wait=True):
                pass
        threading.Timer(1.0, done.set).start()
        with layout.writing("second"):  # waits for the first to finish, and says so
            assert not process.is_alive() or done.is_set()
        assert "waiting for another command writing" in capsys.readouterr().err
    finally:
        done.set()
        process.join(30)


def _hold_lock(root: str, ready, done) -> None:
    with DataLayout(root).writing("holder"):
        ready.set()
        done.wait(30)


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]", '{"targets": 5}'])
def test_a_damaged_pipeline_state_resets_with_a_warning(tmp_path: Path, content: str) -> None:
    layout = DataLayout(tmp_path)
    layout.pipeline_state.path.write_text(content)
    pipeline = Pipeline(layout)
    ran = []
    with pytest.warns(UserWarning, match="pipeline_state.json"):
        pipeline.stage("targets", lambda: ran.append(1), params={"h": 26})
    assert ran == [1]
    pipeline.stage("targets", lambda: ran.append(2), params={"h": 26})
    assert ran == [1]  # the state was rewritten: the stage is up to date now
