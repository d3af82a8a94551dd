"""Feast store performance: online latency p50/p99 (1 and 100 rows), offline retrieval time.

Builds a synthetic data dir (default 2,000 tracks x 5 regions, 64 low-level features) in a
temporary folder, applies and materializes the store, then times ``get_online_features`` on the
``essentia`` view with one reused ``FeatureStore`` and ``get_historical_features`` of its
service ``essentia_v1`` for 10,000 entity rows. Run: ``python -m musicpop.benchmark.perf store``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ...features.feature_sets import get_feature_set
from ...features.layout import DataLayout

REGIONS = ("us", "gb", "de", "jp", "br", "mx", "se", "tw", "fr", "au", "ar", "global")
_BASE62 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def _track_ids(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct random 22-character base62 track ids."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        for row in rng.integers(0, 62, size=(n, 22)):
            ids["".join(_BASE62[row])] = None
    return list(ids)[:n]


def build_store_tables(
    data_dir: Path, tracks: int, regions: int, features: int, seed: int
) -> list[str]:
    """A data dir at the requested size: one tabular feature set and weekly popularity rows.

    Values are random (only sizes matter here): ``tracks`` x ``features`` floats in the
    ``essentia`` table (track ``i`` released 2020-01-01 + i days) and ``tracks`` x ``regions``
    popularity rows with an 8-week curve.

    Returns
    -------
    list[str]
        The track ids.
    """
    layout = DataLayout(data_dir)
    rng = np.random.default_rng(seed)
    ids = _track_ids(tracks, rng)
    release = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.arange(tracks), unit="D")
    columns = {f"lowlevel.descriptor_{j}.mean": rng.normal(size=tracks) for j in range(features)}
    table = pd.DataFrame({"track_id": ids, "event_timestamp": release, **columns})
    get_feature_set("essentia").table(layout).write(table)
    n = tracks * regions
    curve = rng.lognormal(10.0, 1.0, size=(n, 8))
    debut = np.repeat(release, regions)
    popularity = pd.DataFrame(
        {
            "track_id": np.repeat(ids, regions),
            "region": np.tile(REGIONS[:regions], tracks),
            "period": "weekly",
            "debut_date": debut.date,
            "event_timestamp": debut + pd.Timedelta(weeks=8),
            "curve": list(curve),
            "sum": curve.sum(axis=1),
            "debut": curve[:, 0],
        }
    )
    layout.popularity.write(popularity)
    return ids


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main(argv: list[str] | None = None) -> int:
    """Build the synthetic store, time online and offline retrieval, print the figures."""
    from ...features import store

    parser = argparse.ArgumentParser(
        prog="python -m musicpop.benchmark.perf store", description=__doc__
    )
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--regions", type=int, default=5)
    parser.add_argument("--features", type=int, default=64, help="low-level feature columns")
    parser.add_argument("--repeats", type=int, default=300, help="online look-ups per setting")
    parser.add_argument("--offline-rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    with tempfile.TemporaryDirectory(prefix="musicpop-store-perf-") as tmp:
        data_dir = Path(tmp)
        t0 = time.perf_counter()
        ids = build_store_tables(data_dir, args.tracks, args.regions, args.features, args.seed)
        store.apply(data_dir)
        t_apply = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.materialize(data_dir)
        t_mat = time.perf_counter() - t0

        fs = store.feature_store(data_dir)
        service_name = get_feature_set("essentia").service
        service = fs.get_feature_service(service_name)
        view = fs.get_feature_view("essentia")
        refs = [f"essentia:{f.name}" for f in view.features]
        print(
            f"machine: {_cpu_model()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f}; {platform.system()} python {platform.python_version()}"
        )
        print(
            f"data: {args.tracks} tracks x {args.regions} regions, {len(refs)} low-level "
            f"features; write+apply {t_apply:.1f} s, materialize {t_mat:.1f} s"
        )
        for n_rows in (1, 100):
            for label, features in (("feature refs", refs), (service_name, service)):
                make = lambda picks: [{"track_id": ids[i]} for i in picks]  # noqa: E731
                fs.get_online_features(features=features, entity_rows=make([0])).to_dict()
                times = []
                for _ in tqdm(
                    range(args.repeats), desc=f"online {n_rows} rows {label}", leave=False
                ):
                    rows = make(rng.integers(0, len(ids), size=n_rows))
                    t0 = time.perf_counter()
                    fs.get_online_features(features=features, entity_rows=rows).to_dict()
                    times.append(time.perf_counter() - t0)
                p50, p99 = _percentiles(times)
                print(
                    f"online  {n_rows:>3} row(s), {label:<14}: p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
                )

        picks = rng.integers(0, len(ids), size=args.offline_rows)
        entity_rows = pd.DataFrame(
            {
                "track_id": [ids[i] for i in picks],
                "region": rng.choice(REGIONS[: args.regions], size=args.offline_rows),
                "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC"),
            }
        )
        t0 = time.perf_counter()
        frame = store.training_frame(data_dir, service_name, entity_rows)
        t_off = time.perf_counter() - t0
        print(
            f"offline {args.offline_rows:,} entity rows, {service_name} "
            f"({frame.shape[1]} columns): {t_off:.2f} s"
        )
    return 0
