"""Test data the tests build themselves: an in-memory benchmark dataset and a tiny data dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from musicpop.benchmark.data import BenchmarkData, FeatureInputs
from musicpop.features.feature_sets import CLIP_SCHEMA, encode_array, get_feature_set
from musicpop.features.layout import DataLayout
from musicpop.features.targets import POPULARITY_COLUMNS, RANK_METRICS

REGIONS = ("us", "gb", "de", "jp", "br", "mx", "se", "tw", "fr", "au", "ar", "global")
SYNTHETIC_SET = "synthetic"
_BASE62 = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))


def track_ids(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct random 22-character base62 track ids."""
    ids: dict[str, None] = {}
    while len(ids) < n:
        for row in rng.integers(0, 62, size=(n, 22)):
            ids["".join(_BASE62[row])] = None
    return list(ids)[:n]


def synthetic_data(
    n_songs: int = 120,
    regions: tuple[str, ...] = ("us", "gb", "de", "jp"),
    n_features: int = 8,
    signal: bool = True,
    noise: float = 0.5,
    seed: int = 0,
) -> BenchmarkData:
    """A small in-memory dataset where the target is a known function of one feature.

    Each song has one or two versions (tracks with near-identical features); each track charts
    in a random non-empty subset of regions. ``log1p_charted_sum = 8 + region offset + 1.5 * f0 + noise``
    when ``signal`` (else the feature term is left out); ``log1p_debut`` follows it with extra
    noise. The tabular feature set is called ``synthetic``; the ground truth holds the
    noise-free appeal.
    """
    rng = np.random.default_rng(seed)
    song_feats = rng.normal(size=(n_songs, n_features))
    offsets = dict(zip(regions, np.linspace(-1.0, 1.0, len(regions)), strict=True))
    start = np.datetime64("2020-01-03")
    rows, features, truth = [], [], {}
    for s in range(n_songs):
        song = f"song{s:04d}"
        debut = start + np.timedelta64(int(rng.integers(0, 700)), "D")
        for v in range(int(rng.integers(1, 3))):
            feats = song_feats[s] + (0.05 * rng.normal(size=n_features) if v else 0.0)
            chosen = [r for r in regions if rng.random() < 0.6] or [regions[0]]
            for region in chosen:
                appeal = 8.0 + offsets[region] + (1.5 * song_feats[s, 0] if signal else 0.0)
                truth[(song, region)] = appeal
                value = appeal + noise * rng.normal()
                rows.append(
                    {
                        "track_id": f"{song}v{v}",
                        "song_id": song,
                        "region": region,
                        "debut_date": debut + np.timedelta64(7 * v, "D"),
                        "log1p_charted_sum": value,
                        "log1p_debut": 0.8 * value + 0.3 * noise * rng.normal(),
                    }
                )
                features.append({f"lowlevel.f{j}": feats[j] for j in range(n_features)})
    ground_truth = pd.DataFrame(
        [(s, r, a) for (s, r), a in truth.items()], columns=["song_id", "region", "appeal"]
    )
    inputs = FeatureInputs(SYNTHETIC_SET, "tabular", "in memory", columns=pd.DataFrame(features))
    return BenchmarkData(
        frame=pd.DataFrame(rows),
        inputs={SYNTHETIC_SET: inputs},
        name="synthetic",
        ground_truth=ground_truth,
    )


def write_synthetic_tables(
    data_dir: Path,
    tracks: int = 12,
    regions: int = 2,
    features: int = 4,
    clips: int = 2,
    n_mels: int = 8,
    n_frames: int = 10,
    horizon: int = 8,
    seed: int = 0,
) -> list[str]:
    """A data dir with random values in the contract: essentia and mel tables, popularity.

    Track ``i`` is released on 2020-01-01 + i days; its targets become known ``horizon``
    periods later; it has weekly and daily popularity rows in the first ``regions`` regions.

    Returns
    -------
    list[str]
        The track ids, in release order.
    """
    layout = DataLayout(data_dir)
    rng = np.random.default_rng(seed)
    ids = track_ids(tracks, rng)
    release = pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(np.arange(tracks), unit="D")

    names = [
        f"lowlevel.descriptor_{j // 2}.{'mean' if j % 2 == 0 else 'stdev'}" for j in range(features)
    ]
    essentia = pd.DataFrame(rng.normal(size=(tracks, features)), columns=names)
    essentia.insert(0, "event_timestamp", release)
    essentia.insert(0, "track_id", ids)
    get_feature_set("essentia").table(layout).write(essentia)

    arrays = rng.normal(size=(tracks * clips, n_mels, n_frames))
    encoded = [encode_array(a, "float16") for a in arrays]
    mel = pd.DataFrame(
        {
            "track_id": np.repeat(ids, clips),
            "clip_id": np.tile(np.arange(clips), tracks),
            "event_timestamp": np.repeat(release, clips),
            "array": [blob for blob, _, _ in encoded],
            "dtype": [dtype for _, dtype, _ in encoded],
            "shape": [shape for _, _, shape in encoded],
        }
    )
    get_feature_set("mel").table(layout).write(mel.pipe(_with_schema))

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
                "debut_date": debut.tz_localize(None).astype("datetime64[ns]"),
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
    layout.popularity.write(pd.concat(parts, ignore_index=True))
    return ids


def _with_schema(frame: pd.DataFrame):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=CLIP_SCHEMA, preserve_index=False)


def write_catalog(data_dir: Path, ids: list[str], versions: int = 1) -> None:
    """A catalog for ``ids``: every ``versions`` consecutive tracks are versions of one song."""
    catalog = pd.DataFrame(
        {
            "track_id": ids,
            "song_id": [f"song{i // versions}" for i in range(len(ids))],
            "title": [f"title {i // versions}" for i in range(len(ids))],
            "artist": "someone",
            "audio_path": None,
            "release_date": pd.NaT,
        }
    ).astype({"audio_path": object, "release_date": "datetime64[ns]"})
    DataLayout(data_dir).catalog.write(catalog)


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def process_group_alive(group: int) -> bool:
    """Whether any process of process group ``group`` is still running."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def server_group(pid: int) -> int | None:
    """Process group of the server started by ``pid`` (the child leading its own group)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.is_file():
        return None
    for child in map(int, children.read_text().split()):
        if os.getpgid(child) == child:
            return child
    return None


def write_chart_files(
    folder: Path,
    n_tracks: int = 60,
    regions: tuple[str, ...] = ("us", "gb"),
    n_charts: int = 20,
    chart_size: int = 20,
    period: str = "weekly",
    n_features: int = 4,
    seed: int = 0,
    seasonal: int = 0,
) -> pd.DataFrame:
    """Chart files in the old spotifycharts.com CSV format, and a descriptor table for them.

    Each track has ``n_features`` descriptors; its appeal is ``f0`` plus noise, and it charts
    from a random debut for a few periods in a random subset of regions, with streams that grow
    with the appeal (only the top ``chart_size`` of each chart are listed, as on real charts).
    Files are ``<cc>/<start>--<end><cc>.csv`` (7 or 1 days apart). The first ``seasonal``
    tracks chart only in December, every year, near the top (Christmas songs).

    Returns
    -------
    pandas.DataFrame
        The descriptor table: ``track_id`` and ``f0 .. f{n-1}``, one row per track.
    """
    rng = np.random.default_rng(seed)
    ids = track_ids(n_tracks, rng)
    features = rng.normal(size=(n_tracks, n_features))
    appeal = features[:, 0] + 0.5 * rng.normal(size=n_tracks)
    debut = rng.integers(0, n_charts, size=n_tracks)
    length = rng.integers(1, 8, size=n_tracks)
    step = 7 if period == "weekly" else 1
    start = pd.Timestamp("2020-01-03")
    for r, region in enumerate(regions):
        present = rng.random(n_tracks) < 0.7
        for c in range(n_charts):
            day = start + pd.Timedelta(days=step * c)
            live = present & (debut <= c) & (c < debut + length)
            streams = np.exp(11.0 + appeal + 0.3 * r - 0.2 * (c - debut)) * (
                1 + rng.random(n_tracks)
            )
            live[:seasonal] = day.month == 12
            streams[:seasonal] = np.exp(14.0 + appeal[:seasonal]) * (1 + rng.random(seasonal))
            order = [i for i in np.argsort(-streams) if live[i]][:chart_size]
            end = day + pd.Timedelta(days=step)
            path = folder / region / f"{day:%Y-%m-%d}--{end:%Y-%m-%d}{region}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            lines = [
                ',,,"Note that these figures are generated using a formula that protects against '
                'any artificial inflation of chart positions.",',
                'Position,"Track Name",Artist,Streams,URL',
            ]
            lines += [
                f'{rank},"Song {i}","Artist {i % 7}",{int(streams[i])},'
                f"https://open.spotify.com/track/{ids[i]}"
                for rank, i in enumerate(order, start=1)
            ]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    table = pd.DataFrame(features, columns=[f"f{j}" for j in range(n_features)])
    table.insert(0, "track_id", ids)
    return table


def write_tone_clip(path: Path, seconds: float, freq: float, seed: int, rate: int = 22_050) -> Path:
    """A modulated tone with a little noise, in the format of ``path``'s suffix."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    signal = (wave + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    fmt = {".mp3": "MP3", ".ogg": "OGG", ".flac": "FLAC", ".wav": "WAV"}[path.suffix]
    sf.write(path, signal, rate, format=fmt)
    return path


def write_clip_tables(data_dir: Path, clips: list[tuple[str, int, Path]]) -> None:
    """Catalog and clips tables for ``(track_id, clip_id, audio path)`` rows (no release dates)."""
    layout = DataLayout(data_dir)
    tracks = sorted({t for t, _, _ in clips})
    first = {t: str(p) for t, c, p in sorted(clips, key=lambda r: r[1], reverse=True)}
    catalog = pd.DataFrame(
        {
            "track_id": tracks,
            "song_id": [f"song{t[-3:]}" for t in tracks],
            "title": tracks,
            "artist": "someone",
            "audio_path": [first[t] for t in tracks],
            "release_date": pd.NaT,
        }
    ).astype({"release_date": "datetime64[ns]"})
    layout.catalog.write(catalog)
    layout.clips.write(
        pd.DataFrame(
            {
                "track_id": [t for t, _, _ in clips],
                "clip_id": np.array([c for _, c, _ in clips], dtype=np.int64),
                "audio_path": [str(p) for _, _, p in clips],
            }
        )
    )


def save_tiny_ast(folder: Path, **overrides: int) -> Path:
    """A tiny random AST (``transformers``), saved with ``save_pretrained`` into ``folder``."""
    import torch
    from transformers import ASTConfig, ASTModel

    torch.manual_seed(0)
    settings = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "frequency_stride": 16,
        "time_stride": 16,
    }
    ASTModel(ASTConfig(**(settings | overrides))).save_pretrained(folder)
    return folder


def run_benchmark(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 1200
) -> subprocess.CompletedProcess[str]:
    """``benchmark ARGS`` of this environment in a subprocess, from ``cwd``, output captured."""
    env = env if env is not None else {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "benchmark"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
