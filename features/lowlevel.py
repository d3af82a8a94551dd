"""Essentia low-level, rhythm and tonal descriptors of one clip, as a fixed set of named floats.

The descriptors come from ``essentia.standard.Extractor``: the algorithm chain behind Essentia's
music extractors (spectral low-level descriptors, SFX harmonic descriptors, RhythmExtractor with
BPM histogram, HPCP-based key, chords and tuning). Unlike ``MusicExtractor`` it takes an already
decoded signal, so the clip is decoded once for both feature sets, and it runs at about 35-40x
real time on one core here (``MusicExtractor`` decodes the file itself and runs at about 27x).

Flattening (one fixed column set for every clip, :data:`LOWLEVEL_COLUMNS`):

- frame-wise scalars -> ``<name>.mean`` and ``<name>.stdev`` over frames;
- frame-wise vectors (MFCC, Bark bands, HPCP, ...) -> ``<name>.mean.<i>`` and ``<name>.stdev.<i>``;
- whole-clip scalars and fixed-length vectors (THPCP, chords histogram) -> kept as they are;
- variable-length descriptors are summarised: ``rhythm.beats_count`` and the mean and standard
  deviation of the inter-beat intervals; onset times, BPM estimates and the chord progression are
  dropped (onset rate and chord statistics are kept);
- strings: the key and the chords key become their position on the circle of fifths (a minor key
  takes its relative major's position) as ``_sin``/``_cos``, and the scale ``_major`` (major = 1);
- ``sfx.*`` descriptors are named ``lowlevel.*``; Essentia's ``lowLevel.`` namespace is written
  ``lowlevel.``.

A descriptor Essentia does not produce for a clip (e.g. beat loudness when no beat is found) is NaN.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

#: Sample rate the extractor runs at.
LOWLEVEL_SAMPLE_RATE = 44_100

#: Parameters of ``essentia.standard.Extractor`` (recorded in ``features/extractor.json``).
EXTRACTOR_PARAMETERS: dict[str, Any] = {
    "sampleRate": float(LOWLEVEL_SAMPLE_RATE),
    "lowLevel": True,
    "lowLevelFrameSize": 2048,
    "lowLevelHopSize": 1024,
    "midLevel": True,
    "tuning": True,
    "dynamics": True,
    "dynamicsFrameSize": 88200,
    "dynamicsHopSize": 44100,
    "highLevel": True,
    "rhythm": True,
    "relativeIoi": False,
    "tonalFrameSize": 4096,
    "tonalHopSize": 2048,
}

# Frame-wise scalar descriptors: (essentia name, column stem).
_FRAME_SCALARS: tuple[tuple[str, str], ...] = (
    *(
        (f"lowLevel.{n}", f"lowlevel.{n}")
        for n in (
            "barkbands_kurtosis",
            "barkbands_skewness",
            "barkbands_spread",
            "dissonance",
            "hfc",
            "pitch",
            "pitch_instantaneous_confidence",
            "pitch_salience",
            "silence_rate_20dB",
            "silence_rate_30dB",
            "silence_rate_60dB",
            "spectral_centroid",
            "spectral_complexity",
            "spectral_crest",
            "spectral_decrease",
            "spectral_energy",
            "spectral_energyband_high",
            "spectral_energyband_low",
            "spectral_energyband_middle_high",
            "spectral_energyband_middle_low",
            "spectral_flatness_db",
            "spectral_flux",
            "spectral_kurtosis",
            "spectral_rms",
            "spectral_rolloff",
            "spectral_skewness",
            "spectral_spread",
            "spectral_strongpeak",
            "zerocrossingrate",
        )
    ),
    ("sfx.inharmonicity", "lowlevel.inharmonicity"),
    ("sfx.oddtoevenharmonicenergyratio", "lowlevel.oddtoevenharmonicenergyratio"),
    ("rhythm.beats_loudness", "rhythm.beats_loudness"),
    ("tonal.chords_strength", "tonal.chords_strength"),
)

# Frame-wise vector descriptors: (essentia name, column stem, length).
_FRAME_VECTORS: tuple[tuple[str, str, int], ...] = (
    ("lowLevel.barkbands", "lowlevel.barkbands", 27),
    ("lowLevel.mfcc", "lowlevel.mfcc", 13),
    ("lowLevel.sccoeffs", "lowlevel.spectral_contrast_coeffs", 6),
    ("lowLevel.scvalleys", "lowlevel.spectral_contrast_valleys", 6),
    ("sfx.tristimulus", "lowlevel.tristimulus", 3),
    ("rhythm.beats_loudness_band_ratio", "rhythm.beats_loudness_band_ratio", 6),
    ("tonal.hpcp", "tonal.hpcp", 36),
)

# Whole-clip scalars: (essentia name, column).
_CLIP_SCALARS: tuple[tuple[str, str], ...] = (
    ("lowLevel.average_loudness", "lowlevel.average_loudness"),
    (
        "sfx.pitch_after_max_to_before_max_energy_ratio",
        "lowlevel.pitch_after_max_to_before_max_energy_ratio",
    ),
    ("sfx.pitch_centroid", "lowlevel.pitch_centroid"),
    ("sfx.pitch_max_to_total", "lowlevel.pitch_max_to_total"),
    ("sfx.pitch_min_to_total", "lowlevel.pitch_min_to_total"),
    ("rhythm.bpm", "rhythm.bpm"),
    ("rhythm.confidence", "rhythm.confidence"),
    ("rhythm.onset_rate", "rhythm.onset_rate"),
    ("rhythm.first_peak_bpm", "rhythm.bpm_histogram_first_peak_bpm"),
    ("rhythm.first_peak_spread", "rhythm.bpm_histogram_first_peak_spread"),
    ("rhythm.first_peak_weight", "rhythm.bpm_histogram_first_peak_weight"),
    ("rhythm.second_peak_bpm", "rhythm.bpm_histogram_second_peak_bpm"),
    ("rhythm.second_peak_spread", "rhythm.bpm_histogram_second_peak_spread"),
    ("rhythm.second_peak_weight", "rhythm.bpm_histogram_second_peak_weight"),
    ("tonal.chords_changes_rate", "tonal.chords_changes_rate"),
    ("tonal.chords_number_rate", "tonal.chords_number_rate"),
    ("tonal.key_strength", "tonal.key_strength"),
    ("tonal.tuning_diatonic_strength", "tonal.tuning_diatonic_strength"),
    ("tonal.tuning_equal_tempered_deviation", "tonal.tuning_equal_tempered_deviation"),
    ("tonal.tuning_frequency", "tonal.tuning_frequency"),
    ("tonal.tuning_nontempered_energy_ratio", "tonal.tuning_nontempered_energy_ratio"),
)

# Whole-clip fixed-length vectors: (essentia name, column stem, length).
_CLIP_VECTORS: tuple[tuple[str, str, int], ...] = (
    ("tonal.thpcp", "tonal.thpcp", 36),
    ("tonal.chords_histogram", "tonal.chords_histogram", 24),
)

# Keys (essentia name prefix, column stem), encoded on the circle of fifths plus the scale.
_KEYS: tuple[tuple[str, str], ...] = (
    ("tonal.key", "tonal.key"),
    ("tonal.chords", "tonal.chords_key"),
)

_DERIVED: tuple[str, ...] = (
    "rhythm.beats_count",
    "rhythm.beat_interval.mean",
    "rhythm.beat_interval.stdev",
)

# Pitch class -> position on the circle of fifths (C=0, G=1, D=2, ...).
_FIFTHS: dict[str, int] = {}
for _pos, _names in enumerate(
    (("C", "B#"), ("G",), ("D",), ("A",), ("E", "Fb"), ("B", "Cb"), ("F#", "Gb"),
     ("C#", "Db"), ("G#", "Ab"), ("D#", "Eb"), ("A#", "Bb"), ("F", "E#"))
):  # fmt: skip
    for _name in _names:
        _FIFTHS[_name] = _pos


def _columns() -> tuple[str, ...]:
    cols: list[str] = []
    for _, stem in _FRAME_SCALARS:
        cols += [f"{stem}.mean", f"{stem}.stdev"]
    for _, stem, n in _FRAME_VECTORS:
        cols += [f"{stem}.mean.{i}" for i in range(n)]
        cols += [f"{stem}.stdev.{i}" for i in range(n)]
    cols += [col for _, col in _CLIP_SCALARS]
    for _, stem, n in _CLIP_VECTORS:
        cols += [f"{stem}.{i}" for i in range(n)]
    for _, stem in _KEYS:
        cols += [f"{stem}_sin", f"{stem}_cos", f"{stem}_major"]
    cols += _DERIVED
    return tuple(cols)


#: The fixed, ordered set of feature columns every clip (and track) gets.
LOWLEVEL_COLUMNS: tuple[str, ...] = _columns()


def essentia_version() -> str:
    """Return ``essentia.__version__`` (imported lazily: Essentia is heavy)."""
    import essentia

    return str(essentia.__version__)


@functools.lru_cache(maxsize=1)
def _extractor() -> Any:
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    return es.Extractor(**EXTRACTOR_PARAMETERS)


def _key_encoding(key: str, scale: str) -> tuple[float, float, float]:
    position = _FIFTHS.get(key.strip())
    major = scale.strip().lower() == "major"
    if position is None:
        return math.nan, math.nan, float(major) if scale else math.nan
    if not major:
        position = (position - 3) % 12  # A minor sits with C major
    angle = 2.0 * math.pi * position / 12.0
    return math.sin(angle), math.cos(angle), float(major)


def _values(pool: Any, name: str) -> np.ndarray | None:
    if name not in pool.descriptorNames():
        return None
    value = np.asarray(pool[name], dtype=np.float64)
    return value if value.size else None


def flatten_pool(pool: Any) -> dict[str, float]:
    """Flatten an ``essentia.Pool`` from ``Extractor`` into :data:`LOWLEVEL_COLUMNS` (module docs).

    Parameters
    ----------
    pool : essentia.Pool
        The extractor's output.

    Returns
    -------
    dict of str to float
        Exactly the keys of :data:`LOWLEVEL_COLUMNS`, in that order; NaN where a descriptor is
        absent.
    """
    out = dict.fromkeys(LOWLEVEL_COLUMNS, math.nan)
    with np.errstate(all="ignore"):
        for name, stem in _FRAME_SCALARS:
            v = _values(pool, name)
            if v is not None:
                out[f"{stem}.mean"] = float(np.mean(v))
                out[f"{stem}.stdev"] = float(np.std(v))
        for name, stem, n in _FRAME_VECTORS:
            v = _values(pool, name)
            if v is not None and v.shape[-1] == n:
                v = v.reshape(-1, n)
                for i, (m, s) in enumerate(zip(v.mean(axis=0), v.std(axis=0), strict=True)):
                    out[f"{stem}.mean.{i}"] = float(m)
                    out[f"{stem}.stdev.{i}"] = float(s)
        for name, col in _CLIP_SCALARS:
            v = _values(pool, name)
            if v is not None:
                out[col] = float(v.reshape(-1)[0])
        for name, stem, n in _CLIP_VECTORS:
            v = _values(pool, name)
            if v is not None and v.size == n:
                for i, x in enumerate(v.reshape(-1)):
                    out[f"{stem}.{i}"] = float(x)
        names = set(pool.descriptorNames())
        for prefix, stem in _KEYS:
            if f"{prefix}_key" in names and f"{prefix}_scale" in names:
                sin, cos, major = _key_encoding(pool[f"{prefix}_key"], pool[f"{prefix}_scale"])
                out[f"{stem}_sin"], out[f"{stem}_cos"], out[f"{stem}_major"] = sin, cos, major
        beats = _values(pool, "rhythm.beats_position")
        out["rhythm.beats_count"] = 0.0 if beats is None else float(beats.size)
        if beats is not None and beats.size >= 2:
            intervals = np.diff(beats)
            out["rhythm.beat_interval.mean"] = float(intervals.mean())
            out["rhythm.beat_interval.stdev"] = float(intervals.std())
    return {k: (v if math.isfinite(v) else math.nan) for k, v in out.items()}


def extract_lowlevel(signal_44k: np.ndarray) -> dict[str, float]:
    """Compute Essentia's low-level, rhythm and tonal descriptors of one mono clip.

    Not thread-safe (Essentia is not): run clips in parallel in separate processes.

    Parameters
    ----------
    signal_44k : np.ndarray
        Shape (n_samples,), mono float32 at 44.1 kHz.

    Returns
    -------
    dict of str to float
        One value per name in :data:`LOWLEVEL_COLUMNS`, in that order (NaN where absent).
    """
    signal = np.ascontiguousarray(signal_44k, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"extract_lowlevel expects a mono 1-D signal, got shape {signal.shape}")
    return flatten_pool(_extractor()(signal))


def compute(signal_44k: np.ndarray) -> dict[str, np.ndarray]:
    """The ``essentia_lowlevel`` extractor: ``{"lowlevel": float64 (len(LOWLEVEL_COLUMNS),)}``.

    Parameters
    ----------
    signal_44k : np.ndarray
        Mono float32 at 44.1 kHz.

    Returns
    -------
    dict[str, np.ndarray]
        The descriptors in :data:`LOWLEVEL_COLUMNS` order (NaN where absent).
    """
    values = extract_lowlevel(signal_44k)
    return {"lowlevel": np.array([values[c] for c in LOWLEVEL_COLUMNS], dtype=np.float64)}


def parameters() -> dict[str, Any]:
    """Everything that determines :func:`compute`'s output (Essentia version and settings)."""
    import hashlib

    return {
        "essentia_version": essentia_version(),
        "extractor": "essentia.standard.Extractor",
        "parameters": EXTRACTOR_PARAMETERS,
        "n_columns": len(LOWLEVEL_COLUMNS),
        "columns_sha256": hashlib.sha256("\n".join(LOWLEVEL_COLUMNS).encode()).hexdigest(),
    }
