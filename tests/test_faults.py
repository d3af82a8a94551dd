"""Fault injection: the hostile probes of issue #14, each against the real ``benchmark`` CLI.

This file is the one place to look for how the platform behaves under faults. Each probe of the
issue's table (and those the CLI sweep added) has a test here that runs the real command
(``musicpop.benchmark.cli.main([...])`` in process, or ``python -m musicpop.benchmark.cli`` in a
subprocess where processes are the point) and asserts the behaviour promised: a clear one-line
``benchmark: error: ...`` naming the file and what to run, or nothing lost, or the fault
repaired and counted. No mocks: real tables, real Feast, real MLflow, real audio, real charts.

| probe | test |
|---|---|
| two ``ingest charts`` at once on one data dir (real weekly files) | test_two_concurrent_ingests_give_exactly_the_union |
| streams -5 and 0; ranks 0, -3, one rank three times | test_impossible_streams_and_ranks_are_rejected_by_file_and_line |
| a number cut short at the end of a file | test_a_number_cut_short_in_the_last_line_is_rejected |
| one extraction cache file truncated | test_a_truncated_extraction_cache_entry_is_recomputed_and_counted |
| Feast registry / online store overwritten with random bytes | test_damaged_feast_registry_and_online_store_are_rebuilt |
| ``pipeline_state.json`` holding ``{not json`` or ``[1,2,3]`` | test_a_damaged_pipeline_state_resets_and_the_run_completes |
| a derived table damaged between two runs | test_a_damaged_derived_table_is_made_again_by_run |
| truncated clips / catalog / mapping read by ingest audio, extract | test_truncated_tables_are_one_line_errors_and_nothing_is_lost |
| 8 zero bytes in the middle of ``streams.parquet`` | test_zero_bytes_in_the_middle_of_streams_stop_targets |
| a mapping row pointing at a symlink to a system file | test_paths_that_resolve_outside_the_audio_folder_are_rejected |
| SIGKILL of ``benchmark ui`` | test_sigkill_of_benchmark_ui_leaves_no_server_listening |
| a 10-minute audio file | test_a_ten_minute_clip_is_cut_and_counted |
| a checkpoint that is a pickle with a payload | test_a_checkpoint_carrying_code_is_refused_and_nothing_runs |

Unit-level tests of the same mechanisms stay beside their modules: the layout's checksums, lock
and atomic writes (``test_layout.py``), the pipeline-state reset (``test_layout.py``), the UI's
SIGTERM clean-up with runs listed (``test_tracking.py``), SIGKILL during extraction
(``test_extract.py``).
"""

from __future__ import annotations

import json
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from helpers import (
    port_open,
    process_group_alive,
    server_group,
    track_ids,
    write_synthetic_tables,
)

from musicpop.benchmark.cli import main as cli_main
from musicpop.features.charts import ingest_charts
from musicpop.features.layout import DataLayout

RATE = 16_000
NOTE = (
    ',,,"Note that these figures are generated using a formula that protects against any '
    'artificial inflation of chart positions.",'
)
CLI = [sys.executable, "-m", "musicpop.benchmark.cli"]


# --- helpers --------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Run ``benchmark ARGS`` in process; return (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = cli_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line_error(status: int, err: str, *needles: str) -> str:
    """Assert a one-line ``benchmark: error:`` (exit status 2) that contains every needle."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("benchmark: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _legacy_chart(
    folder: Path,
    region: str,
    start: date,
    rows: Sequence[tuple[int | str, int | str, str]],
) -> Path:
    """An old spotifycharts.com weekly CSV: ``rows`` of (position, streams, track id)."""
    end = start + timedelta(days=7)
    path = folder / region / f"{start}--{end}{region}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [NOTE, 'Position,"Track Name",Artist,Streams,URL']
    lines += [
        f'{rank},"Song {i}","Artist {i}",{streams},https://open.spotify.com/track/{tid}'
        for i, (rank, streams, tid) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _new_chart(
    folder: Path, streams: Sequence[int], ids: Sequence[str], *, quoted: bool
) -> tuple[Path, str]:
    """A charts.spotify.com weekly CSV (CRLF, byte-order mark), ranks 1.., as text."""
    path = folder / "regional-us-weekly-2023-01-05.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "rank,uri,artist_names,track_name,source,peak_rank,previous_rank,weeks_on_chart,streams"
    ]
    for rank, (count, tid) in enumerate(zip(streams, ids, strict=True), start=1):
        number = f'"{count}"' if quoted else str(count)
        lines.append(
            f'{rank},"spotify:track:{tid}","Artist {rank}","Song {rank}","Label",{rank},-1,1,{number}'
        )
    return path, "\ufeff" + "\r\n".join(lines) + "\r\n"


def _clip(path: Path, seconds: float, freq: float = 440.0) -> Path:
    """A mono tone with a slow tremolo (not silent, not constant)."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE)
    return path


def _charted_with_audio(root: Path, n: int = 3, seconds: float = 2.0) -> tuple[Path, list[str]]:
    """A data dir with ``n`` charted tracks and one clip each, ingested through the CLI."""
    ids = track_ids(n, np.random.default_rng(7))
    charts = root / "charts"
    _legacy_chart(charts, "us", date(2020, 1, 3), [(i + 1, 1000 - i, t) for i, t in enumerate(ids)])
    for i, tid in enumerate(ids):
        _clip(root / "audio" / f"{tid}.wav", seconds, freq=220.0 * (i + 1))
    data = root / "data"
    assert cli_main(["ingest", "charts", str(charts), "--data-dir", str(data)]) == 0
    assert cli_main(["ingest", "audio", str(root / "audio"), "--data-dir", str(data)]) == 0
    return data, ids


def _snapshot(data: Path) -> dict[str, bytes]:
    """Every file of a data dir (outside the cache) and its bytes."""
    return {
        str(p.relative_to(data)): p.read_bytes()
        for p in sorted(data.rglob("*"))
        if p.is_file() and "cache" not in p.parts and p.name != ".lock"
    }


def _data_rows(files: Sequence[Path]) -> int:
    """Rows of old spotifycharts CSVs, counted without the reader (HTML pages count none)."""
    total = 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        if not text.lstrip().startswith("<"):
            total += len([line for line in text.splitlines() if line.strip()]) - 2
    return total


# --- one writer at a time -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_two_concurrent_ingests_give_exactly_the_union(shared_data: Path, tmp_path: Path) -> None:
    """us+gb+de and jp+br+mx of the real weekly files, two processes started at once: exactly
    the rows and tracks of ingesting them one after the other (before: half the rows lost).

    The test holds the data dir's lock while both start, so that they certainly overlap: both
    must wait (and say so), and a third with ``--no-wait`` must fail at once with one line.
    """
    weekly = shared_data / "charts" / "spotifycharts-weekly-2019-2021"
    first = [weekly / r for r in ("us", "gb", "de")]
    second = [weekly / r for r in ("jp", "br", "mx")]
    data = tmp_path / "concurrent"
    layout = DataLayout(data)
    errs = [tmp_path / f"ingest{i}.err" for i in range(2)]
    with layout.writing("test"):  # both start while the lock is held, so both must wait
        runs = [
            subprocess.Popen(
                [*CLI, "ingest", "charts", *map(str, paths), "--data-dir", str(data)],
                stdout=subprocess.PIPE,
                stderr=err.open("w"),
                text=True,
            )
            for paths, err in zip((first, second), errs, strict=True)
        ]
        refused = subprocess.run(
            [*CLI, "ingest", "charts", str(first[0]), "--data-dir", str(data), "--no-wait"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        _one_line_error(refused.returncode, refused.stderr, "another benchmark command is writing")
        # hold the lock until both have reached it and said that they wait (a busy machine may
        # still be importing them when the refused one is done)
        deadline = time.monotonic() + 120
        while not all("waiting for another command writing" in e.read_text() for e in errs):
            assert all(run.poll() is None for run in runs)  # waiting, not failed
            assert time.monotonic() < deadline, "the ingests never said that they wait"
            time.sleep(0.1)
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, err in zip(runs, errs, strict=True):
        assert run.returncode == 0, err.read_text()

    reference = tmp_path / "one_after_the_other"
    ingest_charts(first, reference, progress=False)
    ingest_charts(second, reference, progress=False)
    key = ["region", "period", "chart_date", "track_id"]
    got = pd.read_parquet(data / "streams.parquet").sort_values(key, ignore_index=True)
    want = pd.read_parquet(reference / "streams.parquet").sort_values(key, ignore_index=True)
    files = sorted(p for folder in first + second for p in folder.glob("*.csv"))
    assert len(got) == len(want) == _data_rows(files) == 6 * 113 * 200
    pd.testing.assert_frame_equal(got[key], want[key])
    assert set(got["region"]) == {"us", "gb", "de", "jp", "br", "mx"}
    catalog = pd.read_parquet(data / "catalog.parquet")
    assert set(catalog["track_id"]) == set(
        pd.read_parquet(reference / "catalog.parquet")["track_id"]
    )
    assert set(catalog["track_id"]) == set(got["track_id"])
    added = sorted(
        int(out.split(" added")[0].rsplit(", ", 1)[-1].replace(",", "")) for out, _ in outputs
    )
    assert sum(added) == len(got)


# --- plausible chart values -----------------------------------------------------------------


def test_impossible_streams_and_ranks_are_rejected_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: stored as read, popularity had ``sum = -5`` and ``peak_rank = -3``."""
    ids = track_ids(12, np.random.default_rng(1))
    rows = [
        (1, 1200, ids[0]),  # line 3: rank 1 three times -> all three rejected
        (1, 1100, ids[1]),
        (1, 1000, ids[2]),
        (4, -5, ids[3]),  # line 6
        (5, 0, ids[4]),  # line 7
        (0, 800, ids[5]),  # line 8
        (-3, 700, ids[6]),  # line 9
        *[(rank, 1000 - 50 * rank, ids[rank - 1]) for rank in range(8, 13)],  # lines 10-14
    ]
    chart = _legacy_chart(tmp_path / "charts", "us", date(2020, 1, 3), rows)
    data = tmp_path / "data"
    status, out, _ = _cli(capsys, "ingest", "charts", chart, "--data-dir", data)
    assert status == 0
    assert "REJECTED 7 rows" in out and f"{chart.resolve()}:6 (streams -5)" in out

    report = json.loads((data / "ingest_report.json").read_text())
    assert report["rejected_by_reason"] == {
        "duplicate_rank": 3,
        "streams_not_positive": 2,
        "rank_not_positive": 2,
    }
    lines = {(e["reason"], e["line"]) for e in report["rejected_examples"]}
    assert lines == {
        ("duplicate_rank", 3),
        ("duplicate_rank", 4),
        ("duplicate_rank", 5),
        ("streams_not_positive", 6),
        ("streams_not_positive", 7),
        ("rank_not_positive", 8),
        ("rank_not_positive", 9),
    }
    assert {e["file"] for e in report["rejected_examples"]} == {str(chart.resolve())}
    assert report["rejected_by_file"] == {str(chart.resolve()): report["rejected_by_reason"]}
    # ranks 1-7 are gone from this chart: kept, and said (the floor is then only a bound)
    assert report["charts_with_rank_gaps"] == 1
    assert report["rank_gap_examples"][0]["missing_ranks"] == [1, 2, 3, 4, 5, 6, 7]

    streams = pd.read_parquet(data / "streams.parquet")
    assert sorted(streams["rank"]) == [8, 9, 10, 11, 12]
    assert set(streams["track_id"]) == set(ids[7:12])
    assert cli_main(["targets", "--data-dir", str(data)]) == 0
    popularity = pd.read_parquet(data / "popularity.parquet")
    assert len(popularity) == 5
    assert (popularity["sum"] > 0).all() and (popularity["peak_rank"] >= 8).all()


@pytest.mark.parametrize(
    ("quoted", "cut"),
    [(False, 1), (False, 4), (True, 3)],
    ids=["unquoted-1-digit", "unquoted-4-digits", "quoted-3-digits"],
)
def test_a_number_cut_short_in_the_last_line_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quoted: bool, cut: int
) -> None:
    """A file cut inside its last field: before, ``3017438`` was stored as ``3017``."""
    ids = track_ids(20, np.random.default_rng(2))
    counts = [5_017_438 - 100_000 * i for i in range(20)]  # rank 20: 3,117,438
    path, text = _new_chart(tmp_path / "charts", counts, ids, quoted=quoted)
    path.write_text(text.rstrip("\r\n")[:-cut] if not quoted else text.rstrip("\r\n")[: -cut - 1])
    data = tmp_path / "data"
    status, out, _ = _cli(capsys, "ingest", "charts", path, "--data-dir", data)
    assert status == 0
    streams = pd.read_parquet(data / "streams.parquet")
    assert len(streams) == 19 and streams["streams"].min() == counts[18]
    assert ids[19] not in set(streams["track_id"])
    report = json.loads((data / "ingest_report.json").read_text())
    assert report["rejected_by_reason"] == {"cut_short": 1}
    assert report["rejected_examples"][0]["line"] == 21
    assert f"{path.resolve()}:21" in out and "cut_short" in out


def test_a_whole_last_line_without_a_newline_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: a file that merely lacks its final newline loses nothing."""
    ids = track_ids(20, np.random.default_rng(2))
    counts = [5_017_438 - 100_000 * i for i in range(20)]
    path, text = _new_chart(tmp_path / "charts", counts, ids, quoted=False)
    path.write_text(text.rstrip("\r\n"))
    status, out, _ = _cli(capsys, "ingest", "charts", path, "--data-dir", tmp_path / "data")
    assert status == 0 and "REJECTED" not in out
    assert len(pd.read_parquet(tmp_path / "data" / "streams.parquet")) == 20


# --- self-healing caches and derived state --------------------------------------------------


def test_a_truncated_extraction_cache_entry_is_recomputed_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a ``zipfile.BadZipFile`` traceback on every rerun, never redone."""
    data, _ = _charted_with_audio(tmp_path)
    extract = ("features", "extract", "--sets", "mel", "--workers", "1", "--data-dir", data)
    assert _cli(capsys, *extract)[0] == 0
    before = pd.read_parquet(data / "features" / "mel.parquet")
    entries = sorted((data / "cache").rglob("*.npz"))
    assert len(entries) == 3
    entries[1].write_bytes(entries[1].read_bytes()[:100])
    status, out, err = _cli(capsys, *extract)
    assert status == 0, err
    assert "1 extracted" in out and "2 from cache" in out
    assert "1 damaged cache entries recomputed" in out
    pd.testing.assert_frame_equal(pd.read_parquet(data / "features" / "mel.parquet"), before)
    status, out, _ = _cli(capsys, *extract)
    assert status == 0 and "0 extracted" in out and "3 from cache" in out


@pytest.mark.slow  # Feast apply/materialize several times: about 30 s on 2 cores
def test_damaged_feast_registry_and_online_store_are_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a traceback from ``store info``, ``store materialize`` and ``store apply``."""
    write_synthetic_tables(tmp_path, tracks=4, regions=1, features=2, seed=5)
    assert _cli(capsys, "store", "apply", "--data-dir", tmp_path)[0] == 0
    assert _cli(capsys, "store", "materialize", "--data-dir", tmp_path)[0] == 0
    feast = tmp_path / "feast"
    rng = np.random.default_rng(0)
    for name in ("registry.db", "online_store.db"):
        (feast / name).write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())

    status, _, err = _cli(capsys, "store", "info", "--data-dir", tmp_path)
    _one_line_error(status, err, str(feast), "damaged", "benchmark store apply")
    status, _, err = _cli(capsys, "store", "materialize", "--data-dir", tmp_path)
    _one_line_error(status, err, "damaged", "benchmark store apply")
    with pytest.warns(UserWarning, match=r"registry\.db: damaged; rebuilding"):
        assert _cli(capsys, "store", "apply", "--data-dir", tmp_path)[0] == 0
    assert _cli(capsys, "store", "materialize", "--data-dir", tmp_path)[0] == 0
    (feast / "online_store.db").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.warns(UserWarning, match=r"online_store\.db: damaged; rebuilding"):
        assert _cli(capsys, "store", "materialize", "--data-dir", tmp_path)[0] == 0
    status, out, _ = _cli(capsys, "store", "info", "--data-dir", tmp_path)
    assert status == 0 and "online keys 4" in out

    # a derived view source damaged: info says so, materialize stops, apply writes it again
    source = next(feast.glob("popularity_*.parquet"))
    source.write_bytes(source.read_bytes()[:200])
    status, out, _ = _cli(capsys, "store", "info", "--data-dir", tmp_path)
    assert status == 0 and "unusable (not a readable Parquet file" in out
    status, _, err = _cli(capsys, "store", "materialize", "--data-dir", tmp_path)
    _one_line_error(status, err, str(source), "benchmark store apply")
    assert _cli(capsys, "store", "apply", "--data-dir", tmp_path)[0] == 0
    assert _cli(capsys, "store", "materialize", "--data-dir", tmp_path)[0] == 0

    # a folder where the registry should be: said, not deleted
    (feast / "registry.db").unlink()
    (feast / "registry.db").mkdir()
    for action in ("apply", "info"):
        status, _, err = _cli(capsys, "store", action, "--data-dir", tmp_path)
        _one_line_error(status, err, "registry.db")
    assert (feast / "registry.db").is_dir()


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-song demo (enough rows for the quick profile's folds once censored rows are left
    out) with its mel set extracted (the one feature set the store needs)."""
    data = tmp_path_factory.mktemp("demo") / "demo"
    assert cli_main(["demo", "--out", str(data), "--songs", "16", "--regions", "2"]) == 0
    raw = data / "raw"
    assert cli_main(["ingest", "charts", str(raw / "charts"), "--data-dir", str(data)]) == 0
    mapping = ["--mapping", str(raw / "catalog.csv")]
    assert cli_main(["ingest", "audio", str(raw / "audio"), *mapping, "--data-dir", str(data)]) == 0
    extract = ["features", "extract", "--sets", "mel", "--workers", "1", "--data-dir", str(data)]
    assert cli_main(extract) == 0
    return data


@pytest.mark.slow  # a whole `benchmark run` per case: about 30 s each on 2 cores
@pytest.mark.parametrize("content", ["{not json", "[1,2,3]"], ids=["not-json", "a-list"])
def test_a_damaged_pipeline_state_resets_and_the_run_completes(
    small_demo: Path,
    tmp_path: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
    content: str,
) -> None:
    """Before: a JSONDecodeError / AttributeError traceback from ``benchmark run``."""
    state = small_demo / "pipeline_state.json"
    state.write_text(content)
    run = ["run", "--data-dir", small_demo, "--suite", "global_mean"]
    run += ["--tracking-uri", tracking_uri, "--results-dir", tmp_path / "results"]
    with pytest.warns(UserWarning, match=r"pipeline_state\.json.*every stage runs again"):
        status, out, err = _cli(capsys, *run)
    assert status == 0, err
    assert "global_mean" in out and "Traceback" not in err
    fingerprints = json.loads(state.read_text())
    assert isinstance(fingerprints, dict) and "targets" in fingerprints


@pytest.mark.slow  # a whole `benchmark run`: about 30 s on 2 cores
def test_a_damaged_derived_table_is_made_again_by_run(
    small_demo: Path,
    tmp_path: Path,
    tracking_uri: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stage whose output is damaged runs again instead of failing a later stage."""
    popularity = DataLayout(small_demo).popularity
    run = ["run", "--data-dir", small_demo, "--suite", "global_mean"]
    run += ["--tracking-uri", tracking_uri, "--results-dir", tmp_path / "results"]
    assert _cli(capsys, *run)[0] == 0
    want = popularity.read()
    popularity.path.write_bytes(popularity.path.read_bytes()[:500])
    status, out, err = _cli(capsys, *run)
    assert status == 0, err
    assert "[targets] done" in out and "[ingest charts] up to date" in out
    pd.testing.assert_frame_equal(popularity.read(), want)


# --- damaged and missing tables ----------------------------------------------------------------

# (table, damage, command, what the error must name); catalog + ingest audio rebuilds instead
TRUNCATED = [
    ("clips", "ingest audio", "delete it, then run `benchmark ingest audio FOLDER`"),
    ("clips", "features extract", "delete it, then run `benchmark ingest audio FOLDER`"),
    ("catalog_mapping", "ingest audio", "benchmark ingest audio FOLDER --mapping CSV"),
    ("catalog_mapping", "ingest charts", "benchmark ingest audio FOLDER --mapping CSV"),
    ("catalog", "features extract", "rebuild it with `benchmark ingest charts"),
]


@pytest.mark.parametrize(
    ("table", "command", "says"), TRUNCATED, ids=[f"{t}-{c}" for t, c, _ in TRUNCATED]
)
def test_truncated_tables_are_one_line_errors_and_nothing_is_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], table: str, command: str, says: str
) -> None:
    """Before: tracebacks from unguarded reads."""
    data, ids = _charted_with_audio(tmp_path)
    mapping = tmp_path / "audio" / "mapping.csv"
    mapping.write_text(f"path,track_id,song_id\n{ids[0]}.wav,{ids[0]},my-song\n")
    assert (
        cli_main(
            [
                "ingest",
                "audio",
                str(tmp_path / "audio"),
                "--mapping",
                str(mapping),
                "--data-dir",
                str(data),
            ]
        )
        == 0
    )
    damaged = getattr(DataLayout(data), table).path
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    before = _snapshot(data)
    args = {
        "ingest audio": ["ingest", "audio", tmp_path / "audio", "--mapping", mapping],
        "ingest charts": ["ingest", "charts", tmp_path / "charts"],
        "features extract": ["features", "extract", "--sets", "mel", "--workers", "1"],
    }[command]
    status, _, err = _cli(capsys, *args, "--data-dir", data)
    _one_line_error(status, err, str(damaged), "not a readable Parquet file", says)
    assert _snapshot(data) == before  # nothing written, nothing removed


def test_a_truncated_catalog_is_rebuilt_by_ingest_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The catalog is derived from streams, clips and mapping: ingesting writes it afresh."""
    data, _ = _charted_with_audio(tmp_path)
    catalog = DataLayout(data).catalog
    want = catalog.read()
    catalog.path.write_bytes(catalog.path.read_bytes()[:300])
    status, _, err = _cli(capsys, "ingest", "audio", tmp_path / "audio", "--data-dir", data)
    assert status == 0, err
    pd.testing.assert_frame_equal(catalog.read(), want)


def test_zero_bytes_in_the_middle_of_streams_stop_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: not detected, 9 track ids silently changed and ``targets`` exited 0."""
    ids = track_ids(200, np.random.default_rng(3))
    charts = tmp_path / "charts"
    for week in range(10):
        start = date(2020, 1, 3) + timedelta(weeks=week)
        order = np.random.default_rng(week).permutation(200)
        rows = [(r + 1, 2_000_000 - 5_000 * r, ids[i]) for r, i in enumerate(order)]
        _legacy_chart(charts, "us", start, rows)
    data = tmp_path / "data"
    assert _cli(capsys, "ingest", "charts", charts, "--data-dir", data)[0] == 0
    streams = DataLayout(data).streams.path
    raw = bytearray(streams.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 8] = bytes(8)
    streams.write_bytes(bytes(raw))
    status, _, err = _cli(capsys, "targets", "--data-dir", data)
    _one_line_error(status, err, str(streams), "damaged", "benchmark ingest charts")
    assert not DataLayout(data).popularity.exists()


def test_zero_bytes_in_a_wide_tables_footer_are_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a table of few rows and many columns the middle of the file is its footer (column
    names, statistics): the checksum covers it too."""
    write_synthetic_tables(tmp_path, tracks=4, regions=1, features=600, seed=2)
    table = tmp_path / "features" / "essentia.parquet"
    raw = bytearray(table.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 8] = bytes(8)
    table.write_bytes(bytes(raw))
    status, _, err = _cli(capsys, "store", "apply", "--data-dir", tmp_path)
    _one_line_error(status, err, str(table), "damaged", "benchmark features extract")


@pytest.mark.parametrize("command", ["ingest charts", "targets"])
def test_a_folder_in_place_of_a_table_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """A folder where a table should be: the write fails with one line, the folder is kept."""
    ids = track_ids(3, np.random.default_rng(4))
    charts = tmp_path / "charts"
    _legacy_chart(charts, "us", date(2020, 1, 3), [(i + 1, 900 - i, t) for i, t in enumerate(ids)])
    data = tmp_path / "data"
    assert _cli(capsys, "ingest", "charts", charts, "--data-dir", data)[0] == 0
    target = DataLayout(data).catalog if command == "ingest charts" else DataLayout(data).popularity
    target.path.unlink(missing_ok=True)
    (target.path / "kept.txt").parent.mkdir()
    (target.path / "kept.txt").write_text("mine")
    args = ["ingest", "charts", charts] if command == "ingest charts" else ["targets"]
    status, _, err = _cli(capsys, *args, "--data-dir", data)
    _one_line_error(status, err, str(target.path), "cannot replace it")
    assert (target.path / "kept.txt").read_text() == "mine"


def test_a_damaged_demo_ground_truth_is_made_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = ["demo", "--out", tmp_path / "demo", "--songs", "3", "--regions", "1"]
    assert _cli(capsys, *demo)[0] == 0
    truth = DataLayout(tmp_path / "demo").ground_truth
    want = truth.path.read_bytes()
    truth.path.write_bytes(want[:100])
    status, out, _ = _cli(capsys, *demo)
    assert status == 0 and "nothing to do" not in out
    assert truth.path.read_bytes() == want


# --- paths stay inside, bounded inputs, safe checkpoints ------------------------------------


def test_paths_that_resolve_outside_the_audio_folder_are_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a mapping row naming a symlink to a system file was linked, and clips.parquet
    got an ``audio_path`` outside the audio folder."""
    system_file = Path("/etc/passwd") if Path("/etc/passwd").is_file() else None
    if system_file is None:
        system_file = tmp_path / "elsewhere" / "secret.txt"
        system_file.parent.mkdir()
        system_file.write_text("not yours")
    ids = track_ids(4, np.random.default_rng(5))
    audio = tmp_path / "audio"
    inside = _clip(audio / "inside.wav", 1.0)
    (audio / "link.mp3").symlink_to(system_file)  # named in the mapping
    (audio / f"{ids[1]}.mp3").symlink_to(system_file)  # linked by its name
    (audio / f"{ids[2]}.wav").symlink_to(inside)  # a link that stays inside: fine
    outside_clip = _clip(tmp_path / "other" / "clip.wav", 1.0)
    mapping = audio / "mapping.csv"
    mapping.write_text(
        f"path,track_id\nlink.mp3,{ids[0]}\n{outside_clip},{ids[3]}\n../other/clip.wav,{ids[3]}\n"
    )
    data = tmp_path / "data"
    status, out, err = _cli(
        capsys, "ingest", "audio", audio, "--mapping", mapping, "--data-dir", data
    )
    assert status == 0, err
    # three mapping rows, and the two links found in the folder
    assert "REJECTED 5 paths that resolve outside the audio folder" in out
    for line in (2, 3, 4):
        assert f"{mapping}:{line}:" in out
    for link in ("link.mp3", f"{ids[1]}.mp3"):
        assert f"{audio / link}: resolves to {system_file.resolve()}" in out
    clips = pd.read_parquet(data / "clips.parquet")
    assert clips["track_id"].tolist() == [ids[2]]
    assert clips["audio_path"].tolist() == [str(inside.resolve())]
    assert all(Path(p).is_relative_to(audio.resolve()) for p in clips["audio_path"])

    with pytest.raises(SystemExit):
        cli_main(["ingest", "audio", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "must resolve (after following symlinks) inside FOLDER" in help_text


@pytest.mark.slow  # decodes ten minutes of audio
def test_a_ten_minute_clip_is_cut_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: extracted whole, one 60,001-frame mel row with no cap."""
    data, _ = _charted_with_audio(tmp_path, n=1, seconds=600.0)
    status, out, err = _cli(
        capsys, "features", "extract", "--sets", "mel", "--workers", "1", "--data-dir", data
    )
    assert status == 0, err
    assert "1 clips longer than 60 s cut to their start" in out
    mel = pd.read_parquet(data / "features" / "mel.parquet")
    _, n_frames = (int(v) for v in mel["shape"].iloc[0])
    assert 5_900 <= n_frames <= 6_001  # 10 ms hop: 60 s, not 600 s


class _Payload:
    """Unpickling this creates ``marker``: proof that code in a checkpoint ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["raw-pickle", "torch-save"])
def test_a_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path: Path, kind: str) -> None:
    """Before: a checkpoint in the data dir was unpickled in full, so it ran whatever it held.

    Tested on the estimator, the only loader of checkpoints: the runner keys their folder by
    code, data and configuration, so a planted file cannot be placed there through the CLI
    without knowing that key.
    """
    import torch

    from musicpop.models.blocks import EncoderConfig
    from musicpop.models.estimators.deep import MP2Estimator, TrainingConfig
    from musicpop.models.mp2 import MP2Config

    proof = tmp_path / "payload-is-live"
    pickle.loads(pickle.dumps(_Payload(proof)))
    assert proof.exists()  # the payload does run when unpickled

    marker = tmp_path / "code-ran"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    planted = folder / "checkpoint.pt"
    payload = {"fingerprint": "x", "model": _Payload(marker), "state": {}}
    if kind == "raw-pickle":
        planted.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, planted)

    rng = np.random.default_rng(0)
    tracks = [f"t{i}" for i in range(8)]
    X = pd.DataFrame({"track_id": tracks, "song_id": tracks, "region": "us"})
    X["clips"] = [[rng.normal(size=(16, 40)).astype(np.float16)] for _ in tracks]
    y = pd.DataFrame(
        {"log1p_charted_sum": rng.normal(10, 1, 8), "log1p_debut": rng.normal(8, 1, 8)}
    )
    encoder = EncoderConfig(n_mels=16, n_frames=32, dim=16, n_layers=1, n_heads=2)
    training = TrainingConfig(epochs=2, batch_size=4, val_fraction=0.0, cpu_threads=1)
    estimator = MP2Estimator(
        config=MP2Config(encoder=encoder),
        training=training,
        regions=["us"],
        checkpoint_dir=folder,
        progress=False,
    )
    with pytest.warns(UserWarning, match=r"checkpoint\.pt: checkpoint refused by torch\.load"):
        estimator.fit(X, y)
    assert not marker.exists()  # nothing in the file ran
    assert len(estimator.history_) == 2  # trained afresh
    saved = torch.load(planted, map_location="cpu", weights_only=True)  # replaced by a real one
    assert saved["fingerprint"] != "x"


# --- benchmark ui cleans up after itself ------------------------------------------------------


@pytest.mark.slow  # an MLflow server starts: 10-30 s
def test_sigkill_of_benchmark_ui_leaves_no_server_listening(tmp_path: Path) -> None:
    """Before: the MLflow server the UI started (15 processes) kept listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ui = subprocess.Popen(
        [*CLI, "ui", "--tracking-uri", store, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    group = None
    try:
        deadline = time.time() + 120
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                assert ui.poll() is None, "benchmark ui exited"
                assert time.time() < deadline, "the MLflow server did not answer"
                time.sleep(1)
        group = server_group(ui.pid)
        assert group is not None and process_group_alive(group)
    finally:
        ui.send_signal(signal.SIGKILL)  # the launcher cannot react; its reaper stops the server
        ui.wait(timeout=60)
    deadline = time.time() + 40
    while time.time() < deadline and (port_open(port) or process_group_alive(group)):
        time.sleep(0.5)
    assert not port_open(port), "the MLflow server is still listening"
    assert not process_group_alive(group), "processes of the MLflow server are still running"
