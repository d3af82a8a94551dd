"""Matching a catalog track to candidates: the score, version markers, durations, ambiguity."""

from __future__ import annotations

import pytest

from musicpop.features.collect.matching import (
    Candidate,
    MatchPolicy,
    TrackQuery,
    assess,
    decide,
    similarity,
    version_markers,
)

POLICY = MatchPolicy()
TRACK = "0bYg9bo50gSsH3LtXe2SQn"


def _q(title: str, artist: str, duration_ms: int | None = None) -> TrackQuery:
    return TrackQuery(TRACK, title, artist, duration_ms=duration_ms)


def _c(sid: str, title: str, artist: str, seconds: int | None = None, **kw) -> Candidate:
    return Candidate(sid, title, artist, duration_ms=seconds * 1000 if seconds else None, **kw)


@pytest.mark.parametrize(
    ("title", "markers"),
    [
        ("Live Forever", set()),  # a title word, not a version descriptor
        ("Live Forever - Remastered", set()),
        ("Yellow - Live at Glastonbury", {"live"}),
        ("Hello (Acoustic Version)", {"acoustic"}),
        ("Titanium (feat. Sia) [David Guetta Remix]", {"remix"}),
        ("Song (Original Mix)", set()),
        ("Song - Radio Edit", set()),
        ("Cupid - Twin Ver. (Sped Up)", {"sped up"}),
        ("Shape of You (Originally Performed by Ed Sheeran) [Karaoke Version]", {"karaoke"}),
        ("Song (Instrumental) - Slowed", {"instrumental", "slowed"}),
        ("Bzrp Music Sessions, Vol. 53", set()),
        ("Song (Pt. 2)", {"part"}),
        ("Song, Part II - Single Version", set()),  # in the title itself: compared as words
    ],
)
def test_version_markers_come_from_descriptors_only(title: str, markers: set[str]) -> None:
    assert version_markers(title) == markers


def test_similarity_ignores_word_order_but_not_words() -> None:
    assert similarity("hello world", "world hello") == 1.0
    assert similarity("kill bill", "kill bill") == 1.0
    assert similarity("kill bill", "") == 0.0
    assert similarity("yesterday", "tomorrow") < 0.5


def test_the_same_song_from_another_service_is_accepted() -> None:
    got = assess(
        _q("Sunflower - Spider-Man: Into the Spider-Verse", "Post Malone, Swae Lee"),
        _c("1", "Sunflower (Spider-Man: Into the Spider-Verse)", "Post Malone & Swae Lee"),
        POLICY,
    )
    assert got.rejected is None and got.score == 1.0


def test_kworb_with_credit_and_feat_do_not_hurt() -> None:
    got = assess(
        _q("Cruel Summer (w/ Someone)", "Taylor Swift"),
        _c("1", "Cruel Summer", "Taylor Swift"),
        POLICY,
    )
    assert got.rejected is None


@pytest.mark.parametrize(
    ("candidate", "why"),
    [
        (_c("1", "All I Want for Christmas Is You", "Michael Bublé"), "artist similarity"),
        (_c("2", "All I Want for Christmas Is You (Live)", "Mariah Carey"), "version markers"),
        (_c("3", "All I Want for Christmas Is You - Acoustic", "Mariah Carey"), "version markers"),
        (_c("4", "All I Want for Christmas Is You", "Mariah Carey", 300), "duration differs"),
        (_c("5", "Christmas (Baby Please Come Home)", "Mariah Carey", 241), "title similarity"),
    ],
)
def test_near_misses_are_rejected_with_the_reason(candidate: Candidate, why: str) -> None:
    query = _q("All I Want for Christmas Is You", "Mariah Carey", duration_ms=241_000)
    got = assess(query, candidate, POLICY)
    assert got.rejected is not None and why in got.rejected


def test_duration_tolerance_is_absolute_or_relative() -> None:
    query = _q("Song", "Artist", duration_ms=400_000)  # 4% of 400 s = 16 s > 7 s
    assert assess(query, _c("1", "Song", "Artist", 414), POLICY).rejected is None
    assert "duration" in assess(query, _c("1", "Song", "Artist", 420), POLICY).rejected
    short = _q("Song", "Artist", duration_ms=100_000)  # 7 s floor
    assert assess(short, _c("1", "Song", "Artist", 106), POLICY).rejected is None
    assert assess(short, _c("1", "Song", "Artist", 108), POLICY).rejected is not None


def test_unknown_duration_skips_the_check_and_says_so() -> None:
    got = decide(_q("Song", "Artist"), [_c("1", "Song", "Artist", 999)], POLICY)
    assert got.status == "matched" and got.best.duration_delta_s is None
    assert "duration unknown" in got.reason
    got = decide(_q("Song", "Artist", 200_000), [_c("1", "Song", "Artist", 201)], POLICY)
    assert got.status == "matched" and got.best.duration_delta_s == 1.0
    assert "duration checked" in got.reason


def test_an_isrc_hit_needs_only_a_loose_title_and_the_duration() -> None:
    query = _q("Kill Bill", "SZA", duration_ms=153_000)
    spelled = _c("9", "Kill Bill (Explicit)", "S.Z.A", 154, via="isrc")
    assert assess(query, spelled, POLICY).rejected is None
    wrong = _c("9", "Completely Different Song", "SZA", 154, via="isrc")
    assert "ISRC" in assess(query, wrong, POLICY).rejected
    too_long = _c("9", "Kill Bill", "SZA", 200, via="isrc")
    assert "duration" in assess(query, too_long, POLICY).rejected


def test_one_recording_on_several_releases_is_a_match() -> None:
    query = _q("Last Christmas", "Wham!")
    single = _c("1", "Last Christmas", "Wham!", 262)
    album = _c("2", "Last Christmas", "Wham!", 263)
    got = decide(query, [single, album], POLICY)
    assert got.status == "matched" and got.best.candidate.source_id == "1"


def test_two_distinct_recordings_within_the_margin_are_ambiguous() -> None:
    query = _q("Last Christmas", "Wham!")
    got = decide(
        query,
        [_c("1", "Last Christmas", "Wham!", 262), _c("2", "Last Christmas", "Wham!", 400)],
        POLICY,
    )
    assert got.status == "ambiguous"
    assert {got.best.candidate.source_id, got.runner_up.candidate.source_id} == {"1", "2"}
    # a known duration settles it
    known = decide(
        _q("Last Christmas", "Wham!", 262_500),
        [_c("1", "Last Christmas", "Wham!", 262), _c("2", "Last Christmas", "Wham!", 400)],
        POLICY,
    )
    assert known.status == "matched" and known.best.candidate.source_id == "1"


def test_a_clearly_better_candidate_wins() -> None:
    query = _q("Flowers", "Miley Cyrus")
    got = decide(
        query,
        [_c("1", "Flowers", "Miley Cyrus Tribute", 200), _c("2", "Flowers", "Miley Cyrus", 200)],
        POLICY,
    )
    assert got.status == "matched" and got.best.candidate.source_id == "2"


def test_not_found_names_the_best_rejected_candidate() -> None:
    got = decide(
        _q("Yellow", "Coldplay"),
        [_c("7", "Yellow (Live in Buenos Aires)", "Coldplay"), _c("8", "Mellow Yellow", "Donovan")],
        POLICY,
    )
    assert got.status == "not_found" and got.best.candidate.source_id == "7"
    assert "version markers" in got.reason and "among 2" in got.reason
    empty = decide(_q("Yellow", "Coldplay"), [], POLICY)
    assert empty.status == "not_found" and empty.reason == "the service returned no candidate"
