"""Every path the collectors write under a data dir, in one place.

::

    DIR/raw/kworb/<fetch date>/country/<cc>_<period>.html   kworb country pages, as fetched
    DIR/raw/kworb/<fetch date>/track/<track_id>.html        kworb track pages, as fetched
    DIR/raw/kworb/<fetch date>/manifest.jsonl               one line per request: url, status,
                                                            file, sha256, bytes, fetched_at
    DIR/collect/previews.parquet                            every preview decision (matched,
                                                            ambiguous, not found, ...)
    DIR/collect/previews.journal.jsonl                      decisions not yet folded into the
                                                            table (crash safety; folded on the
                                                            next run)
    DIR/collect/previews.lock                               one preview collector at a time
    AUDIO/<track_id>.<ext>                                  downloaded previews (AUDIO defaults
                                                            to DIR/raw/audio)
    AUDIO/provenance.csv                                    a mapping CSV for ``benchmark ingest
                                                            audio --mapping`` with the provenance
                                                            of every downloaded clip

The lead's data-dir layout object is meant to absorb this class; nothing else in
``features.collect`` builds a path under the data dir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from ..errors import DataError
from ..identifiers import TRACK_ID_RE

_EXT_RE = re.compile(r"^[a-z0-9]{2,4}$")


@dataclass(frozen=True)
class CollectLayout:
    """Paths of the collectors' files under ``data_dir`` (and the audio folder)."""

    data_dir: Path
    audio_dir: Path

    @classmethod
    def of(cls, data_dir: Path | str, audio_dir: Path | str | None = None) -> CollectLayout:
        """The layout of ``data_dir``; the audio folder defaults to ``data_dir/raw/audio``."""
        data_dir = Path(data_dir)
        return cls(data_dir, Path(audio_dir) if audio_dir is not None else data_dir / "raw/audio")

    # -- kworb

    @property
    def kworb_root(self) -> Path:
        """``DIR/raw/kworb``: one folder per fetch date."""
        return self.data_dir / "raw" / "kworb"

    def kworb_fetch(self, fetch_date: date) -> Path:
        """The folder of one fetch: ``DIR/raw/kworb/<YYYY-MM-DD>``."""
        return self.kworb_root / fetch_date.isoformat()

    def kworb_country_page(self, fetch_date: date, region: str, period: str) -> Path:
        """``.../<date>/country/<cc>_<period>.html`` (the name the chart reader expects)."""
        return self.kworb_fetch(fetch_date) / "country" / f"{region}_{period}.html"

    def kworb_track_page(self, fetch_date: date, track_id: str) -> Path:
        """``.../<date>/track/<track_id>.html`` (the id is validated)."""
        return self.kworb_fetch(fetch_date) / "track" / f"{_checked_id(track_id)}.html"

    def kworb_manifest(self, fetch_date: date) -> Path:
        """``.../<date>/manifest.jsonl``: what was requested, when, and what came back."""
        return self.kworb_fetch(fetch_date) / "manifest.jsonl"

    # -- previews

    @property
    def collect_dir(self) -> Path:
        """``DIR/collect``."""
        return self.data_dir / "collect"

    @property
    def previews_table(self) -> Path:
        """``DIR/collect/previews.parquet``: the decisions."""
        return self.collect_dir / "previews.parquet"

    @property
    def previews_journal(self) -> Path:
        """``DIR/collect/previews.journal.jsonl``: decisions not yet in the table."""
        return self.collect_dir / "previews.journal.jsonl"

    @property
    def previews_lock(self) -> Path:
        """``DIR/collect/previews.lock``."""
        return self.collect_dir / "previews.lock"

    @property
    def provenance_csv(self) -> Path:
        """``AUDIO/provenance.csv``: path, track_id and the provenance of each collected clip."""
        return self.audio_dir / "provenance.csv"

    def clip(self, track_id: str, ext: str) -> Path:
        """``AUDIO/<track_id>.<ext>``; the id must be a 22-character base62 track id.

        Raises
        ------
        DataError
            If ``track_id`` or ``ext`` would make an unsafe or unlinkable file name.
        """
        if not _EXT_RE.match(ext):
            raise DataError(f"{self.audio_dir}: refusing audio extension {ext!r}")
        return self.audio_dir / f"{_checked_id(track_id)}.{ext}"

    def clip_part(self, track_id: str, pid: int) -> Path:
        """A temporary file in the audio folder for a download in flight (not an audio name)."""
        return self.audio_dir / f".{_checked_id(track_id)}.{pid}.part"


def _checked_id(track_id: str) -> str:
    if not isinstance(track_id, str) or not TRACK_ID_RE.match(track_id):
        raise DataError(f"not a 22-character base62 Spotify track id: {track_id!r}")
    return track_id


__all__ = ["CollectLayout"]
