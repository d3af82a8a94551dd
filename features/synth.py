"""Procedural music synthesiser for the demo dataset: drums, bass, chords and lead.

Every clip is rendered from a :class:`SongAttributes` (tempo, mode, key, brightness, rhythmic
density, loudness, timbre), a song seed, the bar the 30 s window starts at and a version variant.
All rendering is vectorised numpy (a Python loop runs over notes, never over samples); the same
inputs always give the same samples, and :func:`encode_mp3` turns them into the same MP3 bytes.

How each attribute is made audible (so that low-level audio features can recover it):

- ``tempo``: the drum grid (kick on 1 and 3, snare on 2 and 4, hats on eighths) and every note
  onset.
- ``mode`` and ``key``: diatonic triads, bass roots and lead notes come from the major or natural
  minor scale on the tonic ``key``; the progressions start on the tonic chord.
- ``brightness``: the harmonic roll-off of the tonal instruments, the cut-off of a low-pass filter
  on the tonal bus (about 500 Hz to 11 kHz), the level of the hi-hats and a high shelf on the
  master.
- ``density``: extra kicks, ghost snares, sixteenth-note hats, rhythmic chord stabs instead of pads,
  eighth-note bass, and the probability of a lead note on each eighth.
- ``loudness``: the RMS level of the mix in dBFS before a tanh soft clipper (loud masters get
  squashed).
- ``timbre``: the waveform family of the lead and chords (0 organ, 1 saw, 2 square, 3 hollow pulse);
  a nuisance attribute, popularity does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import lameenc
import numpy as np
from scipy import signal as sps

SAMPLE_RATE = 44100
CLIP_SECONDS = 30.0
SONG_BARS = 64  # a song is 64 bars long; a clip is a window of it
TABLE_SIZE = 4096
N_HARMONICS = 24

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
# scale degrees (0-based) of the chord on each bar of an 8-bar section: verse, chorus, bridge
PROGRESSIONS = {
    1: ((0, 4, 5, 3, 0, 4, 5, 3), (3, 4, 0, 5, 3, 4, 0, 0), (5, 3, 0, 4, 5, 3, 4, 4)),
    0: ((0, 5, 2, 6, 0, 5, 2, 6), (0, 3, 4, 0, 5, 3, 4, 4), (5, 6, 0, 0, 3, 6, 2, 4)),
}
SECTION_ORDER = (0, 1, 0, 1, 2, 1, 1, 0)  # 8 sections of 8 bars = SONG_BARS


@dataclass(frozen=True)
class SongAttributes:
    """Musical attributes of one song.

    Attributes
    ----------
    tempo : float
        Beats per minute.
    mode : int
        1 for major, 0 for (natural) minor.
    key : int
        Pitch class of the tonic, 0 = C .. 11 = B.
    brightness : float
        0 (dark, muffled) .. 1 (bright, airy).
    density : float
        Rhythmic density, 0 (sparse) .. 1 (busy).
    loudness : float
        RMS level of the master in dBFS (about -20 quiet .. -7 loud).
    timbre : int
        Waveform family of the tonal instruments, 0..3.
    """

    tempo: float
    mode: int
    key: int
    brightness: float
    density: float
    loudness: float
    timbre: int


@dataclass(frozen=True)
class Variant:
    """How a version of a song differs from its original rendering.

    Attributes
    ----------
    gain_db : float
        Added to the master loudness.
    brightness_shift : float
        Added to the brightness (clipped to 0..1).
    tempo_scale : float
        Multiplies the tempo.
    reverb : float
        Wet level of a room reverb (0 = dry).
    crowd : float
        Level of crowd noise (0 = none).
    """

    gain_db: float = 0.0
    brightness_shift: float = 0.0
    tempo_scale: float = 1.0
    reverb: float = 0.0
    crowd: float = 0.0


VARIANTS: dict[str, Variant] = {
    "original": Variant(),
    "remastered": Variant(gain_db=2.0, brightness_shift=0.08),
    "live": Variant(gain_db=-1.0, tempo_scale=0.98, reverb=0.35, crowd=0.03),
}


def _wavetable(timbre: int, brightness: float) -> np.ndarray:
    """One band-limited cycle of the timbre's waveform, rolled off by brightness; peak 1."""
    k = np.arange(1, N_HARMONICS + 1, dtype=np.float64)
    if timbre == 0:  # organ: a few low harmonics
        base = np.where(k <= 4, 1.0 / k, 0.05 / k)
    elif timbre == 1:  # saw
        base = 1.0 / k
    elif timbre == 2:  # square: odd harmonics
        base = np.where(k % 2 == 1, 1.0 / k, 0.0)
    else:  # hollow pulse (25 % duty cycle)
        base = np.abs(np.sin(np.pi * k * 0.25)) / k
    amp = base * k ** (-1.6 * (1.0 - brightness))
    phase = np.arange(TABLE_SIZE) / TABLE_SIZE
    table = amp @ np.sin(2.0 * np.pi * np.outer(k, phase))  # (TABLE_SIZE,)
    return table / np.max(np.abs(table))


def _render_notes(
    notes: list[tuple[float, float, float]],
    duration: float,
    table: np.ndarray,
    n: int,
    attack: float,
    decay: float,
    sustain: float,
) -> np.ndarray:
    """Render notes (start_s, midi, velocity) of one length with a wavetable and an envelope."""
    out = np.zeros(n, dtype=np.float64)
    length = round((duration + 0.03) * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    env = sustain + (1.0 - sustain) * np.exp(-t / decay)
    env *= np.minimum(1.0, t / attack)
    env *= np.clip(1.0 - (t - duration) / 0.03, 0.0, 1.0)
    phase = t * TABLE_SIZE
    for start_s, midi, vel in notes:
        i0 = round(start_s * SAMPLE_RATE)
        if i0 >= n:
            continue
        m = min(length, n - i0)
        freq = 440.0 * 2.0 ** ((midi - 69.0) / 12.0)
        idx = (phase[:m] * freq).astype(np.int64) % TABLE_SIZE
        out[i0 : i0 + m] += (vel * env[:m]) * table[idx]
    return out


def _drum_hits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kick, snare and hi-hat one-shots."""
    t = np.arange(int(0.3 * SAMPLE_RATE)) / SAMPLE_RATE
    f = 45.0 + 90.0 * np.exp(-t / 0.04)
    kick = np.sin(2.0 * np.pi * np.cumsum(f) / SAMPLE_RATE) * np.exp(-t / 0.12)
    noise = rng.standard_normal(t.size)
    snare = 0.6 * noise * np.exp(-t / 0.07) + 0.5 * np.sin(2.0 * np.pi * 190.0 * t) * np.exp(
        -t / 0.05
    )
    hp = sps.butter(2, 7000.0, btype="highpass", fs=SAMPLE_RATE, output="sos")
    hat = sps.sosfilt(hp, rng.standard_normal(t.size)) * np.exp(-t / 0.02)
    snare = snare[: int(0.25 * SAMPLE_RATE)]
    hat = hat[: int(0.08 * SAMPLE_RATE)]
    return kick, snare / np.max(np.abs(snare)), hat / np.max(np.abs(hat))


def _place(hit: np.ndarray, onsets: np.ndarray, velocities: np.ndarray, n: int) -> np.ndarray:
    """Sum copies of ``hit`` at sample positions ``onsets`` scaled by ``velocities``."""
    out = np.zeros(n + hit.size, dtype=np.float64)
    for i0, vel in zip(onsets.tolist(), velocities.tolist(), strict=True):
        if i0 < n:
            out[i0 : i0 + hit.size] += vel * hit
    return out[:n]


def render_clip(
    attrs: SongAttributes,
    seed: int,
    start_bar: int = 0,
    variant: str = "original",
    seconds: float = CLIP_SECONDS,
) -> np.ndarray:
    """Render a window of a song as mono float32 samples at :data:`SAMPLE_RATE`.

    Parameters
    ----------
    attrs : SongAttributes
        The song's musical attributes.
    seed : int
        The song's seed: fixes its drum pattern, melody and noise, so that two windows or two
        versions of one song share their musical content.
    start_bar : int
        First bar of the window within the song (wraps around :data:`SONG_BARS`).
    variant : str
        A key of :data:`VARIANTS` ("original", "remastered", "live").
    seconds : float
        Length of the clip.

    Returns
    -------
    numpy.ndarray
        Shape ``(round(seconds * SAMPLE_RATE),)``, float32, peak below 1.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    var = VARIANTS[variant]
    song_rng = np.random.default_rng([seed, 1])
    n = round(seconds * SAMPLE_RATE)
    tempo = attrs.tempo * var.tempo_scale
    brightness = float(np.clip(attrs.brightness + var.brightness_shift, 0.0, 1.0))
    density = attrs.density
    step = 60.0 / tempo / 4.0  # a sixteenth note, seconds
    n_bars = int(np.ceil(seconds / (16 * step))) + 1
    bars = (start_bar + np.arange(n_bars)) % SONG_BARS

    # --- the song's fixed random content (one table per song, windows index into it) ---
    u_kick = song_rng.random((SONG_BARS, 16))
    u_snare = song_rng.random((SONG_BARS, 16))
    u_hat = song_rng.random((SONG_BARS, 16))
    u_lead = song_rng.random((SONG_BARS, 8))
    lead_steps = song_rng.integers(-2, 3, size=(SONG_BARS, 8))
    vel_jitter = 0.85 + 0.3 * song_rng.random((SONG_BARS, 16))
    hits_rng = np.random.default_rng([seed, 2])
    noise_rng = np.random.default_rng([seed, 3, start_bar, list(VARIANTS).index(variant)])

    # --- drums on a 16-step grid ---
    step_idx = np.arange(16)
    kick_p = np.where(step_idx % 8 == 0, 1.0, 0.0)
    kick_p = kick_p + np.isin(step_idx, (6, 10, 14)) * 0.6 * density
    kick_p = kick_p + np.isin(step_idx, (3, 11)) * max(0.0, density - 0.6)
    snare_p = np.where(step_idx % 8 == 4, 1.0, 0.12 * density)
    hat_p = np.where(step_idx % 2 == 0, 1.0, density**1.5)
    onset_s = (np.arange(n_bars)[:, None] * 16 + step_idx[None, :]) * step  # (bars, 16)
    onset = np.round(onset_s * SAMPLE_RATE).astype(np.int64)
    kick, snare, hat = _drum_hits(hits_rng)
    vj = vel_jitter[bars]
    k_on = u_kick[bars] < kick_p
    s_on = u_snare[bars] < snare_p
    h_on = u_hat[bars] < hat_p
    snare_vel = np.where(step_idx % 8 == 4, 1.0, 0.35)[None, :] * vj
    hat_vel = np.where(step_idx % 4 == 0, 1.0, 0.7)[None, :] * vj
    drums = (
        _place(kick, onset[k_on], vj[k_on], n)
        + 0.7 * _place(snare, onset[s_on], snare_vel[s_on], n)
        + (0.06 + 0.4 * brightness) * _place(hat, onset[h_on], hat_vel[h_on], n)
    )

    # --- harmony: chord per bar from the section's progression ---
    scale = np.array(MAJOR_SCALE if attrs.mode == 1 else MINOR_SCALE)
    sections = np.array(SECTION_ORDER)[bars // 8]
    prog = np.array(PROGRESSIONS[1 if attrs.mode == 1 else 0])
    degree = prog[sections, bars % 8]  # (n_bars,)

    def pitch(deg: np.ndarray, octave_base: int) -> np.ndarray:
        deg = np.asarray(deg)
        return octave_base + attrs.key + 12 * (deg // 7) + scale[deg % 7]

    bar_s = 16 * step
    bar_start = np.arange(n_bars) * bar_s
    chord_notes = []
    bass_notes = []
    lead_notes = []
    stabs = density > 0.55
    for b in range(n_bars):
        triad = pitch(degree[b] + np.array([0, 2, 4]), 48)
        triad = np.where(triad < 53, triad + 12, triad)
        if stabs:
            for s in range(0, 16, 2):
                if s % 4 == 2 or u_hat[bars[b], s] < density:
                    chord_notes += [(bar_start[b] + s * step, m, 0.8) for m in triad]
        else:
            chord_notes += [(bar_start[b], m, 0.7) for m in triad]
        root = int(pitch(degree[b], 36))
        bass_step = 2 if density > 0.5 else 4
        for s in range(0, 16, bass_step):
            octave = 12 if (bass_step == 2 and s % 4 == 2 and u_kick[bars[b], s] < 0.5) else 0
            bass_notes.append((bar_start[b] + s * step, root + octave, 0.9))
        lead_deg = np.clip(degree[b] + 7 + np.cumsum(lead_steps[bars[b]]), 4, 14)
        for e in range(8):
            if u_lead[bars[b], e] < 0.2 + 0.6 * density:
                m = int(pitch(lead_deg[e], 60))
                lead_notes.append((bar_start[b] + e * 2 * step, m, 0.8))

    table = _wavetable(attrs.timbre, brightness)
    bass_table = _wavetable(0, 0.3)
    chord_len = 1.2 * step if stabs else 16 * step * 0.95
    chords = _render_notes(chord_notes, chord_len, table, n, attack=0.02, decay=0.4, sustain=0.5)
    lead = _render_notes(lead_notes, 1.8 * step, table, n, attack=0.01, decay=0.25, sustain=0.4)
    tonal = 0.3 * chords + 0.45 * lead
    cutoff = 500.0 * 2.0 ** (brightness * 4.5)
    tonal = sps.sosfilt(sps.butter(2, cutoff, fs=SAMPLE_RATE, output="sos"), tonal)
    bass_len = (2 if density > 0.5 else 4) * step * 0.9
    bass = 0.8 * _render_notes(
        bass_notes, bass_len, bass_table, n, attack=0.005, decay=0.2, sustain=0.6
    )

    mix = drums + bass + tonal
    # master tilt: a high shelf from -6 dB (dark) to +7 dB (bright) above about 2 kHz
    shelf = sps.sosfilt(sps.butter(1, 2000.0, btype="highpass", fs=SAMPLE_RATE, output="sos"), mix)
    mix = mix + (2.0 * brightness - 0.55) * shelf
    if var.reverb > 0:
        t = np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE
        ir = noise_rng.standard_normal(t.size) * np.exp(-t / 0.35)
        wet = sps.oaconvolve(mix, ir)[:n]
        mix = mix + var.reverb * wet * np.std(mix) / max(np.std(wet), 1e-12)
    if var.crowd > 0:
        lp = sps.butter(2, 2000.0, fs=SAMPLE_RATE, output="sos")
        crowd = sps.sosfilt(lp, noise_rng.standard_normal(n))
        mix = mix + var.crowd * crowd / np.std(crowd) * np.std(mix)
    rms = np.sqrt(np.mean(mix**2))
    target = 10.0 ** ((attrs.loudness + var.gain_db) / 20.0)
    mix = np.tanh(mix * target / max(rms, 1e-12))
    # short fades so the window does not start or end with a click
    fade = int(0.01 * SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, fade)
    mix[:fade] *= ramp
    mix[-fade:] *= ramp[::-1]
    return (0.98 * mix).astype(np.float32)


def encode_mp3(samples: np.ndarray, bitrate: int = 96, quality: int = 5) -> bytes:
    """Encode mono float samples at :data:`SAMPLE_RATE` as MP3 with LAME (deterministic bytes).

    Parameters
    ----------
    samples : numpy.ndarray
        Mono signal in -1..1, shape ``(n,)``.
    bitrate : int
        Constant bit rate in kbit/s.
    quality : int
        LAME algorithm quality, 2 (best, slow) .. 7 (fast).

    Returns
    -------
    bytes
        The MP3 file.
    """
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(bitrate)
    encoder.set_in_sample_rate(SAMPLE_RATE)
    encoder.set_channels(1)
    encoder.set_quality(quality)
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())
