"""The catalog (one row per track), song grouping, and linking audio previews to tracks.

The catalog table's columns: ``track_id``, ``song_id``, ``title``, ``artist``, ``audio_path``
(nullable: the track's first clip) and ``release_date`` (nullable ``datetime64[ns]``).

It is a pure function of three tables in the data dir, so it can be rebuilt at any time:
streams (titles and artists), clips (audio) and the catalog mapping
(the accumulated user mapping: ``track_id`` plus optional ``song_id``, ``release_date``, ``title``,
``artist``, which override what is derived from the charts).

Song grouping
-------------
Versions of one song must land in the same split fold, or a model is tested on a song it has
heard in training. ``song_id`` is therefore a short hash of a deliberately *coarse* key,
:func:`song_key` (normalised main artist + normalised title), which removes:

- everything after a spaced dash: ``" - Remastered 2011"``, ``" - Live"``, ``" - Single Version"``,
  ``" - Radio Edit"``, ``" - From "Film" Soundtrack"``, ``" - Acoustic"``, ``" - X Remix"``
  (Spotify puts version and context descriptors there);
- bracketed groups that name a collaborator or a version: ``(feat. X)``, ``[ft. X]``,
  ``(with X)``, ``(Remix)``, ``(Live at ...)``, ``(Taylor's Version)``, ``(Sped Up)``, ...;
- case, accents, punctuation, ``&`` vs ``and``, extra spaces;
- from the artist: everything after the first ``", "``, ``" feat. "`` or ``" ft. "`` (the new
  chart CSV lists all artists, the old one only the main artist).

Remixes, live and acoustic versions are grouped with the original on purpose: they share melody,
lyrics and usually vocals, so treating them as separate songs would leak. The price is that two
different songs by one artist with the same base title are merged, which only makes splits
slightly coarser. A mapping CSV with a ``song_id`` column overrides the rule for its tracks.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError
from .identifiers import parse_track_ids
from .layout import CATALOG_COLUMNS, CLIPS_COLUMNS, MAPPING_COLUMNS, DataLayout

CLIP_PROVENANCE_COLUMNS = ["source", "source_id", "sha256", "fetched_at"]
"""Optional columns of the clips table, carried from a mapping that has them (``collect
previews`` writes such a mapping: ``provenance.csv`` in the audio folder)."""
AUDIO_EXTENSIONS = frozenset({".mp3", ".ogg", ".wav", ".flac", ".m4a", ".aac", ".opus"})
_MAPPING_FIELDS = list(MAPPING_COLUMNS)

_VERSION_WORDS = (
    r"feat|ft|featuring|with|remaster|remastered|live|version|edit|mix|remix|rmx|acoustic|demo|"
    r"mono|stereo|instrumental|sped up|slowed|reverb|bonus|deluxe|anniversary|session|recorded|"
    r"explicit|clean|radio|single|album|extended|original|from|prod|bootleg|vip|cover|unplugged"
)
_BRACKETED = re.compile(rf"[\(\[]([^\)\]]*\b(?:{_VERSION_WORDS})\b[^\)\]]*)[\)\]]", re.IGNORECASE)
_DASH_SUFFIX = re.compile(r"\s+[-\u2013\u2014]\s+.*$")
_ARTIST_SPLIT = re.compile(r",\s|\s(?:feat\.?|ft\.|featuring)\s")
_NON_WORD = re.compile(r"[^\w\s]")
_SPACES = re.compile(r"\s+")
_STEM_RE = re.compile(r"^([0-9A-Za-z]{22})(?:_(\d+))?$")


def _fold(text: str) -> str:
    """Lower-case, strip accents and punctuation, ``&`` -> ``and``, collapse spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"['\u2019]", "", text).replace("&", " and ").replace("_", " ")
    return _SPACES.sub(" ", _NON_WORD.sub(" ", text)).strip()


def normalise_title(title: str) -> str:
    """The title part of :func:`song_key`: version markers removed, then folded."""
    raw = str(title)
    stripped = _DASH_SUFFIX.sub("", _BRACKETED.sub(" ", raw))
    folded = _fold(stripped)
    return folded or _fold(raw) or raw.strip().lower()


def normalise_artist(artist: str) -> str:
    """The artist part of :func:`song_key`: the main (first-listed) artist, folded."""
    raw = str(artist)
    main = _ARTIST_SPLIT.split(raw, maxsplit=1)[0]
    return _fold(main) or _fold(raw) or raw.strip().lower()


_CREDIT_BRACKET = re.compile(
    r"[\(\[]\s*(?:feat\.?|ft\.?|featuring|with)\s+([^\)\]]+)[\)\]]", re.IGNORECASE
)
_CREDIT_DASH = re.compile(r"\s[-\u2013\u2014]\s*(?:feat\.?|ft\.?|featuring)\s*(.+)$", re.IGNORECASE)
_CREDIT_LIST = re.compile(r",\s*|\s+(?:feat\.?|ft\.?|featuring|with)\s+", re.IGNORECASE)
_CREDIT_PAIR = re.compile(r"\s+(?:&|and|x)\s+", re.IGNORECASE)


def credited_artists(
    artist: str, title: str | None = None, known: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """Every artist credited on a track, each folded like :func:`normalise_artist`.

    The artist field is split at ``", "``, ``" feat. "``, ``" ft. "`` and ``" featuring "``
    (the new chart CSV lists every artist there; ``&`` is kept, since duos such as
    ``"Simon & Garfunkel"`` are one act). The title adds the collaborators it names:
    ``"(feat. X)"``, ``"[ft. X]"``, ``"(with X & Y)"``, ``" - feat. X"`` (the old chart CSV lists
    only the main artist). A title credit list is split at commas, ``feat.``/``with`` and then at
    ``" & "``, ``" and "``, ``" x "``, except for a name found whole in ``known`` (e.g. the
    folded main artists of a catalog, so that a featured duo stays one act).

    Parameters
    ----------
    artist : str
        The artist field as charted.
    title : str, optional
        The track title as charted.
    known : set of str
        Folded artist names kept whole in title credits.

    Returns
    -------
    list[str]
        Distinct folded names, main artist first; empty names are dropped.
    """
    names = [_fold(part) for part in _ARTIST_SPLIT.split(str(artist))]
    credits: list[str] = []
    if isinstance(title, str):
        credits = _CREDIT_BRACKET.findall(title) + _CREDIT_DASH.findall(title)
    for credit in credits:
        for part in _CREDIT_LIST.split(credit):
            folded = _fold(part)
            if folded in known:
                names.append(folded)
            else:
                names.extend(_fold(piece) for piece in _CREDIT_PAIR.split(part))
    return [name for name in dict.fromkeys(names) if name]


def song_key(artist: str, title: str) -> str:
    """The grouping key of a track: ``"<main artist>|<title>"``, both normalised.

    Parameters
    ----------
    artist
        Artist string as charted (``"Drake, 21 Savage"`` and ``"Drake"`` give the same key).
    title
        Track title as charted (``"Yesterday - Remastered 2009"`` gives ``yesterday``).

    Returns
    -------
    str
        E.g. ``"queen|bohemian rhapsody"`` for ("Queen", "Bohemian Rhapsody - Remastered 2011").
    """
    return f"{normalise_artist(artist)}|{normalise_title(title)}"


def song_id_from_key(key: str) -> str:
    """Stable short id of a song key: the first 16 hex digits of its BLAKE2b hash."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def song_id(artist: str, title: str) -> str:
    """``song_id_from_key(song_key(artist, title))``: the id shared by versions of one song."""
    return song_id_from_key(song_key(artist, title))


# --- mapping ----------------------------------------------------------------------------------


def read_mapping(mapping: Path | str | pd.DataFrame) -> pd.DataFrame:
    """Read and validate a mapping CSV (``path,track_id`` and optional ``song_id``,
    ``release_date``, ``title``, ``artist``).

    Parameters
    ----------
    mapping
        The CSV path, or an already loaded frame.

    Returns
    -------
    pandas.DataFrame
        The rows, ``track_id`` validated, ``release_date`` parsed (NaT where empty).

    Raises
    ------
    DataError
        Naming the file and the problem: missing columns, bad track ids, bad dates.
    """
    name = "mapping" if isinstance(mapping, pd.DataFrame) else str(mapping)
    if isinstance(mapping, pd.DataFrame):
        frame = mapping.copy()
    else:
        try:
            frame = pd.read_csv(mapping, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except FileNotFoundError:
            raise DataError(f"{name}: mapping file not found") from None
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{name}: not a readable CSV ({exc})") from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if "track_id" not in frame.columns:
        raise DataError(f"{name}: mapping needs a 'track_id' column (has {list(frame.columns)})")
    ids = parse_track_ids(frame["track_id"].astype(str))
    if ids.isna().any():
        line = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 2
        raise DataError(
            f"{name}: line {line}: {frame['track_id'].iloc[line - 2]!r} is not a Spotify track id"
        )
    frame["track_id"] = ids
    for column in ("song_id", "title", "artist", "path"):
        if column in frame.columns:
            frame[column] = frame[column].replace("", None).astype(object)
    if "release_date" in frame.columns:
        raw = frame["release_date"].replace("", None)
        parsed = pd.to_datetime(raw, errors="coerce")
        bad = parsed.isna() & raw.notna()
        if bad.any():
            raise DataError(f"{name}: bad release_date {raw[bad].iloc[0]!r}")
        frame["release_date"] = parsed.astype("datetime64[ns]")
    return frame


def _empty_mapping() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in _MAPPING_FIELDS}).astype(
        {"release_date": "datetime64[ns]"}
    )


def _update_mapping(layout: DataLayout, mapping: pd.DataFrame) -> pd.DataFrame:
    """Merge a new mapping into the stored one (new values win, per field)."""
    stored = layout.catalog_mapping.read_or_empty(_empty_mapping)
    new = mapping.reindex(columns=_MAPPING_FIELDS).drop_duplicates("track_id", keep="last")
    new["release_date"] = pd.to_datetime(new["release_date"]).astype("datetime64[ns]")
    merged = new.set_index("track_id").combine_first(stored.set_index("track_id"))
    merged = merged.reset_index()[_MAPPING_FIELDS]
    layout.catalog_mapping.write(merged)
    return merged


# --- catalog ----------------------------------------------------------------------------------


def _empty_clips() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "track_id": pd.Series(dtype=object),
            "clip_id": pd.Series(dtype=np.int64),
            "audio_path": pd.Series(dtype=object),
        }
    )


def read_clips(data_dir: Path | str | DataLayout) -> pd.DataFrame:
    """The clips table (an empty frame with :data:`CLIPS_COLUMNS` when absent)."""
    layout = data_dir if isinstance(data_dir, DataLayout) else DataLayout(data_dir)
    return layout.clips.read_or_empty(_empty_clips)


def build_catalog(
    data_dir: Path | str, mapping: Path | str | pd.DataFrame | None = None
) -> pd.DataFrame:
    """(Re)build the catalog table from streams, clips and the stored mapping.

    Title and artist of a track are its most frequent (title, artist) pair in the charts (ties:
    the most recent). ``song_id`` is :func:`song_id` of them unless the mapping gives one.

    Parameters
    ----------
    data_dir
        The dataset folder.
    mapping
        Optional mapping CSV (or frame) to merge into the stored mapping first; its values override derived ones, now and in every later rebuild.

    Returns
    -------
    pandas.DataFrame
        The catalog (:data:`CATALOG_COLUMNS`), sorted by ``track_id``.
    """
    layout = DataLayout(data_dir)
    stored = _update_mapping(layout, read_mapping(mapping)) if mapping is not None else None
    if stored is None:
        stored = layout.catalog_mapping.read_or_empty(_empty_mapping)
    streams = layout.streams.read(
        ["track_id", "title", "artist", "rank", "chart_date"], missing_ok=True
    )
    clips = read_clips(layout)

    names = (
        streams.groupby(["track_id", "title", "artist"], dropna=False)
        .agg(n=("rank", "size"), last=("chart_date", "max"))
        .reset_index()
        .sort_values(["track_id", "n", "last"], ascending=[True, False, False])
        .drop_duplicates("track_id")
        .set_index("track_id")[["title", "artist"]]
    )
    track_ids = pd.Index(
        sorted(set(names.index) | set(clips["track_id"]) | set(stored["track_id"])),
        name="track_id",
    )
    catalog = names.reindex(track_ids)
    overrides = stored.set_index("track_id").reindex(track_ids)
    for column in ("title", "artist"):
        catalog[column] = overrides[column].where(overrides[column].notna(), catalog[column])
    derived = [
        song_id(a, t) if isinstance(t, str) else song_id_from_key(f"track|{tid}")
        for tid, a, t in zip(
            catalog.index, catalog["artist"].fillna(""), catalog["title"], strict=True
        )
    ]
    catalog["song_id"] = overrides["song_id"].where(overrides["song_id"].notna(), derived)
    first_clip = clips.sort_values(["track_id", "clip_id"]).drop_duplicates("track_id")
    catalog["audio_path"] = first_clip.set_index("track_id")["audio_path"].reindex(track_ids)
    catalog["release_date"] = overrides["release_date"].astype("datetime64[ns]")
    catalog = catalog.reset_index()[list(CATALOG_COLUMNS)].astype(
        {"song_id": object, "title": object, "artist": object, "audio_path": object}
    )
    layout.catalog.write(catalog)
    return catalog


# --- audio ------------------------------------------------------------------------------------


@dataclass
class AudioIngestReport:
    """What one :func:`ingest_audio` call did."""

    folder: str
    files_found: int = 0
    linked_by_name: int = 0
    linked_by_mapping: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    mapping_rows_without_file: int = 0
    clips_added: int = 0
    clips_total: int = 0
    tracks_with_audio: int = 0
    tracks_without_charts: int = 0

    def summary(self) -> str:
        """Human-readable lines: files found, linked, skipped (with examples), totals."""
        lines = [
            f"found {self.files_found:,} audio files under {self.folder}: "
            f"{self.linked_by_name:,} linked by file name, "
            f"{self.linked_by_mapping:,} by the mapping",
            f"clips: {self.clips_added:,} added, {self.clips_total:,} in the clips table, "
            f"{self.tracks_with_audio:,} tracks with audio "
            f"({self.tracks_without_charts:,} of them not in any chart)",
        ]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped):,} files, e.g.:")
            lines.extend(f"  {path}: {reason}" for path, reason in self.skipped[:5])
        if self.mapping_rows_without_file:
            lines.append(f"{self.mapping_rows_without_file:,} mapping rows name no existing file")
        return "\n".join(lines)


def ingest_audio(
    folder: Path | str,
    data_dir: Path | str,
    mapping: Path | str | pd.DataFrame | None = None,
) -> AudioIngestReport:
    """Link audio files under ``folder`` to tracks; write the clips table and the catalog.

    A file named ``<track_id>.<ext>`` or ``<track_id>_<k>.<ext>`` (``k`` = clip index) is linked
    directly; other files need a row in ``mapping`` (columns ``path,track_id``; a relative
    ``path`` is taken relative to the mapping file's folder, else to ``folder``), which also wins
    over the file name. Unlinked files are skipped and reported. Clips are numbered per track
    (0, 1, ...) by ``k`` then path; clips already stored keep their number. Re-running is
    idempotent. A mapping's ``source``, ``source_id``, ``sha256`` and ``fetched_at`` columns
    (:data:`CLIP_PROVENANCE_COLUMNS`) are carried into ``clips.parquet`` for its files.

    Parameters
    ----------
    folder
        Folder searched recursively for ``.mp3 .ogg .wav .flac .m4a .aac .opus`` files.
    data_dir
        The dataset folder.
    mapping
        Optional mapping CSV or frame (see :func:`read_mapping`); its ``song_id`` and
        ``release_date`` columns also override the catalog.

    Returns
    -------
    AudioIngestReport
        Counts of files linked and skipped.

    Raises
    ------
    DataError
        If ``folder`` is missing or the mapping is invalid.
    """
    folder = Path(folder).resolve()
    layout = DataLayout(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: audio folder not found")
    layout.root.mkdir(parents=True, exist_ok=True)
    report = AudioIngestReport(folder=str(folder))

    by_path: dict[str, str] = {}
    table = None
    provenance = pd.DataFrame(columns=["audio_path"])
    if mapping is not None:
        table = read_mapping(mapping)
        base = folder if isinstance(mapping, pd.DataFrame) else Path(mapping).resolve().parent
        if "path" not in table.columns:
            raise DataError(f"{mapping}: mapping needs a 'path' column to link audio files")
        hits = []
        for raw, track_id in zip(table["path"], table["track_id"], strict=True):
            if not isinstance(raw, str):
                hits.append(None)
                continue
            candidates = [Path(raw)] if Path(raw).is_absolute() else [base / raw, folder / raw]
            hit = next((c.resolve() for c in candidates if c.is_file()), None)
            hits.append(str(hit) if hit else None)
            if hit is None:
                report.mapping_rows_without_file += 1
            else:
                by_path[str(hit)] = track_id
        carried = [c for c in CLIP_PROVENANCE_COLUMNS if c in table.columns]
        provenance = table.assign(audio_path=hits).dropna(subset=["audio_path"])[
            ["audio_path", *carried]
        ]

    files = sorted(
        p.resolve()
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )
    report.files_found = len(files)
    rows = []
    for path in files:
        match = _STEM_RE.match(path.stem)
        if str(path) in by_path:
            track_id = by_path[str(path)]
            same = match is not None and match.group(1) == track_id
            rows.append((track_id, int(match.group(2) or 0) if same else 0, str(path)))
            report.linked_by_mapping += 1
            continue
        if match:
            rows.append((match.group(1), int(match.group(2) or 0), str(path)))
            report.linked_by_name += 1
        else:
            report.skipped.append(
                (str(path), "file stem is not a track id and the file is not in the mapping")
            )

    existing = read_clips(layout)
    new = pd.DataFrame(rows, columns=["track_id", "k", "audio_path"])
    new = new[~new["audio_path"].isin(existing["audio_path"])]
    new = new.merge(provenance.drop_duplicates("audio_path", keep="last"), "left", "audio_path")
    report.clips_added = len(new)
    combined = pd.concat(
        [
            existing.assign(order=0, k=existing["clip_id"]),
            new.assign(order=1, clip_id=-1),
        ],
        ignore_index=True,
    ).sort_values(["track_id", "order", "k", "audio_path"])
    combined["clip_id"] = combined.groupby("track_id").cumcount().astype(np.int64)
    extra = [c for c in CLIP_PROVENANCE_COLUMNS if c in combined.columns]
    clips = combined[[*CLIPS_COLUMNS, *extra]].reset_index(drop=True)
    if extra:
        clips[extra] = clips[extra].astype(object).where(clips[extra].notna(), None)
    layout.clips.write(clips)

    report.clips_total = len(clips)
    report.tracks_with_audio = clips["track_id"].nunique()
    charted = set(layout.streams.read(["track_id"], missing_ok=True)["track_id"])
    report.tracks_without_charts = len(set(clips["track_id"]) - charted)
    build_catalog(layout.root, mapping=table)
    return report


__all__ = [
    "AUDIO_EXTENSIONS",
    "CLIP_PROVENANCE_COLUMNS",
    "AudioIngestReport",
    "build_catalog",
    "credited_artists",
    "ingest_audio",
    "normalise_artist",
    "normalise_title",
    "read_clips",
    "read_mapping",
    "song_id",
    "song_id_from_key",
    "song_key",
]
