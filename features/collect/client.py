"""A polite HTTP client: one httpx client, per-host rate limits, back-off, a request budget.

Every request the collectors send goes through :class:`PoliteClient`, which

- waits for a token of the destination host's bucket (:class:`TokenBucket`; a host with no
  configured limit gets :attr:`PoliteClient.default_limit`);
- counts the attempt against the run's budget (``max_requests``) and refuses to send once it is
  spent (:class:`BudgetExhausted`);
- retries 429, 500, 502, 503, 504, timeouts and transport errors, and any response that the
  caller's ``check`` declares throttled (Deezer's HTTP-200 "Quota limit exceeded" body), with
  exponential back-off and "equal jitter" (``d/2 + uniform(0, d/2)`` with ``d = base * 2**k``,
  capped), never waiting less than a ``Retry-After`` header asks;
- stops (:class:`Throttled`) when a server asks for a longer pause than ``retry_after_cap_s``,
  instead of hammering it or waiting for hours;
- sends a descriptive User-Agent (:func:`user_agent`).

The clock, the sleep function and the random generator are injectable, so tests run at full
speed against a real HTTP server on 127.0.0.1 while checking every pause the client asked for.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""HTTP statuses that are retried (with back-off) rather than reported at once."""

MAX_JSON_BYTES = 5 * 1024 * 1024
MAX_PAGE_BYTES = 20 * 1024 * 1024
MAX_AUDIO_BYTES = 20 * 1024 * 1024


class FetchError(Exception):
    """A request that failed for good (after retries); ``reason`` is one line for the report."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.reason = reason
        self.status = status
        super().__init__(f"{_display(url)}: {reason}")


class Throttled(FetchError):
    """The server asked us to slow down for longer than we are willing to wait: stop the run."""


class BudgetExhausted(Exception):
    """The run's ``max_requests`` budget is spent; nothing more is sent."""


class RetryableResponse(Exception):
    """Raised by a ``check`` callback: this 2xx response means "slow down" (a quota body)."""

    def __init__(self, reason: str, wait_s: float | None = None) -> None:
        self.reason = reason
        self.wait_s = wait_s
        super().__init__(reason)


def _display(url: str) -> str:
    """The URL without its query string (which may hold an expiring token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def host_of(url: str) -> str:
    """``host[:port]`` of a URL, lower-case: the key of the per-host rate limits."""
    return urlsplit(url).netloc.lower()


def user_agent(contact: str | None = None) -> str:
    """The User-Agent sent with every request.

    Parameters
    ----------
    contact
        An e-mail address or URL where the operator of the collection can be reached
        (recommended by the services' etiquette); omitted when None.

    Returns
    -------
    str
        E.g. ``music-popularity/0.1.0 (research data collection; python-httpx/0.28.1;
        +mailto:me@example.org)``.
    """
    try:
        version = metadata.version("music-popularity")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        version = "0"
    parts = ["research data collection", f"python-httpx/{httpx.__version__}"]
    if contact:
        parts.append(f"+{contact}" if ":" in contact else f"+mailto:{contact}")
    return f"music-popularity/{version} ({'; '.join(parts)})"


# --- rate limiting -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostLimit:
    """A host's rate: ``rate`` requests per second on average, at most ``burst`` at once.

    In any window of ``T`` seconds the bucket lets through at most ``burst + rate * T``
    requests, which is how the defaults are kept under each service's documented limit.
    """

    rate: float
    burst: int = 1

    def __post_init__(self) -> None:
        if not self.rate > 0 or self.burst < 1:
            raise ValueError(f"a host limit needs rate > 0 and burst >= 1 (got {self})")


class TokenBucket:
    """A token bucket driven by an injected clock; ``blocked_until`` pauses the host."""

    def __init__(self, limit: HostLimit, now: float) -> None:
        self.limit = limit
        self.tokens = float(limit.burst)
        self.updated = now
        self.blocked_until = now

    def wait_time(self, now: float) -> float:
        """Seconds to wait before a token is available (0 when one is)."""
        self._refill(now)
        wait = max(0.0, self.blocked_until - now)
        if self.tokens < 1.0:
            wait = max(wait, (1.0 - self.tokens) / self.limit.rate)
        return wait

    def take(self, now: float) -> None:
        """Consume one token (call after waiting :meth:`wait_time`)."""
        self._refill(now)
        self.tokens -= 1.0

    def block(self, until: float) -> None:
        """No request to this host before ``until`` (after a 429 or a quota body)."""
        self.blocked_until = max(self.blocked_until, until)
        self.tokens = min(self.tokens, 0.0)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.limit.burst), self.tokens + elapsed * self.limit.rate)
        self.updated = now


# --- retry policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    Attributes
    ----------
    max_attempts
        Attempts per request, the first included.
    backoff_base_s, backoff_cap_s
        Back-off before retry ``k`` (1, 2, ...) is ``d/2 + uniform(0, d/2)`` with
        ``d = min(cap, base * 2**(k-1))``.
    retry_after_cap_s
        The longest ``Retry-After`` honoured; a server asking for more stops the run
        (:class:`Throttled`).
    """

    max_attempts: int = 5
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    retry_after_cap_s: float = 120.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The jittered pause before retry number ``retry`` (1-based)."""
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1))
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)


# --- the client --------------------------------------------------------------------------------


@dataclass
class ClientStats:
    """What a client sent: attempts per host, retries and their causes, bytes received."""

    requests: Counter = field(default_factory=Counter)  # host -> attempts sent
    retries: Counter = field(default_factory=Counter)  # cause -> count
    waited_s: float = 0.0
    bytes_received: int = 0

    @property
    def total_requests(self) -> int:
        """Attempts sent to every host."""
        return sum(self.requests.values())

    def summary(self) -> str:
        """One line: requests per host, retries per cause, time spent waiting."""
        hosts = ", ".join(f"{n} to {h}" for h, n in sorted(self.requests.items())) or "none"
        line = f"HTTP requests: {self.total_requests} ({hosts})"
        if self.retries:
            causes = ", ".join(f"{n} x {c}" for c, n in sorted(self.retries.items()))
            line += f"; retried {sum(self.retries.values())} ({causes})"
        return line + f"; waited {self.waited_s:.1f} s for rate limits and back-off"


@dataclass
class Download:
    """A body streamed to a file: its sha256, size and first bytes (for format sniffing)."""

    path: Path
    sha256: str
    size: int
    head: bytes
    content_type: str


class PoliteClient:
    """An ``httpx.Client`` with per-host rate limits, retries with back-off, and a budget.

    Parameters
    ----------
    limits
        ``host[:port]`` -> :class:`HostLimit`; :meth:`set_limit` adds more.
    default_limit
        The limit of any other host.
    retry
        The retry policy.
    max_requests
        The budget: attempts (retries included) this client may send; None = unlimited.
    timeout
        Seconds for connect, read, write and pool (an ``httpx.Timeout`` is accepted too).
    contact
        Operator contact added to the User-Agent (:func:`user_agent`).
    clock, sleep, rng
        Monotonic clock, sleep function and random generator (injectable for tests).
    transport
        An httpx transport (tests may pass one; by default httpx's own).
    """

    def __init__(
        self,
        *,
        limits: dict[str, HostLimit] | None = None,
        default_limit: HostLimit = HostLimit(rate=1.0, burst=1),
        retry: RetryPolicy = RetryPolicy(),
        max_requests: int | None = None,
        timeout: float | httpx.Timeout = 20.0,
        contact: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_requests is not None and max_requests < 0:
            raise ValueError("max_requests must be >= 0")
        self.limits = {k.lower(): v for k, v in (limits or {}).items()}
        self.default_limit = default_limit
        self.retry = retry
        self.max_requests = max_requests
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.stats = ClientStats()
        self.user_agent = user_agent(contact)
        self._buckets: dict[str, TokenBucket] = {}
        self._http = httpx.Client(
            headers={"User-Agent": self.user_agent},
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            follow_redirects=True,
            transport=transport,
        )

    # -- lifecycle

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- limits and budget

    def set_limit(self, host: str, limit: HostLimit) -> None:
        """Limit ``host`` (``host[:port]``); the stricter limit wins when one is already set."""
        host = host.lower()
        current = self.limits.get(host)
        if current is None or limit.rate < current.rate:
            self.limits[host] = limit
            self._buckets.pop(host, None)

    @property
    def requests_left(self) -> int | None:
        """Attempts the budget still allows (None = unlimited)."""
        if self.max_requests is None:
            return None
        return max(0, self.max_requests - self.stats.total_requests)

    def _bucket(self, host: str) -> TokenBucket:
        if host not in self._buckets:
            limit = self.limits.get(host, self.default_limit)
            self._buckets[host] = TokenBucket(limit, self.clock())
        return self._buckets[host]

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waited_s += seconds
            self.sleep(seconds)

    def _acquire(self, host: str) -> None:
        if self.requests_left == 0:
            raise BudgetExhausted(f"the request budget ({self.max_requests}) is spent")
        bucket = self._bucket(host)
        while (wait := bucket.wait_time(self.clock())) > 0:
            self._pause(wait)
        bucket.take(self.clock())
        self.stats.requests[host] += 1

    # -- the request loop

    def _send(
        self,
        method: str,
        url: str,
        consume: Callable[[httpx.Response], Any],
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        ok_statuses: frozenset[int] = frozenset(),
    ) -> Any:
        """Send with rate limiting and retries; ``consume`` reads a final response.

        A 2xx status (or one in ``ok_statuses``) is passed to ``consume``, which may raise
        :class:`RetryableResponse` to have it retried; any other status that is not retried
        becomes a :class:`FetchError`.
        """
        host = host_of(url)
        last_reason, throttled = "", False
        for attempt in range(1, self.retry.max_attempts + 1):
            self._acquire(host)
            asked: float | None = None
            throttled = False
            try:
                with self._http.stream(
                    method, url, params=params, headers=headers, data=data, auth=auth
                ) as response:
                    status = response.status_code
                    if status in RETRY_STATUSES:
                        asked = parse_retry_after(response.headers.get("Retry-After"), time.time())
                        last_reason, throttled = f"HTTP {status}", status == 429
                        self.stats.retries[f"HTTP {status}"] += 1
                    elif 200 <= status < 300 or status in ok_statuses:
                        try:
                            return consume(response)
                        except RetryableResponse as exc:
                            last_reason, throttled = exc.reason, True
                            asked = exc.wait_s
                            self.stats.retries[exc.reason] += 1
                    else:
                        raise FetchError(url, f"HTTP {status}", status=status)
            except httpx.TimeoutException as exc:
                last_reason = f"timeout ({type(exc).__name__})"
                self.stats.retries["timeout"] += 1
            except httpx.TransportError as exc:
                last_reason = f"connection error ({type(exc).__name__}: {exc})"
                self.stats.retries["connection error"] += 1
            if asked is not None and asked > self.retry.retry_after_cap_s:
                raise Throttled(
                    url,
                    f"{last_reason}: the server asks to wait {asked:.0f} s, more than the "
                    f"{self.retry.retry_after_cap_s:.0f} s cap; stopping (re-run later to resume)",
                    status=429,
                )
            if attempt == self.retry.max_attempts:
                break
            pause = max(asked or 0.0, self.retry.backoff(attempt, self.rng))
            if asked is not None:  # the server spoke for the whole host
                self._bucket(host).block(self.clock() + pause)
            self._pause(pause)
        if throttled:
            raise Throttled(
                url, f"{last_reason} after {self.retry.max_attempts} attempts; stopping", 429
            )
        raise FetchError(url, f"{last_reason} after {self.retry.max_attempts} attempts")

    @staticmethod
    def _read_capped(response: httpx.Response, limit: int) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise FetchError(str(response.url), f"body of {declared} bytes exceeds {limit}")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise FetchError(str(response.url), f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def get_bytes(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> bytes:
        """GET a whole body (a web page), retried as described in the module docstring."""

        def consume(response: httpx.Response) -> bytes:
            body = self._read_capped(response, max_bytes)
            self.stats.bytes_received += len(body)
            return body

        return self._send("GET", url, consume, params=params, headers=headers)

    def get_json(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        check: Callable[[Any], None] | None = None,
        ok_statuses: frozenset[int] = frozenset(),
    ) -> tuple[int, Any]:
        """GET a JSON document.

        Parameters
        ----------
        url, params, headers
            The request.
        check
            Called with the decoded document; raises :class:`RetryableResponse` for a body
            that means "slow down" (it is then retried like a 429).
        ok_statuses
            Non-2xx statuses whose JSON body the caller wants (e.g. 404 with an error object).

        Returns
        -------
        tuple of (int, object)
            The HTTP status and the decoded document.

        Raises
        ------
        FetchError
            After the retries, or at once for a body that is not JSON (malformed JSON is
            not retried: a server that sends it once usually sends it again).
        """

        def consume(response: httpx.Response) -> tuple[int, Any]:
            body = self._read_capped(response, MAX_JSON_BYTES)
            self.stats.bytes_received += len(body)
            try:
                document = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise FetchError(
                    url, f"malformed JSON ({exc.__class__.__name__}: {exc})", response.status_code
                ) from None
            if check is not None:
                check(document)
            return response.status_code, document

        return self._send(
            "GET", url, consume, params=params, headers=headers, ok_statuses=ok_statuses
        )

    def post_json(
        self,
        url: str,
        *,
        data: dict[str, str],
        auth: tuple[str, str] | None = None,
    ) -> Any:
        """POST a form and decode the JSON answer (the OAuth token request)."""

        def consume(response: httpx.Response) -> Any:
            body = self._read_capped(response, MAX_JSON_BYTES)
            try:
                return json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise FetchError(url, f"malformed JSON ({exc})", response.status_code) from None

        return self._send("POST", url, consume, data=data, auth=auth)

    def download(self, url: str, dest: Path, *, max_bytes: int = MAX_AUDIO_BYTES) -> Download:
        """Stream a body into ``dest`` (overwritten), hashing it on the way.

        Returns
        -------
        Download
            sha256, size, the first 64 bytes and the Content-Type.
        """

        def consume(response: httpx.Response) -> Download:
            digest = hashlib.sha256()
            size, head = 0, b""
            with dest.open("wb") as handle:
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise FetchError(url, f"body exceeds {max_bytes} bytes")
                    if len(head) < 64:
                        head = (head + chunk)[:64]
                    digest.update(chunk)
                    handle.write(chunk)
            self.stats.bytes_received += size
            return Download(
                dest, digest.hexdigest(), size, head, response.headers.get("Content-Type", "")
            )

        return self._send("GET", url, consume)


@contextmanager
def client_or(client: PoliteClient | None, **kwargs: Any) -> Iterator[PoliteClient]:
    """Use ``client`` as given (not closed here), or make one from ``kwargs`` and close it."""
    if client is not None:
        yield client
        return
    made = PoliteClient(**kwargs)
    try:
        yield made
    finally:
        made.close()


__all__ = [
    "MAX_AUDIO_BYTES",
    "RETRY_STATUSES",
    "BudgetExhausted",
    "ClientStats",
    "Download",
    "FetchError",
    "HostLimit",
    "PoliteClient",
    "RetryPolicy",
    "RetryableResponse",
    "Throttled",
    "TokenBucket",
    "host_of",
    "parse_retry_after",
    "user_agent",
]
