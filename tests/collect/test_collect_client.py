"""The polite HTTP client against a real server on 127.0.0.1: pacing, retries, budget."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from localserver import LocalServer, Reply, VirtualClock

from musicpop.features.collect.client import (
    BudgetExhausted,
    FetchError,
    HostLimit,
    PoliteClient,
    RetryableResponse,
    RetryPolicy,
    Throttled,
    parse_retry_after,
)


def _client(server: LocalServer, clock: VirtualClock, **kw) -> PoliteClient:
    kw.setdefault("limits", {server.host: HostLimit(rate=1000.0, burst=1000)})
    kw.setdefault("timeout", 2.0)
    return PoliteClient(clock=clock, sleep=clock.sleep, rng=random.Random(0), **kw)


def test_requests_to_one_host_are_paced_by_its_token_bucket(
    server: LocalServer, clock: VirtualClock
) -> None:
    server.route("/page", Reply(200, "ok"))
    with _client(server, clock, limits={server.host: HostLimit(rate=2.0, burst=1)}) as client:
        for _ in range(5):
            assert client.get_bytes(f"{server.base_url}/page") == b"ok"
    assert server.count("/page") == 5
    assert clock.sleeps == pytest.approx([0.5] * 4)


def test_a_burst_is_allowed_then_the_rate_holds(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/page", Reply(200, "ok"))
    with _client(server, clock, limits={server.host: HostLimit(rate=4.0, burst=3)}) as client:
        for _ in range(5):
            client.get_bytes(f"{server.base_url}/page")
    assert clock.sleeps == pytest.approx([0.25, 0.25])


def test_unlisted_hosts_get_the_default_limit(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/page", Reply(200, "ok"))
    with _client(server, clock, limits={}, default_limit=HostLimit(rate=0.5)) as client:
        client.get_bytes(f"{server.base_url}/page")
        client.get_bytes(f"{server.base_url}/page")
    assert clock.sleeps == pytest.approx([2.0])


def test_429_retry_after_is_honoured_and_blocks_the_host(
    server: LocalServer, clock: VirtualClock
) -> None:
    server.route("/api", [Reply(429, "slow down", {"Retry-After": "7"}), Reply(200, {"ok": 1})])
    with _client(server, clock) as client:
        status, doc = client.get_json(f"{server.base_url}/api")
    assert (status, doc) == (200, {"ok": 1})
    assert server.count("/api") == 2
    assert max(clock.sleeps) >= 7.0
    assert client.stats.retries["HTTP 429"] == 1


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after("12", now.timestamp()) == 12.0
    assert parse_retry_after("soon", now.timestamp()) is None
    assert parse_retry_after(None, now.timestamp()) is None


def test_5xx_is_retried_with_growing_jittered_backoff(
    server: LocalServer, clock: VirtualClock
) -> None:
    server.route("/api", [Reply(503), Reply(502), Reply(500), Reply(200, {"ok": True})])
    policy = RetryPolicy(max_attempts=5, backoff_base_s=1.0, backoff_cap_s=60.0)
    with _client(server, clock, retry=policy) as client:
        assert client.get_json(f"{server.base_url}/api")[1] == {"ok": True}
    assert server.count("/api") == 4
    # equal jitter: retry k waits in [d/2, d] with d = 2**(k-1)
    for k, pause in enumerate(clock.sleeps, start=1):
        assert 2 ** (k - 1) / 2 <= pause <= 2 ** (k - 1)


def test_persistent_5xx_gives_up_after_max_attempts(
    server: LocalServer, clock: VirtualClock
) -> None:
    server.route("/api", Reply(500))
    with _client(server, clock, retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(FetchError, match="HTTP 500 after 3 attempts"):
            client.get_json(f"{server.base_url}/api")
    assert server.count("/api") == 3


def test_retry_after_beyond_the_cap_stops_at_once(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/api", Reply(429, "", {"Retry-After": "3600"}))
    with _client(server, clock, retry=RetryPolicy(retry_after_cap_s=60)) as client:
        with pytest.raises(Throttled, match="3600 s"):
            client.get_json(f"{server.base_url}/api")
    assert server.count("/api") == 1
    assert clock.sleeps == []


def test_persistent_429_ends_as_throttled(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/api", Reply(429, "", {"Retry-After": "1"}))
    with _client(server, clock, retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(Throttled):
            client.get_json(f"{server.base_url}/api")
    assert server.count("/api") == 3


def test_a_read_timeout_is_retried(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/slow", [Reply(200, {"late": True}, delay_s=1.0), Reply(200, {"late": False})])
    with _client(server, clock, timeout=0.2) as client:
        assert client.get_json(f"{server.base_url}/slow")[1] == {"late": False}
    assert client.stats.retries["timeout"] == 1


def test_a_quota_body_is_retried_after_its_wait(server: LocalServer, clock: VirtualClock) -> None:
    quota = {"error": {"type": "Exception", "message": "Quota limit exceeded", "code": 4}}
    server.route("/search", [Reply(200, quota), Reply(200, {"data": []})])

    def check(doc: object) -> None:
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            if doc["error"].get("code") == 4:
                raise RetryableResponse("quota limit exceeded", wait_s=5.0)

    with _client(server, clock) as client:
        assert client.get_json(f"{server.base_url}/search", check=check)[1] == {"data": []}
    assert server.count("/search") == 2
    assert max(clock.sleeps) >= 5.0


def test_the_budget_stops_before_sending(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/page", Reply(200, "ok"))
    with _client(server, clock, max_requests=3) as client:
        for _ in range(3):
            client.get_bytes(f"{server.base_url}/page")
        with pytest.raises(BudgetExhausted):
            client.get_bytes(f"{server.base_url}/page")
        assert client.requests_left == 0
    assert server.count("/page") == 3


def test_retries_count_against_the_budget(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/api", Reply(503))
    with _client(server, clock, max_requests=2) as client:
        with pytest.raises(BudgetExhausted):
            client.get_json(f"{server.base_url}/api")
    assert server.count("/api") == 2


def test_malformed_json_is_reported_not_retried(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/api", Reply(200, '{"data": [1, 2', content_type="application/json"))
    with _client(server, clock) as client:
        with pytest.raises(FetchError, match="malformed JSON"):
            client.get_json(f"{server.base_url}/api")
    assert server.count("/api") == 1


def test_404_is_an_immediate_error(server: LocalServer, clock: VirtualClock) -> None:
    with _client(server, clock) as client:
        with pytest.raises(FetchError) as info:
            client.get_bytes(f"{server.base_url}/missing?token=secret")
    assert info.value.status == 404
    assert "secret" not in str(info.value)  # query strings (expiring tokens) are not shown
    assert server.count("/missing") == 1


def test_user_agent_is_descriptive(server: LocalServer, clock: VirtualClock) -> None:
    server.route("/page", Reply(200, "ok"))
    with _client(server, clock, contact="lab@example.org") as client:
        client.get_bytes(f"{server.base_url}/page")
    agent = server.seen[0].headers["user-agent"]
    assert agent.startswith("music-popularity/")
    assert f"python-httpx/{httpx.__version__}" in agent
    assert "mailto:lab@example.org" in agent


def test_download_streams_hashes_and_caps(
    server: LocalServer, clock: VirtualClock, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 100
    server.route("/clip", Reply(200, body, content_type="audio/mpeg"))
    with _client(server, clock) as client:
        got = client.download(f"{server.base_url}/clip", tmp_path / "clip.part")
        assert got.sha256 == hashlib.sha256(body).hexdigest()
        assert got.size == len(body) and got.head == body[:64]
        assert (tmp_path / "clip.part").read_bytes() == body
        assert got.content_type == "audio/mpeg"
        with pytest.raises(FetchError, match="exceeds"):
            client.download(f"{server.base_url}/clip", tmp_path / "x.part", max_bytes=1000)
