"""Test helpers for the collectors: a real HTTP server on 127.0.0.1 and a virtual clock.

The server answers from a routing table that each test fills: a path maps to one reply, a
sequence of replies (used in order; the last one repeats) or a function of the request.
Every request is recorded, so tests can count what was fetched. Bodies may contain
``@BASE@``, replaced by the server's own base URL (for ``next`` links and preview URLs).

Nothing here touches the internet, and every loop the client runs against it is bounded by
the client's retry policy and request budget.
"""

from __future__ import annotations

import functools
import io
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import lameenc
import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "collect"


@dataclass
class Reply:
    """One canned HTTP response."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # sleep before answering (a read timeout when > the client's timeout)
    content_type: str | None = None


@dataclass
class Seen:
    """A request the server received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def arg(self, name: str) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else None


Handler = Reply | Sequence[Reply] | Callable[[Seen], Reply]


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 with a routing table and a request log."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.seen: list[Seen] = []
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                reply = server._reply(seen)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body
                content_type = reply.content_type
                if isinstance(body, dict | list):
                    body = json.dumps(body)
                    content_type = content_type or "application/json"
                if isinstance(body, str):
                    body = body.replace("@BASE@", server.base_url).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type or "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out
                    pass

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self.host = f"{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def route(self, path: str, handler: Handler) -> None:
        """Answer ``path`` with ``handler`` (replacing any earlier route)."""
        self.routes[path] = handler
        self._calls[path] = 0

    def _reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            handler = self.routes.get(seen.path)
            if handler is None:
                return Reply(404, {"error": f"no route for {seen.path}"})
            index = self._calls[seen.path]
            self._calls[seen.path] += 1
        if isinstance(handler, Reply):
            return handler
        if callable(handler):
            return handler(seen)
        return handler[min(index, len(handler) - 1)]

    def count(self, path: str | None = None) -> int:
        """Requests received for ``path`` (all requests when None)."""
        return sum(1 for s in self.seen if path is None or s.path == path)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class VirtualClock:
    """A monotonic clock whose ``sleep`` advances time instantly and records the pause."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def fixture_json(name: str) -> Any:
    """A JSON fixture from tests/fixtures/collect/ (written from the services' documentation)."""
    return json.loads((FIXTURES / name).read_text())


# --- bodies and data dirs ---------------------------------------------------------------------


@functools.cache
def tone(seconds: float = 6.0, rate: int = 22050, freq: float = 440.0) -> np.ndarray:
    """A mono test tone (float32, -0.3..0.3)."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@functools.cache
def mp3_bytes(seconds: float = 6.0, freq: float = 440.0) -> bytes:
    """A real MP3 file (LAME, 22.05 kHz mono, 64 kbit/s), the shape of a Deezer preview."""
    pcm = (tone(seconds, 22050, freq) * 32767).astype("<i2")
    encoder = lameenc.Encoder()
    encoder.set_bit_rate(64)
    encoder.set_in_sample_rate(22050)
    encoder.set_channels(1)
    encoder.set_quality(7)
    return bytes(encoder.encode(pcm.tobytes()) + encoder.flush())


@functools.cache
def m4a_bytes(seconds: float = 6.0, freq: float = 440.0) -> bytes:
    """A real AAC-in-M4A file (FFmpeg's AAC encoder via PyAV), the shape of an iTunes preview."""
    import av

    rate = 44100
    x = tone(seconds, rate, freq)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([x, x]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def make_catalog(data_dir: Path, rows: list[tuple[str, str, str]]) -> Path:
    """Ingest a one-week chart of ``(track_id, artist, title)`` rows: a real catalog.parquet."""
    from musicpop.features.charts import ingest_charts

    lines = [
        "rank,uri,artist_names,track_name,source,peak_rank,previous_rank,weeks_on_chart,streams"
    ]
    for rank, (track_id, artist, title) in enumerate(rows, start=1):
        lines.append(f'{rank},spotify:track:{track_id},"{artist}","{title}",x,1,1,1,{1000 - rank}')
    chart = data_dir.parent / f"{data_dir.name}-charts" / "regional-us-weekly-2024-01-04.csv"
    chart.parent.mkdir(parents=True, exist_ok=True)
    chart.write_text("\n".join(lines) + "\n")
    ingest_charts([chart], data_dir, progress=False)
    return data_dir
