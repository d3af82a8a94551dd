"""Downloaded bodies become clips only when they are real, decodable, long-enough audio."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from localserver import m4a_bytes, mp3_bytes

from musicpop.features.audio import decode_audio
from musicpop.features.collect.clips import ClipRejected, sniff_audio, store_clip
from musicpop.features.errors import DataError
from musicpop.features.layout import CollectLayout

TRACK = "1Qrg8KqiBpW07V7PNxwwwL"


def _store(tmp_path: Path, body: bytes, **kw) -> tuple[CollectLayout, object]:
    layout = CollectLayout.of(tmp_path / "data", tmp_path / "audio")
    layout.audio_dir.mkdir(parents=True, exist_ok=True)
    part = layout.clip_part(TRACK, 1)
    part.write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    return layout, store_clip(layout, TRACK, part, body[:64], sha, **kw)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64" + b"\x00" * 8, "mp3"),  # MPEG-1 layer III frame, no tag
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "m4a"),
        (b"\xff\xf1\x50\x80" + b"\x00" * 8, "aac"),  # ADTS
        (b"OggS\x00\x02" + b"\x00" * 6, "ogg"),
        (b"fLaC\x00\x00\x00\x22" + b"\x00" * 4, "flac"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"<!DOCTYPE html><html>", None),
        (b'{"error": "gone"}', None),
        (b"", None),
        (b"\xff\xe9\x00\x00" + b"\x00" * 8, None),  # frame sync with a reserved MPEG version
    ],
)
def test_sniff_audio(head: bytes, kind: str | None) -> None:
    assert sniff_audio(head) == kind


def test_real_mp3_and_m4a_are_recognised() -> None:
    assert sniff_audio(mp3_bytes()[:64]) == "mp3"
    assert sniff_audio(m4a_bytes()[:64]) == "m4a"


def test_mp3_is_stored_as_downloaded(tmp_path: Path) -> None:
    body = mp3_bytes()
    layout, clip = _store(tmp_path, body)
    assert clip.path == layout.audio_dir / f"{TRACK}.mp3"
    assert clip.path.read_bytes() == body
    assert clip.sha256 == clip.download_sha256 == hashlib.sha256(body).hexdigest()
    assert clip.seconds == pytest.approx(6.0, abs=0.2)
    assert sorted(p.name for p in layout.audio_dir.iterdir()) == [f"{TRACK}.mp3"]


def test_m4a_is_decoded_and_stored_as_flac_our_decoder_reads(tmp_path: Path) -> None:
    body = m4a_bytes()
    layout, clip = _store(tmp_path, body)
    assert clip.path == layout.audio_dir / f"{TRACK}.flac" and clip.format == "m4a"
    assert clip.download_sha256 == hashlib.sha256(body).hexdigest()
    assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest() != clip.download_sha256
    signal, rate = decode_audio(clip.path)
    assert rate == 44100 and len(signal) / rate == pytest.approx(6.0, abs=0.1)
    # the tone survives: the spectrum peaks at 440 Hz
    spectrum = np.abs(np.fft.rfft(signal[rate : 2 * rate]))
    assert abs(spectrum.argmax() - 440) <= 2
    assert sorted(p.name for p in layout.audio_dir.iterdir()) == [f"{TRACK}.flac"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not audio"),
        (b"", "empty body"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00garbage" * 10, "does not decode"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00 broken", "not decodable as AAC"),
    ],
)
def test_bad_bodies_are_rejected_and_leave_nothing(
    tmp_path: Path, body: bytes, reason: str
) -> None:
    with pytest.raises(ClipRejected, match=reason):
        _store(tmp_path, body, content_type="text/html")
    assert list((tmp_path / "audio").iterdir()) == []


def test_a_too_short_clip_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ClipRejected, match="shorter than 5 s"):
        _store(tmp_path, mp3_bytes(seconds=2.0))
    assert list((tmp_path / "audio").iterdir()) == []


def test_an_existing_clip_is_never_overwritten(tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / f"{TRACK}.ogg").write_bytes(b"mine")
    with pytest.raises(ClipRejected, match="already exists"):
        _store(tmp_path, mp3_bytes())
    assert (audio / f"{TRACK}.ogg").read_bytes() == b"mine"
    assert sorted(p.name for p in audio.iterdir()) == [f"{TRACK}.ogg"]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "short", "1Qrg8KqiBpW07V7PNxwwwL/x", ""])
def test_clip_names_come_only_from_valid_track_ids(tmp_path: Path, bad: str) -> None:
    layout = CollectLayout.of(tmp_path)
    with pytest.raises(DataError, match="track id"):
        layout.clip(bad, "mp3")
    with pytest.raises(DataError, match="extension"):
        layout.clip(TRACK, "mp3/../x")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("name", "kind"),
    [("vibe_ace_preview_1.mp3", "mp3"), ("Kevin_MacLeod_-_Vibe_Ace.ogg", "ogg")],
)
def test_real_preview_files_are_recognised_and_stored(
    shared_data: Path, tmp_path: Path, name: str, kind: str
) -> None:
    body = (shared_data / "audio" / name).read_bytes()
    assert sniff_audio(body[:64]) == kind
    _, clip = _store(tmp_path, body)
    assert clip.path.name == f"{TRACK}.{kind}" and clip.path.read_bytes() == body
    assert clip.seconds >= 29.0
