"""Feature extraction on a real Dask cluster: same tables as the process pool, a killed worker survived.

The cluster is a ``distributed.LocalCluster`` of two worker processes (one thread each, behind
nannies, with the real scheduler); the extraction is the real ``benchmark features extract`` CLI
with ``BENCHMARK_EXTRACT_SCHEDULER=dask://...``, on generated clips plus one clip too short to
use. Its tables are compared with those of the local process pool on the same clips, every
cache emptied.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from helpers import write_clip_tables, write_tone_clip

from musicpop.features.extract import SCHEDULER_ENV, extract_features
from musicpop.features.feature_sets import get_feature_set
from musicpop.features.layout import DataLayout

pytestmark = [pytest.mark.slow, pytest.mark.dask]

BIN = Path(sys.executable).parent
N_CLIPS = 12


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[str, object]]:
    """Two worker processes (one thread each) and a client of the cluster for the test itself."""
    distributed = pytest.importorskip(
        "distributed", reason="`make test` installs dask[distributed]"
    )
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            host="127.0.0.1",
        ) as local,
        distributed.Client(local) as client,
    ):
        yield local.scheduler_address, client


def _clips_dir(root: Path) -> Path:
    """A data dir with N_CLIPS clips of 6 s (two per track) and one clip too short to use."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    clips = [
        (f"{i // 2:022d}", i % 2, write_tone_clip(audio / f"{i}.wav", 6.0, 180.0 + 40 * i, seed=i))
        for i in range(N_CLIPS)
    ]
    clips.append((f"{99:022d}", 0, write_tone_clip(audio / "short.flac", 0.3, 440.0, seed=99)))
    data_dir = root / "data"
    write_clip_tables(data_dir, clips)
    return data_dir


def _extract(data_dir: Path, scheduler: str, option: bool = False) -> subprocess.Popen[str]:
    """``benchmark features extract`` in a process of its own, stderr (the progress bar) piped.

    The scheduler is given in the environment (``BENCHMARK_EXTRACT_SCHEDULER``) or, with
    ``option``, as ``--scheduler``.
    """
    command = [str(BIN / "benchmark"), "features", "extract", "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if option:
        command += ["--scheduler", scheduler]
        env.pop(SCHEDULER_ENV, None)
    else:
        env[SCHEDULER_ENV] = scheduler
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _tables(data_dir: Path) -> dict[str, pd.DataFrame]:
    layout = DataLayout(data_dir)
    tables = {
        name: get_feature_set(name).table(layout).read().sort_values(["track_id"], kind="stable")
        for name in ("essentia", "mel")
    }
    errors = layout.extract_errors.read()
    audio = str(data_dir.parent / "audio")
    for column in ("path", "message"):  # the runs' folders differ
        errors[column] = errors[column].str.replace(audio, "AUDIO", regex=False)
    tables["errors"] = errors
    return {name: frame.reset_index(drop=True) for name, frame in tables.items()}


def _final_bar(stderr: str) -> str:
    """The last state of the ``extracting`` progress bar."""
    states = re.findall(r"extracting:\s+\d+%\|[^|]*\|\s*(\d+/\d+)", stderr)
    assert states, stderr[-2000:]
    return states[-1]


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pd.DataFrame], str]:
    """The reference: the local process pool (2 workers) on the clips."""
    data_dir = _clips_dir(tmp_path_factory.mktemp("pool"))
    _, err = _finish(_extract(data_dir, "processes"))
    return _tables(data_dir), err


def _assert_same_tables(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for name in ("essentia", "mel", "errors"):
        pd.testing.assert_frame_equal(got[name], expected[name], check_exact=True, obj=name)
    mel = got["mel"]
    assert len(mel) == N_CLIPS and not mel.duplicated(["track_id", "clip_id"]).any()
    assert len(got["essentia"]) == N_CLIPS // 2
    assert got["errors"][["path", "error_type"]].values.tolist() == [
        ["AUDIO/short.flac", "TooShortAudio"]
    ]


def test_dask_gives_the_tables_the_progress_and_the_errors_of_the_pool(
    cluster: tuple[str, object], pool_run: tuple[dict[str, pd.DataFrame], str], tmp_path: Path
) -> None:
    address, _ = cluster
    expected, pool_err = pool_run
    data_dir = _clips_dir(tmp_path)
    out, err = _finish(_extract(data_dir, address.replace("tcp://", "dask://")))
    _assert_same_tables(_tables(data_dir), expected)
    assert _final_bar(err) == _final_bar(pool_err) == f"{N_CLIPS + 1}/{N_CLIPS + 1}"
    assert "2 worker(s), dask://" in out and "1 failed" in out and "TooShortAudio" in out


def test_a_worker_killed_mid_job_is_survived_without_missing_or_duplicate_rows(
    cluster: tuple[str, object], pool_run: tuple[dict[str, pd.DataFrame], str], tmp_path: Path
) -> None:
    address, client = cluster
    expected, _ = pool_run
    data_dir = _clips_dir(tmp_path)
    pids = client.run(os.getpid)  # worker address -> process id
    proc = _extract(data_dir, address.replace("tcp://", "dask://"), option=True)
    victim, lost = None, []
    try:
        deadline = time.monotonic() + 300
        while victim is None:
            assert proc.poll() is None, "the extraction ended before a worker could be killed"
            assert time.monotonic() < deadline, "no task reached a worker within 300 s"
            cache = data_dir / "cache" / "extract" / "essentia_lowlevel"
            started = cache.is_dir() and len(list(cache.glob("*.npz"))) >= 2
            busy = {w: keys for w, keys in client.processing().items() if keys}
            if started and busy:
                victim, lost = next(iter(busy.items()))
                os.kill(pids[victim], signal.SIGKILL)
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        raise
    out, err = _finish(proc)
    done = len(list((data_dir / "cache" / "extract" / "essentia_lowlevel").glob("*.npz")))
    assert lost and done == N_CLIPS + 1  # the tasks the dead worker held were run elsewhere
    with pytest.raises(ProcessLookupError):
        os.kill(pids[victim], 0)
    _assert_same_tables(_tables(data_dir), expected)
    assert _final_bar(err) == f"{N_CLIPS + 1}/{N_CLIPS + 1}" and "1 failed" in out
    # the nanny brought a worker back: the cluster is whole again for whoever comes next
    client.wait_for_workers(2, timeout=60)


def test_an_unreachable_scheduler_and_threaded_workers_are_one_line_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    from musicpop.features import extract
    from musicpop.features.errors import DataError

    monkeypatch.setattr(extract, "DASK_TIMEOUT", 3.0)  # give up on port 1 sooner than 30 s
    data_dir = _clips_dir(tmp_path)
    with pytest.raises(DataError, match=r"dask://127\.0\.0\.1:1: cannot reach"):
        extract_features(data_dir, scheduler="dask://127.0.0.1:1", progress=False)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=True,
        dashboard_address=":0",
        host="127.0.0.1",
    ) as threaded:
        address = threaded.scheduler_address.replace("tcp://", "dask://")
        with pytest.raises(DataError, match="--nthreads 1"):
            extract_features(data_dir, scheduler=address, progress=False)
    assert not DataLayout(data_dir).extract_errors.exists()
