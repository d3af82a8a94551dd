"""The built-in demo dataset: synthetic songs, audio clips, weekly charts and the hidden truth.

``make_demo(out_dir)`` writes a dataset that goes through exactly the same ingestion as real data::

    out_dir/raw/audio/<track_id>.mp3        30 s mono 44.1 kHz MP3 (96 kbit/s), one per track
    out_dir/raw/audio/<track_id>_1.mp3      a second 30 s window of some tracks
    out_dir/raw/charts/<cc>/<YYYY-MM-DD>--<YYYY-MM-DD><cc>.csv
                                            weekly Top-N charts, old spotifycharts.com CSV format
    out_dir/raw/catalog.csv                 mapping CSV: path,track_id,song_id,release_date,
                                            title,artist (``path`` is relative to the CSV's
                                            folder, ``out_dir/raw``)
    out_dir/raw/demo.json                   the generation parameters, written last (it marks
                                            a complete demo)
    out_dir/ground_truth.parquet            the hidden truth (below)

The default size (150 songs, 179 tracks, 198 clips, 5 regions x 52 weekly top-50 charts, about
12,500 chart rows, 71 MB) keeps the whole benchmark within minutes on two cores. Then
``benchmark ingest charts out_dir/raw/charts --data-dir out_dir`` and
``benchmark ingest audio out_dir/raw/audio --data-dir out_dir --mapping out_dir/raw/catalog.csv``.

The generative model
--------------------
Each song has musical attributes (:class:`features.synth.SongAttributes`: tempo 80-150 BPM, mode,
key, brightness, rhythmic density, loudness, timbre) drawn from a seeded RNG; the synthesiser makes
them audible. Some songs get a second version (every 10th song, from song 1, a ``" - Remastered
<year>"``, every 10th from song 2 a ``" - Live"``: louder/brighter, or with reverb and crowd noise),
a different track id and a later release. Some tracks get a second clip (a later window of the
song).

In region ``r``, track ``t`` of song ``s`` has a log stream level

    ``L[t, r] = log(market[r]) + a * taste_r(attributes[s]) + b * z[s, r] + offset[t]``

(plus 1.8 for seasonal songs), where ``taste_r`` is a region-dependent function of tempo, mode,
brightness, density and loudness (a shared liking for loud, dense, bright music plus each region's
own taste: ``de`` likes fast songs, ``se`` minor keys, ``br`` busy major-key songs, ``us`` a mid
tempo; see :data:`REGIONS`), standardised to mean 0 and variance 1 over the attribute
distribution; ``z`` is standard Gaussian "social" noise, correlated 0.6 across regions; ``offset``
is the version offset (remastered -0.7, live -1.3, original 0).

The strength of the audio signal is one number, the **audio share**

    ``rho = a² / (a² + b²)``,

the share of the within-region variance of the song-level level ``a * taste + b * z`` that the
hidden musical attributes explain (the population R² of the noise-free taste, before version
offsets, seasons, curve shapes, weekly noise and chart censoring; :func:`signal_scales`). The total
``a² + b² = 1 + 0.8² = 1.64`` is kept fixed, so charts look alike at every strength and only the
share changes: ``a = sqrt(1.64 rho)``, ``b = sqrt(1.64 (1 - rho))``. Presets (:data:`SIGNALS`):

- ``strong``: ``rho = 1 / 1.64 = 0.61`` (``a = 1``, ``b = 0.8``), the demo's original planted
  signal, byte-identical to it; a good model reaches within-region Spearman about 0.45 and
  within-region R² about 0.2 on ``log1p`` sums. For checking that models find a signal at all.
- ``realistic``: ``rho = 0.16``, calibrated to the project's real reference run on the weekly
  charts, where LightGBM on Spotify's descriptors reaches a within-region Spearman of 0.132 and a
  within-region R² of 0.015; see :data:`SIGNALS`.

``null=True`` is a negative control: popularity is independent of everything audible. ``taste_r``
is evaluated on a second, independent draw of attributes (the audio is the same bytes as without
it), and the version offsets go to tracks drawn at random (a seeded permutation of the offsets over
all tracks), not to the live or remastered versions, which sound different.

Weekly streams are ``exp(L[t, r]) * shape_t(week - release_week) * lognormal(0, 0.08)``: a rise
of 0-3 weeks to the peak, then a mixture of a fast geometric decay (0.72-0.9 per week) and a long
tail (0.97 per week). Seasonal songs (every 33rd song, from song 5) were released decades ago and
chart only in the 7 weeks up to and 2 weeks after Christmas. Each region's chart lists its top
``top_n`` tracks of the week (censoring); songs release on Fridays across the year, some before the
first chart week (left-censored). The chart weeks end two weeks after the week of Christmas 2020.

ground_truth.parquet
--------------------
One row per (track_id, region), i.e. per (song_id, region) for songs with one version:

``song_id``, ``track_id``, ``region``, ``version`` (original, remastered, live), ``title``,
``artist``, ``seasonal`` (bool), ``release_date``, the attributes ``tempo``, ``mode``, ``key``,
``brightness``, ``density``, ``loudness``, ``timbre`` (of the audio, also in null mode), ``taste``
(``taste_r``, unscaled; in null mode of the phantom attributes), ``social`` (the noise ``b * z``),
``appeal`` (the
noise-free level: ``log1p`` of the expected streams summed over the first :data:`APPEAL_HORIZON`
weeks from release, uncensored: the oracle prediction of ``log1p(sum)`` for targets with that
horizon; for seasonal songs over one season), ``level`` (``L`` with the noise, log weekly peak
streams), ``weeks_on_chart`` (in the generated charts) and ``n_clips``. In null mode ``appeal`` and
``level`` hold the offset of the random track the permutation gave, whatever ``version`` says.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .catalog import song_id as song_id_of
from .errors import DataError
from .layout import DataLayout, Table, write_bytes_atomic, write_text_atomic
from .synth import SongAttributes, encode_mp3, render_clip

DEMO_FORMAT = 1  # bump when the generator changes, so a stale demo is regenerated
DEFAULT_SONGS = 150
DEFAULT_REGIONS = 5
DEFAULT_WEEKS = 52
DEFAULT_TOP_N = 50
APPEAL_HORIZON = 26
SECOND_CLIP_BAR = 24

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
NOTE_LINE = (
    ',,,"Note that these figures are generated using a formula that protects against any '
    'artificial inflation of chart positions.",\n'
)
HEADER_LINE = 'Position,"Track Name",Artist,Streams,URL\n'
CHRISTMAS_WEEK_START = date(2020, 12, 18)  # the chart week 2020-12-18--2020-12-25

SOCIAL_SD = 0.8
"""Social noise sd of the ``strong`` preset (taste sd 1): fixes the total song-level variance."""
LEVEL_VARIANCE = 1.0 + SOCIAL_SD**2
"""``a² + b²``, the within-region variance of the song-level level, at every audio share."""
SOCIAL_CORRELATION = 0.6
WEEKLY_NOISE_SD = 0.08
VERSION_OFFSET = {"original": 0.0, "remastered": -0.7, "live": -1.3}
SEASONAL_BOOST = 1.8

SIGNALS: dict[str, float] = {
    "strong": 1.0 / LEVEL_VARIANCE,
    "realistic": 0.16,
}
"""Audio share ``rho`` of the named presets. ``strong`` is the original planted signal (0.61).
``realistic`` is calibrated against the project's real reference run
(``results/spotify-weekly-2019-2021``: LightGBM's within-region Spearman on ``log1p`` charted sums
0.132 [0.110, 0.155]; 0.135 when the share was set): on the default demo (342 rows kept at
H = 26) a fixed-setting LightGBM on the Essentia features reaches 0.12 at rho = 0.15 and 0.17 at 0.20 (means over 8 popularity seeds;
sd 0.15 between seeds), so 0.16 puts the expected figure near the real one (docs/targets.md,
"Demo signal strength", says how to redo it)."""

# RNG stream tags: every random quantity comes from default_rng([seed, TAG, index...])
_ATTRS, _PHANTOM, _NAMES, _IDS, _SHAPE, _SOCIAL, _WEEKLY, _ARTIST, _NULL_OFFSETS = range(1, 10)


@dataclass(frozen=True)
class RegionProfile:
    """A region's market size and musical taste.

    Attributes
    ----------
    code : str
        Lower-case ISO 3166-1 alpha-2 code.
    market : float
        Weekly streams of a song at its peak with level 0 (scales the whole chart).
    weights : dict[str, float]
        Region-specific linear weights on the standardised attributes (``tempo``, ``mode``,
        ``brightness``, ``density``, ``loudness``), added to :data:`COMMON_TASTE`.
    tempo_curvature : float
        Weight of ``-(z_tempo - tempo_peak)²``: a preferred tempo (0 = none).
    tempo_peak : float
        The preferred tempo in standard units.
    """

    code: str
    market: float
    weights: dict[str, float] = field(default_factory=dict)
    tempo_curvature: float = 0.0
    tempo_peak: float = 0.0


COMMON_TASTE = {"loudness": 0.45, "density": 0.35, "brightness": 0.2}
REGIONS: tuple[RegionProfile, ...] = (
    RegionProfile("us", 2.5e6, {"density": 0.5, "loudness": 0.3}, 0.4, 0.0),
    RegionProfile("gb", 9e5, {"brightness": 0.6, "mode": 0.2}),
    RegionProfile("de", 8e5, {"tempo": 0.8, "loudness": 0.3}),
    RegionProfile("se", 3e5, {"mode": -0.8, "brightness": 0.3}),
    RegionProfile("br", 1e6, {"density": 0.5, "mode": 0.5, "tempo": 0.3}),
    RegionProfile("jp", 4e5, {"brightness": 0.5, "mode": 0.5, "tempo": 0.4}),
    RegionProfile("mx", 9e5, {"mode": 0.6, "density": 0.4}),
    RegionProfile("fr", 6e5, {"brightness": -0.5, "tempo": -0.4}),
    RegionProfile("au", 4.5e5, {"loudness": 0.4, "brightness": 0.4}),
    RegionProfile("es", 6e5, {"density": 0.5, "mode": 0.4}),
)
"""All region profiles; ``regions=R`` uses the first R."""

# attribute distributions (uniform ranges; mode is Bernoulli(0.6))
TEMPO_RANGE = (80.0, 150.0)
BRIGHTNESS_RANGE = (0.05, 0.95)
DENSITY_RANGE = (0.1, 0.95)
LOUDNESS_RANGE = (-19.0, -7.0)
MAJOR_PROBABILITY = 0.6

_SYLLABLES = (
    "ka la mi no ra su te vo lu ne si ro da ma ze fi ki lo na ri be to sa mu "
    "gal dor mon tes vin ray lex kor bel fin tor sun hal zen "
).split()
_TITLE_WORDS = (
    "Love Night Fire Heart Summer Dream Light Gold Rain Dance Midnight Ocean Wild City Stars "
    "Echo River Neon Shadow Honey Storm Electric Paper Velvet Silver Ghost Crystal Young Lonely "
    "Forever Tonight Home Run Fall Fly Burn Shine Waves Mirror Paradise Sugar Thunder Blue Red"
).split()
_DEMO_FILE = "demo.json"
_CHART_NAME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}--\d{4}-\d{2}-\d{2}[a-z]{2}\.csv$")
_CLIP_NAME_RE = re.compile(r"^[0-9A-Za-z]{22}(?:_\d+)?\.mp3$")


@dataclass(frozen=True)
class _Track:
    track_id: str
    song_index: int
    song_id: str
    version: str
    title: str
    artist: str
    release_week: int
    release_date: date
    seasonal: bool
    n_clips: int
    shape: tuple[int, float, float]  # rise weeks, fast decay, tail fraction


# --- attributes and taste ----------------------------------------------------------------------


def _draw_attributes(rng: np.random.Generator) -> SongAttributes:
    u = rng.random(7)
    return SongAttributes(
        tempo=round(float(TEMPO_RANGE[0] + u[0] * (TEMPO_RANGE[1] - TEMPO_RANGE[0])), 2),
        mode=int(u[1] < MAJOR_PROBABILITY),
        key=int(u[2] * 12),
        brightness=round(float(BRIGHTNESS_RANGE[0] + u[3] * np.ptp(BRIGHTNESS_RANGE)), 4),
        density=round(float(DENSITY_RANGE[0] + u[4] * np.ptp(DENSITY_RANGE)), 4),
        loudness=round(float(LOUDNESS_RANGE[0] + u[5] * np.ptp(LOUDNESS_RANGE)), 2),
        timbre=int(u[6] * 4),
    )


def _standardised(attrs: list[SongAttributes]) -> dict[str, np.ndarray]:
    """Attributes in standard units of their generating distributions."""

    def z_uniform(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return (values - (lo + hi) / 2.0) / ((hi - lo) / np.sqrt(12.0))

    col = {
        name: np.array([getattr(a, name) for a in attrs], dtype=float) for name in asdict(attrs[0])
    }
    p = MAJOR_PROBABILITY
    return {
        "tempo": z_uniform(col["tempo"], *TEMPO_RANGE),
        "mode": (col["mode"] - p) / np.sqrt(p * (1.0 - p)),
        "brightness": z_uniform(col["brightness"], *BRIGHTNESS_RANGE),
        "density": z_uniform(col["density"], *DENSITY_RANGE),
        "loudness": z_uniform(col["loudness"], *LOUDNESS_RANGE),
    }


def _raw_taste(profile: RegionProfile, z: dict[str, np.ndarray]) -> np.ndarray:
    score = np.zeros_like(z["tempo"])
    for name, weight in COMMON_TASTE.items():
        score = score + weight * z[name]
    for name, weight in profile.weights.items():
        score = score + weight * z[name]
    return score - profile.tempo_curvature * (z["tempo"] - profile.tempo_peak) ** 2


@functools.cache
def _reference_standardised() -> dict[str, np.ndarray]:
    """A fixed large sample of the attribute distribution, to standardise taste functions."""
    reference = [_draw_attributes(np.random.default_rng([20240601, i])) for i in range(4000)]
    return _standardised(reference)


def taste(profile: RegionProfile, attrs: list[SongAttributes]) -> np.ndarray:
    """A region's audio taste for songs: mean 0 and variance 1 over the attribute distribution.

    Parameters
    ----------
    profile : RegionProfile
        The region.
    attrs : list of SongAttributes
        The songs.

    Returns
    -------
    numpy.ndarray
        One score per song, shape ``(len(attrs),)``.
    """
    ref = _raw_taste(profile, _reference_standardised())
    return (_raw_taste(profile, _standardised(attrs)) - ref.mean()) / ref.std()


def audio_share(signal: str | float) -> float:
    """The audio share ``rho`` of a preset name (:data:`SIGNALS`) or a number in [0, 1].

    Parameters
    ----------
    signal : str or float
        ``"strong"``, ``"realistic"`` or the share itself.

    Returns
    -------
    float
        ``rho``.

    Raises
    ------
    DataError
        For an unknown preset or a share outside [0, 1].
    """
    if isinstance(signal, str):
        if signal in SIGNALS:
            return SIGNALS[signal]
        try:
            signal = float(signal)
        except ValueError:
            raise DataError(
                f"demo: unknown signal {signal!r}; choose {', '.join(SIGNALS)} or a share in [0, 1]"
            ) from None
    share = float(signal)
    if not 0.0 <= share <= 1.0:
        raise DataError(f"demo: the audio share must be between 0 and 1, got {share}")
    return share


def signal_scales(share: float) -> tuple[float, float]:
    """Scales ``(a, b)`` of taste and social noise for audio share ``rho``.

    ``a² / (a² + b²) = rho`` and ``a² + b² =`` :data:`LEVEL_VARIANCE`; the ``strong`` share gives
    exactly ``(1.0, 0.8)``.

    Parameters
    ----------
    share : float
        ``rho`` in [0, 1].

    Returns
    -------
    tuple[float, float]
        ``(a, b)``.
    """
    return float(np.sqrt(share * LEVEL_VARIANCE)), float(np.sqrt((1.0 - share) * LEVEL_VARIANCE))


# --- names and ids -----------------------------------------------------------------------------


def _track_id(seed: int, song: int, version: int) -> str:
    digits = np.random.default_rng([seed, _IDS, song, version]).integers(0, 62, size=22)
    return "".join(BASE62[d] for d in digits)


def _word(rng: np.random.Generator, n_syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES, size=n_syllables)).capitalize()


def _artist_name(seed: int, index: int) -> str:
    rng = np.random.default_rng([seed, _ARTIST, index])
    if rng.random() < 0.4:
        return _word(rng, int(rng.integers(2, 4)))
    return f"{_word(rng, 2)} {_word(rng, int(rng.integers(1, 3)))}"


def _title(rng: np.random.Generator, song: int, artists: list[str]) -> str:
    n_words = int(rng.integers(1, 4))
    words = [str(w) for w in rng.choice(_TITLE_WORDS, size=n_words, replace=False)]
    if rng.random() < 0.4:
        words[int(rng.integers(0, n_words))] = _word(rng, 2)
    title = " ".join(words)
    if song % 9 == 4:
        title += f" (feat. {artists[int(rng.integers(0, len(artists)))]})"
    if song % 23 == 7:
        title = f'Say "{title}"'
    if song % 17 == 3:
        title = f"{title}, Pt. 2"
    return title


# --- curves ------------------------------------------------------------------------------------


def _shape(rise: int, decay: float, tail: float, age: np.ndarray) -> np.ndarray:
    """Expected relative weekly streams ``age`` weeks after release (peak 1, 0 before release)."""
    after = np.maximum(age - rise, 0)
    decaying = (1.0 - tail) * decay**after + tail * 0.97**after
    rising = 0.45 ** np.maximum(rise - age, 0)
    return np.where(age < 0, 0.0, np.where(age < rise, rising, decaying))


def _seasonal_shape(week: np.ndarray, christmas_week: int) -> np.ndarray:
    """Relative streams of a Christmas song in each chart week (every 52 weeks)."""
    x = (week - christmas_week + 26) % 52 - 26
    return np.where((x >= -6) & (x <= 0), np.exp(0.45 * x), np.where(x == 1, 0.2, 0.0)) + np.where(
        x == 2, 0.04, 0.0
    )


def _mean_shape_sum() -> float:
    """Expected sum of :func:`_shape` over the first :data:`APPEAL_HORIZON` weeks."""
    rng = np.random.default_rng(20240602)
    age = np.arange(APPEAL_HORIZON)
    sums = [_shape(*_draw_shape(rng), age).sum() for _ in range(4000)]
    return float(np.mean(sums))


def _draw_shape(rng: np.random.Generator) -> tuple[int, float, float]:
    rise = int(rng.choice(4, p=[0.55, 0.25, 0.12, 0.08]))
    return rise, round(float(rng.uniform(0.72, 0.9)), 4), round(float(rng.uniform(0.08, 0.3)), 4)


# --- the dataset -------------------------------------------------------------------------------


def _chart_start(weeks: int) -> date:
    christmas_index = max(weeks - 3, 0)
    return CHRISTMAS_WEEK_START - timedelta(weeks=christmas_index)


def _build_tracks(
    songs: int, weeks: int, seed: int, popularity_seed: int
) -> tuple[list[SongAttributes], list[SongAttributes], list[_Track]]:
    start = _chart_start(weeks)
    n_artists = max(3, (2 * songs) // 5)
    artists = [_artist_name(seed, j) for j in range(n_artists)]
    attrs, phantom, tracks = [], [], []
    used_keys: set[str] = set()
    for i in range(songs):
        attrs.append(_draw_attributes(np.random.default_rng([seed, _ATTRS, i])))
        phantom.append(_draw_attributes(np.random.default_rng([popularity_seed, _PHANTOM, i])))
        name_rng = np.random.default_rng([seed, _NAMES, i])
        artist = artists[int(name_rng.integers(0, n_artists))]
        title = _title(name_rng, i, artists)
        while song_id_of(artist, title) in used_keys:  # distinct songs must not group together
            title = f"{title} {_word(name_rng, 2)}"
        sid = song_id_of(artist, title)
        used_keys.add(sid)
        seasonal = i % 33 == 5
        shape_rng = np.random.default_rng([popularity_seed, _SHAPE, i])
        if seasonal:
            release_week = -int(shape_rng.integers(52 * 5, 52 * 40))
        elif i == 0:
            release_week = -2  # the first chart week is never empty
        else:
            release_week = int(shape_rng.integers(-8, max(weeks - 5, -7)))
        versions = [("original", title, release_week)]
        if not seasonal and i % 10 in (1, 2):
            later = release_week + int(shape_rng.integers(6, 21))
            if i % 10 == 1:
                year = (start + timedelta(weeks=later)).year
                versions.append(("remastered", f"{title} - Remastered {year}", later))
            else:
                versions.append(("live", f"{title} - Live", later))
        for v, (version, v_title, week) in enumerate(versions):
            tracks.append(
                _Track(
                    track_id=_track_id(seed, i, v),
                    song_index=i,
                    song_id=sid,
                    version=version,
                    title=v_title,
                    artist=artist,
                    release_week=week,
                    release_date=start + timedelta(weeks=week),
                    seasonal=seasonal,
                    n_clips=2 if (v == 0 and i % 8 == 0) else 1,
                    shape=_draw_shape(shape_rng),
                )
            )
    ids = [t.track_id for t in tracks]
    if len(set(ids)) != len(ids):  # astronomically unlikely; never silently merge tracks
        raise RuntimeError("track id collision in the demo generator")
    return attrs, phantom, tracks


def _csv_field(text: str) -> str:
    """Quote like the old spotifycharts CSV: only fields holding a space, comma or quote."""
    if any(ch in text for ch in ' ,"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _render_task(task: tuple[str, SongAttributes, int, int, str]) -> str:
    path, attrs, song_seed, start_bar, variant = task
    samples = render_clip(attrs, seed=song_seed, start_bar=start_bar, variant=variant)
    write_bytes_atomic(Path(path), encode_mp3(samples, bitrate=96, quality=7))
    return path


def _render_audio(
    tasks: list[tuple[str, SongAttributes, int, int, str]], workers: int, stamp: Path, seed: int
) -> None:
    """Render the clips not yet on disk; ``stamp`` records the generator format and seed of the
    clips present, since a clip's bytes depend only on those and its song (so a run resumes)."""
    current = {"format": DEMO_FORMAT, "seed": seed}
    try:
        reusable = json.loads(stamp.read_text()) == current
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        reusable = False
    todo = [t for t in tasks if not (reusable and Path(t[0]).exists())]
    write_text_atomic(stamp, json.dumps(current) + "\n")
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc="demo audio", unit="clip")
    with bar:
        if workers <= 1 or len(todo) <= 1:
            for task in todo:
                _render_task(task)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(_render_task, todo, chunksize=4):
                    bar.update()


def _parameters(
    songs: int, regions: int, seed: int, null: bool, weeks: int, top_n: int, share: float
) -> dict[str, object]:
    named = [name for name, value in SIGNALS.items() if value == share]
    return {
        "format": DEMO_FORMAT,
        "songs": songs,
        "regions": regions,
        "seed": seed,
        "null": null,
        "weeks": weeks,
        "top_n": top_n,
        "signal": named[0] if named else "custom",
        "audio_share": share,
    }


def _remove_stale(folder: Path, keep: set[Path], pattern: re.Pattern[str]) -> None:
    """Delete generator-named files under ``folder`` that the new dataset does not contain."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        if path.is_file() and pattern.match(path.name) and path not in keep:
            path.unlink()


def _intact(table: Table) -> bool:
    """Whether a table exists and passes its checks (a damaged ground truth is made again)."""
    try:
        table.check()
    except DataError:
        return False
    return True


def is_demo(data_dir: Path | str) -> bool:
    """Whether ``data_dir`` holds a complete demo written by :func:`make_demo`.

    Parameters
    ----------
    data_dir : path
        A dataset folder.

    Returns
    -------
    bool
        True when its marker (written last) and its ground truth exist.
    """
    layout = DataLayout(data_dir)
    return (layout.raw_dir / _DEMO_FILE).is_file() and layout.ground_truth.exists()


def make_demo(
    out_dir: Path | str,
    songs: int | None = None,
    regions: int | None = None,
    seed: int = 0,
    null: bool = False,
    *,
    signal: str | float = "realistic",
    popularity_seed: int | None = None,
    weeks: int = DEFAULT_WEEKS,
    top_n: int = DEFAULT_TOP_N,
    audio: bool = True,
    workers: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Generate the demo dataset into ``out_dir`` (see the module docstring for what is written).

    The output is a pure function of the parameters: the same parameters give the same bytes.
    If ``out_dir`` already holds a complete demo made with the same parameters, nothing is done.
    Otherwise files of an older demo that the new one does not contain are deleted from
    ``out_dir/raw``, and existing clips are kept (a clip's bytes depend only on the seed and its
    song), so an interrupted run resumes.

    Parameters
    ----------
    out_dir : path
        The dataset folder (for example ``data/demo``).
    songs : int, optional
        Number of songs (default :data:`DEFAULT_SONGS`: about 180 tracks, 200 clips).
    regions : int, optional
        Number of regions, the first ones of :data:`REGIONS` (default :data:`DEFAULT_REGIONS`).
    seed : int
        Random seed.
    null : bool
        Make popularity independent of everything audible (a negative control): taste of
        phantom attributes, version offsets on random tracks.
    signal : str or float
        Strength of the audio signal: a preset of :data:`SIGNALS` (``strong``, the original
        demo; ``realistic``) or the audio share ``rho`` in [0, 1] (see the module docstring).
    popularity_seed : int, optional
        Seed of everything about popularity that is not audible (social noise, release weeks
        and curve shapes, weekly noise, the null's phantom attributes and offset permutation);
        default ``seed``. Other values give new popularity draws for the same songs, titles,
        track ids and audio bytes (clips are reused), e.g. for many negative-control runs
        without rendering and extracting audio again.
    weeks : int
        Number of weekly charts per region.
    top_n : int
        Chart length: only the top ``top_n`` tracks of each week are listed.
    audio : bool
        False skips rendering the clips (charts, catalog and truth only: quick experiments with
        the chart model; the catalog then names files that do not exist).
    workers : int, optional
        Processes rendering audio (default: up to 2).
    progress : callable, optional
        Receives one-line status messages (default: print to stderr).

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    DataError
        If a size parameter is out of range or ``out_dir`` is not a folder.
    """
    songs = DEFAULT_SONGS if songs is None else int(songs)
    regions = DEFAULT_REGIONS if regions is None else int(regions)
    weeks, top_n, seed = int(weeks), int(top_n), int(seed)
    if songs < 1:
        raise DataError(f"demo: songs must be at least 1, got {songs}")
    if not 1 <= regions <= len(REGIONS):
        raise DataError(f"demo: regions must be between 1 and {len(REGIONS)}, got {regions}")
    if weeks < 1:
        raise DataError(f"demo: weeks must be at least 1, got {weeks}")
    if top_n < 1:
        raise DataError(f"demo: top_n must be at least 1, got {top_n}")
    if seed < 0:
        raise DataError(f"demo: seed must be non-negative, got {seed}")
    share = audio_share(signal)
    popularity_seed = seed if popularity_seed is None else int(popularity_seed)
    if popularity_seed < 0:
        raise DataError(f"demo: popularity_seed must be non-negative, got {popularity_seed}")
    say = progress or (lambda message: print(message, file=sys.stderr))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: demo output exists and is not a folder")
    layout = DataLayout(out_dir)
    raw = layout.raw_dir
    marker = raw / _DEMO_FILE
    params = _parameters(songs, regions, seed, null, weeks, top_n, share)
    params["popularity_seed"] = popularity_seed
    params["audio"] = audio
    if marker.is_file() and _intact(layout.ground_truth):
        try:
            done = json.loads(marker.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            done = None
        if done == params:
            say(f"{out_dir}: a complete demo with these parameters exists; nothing to do")
            return out_dir
    marker.unlink(missing_ok=True)
    if layout.streams.exists():
        say(f"warning: {out_dir} holds tables of an earlier ingest; re-ingest into a fresh folder")

    attrs, phantom, tracks = _build_tracks(songs, weeks, seed, popularity_seed)
    profiles = REGIONS[:regions]
    start = _chart_start(weeks)
    christmas_index = max(weeks - 3, 0)

    # --- audio ---
    audio_dir = raw / "audio"
    tasks = []
    for t in tracks:
        for k in range(t.n_clips):
            name = f"{t.track_id}.mp3" if k == 0 else f"{t.track_id}_{k}.mp3"
            tasks.append(
                (
                    str(audio_dir / name),
                    attrs[t.song_index],
                    seed * 100003 + t.song_index,
                    k * SECOND_CLIP_BAR,
                    t.version,
                )
            )
    if audio:
        _remove_stale(audio_dir, {Path(task[0]) for task in tasks}, _CLIP_NAME_RE)
        n_workers = workers if workers is not None else min(2, os.cpu_count() or 1)
        _render_audio(tasks, n_workers, audio_dir / ".demo-audio.json", seed)

    # --- levels and charts ---
    week_index = np.arange(weeks)
    shape_sum = _mean_shape_sum()
    taste_scale, social_scale = signal_scales(share)
    offsets = np.array([VERSION_OFFSET[t.version] for t in tracks])
    if null:  # offsets go to random tracks, not to the versions that sound different
        offsets = np.random.default_rng([popularity_seed, _NULL_OFFSETS]).permutation(offsets)
    truth_rows = []
    chart_files: set[Path] = set()
    for r, profile in enumerate(profiles):
        song_taste = taste(profile, phantom if null else attrs)
        social = np.array(
            [
                social_scale
                * (
                    SOCIAL_CORRELATION
                    * np.random.default_rng([popularity_seed, _SOCIAL, i]).standard_normal()
                    + np.sqrt(1.0 - SOCIAL_CORRELATION**2)
                    * np.random.default_rng([popularity_seed, _SOCIAL, i, r + 1]).standard_normal()
                )
                for i in range(songs)
            ]
        )
        streams = np.zeros((len(tracks), weeks))
        appeal = np.zeros(len(tracks))
        level = np.zeros(len(tracks))
        for j, t in enumerate(tracks):
            base = np.log(profile.market) + offsets[j]
            base += SEASONAL_BOOST if t.seasonal else 0.0
            base += taste_scale * song_taste[t.song_index]
            level[j] = base + social[t.song_index]
            if t.seasonal:
                rel = _seasonal_shape(week_index, christmas_index)
                expected = np.exp(base) * _seasonal_shape(np.arange(52), christmas_index).sum()
            else:
                rel = _shape(*t.shape, week_index - t.release_week)
                expected = np.exp(base) * shape_sum
            appeal[j] = np.log1p(expected)
            noise = np.random.default_rng([popularity_seed, _WEEKLY, r, j]).standard_normal(weeks)
            streams[j] = np.exp(level[j] + WEEKLY_NOISE_SD * noise) * rel
        streams = np.rint(streams)
        on_chart = np.zeros_like(streams, dtype=bool)
        for w in range(weeks):
            order = np.argsort(-streams[:, w], kind="stable")
            order = order[streams[order, w] > 0][:top_n]
            on_chart[order, w] = True
            week_start = start + timedelta(weeks=w)
            week_end = week_start + timedelta(weeks=1)
            lines = [NOTE_LINE, HEADER_LINE]
            for position, j in enumerate(order, start=1):
                t = tracks[j]
                lines.append(
                    f"{position},{_csv_field(t.title)},{_csv_field(t.artist)},"
                    f"{int(streams[j, w])},https://open.spotify.com/track/{t.track_id}\n"
                )
            path = raw / "charts" / profile.code / f"{week_start}--{week_end}{profile.code}.csv"
            write_text_atomic(path, "".join(lines))
            chart_files.add(path)
        for j, t in enumerate(tracks):
            a = attrs[t.song_index]
            truth_rows.append(
                {
                    "song_id": t.song_id,
                    "track_id": t.track_id,
                    "region": profile.code,
                    "version": t.version,
                    "title": t.title,
                    "artist": t.artist,
                    "seasonal": t.seasonal,
                    "release_date": pd.Timestamp(t.release_date),
                    **asdict(a),
                    "taste": float(song_taste[t.song_index]),
                    "social": float(social[t.song_index]),
                    "appeal": float(appeal[j]),
                    "level": float(level[j]),
                    "weeks_on_chart": int(on_chart[j].sum()),
                    "n_clips": t.n_clips,
                }
            )
    _remove_stale(raw / "charts", chart_files, _CHART_NAME_RE)

    # --- catalog mapping and truth ---
    catalog_lines = ["path,track_id,song_id,release_date,title,artist\n"]
    for t in tracks:
        for k in range(t.n_clips):
            name = f"{t.track_id}.mp3" if k == 0 else f"{t.track_id}_{k}.mp3"
            catalog_lines.append(
                f"audio/{name},{t.track_id},{t.song_id},{t.release_date},"
                f"{_csv_field(t.title)},{_csv_field(t.artist)}\n"
            )
    write_text_atomic(raw / "catalog.csv", "".join(catalog_lines))
    truth = pd.DataFrame(truth_rows)
    truth["release_date"] = truth["release_date"].astype("datetime64[ns]")
    layout.ground_truth.write(truth)
    write_text_atomic(marker, json.dumps(params, indent=2) + "\n")
    say(
        f"demo: {songs} songs, {len(tracks)} tracks, {len(tasks)} clips, "
        f"{regions} region(s) x {weeks} weekly top-{top_n} charts"
    )
    return out_dir


__all__ = [
    "APPEAL_HORIZON",
    "REGIONS",
    "SIGNALS",
    "RegionProfile",
    "audio_share",
    "make_demo",
    "signal_scales",
    "taste",
]
