"""Turning a downloaded preview into a clip file the feature extractor can read.

A download lands in a temporary file in the audio folder. It is kept only if

1. its first bytes are audio (:func:`sniff_audio`): an ID3 tag or an MPEG audio frame sync
   (MP3), an ISO-BMFF ``ftyp`` box (MP4/M4A, what the iTunes previews are), an ADTS AAC frame,
   or OGG/FLAC/WAV; an HTML error page, JSON or an empty body is rejected with its first bytes;
2. it decodes, lasts at least ``min_seconds`` and is not silent (:mod:`features.audio`).

MP3 (and OGG/FLAC/WAV) are stored as downloaded. AAC (M4A or ADTS) is not readable by our
decoder (libsndfile has no AAC support), so it is decoded once with Essentia's FFmpeg-based
``AudioLoader`` (Essentia is already a dependency) and stored *losslessly* as 16-bit FLAC: the
extractor then sees exactly the samples the AAC decoder produced, with no second lossy step.
The provenance keeps the sha256 of the downloaded bytes and of the stored file.

The final name is ``<track_id>.<ext>`` (validated id), reached by an atomic ``os.replace``; an
existing file is never overwritten.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import AudioError, check_audio, decode_audio
from ..layout import CollectLayout, file_sha256

NATIVE_FORMATS = ("mp3", "ogg", "flac", "wav")
"""Formats stored as downloaded (our decoder reads them)."""
TRANSCODED_FORMATS = ("m4a", "aac")
"""Formats decoded with Essentia and stored as FLAC."""


class ClipRejected(Exception):
    """A downloaded body that is not a usable clip; the message is the reason."""


@dataclass(frozen=True)
class StoredClip:
    """A clip written to the audio folder."""

    path: Path
    format: str  # as downloaded: mp3, m4a, ...
    sha256: str  # of the stored file
    download_sha256: str  # of the downloaded bytes (differs when transcoded)
    seconds: float


def sniff_audio(head: bytes) -> str | None:
    """The audio container of a file from its first bytes, or None when it is not audio.

    Parameters
    ----------
    head
        At least the first 12 bytes.

    Returns
    -------
    str or None
        ``mp3``, ``m4a``, ``aac`` (ADTS), ``ogg``, ``flac`` or ``wav``.
    """
    if head.startswith(b"ID3"):
        return "mp3"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 0b11
        version = (head[1] >> 3) & 0b11
        if layer == 0 and head[1] & 0xF0 == 0xF0:
            return "aac"  # ADTS: 12-bit sync, layer bits 00
        if layer != 0 and version != 0b01:  # MPEG audio frame: layer and version not reserved
            return "mp3"
    return None


def _decode_with_essentia(path: Path) -> tuple[np.ndarray, int]:
    """Decode AAC/M4A with Essentia's AudioLoader: (frames, channels) float32 and the rate."""
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    try:
        audio, rate, *_ = es.AudioLoader(filename=str(path))()
    except RuntimeError as exc:
        raise ClipRejected(f"not decodable as AAC/M4A ({str(exc).splitlines()[0]})") from None
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    return audio, int(rate)


def store_clip(
    layout: CollectLayout,
    track_id: str,
    part: Path,
    head: bytes,
    download_sha256: str,
    content_type: str = "",
    min_seconds: float = 5.0,
) -> StoredClip:
    """Check a downloaded body and move it to ``AUDIO/<track_id>.<ext>``.

    Parameters
    ----------
    layout
        Where the audio folder is.
    track_id
        The catalog track (a validated 22-character id).
    part
        The temporary file holding the download (removed in every case).
    head
        Its first bytes.
    download_sha256
        The sha256 of the download.
    content_type
        The server's Content-Type, quoted in the rejection reason.
    min_seconds
        Shorter clips are rejected (a preview lasts about 30 s).

    Returns
    -------
    StoredClip
        The stored file and its hashes.

    Raises
    ------
    ClipRejected
        Not audio, undecodable, too short, silent, or a file of that name already exists.
    """
    try:
        kind = sniff_audio(head)
        if kind is None:
            shown = head[:16]
            raise ClipRejected(
                f"not audio (Content-Type {content_type or 'none'!r}, starts with {shown!r})"
                if head
                else "empty body"
            )
        if kind in TRANSCODED_FORMATS:
            audio, rate = _decode_with_essentia(part)
            mono = audio.mean(axis=1) if audio.size else np.zeros(0, np.float32)
            _check(part, mono, rate, min_seconds)
            import soundfile as sf

            flac = part.with_name(part.name + ".flac")
            try:
                sf.write(flac, audio, rate, format="FLAC", subtype="PCM_16")
                os.replace(flac, part)
            finally:
                flac.unlink(missing_ok=True)
            ext = "flac"
            seconds = len(mono) / rate
        else:
            try:
                signal, rate = decode_audio(part)
            except AudioError as exc:
                raise ClipRejected(f"{kind} body does not decode ({exc.problem})") from None
            _check(part, signal, rate, min_seconds)
            ext = kind
            seconds = len(signal) / rate
        target = layout.clip(track_id, ext)
        if target.exists() or any(layout.audio_dir.glob(f"{track_id}.*")):
            raise ClipRejected(f"{target.parent}/{track_id}.*: a clip already exists; kept it")
        sha = download_sha256 if ext == kind else file_sha256(part)
        os.replace(part, target)
        return StoredClip(target, kind, sha, download_sha256, seconds)
    finally:
        part.unlink(missing_ok=True)


def _check(path: Path, signal: np.ndarray, rate: int, min_seconds: float) -> None:
    if rate <= 0 or signal.size == 0:
        raise ClipRejected("decodes to no samples")
    try:
        check_audio(path, signal, rate, min_seconds)
    except AudioError as exc:
        raise ClipRejected(exc.problem) from None


__all__ = [
    "NATIVE_FORMATS",
    "TRANSCODED_FORMATS",
    "ClipRejected",
    "StoredClip",
    "sniff_audio",
    "store_clip",
]
