"""``collect previews`` end to end against a local server that plays Deezer, iTunes and Spotify.

The responses are the fixtures in tests/fixtures/collect/, written from each service's public
documentation; audio bodies are real MP3 (LAME) and M4A (FFmpeg's AAC) files made here.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock
from localserver import (
    FIXTURES,
    LocalServer,
    Reply,
    Seen,
    VirtualClock,
    m4a_bytes,
    make_catalog,
    mp3_bytes,
)

from musicpop.features.audio import decode_audio
from musicpop.features.catalog import ingest_audio
from musicpop.features.collect.client import PoliteClient, RetryPolicy
from musicpop.features.collect.previews import (
    DECISION_COLUMNS,
    PROVENANCE_COLUMNS,
    collect_previews,
    read_previews,
)
from musicpop.features.errors import DataError

KILL = "1Qrg8KqiBpW07V7PNxwwwL"
XMAS = "0bYg9bo50gSsH3LtXe2SQn"
LAST = "2FRnf9qhLbvw8fu4IBXx78"
SUN = "3KkXRkHbMCARz0aVfEt68P"
CRUEL = "1BxfuPKGuaTgP7aM0Bbdwr"
NONE = "5lpH0xAS4fVfLkACg9DAuM"
GLITCH = "06HL4z0CvFAxyc27GXpf02"
ODD = "7tYKF4w9nC0nq9CsPZTHyP"

TRACKS = {
    KILL: ("SZA", "Kill Bill"),
    XMAS: ("Mariah Carey", "All I Want for Christmas Is You"),
    LAST: ("Wham!", "Last Christmas"),
    SUN: ("Post Malone, Swae Lee", "Sunflower - Spider-Man: Into the Spider-Verse"),
    CRUEL: ("Taylor Swift", "Cruel Summer (w/ Nobody)"),
    NONE: ("Nobody Known", "Unfindable Song"),
    GLITCH: ("Glitch Band", "Html Preview"),
    ODD: ("Odd Band", "Odd Song"),
}

DEEZER_SEARCHES = {
    "kill bill": "search_kill_bill.json",
    "all i want": "search_christmas.json",
    "sunflower": "search_sunflower_p1.json",
    "last christmas": "search_last_christmas.json",
    "cruel summer": "search_cruel_summer.json",
    "html preview": "search_html_preview.json",
    "odd song": "search_unreadable.json",
}


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


def _catalog(tmp_path: Path, ids: list[str]) -> Path:
    return make_catalog(tmp_path / "data", [(i, *TRACKS[i]) for i in ids])


def _client(clock: VirtualClock, **kw) -> PoliteClient:
    kw.setdefault("timeout", 2.0)
    kw.setdefault("retry", RetryPolicy(max_attempts=3))
    return PoliteClient(clock=clock, sleep=clock.sleep, rng=random.Random(0), **kw)


def _deezer_search(seen: Seen) -> Reply:
    q = (seen.arg("q") or "").lower()
    if "sunflower" in q and seen.arg("index") == "25":
        return Reply(200, _text("deezer/search_sunflower_p2.json"))
    for key, name in DEEZER_SEARCHES.items():
        if key in q:
            return Reply(200, _text(f"deezer/{name}"))
    return Reply(200, _text("deezer/search_empty.json"))


def _serve_deezer(server: LocalServer) -> None:
    server.route("/search", _deezer_search)
    server.route("/track/isrc:USRC12204589", Reply(200, _text("deezer/track_isrc_kill_bill.json")))
    server.route("/track/isrc:GBBBN8400031", Reply(200, _text("deezer/error_no_data.json")))
    mp3 = Reply(200, mp3_bytes(), content_type="audio/mpeg")
    for deezer_id in (2048031457, 3135556, 588655082, 1003990, 7):
        server.route(f"/preview/deezer/{deezer_id}.mp3", mp3)
    # Cruel Summer's preview (703911352) is not routed: the link 404s
    html = "<!DOCTYPE html><html><body>Access denied</body></html>"
    server.route("/preview/deezer/111111111.mp3", Reply(200, html, content_type="text/html"))


def _requests(server: LocalServer) -> list[tuple[str, str]]:
    return [(s.path, str(sorted(s.query.items()))) for s in server.seen]


def _status(data: Path, source: str) -> dict[str, str]:
    table = read_previews(data)
    mine = table[table["source"] == source]
    return dict(zip(mine["track_id"], mine["status"], strict=True))


def test_deezer_collects_checks_and_records_then_a_rerun_fetches_nothing(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, LAST, SUN, CRUEL, NONE, GLITCH])
    _serve_deezer(server)
    report = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), progress=False
    )
    assert _status(data, "deezer") == {
        KILL: "downloaded",
        XMAS: "downloaded",  # the live version and the karaoke cover come first
        SUN: "downloaded",  # found on the second page
        LAST: "ambiguous",  # two recordings, no reference duration
        CRUEL: "preview_failed",  # its preview link 404s
        NONE: "not_found",
        GLITCH: "preview_failed",  # its preview is an HTML page
    }
    assert report.complete and report.attempted == 7
    assert report.statuses["downloaded"] == 3
    audio = data / "raw" / "audio"
    assert sorted(p.name for p in audio.iterdir()) == sorted(
        [f"{KILL}.mp3", f"{XMAS}.mp3", f"{SUN}.mp3", "provenance.csv"]
    )
    table = read_previews(data)
    assert list(table.columns) == DECISION_COLUMNS
    row = table.set_index("track_id").loc[XMAS]
    assert row["source_id"] == "3135556" and row["method"] == "search"
    assert row["score"] == 1.0 and row["candidates"] == 3
    assert row["preview_host"] == server.host
    assert row["sha256"] == hashlib.sha256((audio / f"{XMAS}.mp3").read_bytes()).hexdigest()
    assert str(table["decided_at"].dtype) == "datetime64[ns, UTC]"
    glitch = table.set_index("track_id").loc[GLITCH, "reason"]
    assert "not audio" in glitch and "text/html" in glitch
    assert "HTTP 404" in table.set_index("track_id").loc[CRUEL, "reason"]
    ambiguous = table.set_index("track_id").loc[LAST]
    assert {ambiguous["source_id"], ambiguous["runner_up_id"]} == {"1003990", "1003991"}

    # no preview link (they expire) is stored anywhere
    stored = table.astype(str).to_csv() + (audio / "provenance.csv").read_text()
    assert "hdnea" not in stored and "/preview/" not in stored

    provenance = pd.read_csv(audio / "provenance.csv", dtype=str)
    assert list(provenance.columns) == PROVENANCE_COLUMNS
    assert sorted(provenance["track_id"]) == sorted([KILL, XMAS, SUN])
    assert set(provenance["source"]) == {"deezer"}

    # `benchmark ingest audio` links the clips (by name, and the provenance file is a mapping)
    linked = ingest_audio(audio, data, mapping=audio / "provenance.csv")
    assert linked.clips_added == 3 and not linked.skipped
    clips = pd.read_parquet(data / "clips.parquet")
    assert sorted(clips["track_id"]) == sorted([KILL, XMAS, SUN])
    assert set(clips["source"]) == {"deezer"}  # the provenance is carried into clips.parquet
    by_track = clips.set_index("track_id")
    assert by_track.loc[XMAS, "source_id"] == "3135556"
    assert by_track.loc[XMAS, "sha256"] == row["sha256"]
    assert ingest_audio(audio, data).clips_added == 0  # again, without the mapping: kept
    assert pd.read_parquet(data / "clips.parquet").equals(clips)

    before = len(server.seen)
    again = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), progress=False
    )
    assert len(server.seen) == before  # nothing fetched twice
    assert again.attempted == 0 and again.with_clip == 3
    assert sum(again.already_decided.values()) == 4


def test_spotify_fills_isrcs_and_durations_that_deezer_then_uses(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, LAST])
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "my-client")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "my-secret")
    server.route("/api/token", Reply(200, _text("spotify/token.json")))
    forbidden = {"error": {"status": 403, "message": "Forbidden"}}
    server.route("/v1/tracks", Reply(403, forbidden))  # gone for development-mode apps
    server.route(f"/v1/tracks/{KILL}", Reply(200, _text("spotify/track_kill_bill.json")))
    server.route(f"/v1/tracks/{XMAS}", Reply(200, _text("spotify/track_christmas.json")))
    server.route(f"/v1/tracks/{LAST}", Reply(200, _text("spotify/track_last_christmas.json")))
    server.route(f"/mp3-preview/{XMAS}", Reply(200, mp3_bytes(), content_type="audio/mpeg"))

    report = collect_previews(
        data, "spotify", base_url=server.base_url, client=_client(clock), progress=False
    )
    assert _status(data, "spotify") == {KILL: "no_preview", XMAS: "downloaded", LAST: "no_preview"}
    assert report.complete
    token = next(s for s in server.seen if s.path == "/api/token")
    assert token.method == "POST" and token.headers["authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in token.body
    lookups = [s for s in server.seen if s.path.startswith("/v1/tracks/")]
    assert all(s.headers["authorization"] == "Bearer BQDk3d9-test-token" for s in lookups)
    assert server.count("/v1/tracks") == 1  # tried once, then one by one
    table = read_previews(data).set_index("track_id")
    assert table.loc[KILL, "isrc"] == "USRC12204589" and table.loc[KILL, "duration_ms"] == 153946
    assert "ISRC USRC12204589 recorded" in table.loc[KILL, "reason"]

    _serve_deezer(server)
    collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), progress=False
    )
    deezer = read_previews(data)
    deezer = deezer[deezer["source"] == "deezer"].set_index("track_id")
    assert set(deezer.index) == {KILL, LAST}  # XMAS has a clip from Spotify
    assert deezer.loc[KILL, "method"] == "isrc" and deezer.loc[KILL, "status"] == "downloaded"
    assert server.count("/track/isrc:USRC12204589") == 1
    # Spotify's duration (262.96 s) picks the single out of the two Last Christmas recordings
    assert deezer.loc[LAST, "status"] == "downloaded" and deezer.loc[LAST, "source_id"] == "1003990"
    assert deezer.loc[LAST, "reference_duration_ms"] == 262960
    assert deezer.loc[LAST, "duration_delta_s"] == pytest.approx(-0.96)


def test_spotify_batch_endpoint_and_unknown_ids(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _catalog(tmp_path, [KILL, NONE, LAST])
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "secret")
    server.route("/api/token", Reply(200, _text("spotify/token.json")))
    kill, last = _text("spotify/track_kill_bill.json"), _text("spotify/track_last_christmas.json")

    def batch(seen: Seen) -> Reply:
        by_id = {KILL: kill, LAST: last}
        ids = (seen.arg("ids") or "").split(",")
        return Reply(200, '{"tracks": [' + ", ".join(by_id.get(i, "null") for i in ids) + "]}")

    server.route("/v1/tracks", batch)
    collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock), market="se")
    assert server.count("/v1/tracks") == 1
    assert server.seen[-1].arg("market") == "SE"
    assert _status(data, "spotify") == {KILL: "no_preview", NONE: "not_found", LAST: "no_preview"}


def test_spotify_needs_credentials(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _catalog(tmp_path, [KILL])
    monkeypatch.delenv("SPOTIFY_CLIENT_ID", raising=False)
    monkeypatch.delenv("SPOTIFY_CLIENT_SECRET", raising=False)
    with pytest.raises(DataError, match="SPOTIFY_CLIENT_ID"):
        collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock))
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "wrong")
    server.route("/api/token", Reply(400, _text("spotify/token_error.json")))
    with pytest.raises(DataError, match="refused the client credentials"):
        collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock))
    assert server.count("/v1/tracks") == 0


def test_itunes_m4a_previews_are_stored_as_flac(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, CRUEL, NONE])

    def search(seen: Seen) -> Reply:
        term = seen.arg("term") or ""
        name = {"kill bill": "search_kill_bill", "cruel summer": "search_cruel_summer"}
        for key, fixture in name.items():
            if key in term:
                return Reply(200, _text(f"itunes/{fixture}.json"))
        return Reply(200, _text("itunes/search_empty.json"))

    server.route("/search", search)
    good = Reply(200, m4a_bytes(), content_type="audio/x-m4a")
    server.route("/itunes-assets/AudioPreview/1657869393.m4a", good)
    broken = b"\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 200
    server.route("/itunes-assets/AudioPreview/1468058171.m4a", Reply(200, broken))

    report = collect_previews(
        data, "itunes", base_url=server.base_url, client=_client(clock), market="gb"
    )
    assert _status(data, "itunes") == {
        KILL: "downloaded",  # past a music video, a live version and a cover
        CRUEL: "preview_failed",
        NONE: "not_found",
    }
    assert {s.arg("country") for s in server.seen if s.path == "/search"} == {"GB"}
    clip = data / "raw" / "audio" / f"{KILL}.flac"
    signal, rate = decode_audio(clip)  # the project's decoder reads what was stored
    assert len(signal) / rate == pytest.approx(6.0, abs=0.1)
    row = read_previews(data).set_index("track_id").loc[KILL]
    assert row["format"] == "m4a" and row["audio_file"] == f"{KILL}.flac"
    assert row["download_sha256"] == hashlib.sha256(m4a_bytes()).hexdigest()
    assert row["sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
    assert row["source_id"] == "1657869393" and row["duration_ms"] == 153947
    assert "not decodable as AAC" in report.summary()


def test_the_budget_stops_cleanly_and_the_next_run_repeats_no_request(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, LAST, SUN, CRUEL, NONE, GLITCH])
    _serve_deezer(server)
    first = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock, max_requests=12)
    )
    assert first.stopped and "budget" in first.stopped
    assert 0 < first.attempted < 7 and len(server.seen) <= 12
    sent_first = _requests(server)
    second = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), progress=False
    )
    assert second.complete and first.attempted + second.attempted == 7
    sent = _requests(server)
    assert len(sent) == len(set(sent)), "a request was sent twice"
    assert set(sent_first) < set(sent)
    assert len(_status(data, "deezer")) == 7


def test_a_failing_service_stops_the_run_and_errors_are_retried_later(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, SUN, CRUEL])
    server.route("/search", Reply(500, "Internal Server Error"))
    report = collect_previews(
        data,
        "deezer",
        base_url=server.base_url,
        client=_client(clock),
        max_consecutive_errors=2,
    )
    assert report.stopped and "2 tracks in a row failed" in report.stopped
    assert report.attempted == 2 and server.count("/search") == 2 * 3  # 3 attempts each
    table = read_previews(data)
    assert set(table["status"]) == {"error"}
    assert table["reason"].str.contains("HTTP 500 after 3 attempts").all()

    _serve_deezer(server)
    again = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), progress=False
    )
    assert again.attempted == 4
    assert set(_status(data, "deezer").values()) == {"downloaded", "preview_failed"}


def test_quota_body_and_429_are_waited_out(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [XMAS])
    quota = Reply(200, _text("deezer/error_quota.json"))
    too_many = Reply(429, "", headers={"Retry-After": "3"})
    server.route("/search", [quota, too_many, Reply(200, _text("deezer/search_christmas.json"))])
    server.route("/preview/deezer/3135556.mp3", Reply(200, mp3_bytes()))
    collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock))
    assert _status(data, "deezer") == {XMAS: "downloaded"}
    assert server.count("/search") == 3
    assert sum(1 for s in clock.sleeps if s >= 5.0) >= 1  # the quota window
    assert sum(1 for s in clock.sleeps if s >= 3.0) >= 2  # and the Retry-After


def test_a_long_retry_after_stops_without_deciding(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS])
    server.route("/search", Reply(429, "", headers={"Retry-After": "86400"}))
    report = collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock))
    assert report.stopped and "86400 s" in report.stopped
    assert server.count() == 1 and read_previews(data).empty


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(200, '{"data": [{"id": 1,', content_type="application/json"), "malformed JSON"),
        (Reply(200, {"results": []}), "no 'data' list"),
        (Reply(200, {"data": []}, delay_s=1.0), "timeout"),
        (Reply(200, {"error": {"type": "OAuthException", "message": "x", "code": 300}}), "300"),
    ],
    ids=["malformed", "unexpected-shape", "timeout", "error-object"],
)
def test_unreadable_responses_become_errors_with_the_reason(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, reply: Reply, reason: str
) -> None:
    data = _catalog(tmp_path, [KILL])
    server.route("/search", reply)
    report = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock, timeout=0.3)
    )
    row = read_previews(data).iloc[0]
    assert row["status"] == "error" and reason in row["reason"]
    assert report.errors and reason in report.summary()
    assert not (data / "raw" / "audio").exists() or not any((data / "raw" / "audio").iterdir())


def test_unreadable_items_are_reported_and_skipped(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [ODD])
    _serve_deezer(server)
    report = collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock))
    assert _status(data, "deezer") == {ODD: "downloaded"}
    assert read_previews(data).iloc[0]["source_id"] == "7"
    problems = [p for _, p in report.problems]
    assert problems == [
        "search result 1: not a track object (str)",
        "search result 2: track object without id",
        "search result 3: track object without artist.name",
    ]


def test_retry_reopens_chosen_statuses_only(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, NONE, LAST])
    _serve_deezer(server)
    collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock))
    before = len(server.seen)
    report = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), retry=("not_found",)
    )
    assert report.attempted == 1
    assert {s.arg("q") for s in server.seen[before:]} == {
        'artist:"nobody known" track:"unfindable song"',
        "nobody known unfindable song",
    }
    with pytest.raises(DataError, match="unknown status"):
        collect_previews(data, "deezer", base_url=server.base_url, retry=("downloaded",))


def test_tracks_with_a_clip_are_skipped_and_the_limit_holds(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, SUN, CRUEL])
    audio = data / "raw" / "audio"
    audio.mkdir(parents=True)
    (audio / f"{KILL}_1.ogg").write_bytes(b"a clip the user already had")
    _serve_deezer(server)
    report = collect_previews(
        data, "deezer", base_url=server.base_url, client=_client(clock), limit=2
    )
    assert report.with_clip == 1 and report.pending == 3 and report.attempted == 2
    assert not any("kill" in (s.arg("q") or "") for s in server.seen)
    assert "1 tracks left for a later run" in report.summary()


def test_one_collector_per_data_dir(server: LocalServer, tmp_path: Path) -> None:
    data = _catalog(tmp_path, [KILL])
    (data / "collect").mkdir()
    with FileLock(str(data / ".lock")):  # another benchmark command writing the data dir
        with pytest.raises(DataError, match="another benchmark command is writing"):
            collect_previews(data, "deezer", base_url=server.base_url)
    assert server.count() == 0


def test_a_missing_catalog_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"catalog\.parquet: not found; build it with `benchmark ingest"
    ):
        collect_previews(tmp_path / "empty", "deezer")
    with pytest.raises(DataError, match="unknown preview source"):
        collect_previews(_catalog(tmp_path, [KILL]), "napster")


def test_a_journal_left_by_a_crash_is_folded_in(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS])
    _serve_deezer(server)
    collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock), limit=1)
    table = read_previews(data)
    assert list(table["track_id"]) == [XMAS]  # the catalog's first track
    (data / "collect" / "previews.parquet").unlink()
    journal = data / "collect" / "previews.journal.jsonl"
    journal.write_text(
        table.to_json(orient="records", lines=True, date_format="iso") + '{"track_id": "torn'
    )
    before = len(server.seen)
    collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock))
    assert len(_status(data, "deezer")) == 2
    assert not any("all i want" in (s.arg("q") or "") for s in server.seen[before:])
    assert any("kill bill" in (s.arg("q") or "") for s in server.seen[before:])
    assert not journal.exists()


def test_spotify_service_failures_are_errors_not_crashes(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, LAST])
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "secret")
    server.route("/api/token", Reply(503))
    report = collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock))
    assert (
        report.stopped
        and report.stopped.startswith("cannot start")
        and "HTTP 503" in report.stopped
    )
    assert server.count("/v1/tracks") == 0

    server.route("/api/token", Reply(200, _text("spotify/token.json")))
    server.route("/v1/tracks", Reply(200, {"tracks": [None]}))  # one item for three ids
    report = collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock))
    assert set(_status(data, "spotify").values()) == {"error"}
    assert "no 'tracks' list of 3" in report.errors[0][1]


def test_tracks_without_a_title_and_stale_downloads(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    data = _catalog(tmp_path, [KILL])
    # a track known only from a mapping (no chart title): nothing to search with
    from musicpop.features.catalog import build_catalog

    build_catalog(data, mapping=pd.DataFrame({"track_id": [NONE]}))
    audio = data / "raw" / "audio"
    audio.mkdir(parents=True)
    (audio / f".{KILL}.4242.part").write_bytes(b"half a download from a killed run")
    _serve_deezer(server)
    collect_previews(data, "deezer", base_url=server.base_url, client=_client(clock))
    table = read_previews(data).set_index("track_id")
    assert table.loc[NONE, "status"] == "not_found"
    assert table.loc[NONE, "reason"].startswith("the catalog has no title and artist")
    assert sorted(p.name for p in audio.iterdir()) == [f"{KILL}.mp3", "provenance.csv"]


def test_spotify_under_a_budget_resumes_without_repeating_a_lookup(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _catalog(tmp_path, [KILL, XMAS, LAST])
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "secret")
    server.route("/api/token", Reply(200, _text("spotify/token.json")))
    server.route("/v1/tracks", Reply(404, _text("spotify/error_404.json")))
    for track, name in ((KILL, "kill_bill"), (XMAS, "christmas"), (LAST, "last_christmas")):
        server.route(f"/v1/tracks/{track}", Reply(200, _text(f"spotify/track_{name}.json")))
    server.route(f"/mp3-preview/{XMAS}", Reply(200, mp3_bytes()))
    first = collect_previews(
        data, "spotify", base_url=server.base_url, client=_client(clock, max_requests=3)
    )
    assert first.stop_cause == "budget" and not first.failed
    assert 1 <= first.attempted < 3
    second = collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock))
    assert second.complete and first.attempted + second.attempted == 3
    lookups = [s.path for s in server.seen if s.path.startswith("/v1/tracks/")]
    assert sorted(lookups) == sorted(f"/v1/tracks/{t}" for t in (KILL, XMAS, LAST))
    assert _status(data, "spotify") == {KILL: "no_preview", XMAS: "downloaded", LAST: "no_preview"}


def test_spotify_renews_an_expired_token_once(
    server: LocalServer, clock: VirtualClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _catalog(tmp_path, [KILL])
    monkeypatch.setenv("SPOTIFY_CLIENT_ID", "id")
    monkeypatch.setenv("SPOTIFY_CLIENT_SECRET", "secret")
    server.route("/api/token", Reply(200, _text("spotify/token.json")))
    expired = Reply(401, _text("spotify/error_401.json"))
    server.route(f"/v1/tracks/{KILL}", [expired, Reply(200, _text("spotify/track_kill_bill.json"))])
    collect_previews(data, "spotify", base_url=server.base_url, client=_client(clock))
    assert _status(data, "spotify") == {KILL: "no_preview"}
    assert server.count("/api/token") == 2 and server.count(f"/v1/tracks/{KILL}") == 2
