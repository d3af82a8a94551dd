"""Feast store performance: online latency p50/p99 (1 and 100 rows), offline retrieval time.

Builds a synthetic data dir (default 2,000 tracks x 5 regions, 64 low-level features) in a
temporary folder, applies and materializes the store, then times ``get_online_features`` on the
``essentia_lowlevel`` view with one reused ``FeatureStore`` and ``get_historical_features`` of
``classical_v1`` for 10,000 entity rows. Run: ``python -m musicpop.benchmark.perf store``.
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

from ...features.targets import POPULARITY_COLUMNS, RANK_METRICS

REGIONS = ("us", "gb", "de", "jp", "br", "mx", "se", "tw", "fr", "au", "ar", "global")
_BASE62 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def synthetic_track_ids(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct random 22-character base62 track ids."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        for row in rng.integers(0, 62, size=(n, 22)):
            ids["".join(_BASE62[row])] = None
    return list(ids)[:n]


def write_synthetic_tables(
    data_dir: Path,
    tracks: int = 2000,
    regions: int = 5,
    features: int = 64,
    clips: int = 2,
    n_mels: int = 8,
    n_frames: int = 10,
    horizon: int = 8,
    seed: int = 0,
) -> list[str]:
    """Write contract-conformant feature and popularity tables with random values.

    Writes ``features/essentia_lowlevel.parquet``, ``features/mel.parquet`` and
    ``popularity.parquet`` (weekly and daily rows) under ``data_dir``. Track ``i`` is released on
    2020-01-01 + i days; its targets become known ``horizon`` weeks later.

    Parameters
    ----------
    data_dir : Path
        Output folder (created).
    tracks, regions, features, clips : int
        Table sizes: tracks, regions per track, low-level columns, clips per track.
    n_mels, n_frames : int
        Spectrogram shape.
    horizon : int
        Curve length.
    seed : int
        Random seed.

    Returns
    -------
    list[str]
        The track ids, in release order.
    """
    rng = np.random.default_rng(seed)
    ids = synthetic_track_ids(tracks, rng)
    release = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.arange(tracks), unit="D")
    (data_dir / "features").mkdir(parents=True, exist_ok=True)

    names = [
        f"lowlevel.descriptor_{j // 2}.{'mean' if j % 2 == 0 else 'stdev'}" for j in range(features)
    ]
    lowlevel = pd.DataFrame(rng.normal(size=(tracks, features)), columns=names)
    lowlevel.insert(0, "event_timestamp", release)
    lowlevel.insert(0, "track_id", ids)
    lowlevel.to_parquet(data_dir / "features" / "essentia_lowlevel.parquet", index=False)

    mel_values = rng.normal(size=(tracks, clips, n_mels, n_frames)).astype(np.float16)
    pd.DataFrame(
        {
            "track_id": np.repeat(ids, clips),
            "clip_id": np.tile(np.arange(clips), tracks),
            "event_timestamp": np.repeat(release, clips),
            "mel": [m.tobytes() for m in mel_values.reshape(tracks * clips, n_mels, n_frames)],
            "n_mels": n_mels,
            "n_frames": n_frames,
        }
    ).to_parquet(data_dir / "features" / "mel.parquet", index=False)

    parts = []
    for period, step in (("weekly", "7D"), ("daily", "1D")):
        n = tracks * regions
        debut = np.repeat(release, regions)
        curve = rng.lognormal(10.0, 1.0, size=(n, horizon))
        ranks = rng.integers(1, 201, size=(n, horizon)).astype(float)
        frame = pd.DataFrame(
            {
                "track_id": np.repeat(ids, regions),
                "region": np.tile(REGIONS[:regions], tracks),
                "period": period,
                "debut_date": debut.date,
                "event_timestamp": debut + horizon * pd.Timedelta(step),
                "curve": list(curve),
                "sum": curve.sum(axis=1),
                "sum_floor": curve.sum(axis=1),
                "debut": curve[:, 0],
                "peak": curve.max(axis=1),
                "peak_rank": ranks.min(axis=1).astype(np.int64),
                "debut_rank": ranks[:, 0].astype(np.int64),
                "periods_on_chart": np.full(n, horizon, dtype=np.int64),
            }
        )
        for name in RANK_METRICS:
            frame[name] = rng.normal(size=n)
        frame["left_censored"] = False
        frame["complete_horizon"] = True
        frame["reentry"] = False
        frame["charted"] = True
        parts.append(frame[POPULARITY_COLUMNS])
    pd.concat(parts, ignore_index=True).to_parquet(data_dir / "popularity.parquet", index=False)
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
        ids = write_synthetic_tables(
            data_dir, args.tracks, args.regions, args.features, seed=args.seed
        )
        store.apply(data_dir)
        t_apply = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.materialize(data_dir)
        t_mat = time.perf_counter() - t0

        fs = store.feature_store(data_dir)
        service = fs.get_feature_service("classical_v1")
        lowlevel = fs.get_feature_view("essentia_lowlevel")
        refs = [f"essentia_lowlevel:{f.name}" for f in lowlevel.features]
        print(
            f"machine: {_cpu_model()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f}; {platform.system()} python {platform.python_version()}"
        )
        print(
            f"data: {args.tracks} tracks x {args.regions} regions, {len(refs)} low-level "
            f"features; write+apply {t_apply:.1f} s, materialize {t_mat:.1f} s"
        )
        for n_rows in (1, 100):
            for label, features in (("lowlevel refs", refs), ("classical_v1", service)):
                if label == "classical_v1":
                    # the service also reads the popularity view, keyed by (track, region)
                    make = lambda picks: [{"track_id": ids[i], "region": "us"} for i in picks]  # noqa: E731
                else:
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
        frame = store.training_frame(data_dir, "classical_v1", entity_rows)
        t_off = time.perf_counter() - t0
        print(
            f"offline {args.offline_rows:,} entity rows, classical_v1 "
            f"({frame.shape[1]} columns): {t_off:.2f} s"
        )
    return 0
