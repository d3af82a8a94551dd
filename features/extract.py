"""Extract Essentia low-level features and log-mel spectrograms for every clip of a data dir.

``extract_features(data_dir)`` reads ``DIR/clips.parquet`` (or, without it, the ``audio_path``
column of ``DIR/catalog.parquet``) and writes, as in ``docs/architecture.md``:

- ``DIR/cache/extract/<key>.npz``: one content-addressed result per clip, ``key`` being the
  sha256 of the audio file's sha256 and the extractor fingerprint (Essentia version, extractor and
  mel parameters, :data:`EXTRACT_VERSION`). Each file is written to a temporary name and moved
  into place with ``os.replace``, so a run killed with SIGKILL loses at most the clips in flight,
  and a re-run extracts only clips whose key is missing. Failed clips are cached too (as an error
  record), so a re-run does not retry a file that cannot change its outcome.
- ``DIR/features/essentia_lowlevel.parquet``: one row per track with at least one good clip:
  ``track_id``, ``event_timestamp`` (UTC) and the float64 columns of
  :data:`features.lowlevel.LOWLEVEL_COLUMNS`, averaged over the track's good clips.
- ``DIR/features/mel.parquet``: one row per good clip: ``track_id``, ``clip_id``,
  ``event_timestamp``, ``mel`` (float16 bytes, C-order, shape (``n_mels``, ``n_frames``)),
  ``n_mels``, ``n_frames``.
- ``DIR/features/extractor.json``: the fingerprint and the column list.
- ``DIR/extract_errors.parquet``: ``path``, ``error_type``, ``message`` for every failed clip.

The tables are rebuilt from the cache on every run and replace the old ones atomically, so they
never hold duplicates or partial rows. ``event_timestamp`` is the earlier of the track's
``release_date`` and its first ``chart_date`` in ``DIR/streams.parquet``, else 2000-01-01 UTC.

Clips run in a process pool (Essentia is not thread-safe) started with ``spawn``; with
``scheduler="dask://HOST:PORT"`` (or the environment variable ``BENCHMARK_EXTRACT_SCHEDULER``) the
same tasks run on a Dask cluster through ``Client.get_executor`` instead: the workers need the
project installed and the audio paths readable; results come back to this process, which alone
writes the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .audio import AudioError, load_audio_rates
from .errors import DataError
from .lowlevel import (
    EXTRACTOR_PARAMETERS,
    LOWLEVEL_COLUMNS,
    LOWLEVEL_SAMPLE_RATE,
    essentia_version,
    extract_lowlevel,
)
from .mel import MelConfig, log_mel
from .tables import read_table

#: Bump when the code that turns audio into features changes (invalidates the cache).
EXTRACT_VERSION = 1
#: Clips shorter than this fail with ``TooShortAudio``.
MIN_CLIP_SECONDS = 1.0
#: Environment variable naming the scheduler (``processes`` or ``dask://HOST:PORT``).
SCHEDULER_ENV = "BENCHMARK_EXTRACT_SCHEDULER"
#: Event timestamp of a track with neither a release date nor a chart entry.
FALLBACK_TIMESTAMP = pd.Timestamp("2000-01-01", tz="UTC")

_MEL_BATCH_ROWS = 256


@dataclass
class ExtractReport:
    """What one :func:`extract_features` run did."""

    data_dir: Path
    clips: int = 0
    tracks: int = 0
    extracted: int = 0
    cached: int = 0
    failed: int = 0
    lowlevel_rows: int = 0
    mel_rows: int = 0
    seconds: float = 0.0
    workers: int = 1
    scheduler: str = "processes"
    errors: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """Return a one-paragraph human summary."""
        rate = self.extracted / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.clips} clips of {self.tracks} tracks: {self.extracted} extracted "
            f"({rate:.1f} clips/s, {self.workers} worker(s), {self.scheduler}), "
            f"{self.cached} from cache, {self.failed} failed; wrote {self.lowlevel_rows} "
            f"low-level rows and {self.mel_rows} mel rows to {self.data_dir / 'features'} "
            f"in {self.seconds:.1f} s"
        )
        if self.failed:
            kinds: dict[str, int] = {}
            for err in self.errors:
                kinds[err["error_type"]] = kinds.get(err["error_type"], 0) + 1
            listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            text += f"; failures ({listed}) listed in {self.data_dir / 'extract_errors.parquet'}"
        return text


def extractor_fingerprint(mel_config: MelConfig | None = None) -> dict[str, Any]:
    """Describe everything that determines a clip's features (recorded in ``extractor.json``).

    Parameters
    ----------
    mel_config : MelConfig, optional
        Log-mel parameters (AST defaults when omitted).

    Returns
    -------
    dict
        JSON-ready: versions, decoder, Essentia extractor parameters, mel parameters.
    """
    import soxr

    from .audio import RESAMPLE_QUALITY, SILENCE_PEAK

    return {
        "extract_version": EXTRACT_VERSION,
        "essentia_version": essentia_version(),
        "decoder": {
            "library": "soundfile (libsndfile) + soxr",
            "soxr_version": str(soxr.__version__),
            "resample_quality": RESAMPLE_QUALITY,
            "channels": "mean",
            "min_seconds": MIN_CLIP_SECONDS,
            "silence_peak": SILENCE_PEAK,
        },
        "lowlevel": {
            "extractor": "essentia.standard.Extractor",
            "parameters": EXTRACTOR_PARAMETERS,
            "n_columns": len(LOWLEVEL_COLUMNS),
            "columns_sha256": hashlib.sha256("\n".join(LOWLEVEL_COLUMNS).encode()).hexdigest(),
        },
        "mel": (mel_config or MelConfig()).to_dict(),
    }


def cache_key(audio_sha256: str, fingerprint: dict[str, Any]) -> str:
    """Return the cache key of a clip: sha256 over the audio hash and the fingerprint."""
    blob = audio_sha256 + json.dumps(fingerprint, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# --- work done in the pool --------------------------------------------------------------------


def extract_clip(path: str, mel_config: MelConfig, min_seconds: float) -> dict[str, Any]:
    """Decode one clip once and compute both feature sets; never raises for a bad clip.

    Parameters
    ----------
    path : str
        The audio file.
    mel_config : MelConfig
        Log-mel parameters.
    min_seconds : float
        Shorter clips fail with ``TooShortAudio``.

    Returns
    -------
    dict
        ``{"lowlevel": float64 (n_columns,), "mel": float16 (n_mels, n_frames)}`` on success,
        ``{"error_type": str, "message": str}`` on failure.
    """
    try:
        signal_44k, signal_mel = load_audio_rates(
            path, [LOWLEVEL_SAMPLE_RATE, mel_config.sample_rate], min_seconds=min_seconds
        )
        mel = log_mel(signal_mel, mel_config).astype(np.float16)
        values = extract_lowlevel(signal_44k)
        lowlevel = np.array([values[c] for c in LOWLEVEL_COLUMNS], dtype=np.float64)
    except AudioError as exc:
        return {"error_type": type(exc).__name__, "message": str(exc)}
    except Exception as exc:  # a bad clip must never stop the batch
        return {"error_type": type(exc).__name__, "message": f"{path}: {exc}"}
    return {"lowlevel": lowlevel, "mel": mel}


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(parent_pid: int) -> None:
    """Pool initializer: one BLAS thread, and exit when the parent dies (e.g. SIGKILL)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


# --- scheduling -------------------------------------------------------------------------------


class _InlineExecutor(futures.Executor):
    """Runs each task at submit time in this process (one worker, no pool start-up)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future:
        fut: futures.Future = futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _executor(workers: int, scheduler: str) -> tuple[futures.Executor, Any]:
    """Return (executor, closeable) for a scheduler spec."""
    if scheduler.startswith("dask://") or scheduler.startswith("tcp://"):
        from dask.distributed import Client  # optional: pip install 'dask[distributed]'

        address = "tcp://" + scheduler.split("://", 1)[1]
        client = Client(address)
        return client.get_executor(pure=False), client
    if scheduler != "processes":
        raise DataError(
            f"unknown extraction scheduler {scheduler!r}: use 'processes' or 'dask://HOST:PORT'"
        )
    if workers == 1:
        return _InlineExecutor(), None
    import multiprocessing

    pool = futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )
    return pool, None


def _shutdown(executor: futures.Executor) -> None:
    try:
        executor.shutdown(wait=True, cancel_futures=True)
    except TypeError:  # dask's ClientExecutor has no cancel_futures
        executor.shutdown(wait=True)


def _run_tasks(
    paths: Sequence[str], mel_config: MelConfig, workers: int, scheduler: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (task index, result) as tasks finish, keeping at most 2 x workers in flight.

    A result with ``"transient": True`` is a failure of the machinery (a crashed worker process),
    not of the clip: it is reported but not cached. When a worker crashes, the clips that finished
    with the crash are reported and the others in flight are run again on a fresh pool.
    """
    executor, client = _executor(workers, scheduler)
    todo = list(range(len(paths)))[::-1]
    pending: dict[futures.Future, int] = {}
    threads = sum(client.nthreads().values()) if client is not None else workers
    limit = max(2 * threads, 2)
    try:
        while todo or pending:
            while todo and len(pending) < limit:
                i = todo.pop()
                pending[executor.submit(extract_clip, paths[i], mel_config, MIN_CLIP_SECONDS)] = i
            done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            broken = False
            for fut in done:
                i = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:
                    crashed = isinstance(exc, BrokenProcessPool)
                    broken = broken or crashed
                    result = {
                        "error_type": "WorkerCrashed" if crashed else type(exc).__name__,
                        "message": f"{paths[i]}: the worker process failed ({exc})",
                        "transient": True,
                    }
                yield i, result
            if broken:
                todo.extend(pending.values())
                pending.clear()
                _shutdown(executor)
                executor, _ = _executor(workers, "processes")
    finally:
        _shutdown(executor)
        if client is not None:
            client.close()


# --- cache ------------------------------------------------------------------------------------


def _write_atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _store_result(cache_dir: Path, key: str, result: dict[str, Any]) -> None:
    if "error_type" in result:
        arrays = {
            "error_type": np.array(result["error_type"]),
            "message": np.array(result["message"]),
        }
    else:
        arrays = {"lowlevel": result["lowlevel"], "mel": result["mel"]}
    _write_atomic_npz(cache_dir / f"{key}.npz", arrays)


def _load_result(cache_dir: Path, key: str) -> dict[str, Any] | None:
    """Read a cached result; None when it is missing or unreadable (then it is redone)."""
    path = cache_dir / f"{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "error_type" in npz.files:
                return {"error_type": str(npz["error_type"]), "message": str(npz["message"])}
            lowlevel, mel = npz["lowlevel"], npz["mel"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if lowlevel.shape != (len(LOWLEVEL_COLUMNS),) or mel.ndim != 2 or mel.dtype != np.float16:
        return None
    return {"lowlevel": lowlevel, "mel": mel}


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- inputs -----------------------------------------------------------------------------------


def _clips_table(data_dir: Path) -> pd.DataFrame:
    """(track_id, clip_id, audio_path) for every clip, from clips.parquet or the catalog."""
    clips_path = data_dir / "clips.parquet"
    if clips_path.exists():
        clips = read_table(clips_path, ["track_id", "clip_id", "audio_path"])
    else:
        catalog_path = data_dir / "catalog.parquet"
        if not catalog_path.exists():
            raise DataError(
                f"{data_dir}: neither clips.parquet nor catalog.parquet found; run "
                "`benchmark ingest audio` first"
            )
        catalog = read_table(catalog_path, ["track_id", "audio_path"])
        clips = catalog.loc[catalog["audio_path"].notna(), ["track_id", "audio_path"]].copy()
        clips["clip_id"] = 0
    clips = clips.loc[clips["audio_path"].notna(), ["track_id", "clip_id", "audio_path"]]
    clips = clips.astype({"track_id": str, "clip_id": "int64", "audio_path": str})
    dupes = clips.duplicated(["track_id", "clip_id"])
    if dupes.any():
        first = clips.loc[dupes].iloc[0]
        raise DataError(
            f"{clips_path}: duplicate (track_id, clip_id) ({first['track_id']}, {first['clip_id']})"
        )
    return clips.sort_values(["track_id", "clip_id"]).reset_index(drop=True)


def _event_timestamps(data_dir: Path, track_ids: Sequence[str]) -> pd.Series:
    """Per track: the earlier of release_date and first chart_date, else 2000-01-01 (all UTC).

    Audio does not change, so its features must be visible at every prediction time of the
    track: a release date later than the first chart entry (an album date for a pre-release
    single) would hide them from point-in-time joins at the debut.
    """
    index = pd.Index(sorted(set(track_ids)), name="track_id")
    result = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    catalog_path = data_dir / "catalog.parquet"
    if catalog_path.exists():
        catalog = pd.read_parquet(catalog_path)
        if "release_date" in catalog.columns:
            release = pd.to_datetime(
                catalog["release_date"], utc=True, errors="coerce", format="mixed"
            )
            release.index = catalog["track_id"].astype(str)
            release = release[release.notna()].groupby(level=0).min()
            result = result.fillna(release.reindex(result.index))
    streams_path = data_dir / "streams.parquet"
    if streams_path.exists():
        streams = pd.read_parquet(streams_path, columns=["track_id", "chart_date"])
        first = pd.to_datetime(streams["chart_date"], utc=True, errors="coerce", format="mixed")
        first = first.groupby(streams["track_id"].astype(str)).min().reindex(result.index)
        result = result.where(result.notna() & ~(first < result), first)
    return result.fillna(FALLBACK_TIMESTAMP).astype("datetime64[ns, UTC]")


# --- outputs ----------------------------------------------------------------------------------


def _replace_parquet(table_or_batches: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table_or_batches, tmp)
    os.replace(tmp, path)


_MEL_SCHEMA = pa.schema(
    [
        ("track_id", pa.string()),
        ("clip_id", pa.int64()),
        ("event_timestamp", pa.timestamp("ns", tz="UTC")),
        ("mel", pa.binary()),
        ("n_mels", pa.int32()),
        ("n_frames", pa.int32()),
    ]
)


def _write_outputs(
    data_dir: Path,
    clips: pd.DataFrame,
    keys: list[str | None],
    clip_errors: dict[int, dict[str, str]],
    timestamps: pd.Series,
    cache_dir: Path,
    fingerprint: dict[str, Any],
) -> tuple[int, int, list[dict[str, str]]]:
    """Rebuild the feature tables from the cache; return (lowlevel rows, mel rows, errors)."""
    out_dir = data_dir / "features"
    out_dir.mkdir(parents=True, exist_ok=True)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    errors: list[dict[str, str]] = []
    mel_rows = 0
    mel_path = out_dir / "mel.parquet"
    mel_tmp = mel_path.with_name(f".{mel_path.name}.{os.getpid()}.tmp")
    batch: dict[str, list[Any]] = {name: [] for name in _MEL_SCHEMA.names}
    with pq.ParquetWriter(mel_tmp, _MEL_SCHEMA) as writer:

        def flush() -> None:
            if batch["track_id"]:
                writer.write_table(pa.table(batch, schema=_MEL_SCHEMA))
                for values in batch.values():
                    values.clear()

        for i, row in enumerate(clips.itertuples(index=False)):
            key = keys[i]
            result = clip_errors.get(i) or (_load_result(cache_dir, key) if key else None)
            if result is None:
                result = {"error_type": "MissingResult", "message": f"{row.audio_path}: no result"}
            if "error_type" in result:
                errors.append(
                    {
                        "path": row.audio_path,
                        "error_type": result["error_type"],
                        "message": result["message"],
                    }
                )
                continue
            values = result["lowlevel"]
            finite = np.isfinite(values)
            track = str(row.track_id)
            if track not in sums:
                sums[track] = np.zeros(len(values))
                counts[track] = np.zeros(len(values))
            sums[track] += np.where(finite, values, 0.0)
            counts[track] += finite
            mel = result["mel"]
            batch["track_id"].append(track)
            batch["clip_id"].append(int(row.clip_id))
            batch["event_timestamp"].append(timestamps[track])
            batch["mel"].append(np.ascontiguousarray(mel).tobytes())
            batch["n_mels"].append(int(mel.shape[0]))
            batch["n_frames"].append(int(mel.shape[1]))
            mel_rows += 1
            if len(batch["track_id"]) >= _MEL_BATCH_ROWS:
                flush()
        flush()
    os.replace(mel_tmp, mel_path)

    tracks = sorted(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (
            np.stack([sums[t] / counts[t] for t in tracks])
            if tracks
            else np.zeros((0, len(LOWLEVEL_COLUMNS)))
        )
    lowlevel = pd.DataFrame(means, columns=list(LOWLEVEL_COLUMNS), dtype=np.float64)
    lowlevel.insert(0, "event_timestamp", timestamps.reindex(tracks).to_numpy())
    lowlevel.insert(0, "track_id", pd.Series(tracks, dtype=str))
    lowlevel["event_timestamp"] = pd.to_datetime(lowlevel["event_timestamp"], utc=True)
    _replace_parquet(
        pa.Table.from_pandas(lowlevel, preserve_index=False), out_dir / "essentia_lowlevel.parquet"
    )

    error_frame = pd.DataFrame(errors, columns=["path", "error_type", "message"]).astype(str)
    _replace_parquet(
        pa.Table.from_pandas(error_frame, preserve_index=False), data_dir / "extract_errors.parquet"
    )

    info = {**fingerprint, "lowlevel_columns": list(LOWLEVEL_COLUMNS)}
    tmp = out_dir / f".extractor.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out_dir / "extractor.json")
    return len(tracks), mel_rows, errors


# --- entry point ------------------------------------------------------------------------------


def default_workers() -> int:
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def extract_features(
    data_dir: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    mel_config: MelConfig | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Extract low-level features and log-mel spectrograms for every clip of a data dir.

    Parameters
    ----------
    data_dir : str or Path
        Dataset folder with ``clips.parquet`` (or ``catalog.parquet`` with ``audio_path``).
    workers : int, optional
        Worker processes (default: the number of cores); 1 runs in this process.
    scheduler : str, optional
        ``"processes"`` (local pool, the default) or ``"dask://HOST:PORT"`` for a Dask cluster;
        when omitted, the environment variable ``BENCHMARK_EXTRACT_SCHEDULER``, else ``processes``.
    mel_config : MelConfig, optional
        Log-mel parameters (AST defaults).
    progress : bool, default True
        Show a tqdm progress bar (clips/s, ETA).

    Returns
    -------
    ExtractReport
        Counts of clips extracted, cached and failed; ``summary()`` prints it as one line.

    Raises
    ------
    DataError
        If the data dir has no clip list or it is malformed.
    """
    start = time.perf_counter()
    data_dir = Path(data_dir)
    mel_config = mel_config or MelConfig()
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or "processes"
    workers = int(workers) if workers else default_workers()
    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    clips = _clips_table(data_dir)
    timestamps = _event_timestamps(data_dir, clips["track_id"].tolist())
    fingerprint = extractor_fingerprint(mel_config)
    cache_dir = data_dir / "cache" / "extract"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob(".*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)

    keys: list[str | None] = []
    clip_errors: dict[int, dict[str, str]] = {}
    todo: dict[str, str] = {}  # key -> path (identical files are extracted once)
    for i, path in enumerate(
        tqdm(
            clips["audio_path"],
            desc="hashing audio",
            unit="clip",
            disable=not progress,
            leave=False,
        )
    ):
        try:
            key = cache_key(_file_sha256(path), fingerprint)
        except OSError as exc:
            keys.append(None)
            clip_errors[i] = {
                "error_type": "UnreadableAudio",
                "message": f"{path}: cannot read the file ({exc.strerror or exc})",
            }
            continue
        keys.append(key)
        if key not in todo and _load_result(cache_dir, key) is None:
            todo[key] = path

    report = ExtractReport(
        data_dir=data_dir, clips=len(clips), workers=workers, scheduler=scheduler
    )
    report.tracks = int(clips["track_id"].nunique())
    todo_keys = list(todo)
    if todo_keys:
        bar = tqdm(total=len(todo_keys), desc="extracting", unit="clip", disable=not progress)
        with bar:
            paths = [todo[k] for k in todo_keys]
            for j, result in _run_tasks(paths, mel_config, min(workers, len(paths)), scheduler):
                if result.pop("transient", False):
                    for i, key in enumerate(keys):
                        if key == todo_keys[j]:
                            clip_errors[i] = result
                else:
                    _store_result(cache_dir, todo_keys[j], result)
                bar.update(1)
    report.extracted = len(todo_keys)
    report.cached = sum(1 for k in keys if k is not None and k not in todo)
    report.lowlevel_rows, report.mel_rows, report.errors = _write_outputs(
        data_dir, clips, keys, clip_errors, timestamps, cache_dir, fingerprint
    )
    report.failed = len(report.errors)
    report.seconds = time.perf_counter() - start
    return report


def decode_mel(row: pd.Series | dict[str, Any]) -> np.ndarray:
    """Turn one ``mel.parquet`` row back into a float16 array of shape (n_mels, n_frames).

    Parameters
    ----------
    row : pandas.Series or dict
        A row with ``mel`` (bytes), ``n_mels`` and ``n_frames``.

    Returns
    -------
    np.ndarray
        Shape (n_mels, n_frames), float16 (read-only view of the bytes).
    """
    n_mels, n_frames = int(row["n_mels"]), int(row["n_frames"])
    mel = np.frombuffer(row["mel"], dtype=np.float16)
    if mel.size != n_mels * n_frames:
        raise DataError(
            f"mel row of track {row['track_id']}: {mel.size} values, expected {n_mels} x {n_frames}"
        )
    return mel.reshape(n_mels, n_frames)
