"""Extract the audio feature sets of the registry for every clip of a data dir.

``extract_features(data_dir)`` reads the clips table (or, without it, the catalog's
``audio_path``), decodes every clip once at the sample rates its extractors need, runs each
extractor of the requested feature sets (:mod:`features.feature_sets`) and writes one table per
feature set:

- ``tabular`` sets: one row per track with at least one good clip: ``track_id``,
  ``event_timestamp`` (UTC) and the set's float64 columns, averaged over the track's good clips
  (NaN values left out of the mean);
- ``clips`` sets: one row per good clip: ``track_id``, ``clip_id``, ``event_timestamp`` and the
  array (:data:`features.feature_sets.CLIP_SCHEMA`);

plus ``features/<set>.json`` (the extractor's parameters, so a table says how it was made) and
the table of failed clips (``path``, ``error_type``, ``message``).

Results are cached per clip and extractor under ``DIR/cache/extract/<extractor>/<key>.npz``,
``key`` being the SHA-256 of the audio file's SHA-256 and the extractor's fingerprint (its
version and parameters, the decoder's settings). Each entry is written atomically, so a run
killed with SIGKILL loses at most the clips in flight, and a re-run extracts only what is
missing; a damaged entry is recomputed and counted. Failed clips are cached too (as an error
record), so a re-run does not retry a file that cannot change its outcome. Clips longer than
``max_seconds`` are cut to their first ``max_seconds`` (counted in the summary).

The tables are rebuilt from the cache on every run and replace the old ones atomically, so they
never hold duplicates or partial rows. ``event_timestamp`` is the earlier of the track's
``release_date`` and its first chart date, else 2000-01-01 UTC: audio does not change, so its
features must be visible at every prediction time of the track.

Clips run in a process pool (Essentia is not thread-safe) started with ``spawn``; with
``scheduler="dask://HOST:PORT"`` (or the environment variable ``BENCHMARK_EXTRACT_SCHEDULER``) the
same tasks run on a Dask cluster through ``Client.get_executor`` instead: the workers need the
project installed and the audio paths readable; results come back to this process, which alone
writes the cache.
"""

from __future__ import annotations

import contextlib
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
from tqdm.auto import tqdm

from .audio import RESAMPLE_QUALITY, SILENCE_PEAK, AudioError, check_audio, decode_audio, resample
from .errors import DataError
from .feature_sets import (
    CLIP_SCHEMA,
    CLIPS,
    Extractor,
    FeatureSet,
    encode_array,
    feature_sets,
)
from .layout import DataLayout, atomic_file, file_sha256

#: Bump when the extraction machinery (decoding, caching) changes: invalidates every cache entry.
EXTRACT_VERSION = 2
#: Clips shorter than this fail with ``TooShortAudio``.
MIN_CLIP_SECONDS = 1.0
#: Clips longer than this are cut to their first ``MAX_CLIP_SECONDS`` (a preview is 30 s).
MAX_CLIP_SECONDS = 60.0
#: Environment variable naming the scheduler (``processes`` or ``dask://HOST:PORT``).
SCHEDULER_ENV = "BENCHMARK_EXTRACT_SCHEDULER"
#: Event timestamp of a track with neither a release date nor a chart entry.
FALLBACK_TIMESTAMP = pd.Timestamp("2000-01-01", tz="UTC")

_CLIP_BATCH_ROWS = 256


@dataclass
class ExtractReport:
    """What one :func:`extract_features` run did."""

    data_dir: Path
    feature_sets: list[str] = field(default_factory=list)
    clips: int = 0
    tracks: int = 0
    extracted: int = 0
    cached: int = 0
    recomputed: int = 0
    cut: int = 0
    failed: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 1
    scheduler: str = "processes"
    max_seconds: float = MAX_CLIP_SECONDS
    errors: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """Return a one-paragraph human summary."""
        rate = self.extracted / self.seconds if self.seconds > 0 else 0.0
        written = ", ".join(f"{n} {name} rows" for name, n in self.rows.items())
        text = (
            f"{self.clips} clips of {self.tracks} tracks: {self.extracted} extracted "
            f"({rate:.1f} clips/s, {self.workers} worker(s), {self.scheduler}), "
            f"{self.cached} from cache, {self.failed} failed; wrote {written} to "
            f"{self.data_dir / 'features'} in {self.seconds:.1f} s"
        )
        if self.recomputed:
            text += f"; {self.recomputed} damaged cache entries recomputed"
        if self.cut:
            text += f"; {self.cut} clips longer than {self.max_seconds:g} s cut to their start"
        if self.failed:
            kinds: dict[str, int] = {}
            for err in self.errors:
                kinds[err["error_type"]] = kinds.get(err["error_type"], 0) + 1
            listed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            text += (
                f"; failures ({listed}) listed in {DataLayout(self.data_dir).extract_errors.path}"
            )
        return text


def decoder_parameters(max_seconds: float = MAX_CLIP_SECONDS) -> dict[str, Any]:
    """The decoding settings every extractor's input depends on (part of each cache key)."""
    import soxr

    return {
        "extract_version": EXTRACT_VERSION,
        "library": "soundfile (libsndfile) + soxr",
        "soxr_version": str(soxr.__version__),
        "resample_quality": RESAMPLE_QUALITY,
        "channels": "mean",
        "min_seconds": MIN_CLIP_SECONDS,
        "max_seconds": float(max_seconds),
        "silence_peak": SILENCE_PEAK,
    }


def extractor_fingerprint(extractor: Extractor, decoder: dict[str, Any]) -> dict[str, Any]:
    """Everything that determines an extractor's output for a clip (recorded and hashed).

    Parameters
    ----------
    extractor : Extractor
        The extractor.
    decoder : dict
        :func:`decoder_parameters`.

    Returns
    -------
    dict
        JSON-ready.
    """
    return {
        "extractor": extractor.name,
        "version": extractor.version,
        "sample_rate": extractor.sample_rate,
        "parameters": extractor.parameters(),
        "decoder": decoder,
    }


def cache_key(audio_sha256: str, fingerprint: dict[str, Any]) -> str:
    """Return the cache key of a clip: sha256 over the audio hash and the fingerprint."""
    blob = audio_sha256 + json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# --- work done in the pool --------------------------------------------------------------------


def extract_clip(
    path: str, extractors: Sequence[Extractor], min_seconds: float, max_seconds: float
) -> dict[str, dict[str, Any]]:
    """Decode one clip once and run every extractor on it; never raises for a bad clip.

    Parameters
    ----------
    path : str
        The audio file.
    extractors : Sequence[Extractor]
        What to compute.
    min_seconds, max_seconds : float
        Shorter clips fail with ``TooShortAudio``; longer ones are cut to ``max_seconds``.

    Returns
    -------
    dict
        Extractor name to ``{output name: array, "cut": bool}`` on success or
        ``{"error_type": str, "message": str}`` on failure.
    """
    try:
        signal, rate = decode_audio(path)
        check_audio(path, signal, rate, min_seconds)
        limit = round(max_seconds * rate)
        cut = len(signal) > limit
        signal = signal[:limit]
        signals = {r: resample(signal, rate, r) for r in {e.sample_rate for e in extractors}}
    except AudioError as exc:
        failure = {"error_type": type(exc).__name__, "message": str(exc)}
        return {e.name: dict(failure) for e in extractors}
    except Exception as exc:  # a bad clip must never stop the batch
        failure = {"error_type": type(exc).__name__, "message": f"{path}: {exc}"}
        return {e.name: dict(failure) for e in extractors}
    out: dict[str, dict[str, Any]] = {}
    for extractor in extractors:
        try:
            arrays = extractor.compute(signals[extractor.sample_rate])
            out[extractor.name] = {
                **{k: np.asarray(arrays[k]) for k in extractor.outputs},
                "cut": cut,
            }
        except Exception as exc:
            out[extractor.name] = {
                "error_type": type(exc).__name__,
                "message": f"{path}: {extractor.name}: {exc}",
            }
    return out


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


#: Seconds to wait for a Dask scheduler to answer, and for its first worker to join.
DASK_TIMEOUT = 30.0


def _dask_client(scheduler: str) -> tuple[Any, int]:
    """A client of the Dask scheduler ``dask://HOST:PORT`` and the cluster's worker threads.

    Raises
    ------
    DataError
        ``distributed`` is not installed, the scheduler does not answer, no worker joins, or a
        worker runs more than one thread (Essentia is not thread-safe).
    """
    try:
        from distributed import Client
    except ImportError:
        raise DataError(
            f"extraction scheduler {scheduler}: Dask is not installed "
            "(pip install 'music-popularity[dask]')"
        ) from None
    address = "tcp://" + scheduler.split("://", 1)[1]
    try:
        client = Client(address, timeout=DASK_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise DataError(f"extraction scheduler {scheduler}: cannot reach it ({exc})") from None
    try:
        client.wait_for_workers(1, timeout=DASK_TIMEOUT)
    except TimeoutError:
        client.close()
        raise DataError(
            f"extraction scheduler {scheduler}: no worker joined within {DASK_TIMEOUT:g} s"
        ) from None
    threads = client.nthreads()
    threaded = sorted(worker for worker, n in threads.items() if n > 1)
    if threaded:
        client.close()
        raise DataError(
            f"extraction scheduler {scheduler}: worker(s) {', '.join(threaded)} run several "
            "threads, and Essentia is not thread-safe; start one process per core with "
            "`dask worker ADDRESS --nworkers N --nthreads 1`"
        )
    return client, sum(threads.values())


def _executor(workers: int, scheduler: str) -> tuple[futures.Executor, Any, int]:
    """Return (executor, Dask client or None, tasks it runs at once) for a scheduler spec."""
    if scheduler.startswith("dask://") or scheduler.startswith("tcp://"):
        client, threads = _dask_client(scheduler)
        return client.get_executor(pure=False), client, threads
    if scheduler != "processes":
        raise DataError(
            f"unknown extraction scheduler {scheduler!r}: use 'processes' or 'dask://HOST:PORT'"
        )
    if workers == 1:
        return _InlineExecutor(), None, 1
    import multiprocessing

    pool = futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(),),
    )
    return pool, None, workers


def _shutdown(executor: futures.Executor) -> None:
    try:
        executor.shutdown(wait=True, cancel_futures=True)
    except TypeError:  # dask's ClientExecutor has no cancel_futures
        executor.shutdown(wait=True)


def _run_tasks(
    tasks: Sequence[tuple[str, list[Extractor]]],
    executor: futures.Executor,
    threads: int,
    workers: int,
    max_seconds: float,
) -> Iterator[tuple[int, dict[str, dict[str, Any]]]]:
    """Yield (task index, results by extractor) as tasks finish, at most 2 x threads in flight.

    A result with ``"transient": True`` is a failure of the machinery, not of the clip: it is
    reported but not cached, so a re-run tries the clip again. When a pool process crashes, the
    clips that finished with the crash are reported and the others in flight are run again on a
    fresh pool. On Dask the scheduler itself moves the tasks of a lost worker to the others; a
    task that took ``distributed.scheduler.allowed-failures`` + 1 workers down with it ends in
    ``KilledWorker``, a transient failure too.
    """
    todo = list(range(len(tasks)))[::-1]
    pending: dict[futures.Future, int] = {}
    limit = max(2 * threads, 2)
    try:
        while todo or pending:
            while todo and len(pending) < limit:
                i = todo.pop()
                path, extractors = tasks[i]
                fut = executor.submit(extract_clip, path, extractors, MIN_CLIP_SECONDS, max_seconds)
                pending[fut] = i
            done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
            broken = False
            for fut in done:
                i = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:
                    crashed = isinstance(exc, BrokenProcessPool)
                    broken = broken or crashed
                    failure = {
                        "error_type": "WorkerCrashed" if crashed else type(exc).__name__,
                        "message": f"{tasks[i][0]}: the worker process failed ({exc})",
                        "transient": True,
                    }
                    result = {e.name: dict(failure) for e in tasks[i][1]}
                yield i, result
            if broken:
                todo.extend(pending.values())
                pending.clear()
                _shutdown(executor)
                executor, _, _ = _executor(workers, "processes")
    finally:
        _shutdown(executor)


# --- cache ------------------------------------------------------------------------------------


class ExtractionCache:
    """Content-addressed per-clip results of one extractor: ``<dir>/<key>.npz``.

    Parameters
    ----------
    directory : Path
        ``DIR/cache/extract/<extractor>``.
    extractor : Extractor
        Whose results it holds (outputs are checked on load).
    """

    def __init__(self, directory: Path, extractor: Extractor) -> None:
        self.directory = directory
        self.extractor = extractor
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        return self.directory / f"{key}.npz"

    def store(self, key: str, result: dict[str, Any]) -> None:
        """Write a result (arrays, or an error record) atomically."""
        if "error_type" in result:
            arrays = {
                "error_type": np.array(result["error_type"]),
                "message": np.array(result["message"]),
            }
        else:
            arrays = {k: result[k] for k in self.extractor.outputs}
            arrays["cut"] = np.array(bool(result.get("cut", False)))
        with atomic_file(self.path(key)) as handle:
            np.savez(handle, **arrays)

    def load(self, key: str) -> dict[str, Any] | None:
        """The cached result, or None when it is missing or damaged (then it is redone)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "error_type" in npz.files:
                    return {"error_type": str(npz["error_type"]), "message": str(npz["message"])}
                result = {k: npz[k] for k in self.extractor.outputs}
                result["cut"] = bool(npz["cut"]) if "cut" in npz.files else False
        except Exception:  # a damaged file raises zipfile, OSError, ValueError, ...
            return None
        return result

    def damaged(self, key: str) -> bool:
        """Whether ``key`` has a file that cannot be loaded."""
        return self.path(key).exists() and self.load(key) is None


# --- inputs -----------------------------------------------------------------------------------


def _clips_table(layout: DataLayout) -> pd.DataFrame:
    """(track_id, clip_id, audio_path) for every clip, from the clips table or the catalog."""
    if layout.clips.exists():
        clips = layout.clips.read(["track_id", "clip_id", "audio_path"])
    else:
        if not layout.catalog.exists():
            raise DataError(
                f"{layout.root}: no clips or catalog table; run `benchmark ingest audio` first"
            )
        catalog = layout.catalog.read(["track_id", "audio_path"])
        clips = catalog.loc[catalog["audio_path"].notna(), ["track_id", "audio_path"]].copy()
        clips["clip_id"] = 0
    clips = clips.loc[clips["audio_path"].notna(), ["track_id", "clip_id", "audio_path"]]
    clips = clips.astype({"track_id": str, "clip_id": "int64", "audio_path": str})
    dupes = clips.duplicated(["track_id", "clip_id"])
    if dupes.any():
        first = clips.loc[dupes].iloc[0]
        raise DataError(
            f"{layout.clips.path}: duplicate (track_id, clip_id) "
            f"({first['track_id']}, {first['clip_id']})"
        )
    return clips.sort_values(["track_id", "clip_id"]).reset_index(drop=True)


def event_timestamps(layout: DataLayout, track_ids: Sequence[str]) -> pd.Series:
    """Per track: the earlier of release_date and first chart date, else 2000-01-01 (all UTC).

    Audio does not change, so its features must be visible at every prediction time of the
    track: a release date later than the first chart entry (an album date for a pre-release
    single) would hide them from point-in-time joins at the debut.

    Parameters
    ----------
    layout : DataLayout
        The data dir (catalog and streams are read when present).
    track_ids : Sequence[str]
        Tracks.

    Returns
    -------
    pandas.Series
        UTC timestamps indexed by track id (sorted, unique).
    """
    index = pd.Index(sorted(set(track_ids)), name="track_id")
    result = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    if layout.catalog.exists():
        catalog = layout.catalog.read(["track_id", "release_date"])
        release = pd.to_datetime(catalog["release_date"], utc=True, errors="coerce", format="mixed")
        release.index = catalog["track_id"].astype(str)
        release = release[release.notna()].groupby(level=0).min()
        result = result.fillna(release.reindex(result.index))
    if layout.streams.exists():
        streams = layout.streams.read(["track_id", "chart_date"])
        first = pd.to_datetime(streams["chart_date"], utc=True, errors="coerce", format="mixed")
        first = first.groupby(streams["track_id"].astype(str)).min().reindex(result.index)
        result = result.where(result.notna() & ~(first < result), first)
    return result.fillna(FALLBACK_TIMESTAMP).astype("datetime64[ns, UTC]")


# --- outputs ----------------------------------------------------------------------------------


def _write_tabular(
    layout: DataLayout,
    feature_set: FeatureSet,
    clips: pd.DataFrame,
    results: list[dict[str, Any] | None],
    timestamps: pd.Series,
) -> int:
    """Average the set's outputs over each track's good clips; write the table."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for track, result in zip(clips["track_id"], results, strict=True):
        if result is None:
            continue
        values = np.concatenate(
            [np.asarray(result[o], dtype=np.float64).ravel() for o in feature_set.outputs]
        )
        if track not in sums:
            sums[track] = np.zeros(len(values))
            counts[track] = np.zeros(len(values))
        finite = np.isfinite(values)
        sums[track] += np.where(finite, values, 0.0)
        counts[track] += finite
    tracks = sorted(sums)
    columns = list(feature_set.columns)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (
            np.stack([sums[t] / counts[t] for t in tracks])
            if tracks
            else np.zeros((0, len(columns)))
        )
    if means.shape[1] != len(columns):
        raise ValueError(
            f"feature set {feature_set.name}: {means.shape[1]} values per clip for "
            f"{len(columns)} columns"
        )
    table = pd.DataFrame(means, columns=columns, dtype=np.float64)
    table.insert(0, "event_timestamp", timestamps.reindex(tracks).to_numpy())
    table.insert(0, "track_id", pd.Series(tracks, dtype=str))
    table["event_timestamp"] = pd.to_datetime(table["event_timestamp"], utc=True)
    feature_set.table(layout).write(table)
    return len(tracks)


def _write_clips(
    layout: DataLayout,
    feature_set: FeatureSet,
    clips: pd.DataFrame,
    results: list[dict[str, Any] | None],
    timestamps: pd.Series,
) -> int:
    """Write one row per good clip of a clips set, in batches."""
    (output,) = feature_set.outputs
    rows = 0
    batch: dict[str, list[Any]] = {name: [] for name in CLIP_SCHEMA.names}
    with feature_set.table(layout).writer(CLIP_SCHEMA) as writer:

        def flush() -> None:
            if batch["track_id"]:
                writer.write(pa.table(batch, schema=CLIP_SCHEMA))
                for values in batch.values():
                    values.clear()

        for row, result in zip(clips.itertuples(index=False), results, strict=True):
            if result is None:
                continue
            blob, dtype, shape = encode_array(result[output], feature_set.dtype)
            track = str(row.track_id)
            batch["track_id"].append(track)
            batch["clip_id"].append(int(row.clip_id))
            batch["event_timestamp"].append(timestamps[track])
            batch["array"].append(blob)
            batch["dtype"].append(dtype)
            batch["shape"].append(shape)
            rows += 1
            if len(batch["track_id"]) >= _CLIP_BATCH_ROWS:
                flush()
        flush()
    return rows


# --- entry point ------------------------------------------------------------------------------


def default_workers() -> int:
    """Number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def requested_sets(layout: DataLayout, names: Sequence[str] | None) -> list[FeatureSet]:
    """The audio feature sets to extract: ``names``, or every default audio set.

    Raises
    ------
    DataError
        An unknown name, or a set that is not computed from audio.
    """
    known = feature_sets(layout)
    if not names:
        return [fs for fs in known.values() if fs.extractor is not None and fs.default]
    chosen = []
    for name in names:
        if name not in known:
            raise DataError(f"unknown feature set {name!r}; known: {', '.join(sorted(known))}")
        if known[name].extractor is None:
            raise DataError(f"feature set {name!r} is an ingested table, not extracted from audio")
        chosen.append(known[name])
    return chosen


def extract_features(
    data_dir: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    sets: Sequence[str] | None = None,
    max_seconds: float = MAX_CLIP_SECONDS,
    progress: bool = True,
) -> ExtractReport:
    """Extract audio feature sets for every clip of a data dir.

    Parameters
    ----------
    data_dir : str or Path
        Dataset folder with a clips table (or a catalog with ``audio_path``).
    workers : int, optional
        Worker processes (default: the number of cores); 1 runs in this process.
    scheduler : str, optional
        ``"processes"`` (local pool, the default) or ``"dask://HOST:PORT"`` for a Dask cluster;
        when omitted, the environment variable ``BENCHMARK_EXTRACT_SCHEDULER``, else ``processes``.
    sets : Sequence[str], optional
        Feature-set names (default: every default audio set of the registry).
    max_seconds : float
        Longer clips are cut to their first ``max_seconds``.
    progress : bool, default True
        Show a tqdm progress bar (clips/s, ETA).

    Returns
    -------
    ExtractReport
        Counts of clips extracted, cached and failed; ``summary()`` prints it as one line.

    Raises
    ------
    DataError
        If the data dir has no clip list or it is malformed, or a set name is unknown.
    """
    start = time.perf_counter()
    layout = DataLayout(data_dir)
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or "processes"
    workers = int(workers) if workers else default_workers()
    if workers < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    if scheduler != "processes" and not scheduler.startswith(("dask://", "tcp://")):
        raise DataError(
            f"unknown extraction scheduler {scheduler!r}: use 'processes' or 'dask://HOST:PORT'"
        )
    if not max_seconds > MIN_CLIP_SECONDS:
        raise DataError(f"--max-seconds must exceed {MIN_CLIP_SECONDS:g}, got {max_seconds}")
    chosen = requested_sets(layout, sets)
    extractors = list({fs.extractor.name: fs.extractor for fs in chosen if fs.extractor}.values())
    clips = _clips_table(layout)
    timestamps = event_timestamps(layout, clips["track_id"].tolist())
    decoder = decoder_parameters(max_seconds)
    fingerprints = {e.name: extractor_fingerprint(e, decoder) for e in extractors}
    caches = {e.name: ExtractionCache(layout.cache_dir("extract") / e.name, e) for e in extractors}

    report = ExtractReport(
        data_dir=layout.root,
        feature_sets=[fs.name for fs in chosen],
        clips=len(clips),
        workers=workers,
        scheduler=scheduler,
        max_seconds=max_seconds,
    )
    report.tracks = int(clips["track_id"].nunique())
    # keys[e][i]: cache key of clip i for extractor e (None: the file could not be read)
    keys: dict[str, list[str | None]] = {e.name: [] for e in extractors}
    clip_errors: dict[int, dict[str, str]] = {}
    todo: dict[str, tuple[str, list[Extractor]]] = {}  # audio sha -> (path, extractors to run)
    shas: list[str | None] = []
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
            sha = file_sha256(path)
        except OSError as exc:
            shas.append(None)
            clip_errors[i] = {
                "error_type": "UnreadableAudio",
                "message": f"{path}: cannot read the file ({exc.strerror or exc})",
            }
            for e in extractors:
                keys[e.name].append(None)
            continue
        shas.append(sha)
        for e in extractors:
            key = cache_key(sha, fingerprints[e.name])
            keys[e.name].append(key)
            if caches[e.name].load(key) is None:
                report.recomputed += caches[e.name].damaged(key)
                entry = todo.setdefault(sha, (path, []))
                if e not in entry[1]:
                    entry[1].append(e)

    transient: dict[tuple[str, str], dict[str, str]] = {}  # (sha, extractor) -> failure
    tasks = list(todo.items())
    if tasks:
        local = min(workers, len(tasks))
        executor, client, threads = _executor(local, scheduler)
        if client is not None:
            report.workers = threads
        bar = tqdm(total=len(tasks), desc="extracting", unit="clip", disable=not progress)
        with bar, contextlib.closing(client) if client is not None else contextlib.nullcontext():
            runs = _run_tasks([task for _, task in tasks], executor, threads, local, max_seconds)
            for j, results in runs:
                sha = tasks[j][0]
                for name, result in results.items():
                    if result.pop("transient", False):
                        transient[(sha, name)] = result
                    else:
                        key = cache_key(sha, fingerprints[name])
                        caches[name].store(key, result)
                bar.update(1)
    report.extracted = len(tasks)
    report.cached = sum(1 for sha in shas if sha is not None and sha not in todo)

    # results per extractor and clip (None where the clip failed)
    results: dict[str, list[dict[str, Any] | None]] = {}
    errors: dict[int, dict[str, str]] = dict(clip_errors)
    cut = set()
    for e in extractors:
        column: list[dict[str, Any] | None] = []
        for i, key in enumerate(keys[e.name]):
            result = None
            if key is not None:
                result = transient.get((shas[i], e.name)) or caches[e.name].load(key)
                if result is None:
                    result = {"error_type": "MissingResult", "message": "no result"}
            if result is not None and "error_type" in result:
                errors.setdefault(i, result)
                result = None
            if result is not None and result.get("cut"):
                cut.add(i)
            column.append(result)
        results[e.name] = column
    report.cut = len(cut)

    for fs in chosen:
        assert fs.extractor is not None
        write = _write_clips if fs.kind == CLIPS else _write_tabular
        report.rows[fs.name] = write(layout, fs, clips, results[fs.extractor.name], timestamps)
        layout.feature_info(fs.name).write(
            {
                "name": fs.name,
                "version": fs.version,
                "kind": fs.kind,
                "source": fs.source,
                "description": fs.description,
                "columns": list(fs.columns),
                "fingerprint": fingerprints[fs.extractor.name],
            }
        )

    report.errors = [
        {
            "path": str(clips["audio_path"].iloc[i]),
            "error_type": err["error_type"],
            "message": err["message"],
        }
        for i, err in sorted(errors.items())
    ]
    layout.extract_errors.write(
        pd.DataFrame(report.errors, columns=["path", "error_type", "message"]).astype(str)
    )
    report.failed = len(report.errors)
    report.seconds = time.perf_counter() - start
    return report
