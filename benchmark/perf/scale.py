"""How ``benchmark run`` grows with rows: a real chart table replicated 1x, 4x, 16x.

Takes a prepared data dir (ingested charts and an ingested feature table, e.g. the real weekly
2019-2021 charts with Spotify's descriptor table) and, for each factor k, builds a new data dir
in which every chart entry appears k times: copy 0 is the original, copy c > 0 renames every
track (a new 22-character id derived from the old one and c) and prefixes its title with
``x<c>`` so that its catalog song is new too (the song grouping never joins two copies). Each
renamed track gets its original's descriptors. Then it runs, in a fresh process per factor (so
that the peak memory is that factor's), the stages ``benchmark run`` runs, timing each:

catalog, targets, ingest features, Feast apply, Feast materialize, rows + inputs (Feast
retrieval), then :func:`~benchmark.runner.run_suite`'s own stages (each model's tuning and folds,
the bootstrap, the report).

It prints one table: rows, seconds per stage (wall and CPU), and the peak resident memory after
each stage, with the load average, so that the growth with rows can be read off (goal: linear
or better). Run::

    python -m musicpop.benchmark.perf scale --data-dir data/spotify-weekly-2019-2021 \\
        --features spotify_audio_features --factors 1,4,16
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...features.layout import DataLayout

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def renamed_id(track_id: str, copy: int) -> str:
    """A new 22-character base62 track id for copy ``copy`` of ``track_id`` (copy 0: itself)."""
    if copy == 0:
        return track_id
    number = int.from_bytes(hashlib.blake2b(f"{track_id}:{copy}".encode(), digest_size=16).digest())
    chars = []
    for _ in range(22):
        number, rest = divmod(number, 62)
        chars.append(_BASE62[rest])
    return "".join(chars)


def replicate(source: Path, target: Path, factor: int, features: str) -> dict[str, int]:
    """Write ``target`` with the streams of ``source`` replicated ``factor`` times, renamed.

    Returns
    -------
    dict[str, int]
        ``chart_rows`` and ``tracks`` of the new data dir.
    """
    src, dst = DataLayout(source), DataLayout(target)
    streams = src.streams.read()
    table = src.feature_table(features).read()
    copies, tables = [], []
    for copy in range(factor):
        ids = {t: renamed_id(t, copy) for t in streams["track_id"].unique()}
        part = streams.assign(track_id=streams["track_id"].map(ids))
        if copy:
            part["title"] = f"x{copy} " + part["title"].astype(str)
        copies.append(part)
        known = table["track_id"].isin(ids)
        tables.append(table[known].assign(track_id=table.loc[known, "track_id"].map(ids)))
    dst.streams.write(pd.concat(copies, ignore_index=True))
    descriptors = pd.concat(tables, ignore_index=True).drop(columns="event_timestamp")
    descriptors.to_parquet(target / f"{features}.parquet", index=False)
    return {"chart_rows": sum(len(c) for c in copies), "tracks": int(descriptors.shape[0])}


def _peak_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_one(source: Path, work: Path, factor: int, features: str, config_path: Path | None) -> dict:
    """Every stage for one factor, in this process; returns the timings and memory."""
    from ...features import store
    from ...features.catalog import build_catalog
    from ...features.targets import build_targets
    from ...features.user_tables import ingest_feature_table
    from ..config import load_config
    from ..data import load_benchmark_data
    from ..runner import run_suite, select_runs

    target = work / f"x{factor}"
    stages: list[dict] = []

    def stage(name: str, action: Callable[[], Any]) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = action()
        stages.append(
            {
                "stage": name,
                "seconds": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu,
                "peak_mib": _peak_mib(),
            }
        )
        return out

    sizes = stage("replicate streams", lambda: replicate(source, target, factor, features))
    stage("catalog", lambda: build_catalog(target))
    config = load_config(
        None,
        config_path,
        data_dir=target,
        features=features,
        results_dir=work / "results",
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        dataset=f"scale-x{factor}",
    )
    stage("targets", lambda: build_targets(target, horizon=config.horizon))
    stage(
        "ingest features",
        lambda: ingest_feature_table(target / f"{features}.parquet", target, features),
    )
    stage("Feast apply", lambda: store.apply(target, period=config.period))
    stage("Feast materialize", lambda: store.materialize(target))
    runs = select_runs(config)
    data = stage("rows + inputs (Feast)", lambda: load_benchmark_data(config, runs))
    wall, cpu = time.perf_counter(), time.process_time()
    results = run_suite(config, data)
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    for part, seconds in results.timings.items():
        stages.append(
            {"stage": part, "seconds": seconds, "cpu": float("nan"), "peak_mib": _peak_mib()}
        )
    stages.append(
        {
            "stage": "benchmark (all of run_suite)",
            "seconds": total_wall,
            "cpu": total_cpu,
            "peak_mib": _peak_mib(),
        }
    )
    return {
        "factor": factor,
        "rows": len(data.frame),
        **sizes,
        "stages": stages,
        "load": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    """Replicate, run every factor in its own process, print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m musicpop.benchmark.perf scale", description=__doc__
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="prepared data dir")
    parser.add_argument("--features", required=True, help="its ingested feature table")
    parser.add_argument("--factors", default="1,4,16", help="comma-separated factors")
    parser.add_argument("--config", type=Path, default=None, help="TOML over the quick preset")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="musicpop-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        result = run_one(args.data_dir, work, args.one, args.features, args.config)
        print("RESULT " + json.dumps(result))
        return 0

    factors = [int(f) for f in args.factors.split(",") if f.strip()]
    print(f"scale: {args.data_dir} x {factors}, scratch {work}, {os.cpu_count()} cores", flush=True)
    results = []
    for factor in factors:
        command = [
            sys.executable,
            "-m",
            "musicpop.benchmark.perf",
            "scale",
            "--data-dir",
            str(args.data_dir),
            "--features",
            args.features,
            "--work",
            str(work),
            "--one",
            str(factor),
        ]
        if args.config is not None:
            command += ["--config", str(args.config)]
        load = os.getloadavg()[0]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(lines[-1][len("RESULT ") :])
        result["load_start"] = load
        results.append(result)
        _print_factor(result)
    _print_growth(results)
    return 0


def _print_factor(result: dict) -> None:
    print(
        f"\nx{result['factor']}: {result['chart_rows']:,} chart rows, {result['tracks']:,} tracks "
        f"with descriptors, {result['rows']:,} benchmark rows; load average "
        f"{result['load_start']:.1f} at the start, {result['load'][0]:.1f} at the end"
    )
    print(f"  {'stage':<42} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9}")
    for s in result["stages"]:
        cpu = "" if np.isnan(s["cpu"]) else f"{s['cpu']:8.1f}"
        print(f"  {s['stage']:<42} {s['seconds']:8.1f} {cpu:>8} {s['peak_mib']:9.0f}")


def _print_growth(results: list[dict]) -> None:
    if len(results) < 2:
        return
    base = results[0]
    print("\ngrowth against the first factor (time ratio / row ratio; 1.0 is linear):")
    names = [s["stage"] for s in base["stages"]]
    for name in names:
        ratios = []
        for result in results[1:]:
            mine = next((s for s in result["stages"] if s["stage"] == name), None)
            first = next(s for s in base["stages"] if s["stage"] == name)
            if mine is None or first["seconds"] <= 0:
                ratios.append("")
                continue
            rows = result["rows"] / base["rows"]
            ratios.append(f"x{result['factor']}: {mine['seconds'] / first['seconds'] / rows:.2f}")
        print(f"  {name:<42} " + "  ".join(ratios))


if __name__ == "__main__":
    sys.exit(main())
