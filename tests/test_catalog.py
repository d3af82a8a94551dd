"""Catalog, song grouping and audio linking."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from musicpop.features.catalog import (
    build_catalog,
    ingest_audio,
    read_mapping,
    song_id,
    song_key,
)
from musicpop.features.charts import ingest_charts
from musicpop.features.errors import DataError
from musicpop.features.layout import CATALOG_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures" / "charts"
SUNFLOWER = "3KkXRkHbMCARz0aVfEt68P"
WOW = "6MWtB6iiXyIwun0YzU6DFP"
SICKO = "2xLMifQCjDGFmkHkpNLD9h"

SAME_SONG = [
    (("Queen", "Bohemian Rhapsody"), ("Queen", "Bohemian Rhapsody - Remastered 2011")),
    (("Queen", "Bohemian Rhapsody"), ("Queen", "Bohemian Rhapsody - Live Aid")),
    (("Meek Mill", "Going Bad"), ("Meek Mill", "Going Bad (feat. Drake)")),
    (("Dua Lipa", "Levitating"), ("Dua Lipa", "Levitating [feat. DaBaby]")),
    (("Dua Lipa", "Levitating"), ("Dua Lipa", "Levitating (Remix)")),
    (("Dua Lipa", "Levitating"), ("Dua Lipa", "Levitating - The Blessed Madonna Remix")),
    (("Wham!", "Last Christmas"), ("Wham!", "Last Christmas - Single Version")),
    (("Billie Eilish", "Happier Than Ever"), ("Billie Eilish", "Happier Than Ever - Radio Edit")),
    (("Taylor Swift", "Love Story"), ("Taylor Swift", "Love Story (Taylor's Version)")),
    (
        ("Post Malone", "Sunflower - Spider-Man: Into the Spider-Verse"),
        ("Post Malone, Swae Lee", "Sunflower (with Swae Lee)"),
    ),
    (("Beyoncé", "Halo"), ("BEYONCE", "halo")),
    (
        ("Simon & Garfunkel", "The Sound of Silence"),
        ("Simon and Garfunkel", "The Sound Of Silence"),
    ),
]
DIFFERENT_SONGS = [
    (("Ed Sheeran", "Shape of You"), ("Ed Sheeran", "Perfect")),
    (("Queen", "Bohemian Rhapsody"), ("Panic! At The Disco", "Bohemian Rhapsody")),
    (("YOASOBI", "夜に駆ける"), ("YOASOBI", "アイドル")),
]


@pytest.mark.parametrize(("a", "b"), SAME_SONG)
def test_versions_share_a_song_id(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert song_key(*a) == song_key(*b)
    assert song_id(*a) == song_id(*b)


@pytest.mark.parametrize(("a", "b"), DIFFERENT_SONGS)
def test_different_songs_differ(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert song_id(*a) != song_id(*b)


def test_song_key_and_id_are_stable() -> None:
    assert song_key("Queen", "Bohemian Rhapsody - Remastered 2011") == "queen|bohemian rhapsody"
    assert song_key("The Rolling Stones", "(I Can't Get No) Satisfaction") == (
        "the rolling stones|i cant get no satisfaction"
    )
    # pinned: the id must not change between runs, machines or Python versions
    assert song_id("Queen", "Bohemian Rhapsody") == "ec3ca4a1992871d8"


@pytest.fixture
def charted(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    ingest_charts([FIXTURES / "legacy_weekly", FIXTURES / "new_weekly"], data, progress=False)
    return data


def test_catalog_after_ingest(charted: Path) -> None:
    catalog = pd.read_parquet(charted / "catalog.parquet")
    assert list(catalog.columns) == list(CATALOG_COLUMNS)
    assert catalog["track_id"].is_unique
    assert len(catalog) == 6
    sunflower = catalog.set_index("track_id").loc[SUNFLOWER]
    # charted twice as "Post Malone" (old CSV), once as "Post Malone, Swae Lee": most frequent wins
    assert sunflower["artist"] == "Post Malone"
    assert sunflower["song_id"] == song_id("Post Malone", "Sunflower")
    assert catalog["audio_path"].isna().all() and catalog["release_date"].isna().all()


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ID3 not really audio")
    return path


def test_ingest_audio_links_stems_and_mapping(charted: Path, tmp_path: Path) -> None:
    audio = tmp_path / "audio"
    first = _touch(audio / f"{SUNFLOWER}.mp3")
    second = _touch(audio / "more" / f"{SUNFLOWER}_1.ogg")
    _touch(audio / "mystery.mp3")
    mapped = _touch(audio / "sicko mode preview.mp3")
    _touch(audio / "notes.txt")
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(
        "path,track_id,song_id,release_date\n"
        f"audio/sicko mode preview.mp3,{SICKO},my-song,2018-08-03\n"
        f"audio/missing.mp3,{WOW},,\n"
    )
    report = ingest_audio(audio, charted, mapping=mapping)
    assert report.files_found == 4
    assert report.linked_by_name == 2 and report.linked_by_mapping == 1
    assert [Path(p).name for p, _ in report.skipped] == ["mystery.mp3"]
    assert report.mapping_rows_without_file == 1
    assert "mystery.mp3" in report.summary()

    clips = pd.read_parquet(charted / "clips.parquet")
    sun = clips[clips["track_id"] == SUNFLOWER].sort_values("clip_id")
    assert sun["clip_id"].tolist() == [0, 1]
    assert sun["audio_path"].tolist() == [str(first.resolve()), str(second.resolve())]
    assert all(Path(p).is_absolute() for p in clips["audio_path"])

    catalog = pd.read_parquet(charted / "catalog.parquet").set_index("track_id")
    assert catalog.loc[SUNFLOWER, "audio_path"] == str(first.resolve())
    assert catalog.loc[SICKO, "audio_path"] == str(mapped.resolve())
    assert catalog.loc[SICKO, "song_id"] == "my-song"
    assert catalog.loc[SICKO, "release_date"] == pd.Timestamp("2018-08-03")
    assert pd.isna(catalog.loc[WOW, "audio_path"])

    # idempotent, and a later chart ingest keeps the links and the mapping overrides
    again = ingest_audio(audio, charted, mapping=mapping)
    assert again.clips_added == 0 and again.clips_total == 3
    ingest_charts([FIXTURES / "legacy_daily"], charted, progress=False)
    catalog = pd.read_parquet(charted / "catalog.parquet").set_index("track_id")
    assert catalog.loc[SICKO, "song_id"] == "my-song"
    assert catalog.loc[SUNFLOWER, "audio_path"] == str(first.resolve())
    assert len(catalog) == 8


def test_mapping_with_bad_track_id_names_file_and_line(tmp_path: Path) -> None:
    mapping = tmp_path / "map.csv"
    mapping.write_text(f"path,track_id\na.mp3,{SUNFLOWER}\nb.mp3,not-an-id\n")
    with pytest.raises(DataError, match=r"map\.csv: line 3: 'not-an-id'"):
        read_mapping(mapping)


def test_mapping_without_track_id_column(tmp_path: Path) -> None:
    mapping = tmp_path / "map.csv"
    mapping.write_text("path,id\na.mp3,x\n")
    with pytest.raises(DataError, match="track_id"):
        build_catalog(tmp_path, mapping=mapping)


def test_missing_audio_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="audio folder not found"):
        ingest_audio(tmp_path / "nope", tmp_path / "data")


@pytest.mark.parametrize(
    ("artist", "title", "known", "expected"),
    [
        ("Post Malone, Swae Lee", "Sunflower (with Swae Lee)", set(), ["post malone", "swae lee"]),
        ("Kygo", "Remember (feat. Eminem & 50 Cent)", set(), ["kygo", "eminem", "50 cent"]),
        ("Future", "Life Is Good (feat. Drake)", set(), ["future", "drake"]),
        ("Drake", "Toosie Slide", set(), ["drake"]),
        ("Simon & Garfunkel", "The Boxer", set(), ["simon and garfunkel"]),  # one act
        ("Macklemore", "Can't Hold Us - feat. Ray Dalton", set(), ["macklemore", "ray dalton"]),
        ("Startender", "X (feat. Offset and Tyga)", set(), ["startender", "offset", "tyga"]),
        (
            "Ivy",
            "Y (feat. Henrique & Juliano)",
            {"henrique and juliano"},
            ["ivy", "henrique and juliano"],
        ),
        ("Beyoncé", "Halo - Live", set(), ["beyonce"]),
    ],
)
def test_credited_artists(artist: str, title: str, known: set[str], expected: list[str]) -> None:
    from musicpop.features.catalog import credited_artists

    assert credited_artists(artist, title, known) == expected
