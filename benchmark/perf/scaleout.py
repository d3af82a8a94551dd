"""Scale-out figures: extraction on a Dask cluster, the store on PostgreSQL, shared Optuna studies.

``python -m musicpop.benchmark.perf scaleout [--only SECTION ...]`` prints, section by section,
the figures docs/scale-out.md is sized from:

- ``extract``: ``extract_features`` end to end (hashing, decoding, every default audio set,
  cache, tables) on generated 30 s MP3 clips or ``--audio DIR``, through the local process pool
  (1 and 2 processes) and through a Dask ``LocalCluster`` of 2 worker processes: clips/s,
  core-seconds per clip, clips per core-hour, and the bytes each set's table takes per clip;
- ``store``: a synthetic data dir of ``--tracks`` tracks (the 350 real low-level column names)
  x ``--regions`` regions on the embedded store and on PostgreSQL (``--postgres URL``, or a
  throwaway server started with ``pgserver``): bytes on disk and in the database, apply/upload
  and materialize times, and the time to retrieve the training frame of every (track, region);
- ``optuna``: one LightGBM study budget (``--trials``) on ``--rows`` rows x 350 features tuned by
  1 and by 2 worker processes sharing PostgreSQL studies: wall-clock and trials per
  worker-hour (timed from the trials' own start and end times);
- ``scaling``: a LightGBM fit (the quick preset's largest: 200 trees, 31 leaves, 1 thread) and
  the song bootstrap of ``evaluate`` (1,000 resamples, 2 models) at growing row counts, to
  extrapolate to the real-chart scale and to judge whether either would gain from Dask.

Every section prints the load average around it: the figures of a shared machine are slower
than an idle one's.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ...features.layout import DataLayout
from .extraction import make_clips
from .store import build_store_tables

SECTIONS = ("extract", "store", "optuna", "scaling")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f})"


def _directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[dict[str, str]]:
    """libpq settings of ``url``'s server, or of a throwaway server started with pgserver."""
    if url is not None:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://"))
        yield {k: str(v) for k, v in info.items() if v is not None}
        return
    try:
        import pgserver
    except ImportError:
        raise SystemExit(
            "give --postgres URL, or pip install pgserver for a throwaway server"
        ) from None
    root = Path(tempfile.mkdtemp(prefix="musicpop-perf-postgres-"))
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    info = server.get_postmaster_info()
    try:
        yield {"host": str(info.socket_dir), "port": str(info.port), "user": "postgres"}
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _database(server: dict[str, str], name: str) -> dict[str, str]:
    """Create database ``name`` (dropped first if it exists); its libpq settings."""
    import psycopg

    admin = {**server, "dbname": server.get("dbname", "postgres")}
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return {**server, "dbname": name}


def _url(db: dict[str, str]) -> str:
    password = db.get("password", "")
    return (
        f"postgresql+psycopg://{db.get('user', '')}:{password}@/{db['dbname']}"
        f"?host={db['host']}&port={db.get('port', '5432')}"
    )


# --- extraction -------------------------------------------------------------------------------


def _clip_tables(data_dir: Path, paths: list[Path]) -> None:
    layout = DataLayout(data_dir)
    ids = [f"{i:022d}" for i in range(len(paths))]
    layout.catalog.write(
        pd.DataFrame(
            {
                "track_id": ids,
                "song_id": ids,
                "title": ids,
                "artist": "perf",
                "audio_path": [str(p) for p in paths],
                "release_date": pd.NaT,
            }
        ).astype({"release_date": "datetime64[ns]"})
    )


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time of this process, its finished children (a pool's) and processes ``pids``."""
    import resource

    import psutil

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def section_extract(audio: Path | None, clips: int) -> None:
    """Extraction end to end: process pool (1, 2) and a 2-process Dask LocalCluster."""
    import soundfile as sf
    from distributed import Client, LocalCluster

    from ...features.extract import extract_features
    from ...features.feature_sets import get_feature_set

    print(f"\n== extract ({_load()})")
    with tempfile.TemporaryDirectory(prefix="musicpop-perf-extract-") as tmp:
        root = Path(tmp)
        if audio is not None:
            paths = sorted(p for p in audio.iterdir() if p.suffix.lower() in {".mp3", ".ogg"})
        else:
            (root / "audio").mkdir()
            paths = make_clips(root / "audio", clips)
        seconds = sum(sf.info(str(p)).duration for p in paths)
        print(f"{len(paths)} clips, {seconds / len(paths):.1f} s each on average")
        runs = [("processes", 1), ("processes", 2), ("dask", 2)]
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                host="127.0.0.1",
            ) as cluster,
            Client(cluster) as client,
        ):
            dask_pids = list(client.run(os.getpid).values())
            for kind, workers in runs:
                data_dir = root / f"{kind}-{workers}"
                _clip_tables(data_dir, paths)
                scheduler = (
                    cluster.scheduler_address.replace("tcp://", "dask://")
                    if kind == "dask"
                    else "processes"
                )
                before = _cpu_seconds(dask_pids)
                report = extract_features(
                    data_dir, workers=workers, scheduler=scheduler, progress=False
                )
                cpu = (_cpu_seconds(dask_pids) - before) / len(paths)
                assert report.failed == 0, report.errors
                print(
                    f"{kind:<9} {workers} worker(s): {len(paths) / report.seconds:5.2f} clips/s "
                    f"(wall {report.seconds:5.1f} s); CPU {cpu:5.2f} s per clip, "
                    f"{3600 / cpu:5.0f} clips per core-hour ({_load()})"
                )
        layout = DataLayout(root / "processes-1")
        for name in ("essentia", "mel"):
            path = get_feature_set(name).table(layout).path
            print(f"table {name}: {path.stat().st_size / len(paths) / 1024:8.1f} KiB per clip")


# --- the store --------------------------------------------------------------------------------


def _lowlevel_names() -> list[str]:
    from ...features.lowlevel import LOWLEVEL_COLUMNS

    return list(LOWLEVEL_COLUMNS)


def _store_tables(data_dir: Path, tracks: int, regions: int, seed: int) -> pd.DataFrame:
    """The synthetic store with the real low-level column names; the entity rows to retrieve."""
    from ...features.feature_sets import get_feature_set

    names = _lowlevel_names()
    build_store_tables(data_dir, tracks, regions, len(names), seed)
    table = get_feature_set("essentia").table(DataLayout(data_dir))
    frame = table.read()
    frame.columns = ["track_id", "event_timestamp", *names]
    table.write(frame)
    popularity = DataLayout(data_dir).popularity.read(["track_id", "region", "event_timestamp"])
    return popularity


def section_store(tracks: int, regions: int, postgres_url: str | None, seed: int) -> None:
    """Bytes and times of the embedded store and of the PostgreSQL store at one size."""
    import psycopg

    from ...features import store

    print(f"\n== store ({_load()})")
    with tempfile.TemporaryDirectory(prefix="musicpop-perf-store-") as tmp:
        embedded = Path(tmp) / "embedded"
        rows = _store_tables(embedded, tracks, regions, seed)
        remote = Path(tmp) / "postgres"
        shutil.copytree(embedded, remote)
        print(
            f"{tracks:,} tracks x {regions} regions ({len(rows):,} popularity rows), "
            f"{len(_lowlevel_names())} low-level columns"
        )
        layout = DataLayout(embedded)
        essentia_bytes = (layout.features_dir / "essentia.parquet").stat().st_size
        print(f"parquet: essentia table {essentia_bytes / 2**20:.1f} MiB")
        t0 = time.perf_counter()
        store.apply(embedded)
        t_apply = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.materialize(embedded)
        t_mat = time.perf_counter() - t0
        t0 = time.perf_counter()
        frame = store.training_frame(embedded, "essentia_v1", rows)
        t_frame = time.perf_counter() - t0
        print(
            f"embedded (duckdb + sqlite): apply {t_apply:.1f} s, materialize {t_mat:.1f} s, "
            f"data dir {_directory_bytes(embedded) / 2**20:.1f} MiB; training frame of "
            f"{len(rows):,} rows x {frame.shape[1]} columns {t_frame:.2f} s"
        )
        with _postgres(postgres_url) as server:
            db = _database(server, "musicpop_perf_store")
            env = {
                "PGHOST": db["host"],
                "PGPORT": db.get("port", "5432"),
                "PGDATABASE": db["dbname"],
                "PGUSER": db.get("user", ""),
                "PGPASSWORD": db.get("password", ""),
                store.CONFIG_ENV: str(_postgres_feast_config()),
            }
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                t0 = time.perf_counter()
                store.apply(remote)
                t_apply = time.perf_counter() - t0
                t0 = time.perf_counter()
                store.materialize(remote)
                t_mat = time.perf_counter() - t0
                t0 = time.perf_counter()
                got = store.training_frame(remote, "essentia_v1", rows)
                t_frame = time.perf_counter() - t0
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
            pd.testing.assert_frame_equal(got, frame)
            with psycopg.connect(**db) as conn:
                sizes = conn.execute(
                    "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 2 DESC"
                ).fetchall()
                total = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            print(
                f"postgres: apply (upload) {t_apply:.1f} s, materialize {t_mat:.1f} s; training "
                f"frame {t_frame:.2f} s (the same frame as the embedded store's)"
            )
            print(f"postgres: database {total / 2**20:.1f} MiB; largest tables:")
            for name, size in sizes[:4]:
                print(f"  {name:<40} {size / 2**20:8.1f} MiB")


def _postgres_feast_config() -> Path:
    """docs/scale-out/feature_store.yaml of a source checkout (the perf scripts run from one)."""
    path = Path(__file__).resolve().parents[2] / "docs" / "scale-out" / "feature_store.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; run the perf scripts from a source checkout")
    return path


# --- Optuna -----------------------------------------------------------------------------------


def synthetic_benchmark(rows: int, features: int, seed: int):
    """An in-memory dataset: songs of 1-2 versions charting in some of 12 regions.

    ``log1p_charted_sum`` depends on 5 of the ``features`` columns and the region, with noise, so that
    LightGBM grows real trees.
    """
    from ...features.feature_sets import TABULAR
    from ..data import BenchmarkData, FeatureInputs

    rng = np.random.default_rng(seed)
    songs = rng.integers(0, max(rows // 6, 2), size=rows)
    regions = np.array(["us", "gb", "de", "jp", "br", "mx", "se", "tw", "fr", "au", "ar", "ad"])
    region = regions[rng.integers(0, len(regions), size=rows)]
    song_features = rng.normal(size=(songs.max() + 1, features))
    x = song_features[songs] + 0.05 * rng.normal(size=(rows, features))
    offsets = {r: v for r, v in zip(regions, np.linspace(-1, 1, len(regions)), strict=True)}
    signal = x[:, :5] @ np.array([1.0, -0.7, 0.5, 0.3, 0.2]) + np.vectorize(offsets.get)(region)
    value = 8 + signal + 0.5 * rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "track_id": [f"t{s}v{i % 2}" for i, s in enumerate(songs)],
            "song_id": [f"s{s}" for s in songs],
            "region": region,
            "log1p_charted_sum": value,
            "log1p_debut": 0.8 * value + 0.3 * rng.normal(size=rows),
        }
    ).drop_duplicates(["track_id", "region"])
    columns = pd.DataFrame(x[frame.index], columns=_lowlevel_names()[:features])
    inputs = FeatureInputs("essentia", TABULAR, "in memory", columns=columns)
    return BenchmarkData(frame=frame, inputs={"essentia": inputs}, name="perf")


def _optuna_worker(
    rows: int, features: int, trials: int, storage: str, study: str, tracking: str, out: str
) -> None:
    """One `benchmark run` worker of the shared study (run in a process of its own)."""
    from ..config import load_config
    from ..runner import run_suite

    config = load_config(
        "quick",
        dataset="perf",
        suite="lightgbm",
        features="essentia",
        n_folds=2,
        n_trials=trials,
        bootstrap=50,
        tracking_uri=tracking,
        optuna_storage=storage,
        study_name=study,
        results_dir=Path(out),
    )
    run_suite(config, synthetic_benchmark(rows, features, seed=0))


def section_optuna(rows: int, features: int, trials: int, postgres_url: str | None) -> None:
    """The same study budget tuned by 1 and by 2 worker processes on PostgreSQL."""
    import optuna

    print(f"\n== optuna ({_load()})")
    data = synthetic_benchmark(rows, features, seed=0)
    print(
        f"LightGBM on {len(data.frame):,} rows x {features} features, 2 outer folds + the final "
        f"model: 3 studies of {trials} trials each"
    )
    context = multiprocessing.get_context("spawn")
    with _postgres(postgres_url) as server, tempfile.TemporaryDirectory() as tmp:
        storage = _url(_database(server, "musicpop_perf_optuna"))
        baseline = None
        for n in (1, 2):
            study = f"perf-{n}-workers"
            tracking = f"sqlite:///{Path(tmp) / f'mlflow-{n}.db'}"
            t0 = time.perf_counter()
            procs = [
                context.Process(
                    target=_optuna_worker,
                    args=(rows, features, trials, storage, study, tracking, f"{tmp}/r{n}{i}"),
                )
                for i in range(n)
            ]
            for proc in procs:
                proc.start()
            for proc in procs:
                proc.join()
                if proc.exitcode != 0:
                    raise SystemExit(f"an Optuna worker failed (exit code {proc.exitcode})")
            wall = time.perf_counter() - t0
            finished, tuning_seconds, fit_seconds = 0, 0.0, []
            for name in optuna.get_all_study_names(storage):
                if not name.startswith(study + "."):
                    continue
                done = [t for t in optuna.load_study(study_name=name, storage=storage).trials]
                done = [t for t in done if t.datetime_complete is not None]
                finished += len(done)
                start = min(t.datetime_start for t in done)
                end = max(t.datetime_complete for t in done)
                tuning_seconds += (end - start).total_seconds()
                fit_seconds += [t.duration.total_seconds() for t in done]
            rate = finished / (tuning_seconds * n / 3600)
            speedup = "" if baseline is None else f", {baseline / tuning_seconds:.2f}x faster"
            baseline = baseline or tuning_seconds
            print(
                f"{n} worker(s): {finished} trials in {tuning_seconds:.1f} s of tuning "
                f"(whole runs {wall:.1f} s){speedup}; median trial {np.median(fit_seconds):.2f} s; "
                f"{rate:,.0f} trials per worker-hour ({_load()})"
            )


# --- scaling ----------------------------------------------------------------------------------


def section_scaling(sizes: list[int], features: int) -> None:
    """LightGBM fit and song bootstrap at growing row counts."""
    import lightgbm

    from ..metrics import evaluate

    print(f"\n== scaling ({_load()})")
    for rows in sizes:
        data = synthetic_benchmark(rows, features, seed=1)
        frame = data.frame
        X = data.inputs["essentia"].columns.to_numpy(dtype=np.float32)
        params = {
            "objective": "regression",
            "num_leaves": 31,
            "learning_rate": 0.05,
            "num_threads": 1,
            "verbose": -1,
        }
        t0 = time.perf_counter()
        lightgbm.train(params, lightgbm.Dataset(X, frame["log1p_charted_sum"].to_numpy()), 200)
        t_fit = time.perf_counter() - t0
        truth = frame[["log1p_charted_sum", "log1p_debut"]]
        rng = np.random.default_rng(0)
        region_mean = truth.groupby(frame["region"]).transform("mean")
        predictions = {
            "region_mean": region_mean,
            "model": truth + rng.normal(scale=0.8, size=truth.shape),
        }
        t0 = time.perf_counter()
        evaluate(
            truth=truth,
            predictions=predictions,
            songs=frame["song_id"],
            regions=frame["region"],
            targets=["log1p_charted_sum", "log1p_debut"],
            n_resamples=1000,
            seed=0,
            candidates=["region_mean", "model"],
        )
        t_boot = time.perf_counter() - t0
        print(
            f"{len(frame):>9,} rows: LightGBM fit (200 trees) {t_fit:7.1f} s; bootstrap "
            f"(1,000 resamples, 2 models, 2 targets) {t_boot:7.1f} s ({_load()})"
        )


def main(argv: list[str] | None = None) -> int:
    """Print the scale-out figures; see the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m musicpop.benchmark.perf scaleout", description=__doc__
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--audio", type=Path, default=None, help="folder of MP3/OGG clips")
    parser.add_argument("--clips", type=int, default=8, help="generated clips (default 8)")
    parser.add_argument("--tracks", type=int, default=10_000, help="store: tracks")
    parser.add_argument("--regions", type=int, default=5, help="store: regions per track")
    parser.add_argument("--rows", type=int, default=12_000, help="optuna: (track, region) rows")
    parser.add_argument("--features", type=int, default=350, help="optuna/scaling: columns")
    parser.add_argument("--trials", type=int, default=8, help="optuna: budget of each study")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 40_000], help="scaling: row counts"
    )
    parser.add_argument(
        "--postgres", default=None, help="a PostgreSQL URL (default: a throwaway pgserver)"
    )
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}; {_load()}"
    )
    if "extract" in args.only:
        section_extract(args.audio, args.clips)
    if "store" in args.only:
        section_store(args.tracks, args.regions, args.postgres, seed=0)
    if "optuna" in args.only:
        section_optuna(args.rows, args.features, args.trials, args.postgres)
    if "scaling" in args.only:
        section_scaling(args.sizes, args.features)
    return 0
