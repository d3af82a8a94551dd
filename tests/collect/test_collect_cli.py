"""The ``benchmark collect`` commands, from an empty folder to clips ``ingest audio`` links."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from localserver import FIXTURES, LocalServer, Reply, Seen, mp3_bytes

from musicpop.benchmark.cli import main

KWORB = Path(__file__).resolve().parents[1] / "fixtures" / "charts" / "kworb"


def _deezer(seen: Seen) -> Reply:
    q = seen.arg("q") or ""
    for key, name in (
        ("all i want", "search_christmas"),
        ("cruel summer", "search_cruel_summer"),
        ("last christmas", "search_last_christmas"),
    ):
        if key in q:
            return Reply(200, (FIXTURES / "deezer" / f"{name}.json").read_text())
    return Reply(200, (FIXTURES / "deezer" / "search_empty.json").read_text())


def test_collect_charts_then_previews_then_ingest_audio(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    page = (KWORB / "se_daily.html").read_text()
    server.route("/spotify/country/se_daily.html", Reply(200, page, content_type="text/html"))
    common = ["--data-dir", str(data), "--base-url", server.base_url, "--rate", "100"]

    assert (
        main(["collect", "charts", "--regions", "se", "--fetch-date", "2026-03-01", *common]) == 0
    )
    out = capsys.readouterr().out
    assert "1 fetched" in out and "3 read, 3 added" in out
    assert len(pd.read_parquet(data / "catalog.parquet")) == 3

    server.route("/search", _deezer)
    mp3 = Reply(200, mp3_bytes(), content_type="audio/mpeg")
    server.route("/preview/deezer/3135556.mp3", mp3)
    server.route("/preview/deezer/703911352.mp3", mp3)
    assert main(["collect", "previews", "--source", "deezer", *common]) == 0
    out = capsys.readouterr().out
    assert "2 downloaded, 1 ambiguous" in out
    assert f"next: benchmark ingest audio {data / 'raw' / 'audio'}" in out

    assert main(["ingest", "audio", str(data / "raw" / "audio"), "--data-dir", str(data)]) == 0
    assert len(pd.read_parquet(data / "clips.parquet")) == 2

    sent = server.count()
    assert main(["collect", "previews", "--source", "deezer", *common]) == 0
    assert server.count() == sent
    assert "0 to do" in capsys.readouterr().out


def test_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SPOTIFY_CLIENT_ID", raising=False)
    assert main(["collect", "previews", "--source", "deezer", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("benchmark: error: ") and "catalog.parquet: not found" in err
    assert main(["collect", "charts", "--regions", "usa", "--data-dir", str(tmp_path)]) == 2
    assert "not a region code" in capsys.readouterr().err
    args = ["collect", "previews", "--source", "deezer", "--data-dir", str(tmp_path)]
    assert main([*args, "--max-requests", "-1"]) == 2
    assert "--max-requests" in capsys.readouterr().err
