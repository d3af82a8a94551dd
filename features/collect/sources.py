"""Preview services: Deezer, the iTunes Search API and Spotify's Web API.

Each source turns a catalog track into candidates (:class:`~.matching.Candidate`) from the
documented fields of its public API, parsing defensively: an item it cannot read is skipped
and reported (``Lookup.problems``), a response it cannot read at all is a :class:`SourceError`
for that track; nothing unparsed is ever stored. Base URLs are constructor arguments, so tests
and reviewers can point a source at a local server.

Documented fields relied on (see docs/collect.md for the details and links):

- Deezer (no key): ``GET /track/isrc:<ISRC>`` and ``GET /search?q=artist:"A" track:"T"``
  (``data``, ``next``, ``total``); track objects ``id``, ``title``, ``duration`` (s),
  ``preview`` (an expiring 30 s MP3 link), ``isrc``, ``artist.name``, ``contributors[].name``.
  Errors come as HTTP 200 ``{"error": {"type", "message", "code"}}``: code 4 is the quota
  (50 requests / 5 s), 700 "service busy", 800 "no data".
- iTunes Search API (no key): ``GET /search?term=&media=music&entity=song&country=&limit=``
  -> ``resultCount``, ``results[]`` with ``wrapperType``, ``kind``, ``trackId``, ``trackName``,
  ``artistName``, ``trackTimeMillis``, ``previewUrl`` (a 30 s AAC clip in M4A).
- Spotify (client credentials): ``POST /api/token`` on the accounts host; ``GET /v1/tracks?ids=``
  (up to 50; removed for development-mode apps in February 2026, so a 403/404 falls back to)
  ``GET /v1/tracks/{id}``; track objects ``id``, ``name``, ``artists[].name``, ``duration_ms``,
  ``external_ids.isrc``, ``preview_url`` (null for development-mode apps since 27 Nov 2024),
  ``linked_from.id``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from ..catalog import normalise_artist, normalise_title
from ..errors import DataError
from ..identifiers import TRACK_ID_RE
from .client import (
    BudgetExhausted,
    FetchError,
    HostLimit,
    PoliteClient,
    RetryableResponse,
    Throttled,
    host_of,
)
from .matching import Candidate, TrackQuery


class SourceError(Exception):
    """A response that could not be interpreted; the message is the reason (per track)."""


@dataclass
class Lookup:
    """The candidates a source found for one track, and the items it could not parse."""

    candidates: list[Candidate] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    isrc: str | None = None  # the track's ISRC when the source reports it
    duration_ms: int | None = None  # the track's own duration (Spotify) when reported
    note: str | None = None  # why the source could not look the track up at all


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return round(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _url(value: Any) -> str | None:
    text = _text(value)
    if text and urlsplit(text).scheme in ("http", "https") and urlsplit(text).netloc:
        return text
    return None


def _rebase(url: str, base: str) -> str:
    """``url``'s path and query on ``base``'s scheme and host (a ``next`` link stays on base)."""
    parts = urlsplit(url)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


class PreviewSource:
    """Base of the registered sources (see :data:`PREVIEW_SOURCES`)."""

    name: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    api_limit: ClassVar[HostLimit] = HostLimit(1.0)
    preview_limit: ClassVar[HostLimit] = HostLimit(rate=2.0, burst=2)
    batch_size: ClassVar[int] = 1
    uses_market: ClassVar[bool] = False

    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = (base_url or self.default_base_url).rstrip("/")

    def api_hosts(self) -> list[str]:
        """Hosts whose rate is :attr:`api_limit`."""
        return [host_of(self.base_url)]

    def requests_for(self, tracks: int) -> int:
        """Requests ``tracks`` tracks may need when nothing is retried (lookups + downloads):
        the run starts a track only when its budget covers this, so that a budget never
        stops a track half-way (which the next run would then redo)."""
        return 2 * tracks

    def prepare(self, client: PoliteClient) -> None:
        """Set the API hosts' limits on ``client`` (and authenticate, where needed)."""
        for host in self.api_hosts():
            client.set_limit(host, self.api_limit)

    def lookup(
        self,
        client: PoliteClient,
        query: TrackQuery,
        market: str | None,
        good_enough: Callable[[list[Candidate]], bool],
    ) -> Lookup:
        """Candidates for one track; ``good_enough`` says when to stop paging."""
        raise NotImplementedError

    def lookup_many(
        self, client: PoliteClient, queries: list[TrackQuery], market: str | None
    ) -> dict[str, Lookup | SourceError | FetchError]:
        """Direct lookups by track id, for sources with :attr:`batch_size` > 1."""
        raise NotImplementedError


PREVIEW_SOURCES: dict[str, type[PreviewSource]] = {}
"""Registry of preview sources by name."""


def register(cls: type[PreviewSource]) -> type[PreviewSource]:
    """Class decorator: add a source to :data:`PREVIEW_SOURCES`."""
    PREVIEW_SOURCES[cls.name] = cls
    return cls


# --- Deezer ------------------------------------------------------------------------------------


@register
class DeezerSource(PreviewSource):
    """Deezer's public API: ISRC lookup first, then an advanced search."""

    name = "deezer"
    default_base_url = "https://api.deezer.com"
    # at most burst + rate * 5 s = 5 + 25 = 30 requests in any 5 s window (documented: 50)
    api_limit = HostLimit(rate=5.0, burst=5)
    page_size = 25
    max_pages = 2

    def requests_for(self, tracks: int) -> int:
        """ISRC lookup, two search pages, the plain search and the download: 5 per track."""
        return 5 * tracks

    @staticmethod
    def check(document: Any) -> None:
        """Raise :class:`RetryableResponse` for the quota (code 4) or busy (700) bodies."""
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict):
            code = _int(error.get("code"))
            if code == 4:
                raise RetryableResponse("Deezer quota limit exceeded", wait_s=5.0)
            if code == 700:
                raise RetryableResponse("Deezer service busy", wait_s=2.0)

    @staticmethod
    def _error(document: Any) -> tuple[int | None, str] | None:
        error = document.get("error") if isinstance(document, dict) else None
        if error is None:
            return None
        if not isinstance(error, dict):
            return None, repr(error)[:80]
        code = _int(error.get("code"))
        return code, f"{error.get('type', '?')} {code}: {error.get('message', '')}".strip()

    @staticmethod
    def candidate(item: Any, via: str) -> Candidate:
        """A candidate from a Deezer track object; ValueError says what is missing."""
        if not isinstance(item, dict):
            raise ValueError(f"not a track object ({type(item).__name__})")
        source_id = _int(item.get("id"))
        title = _text(item.get("title"))
        artist_obj = item.get("artist")
        artist = _text(artist_obj.get("name")) if isinstance(artist_obj, dict) else None
        missing = [
            n for n, v in (("id", source_id), ("title", title), ("artist.name", artist)) if not v
        ]
        if missing:
            raise ValueError(f"track object without {', '.join(missing)}")
        contributors = item.get("contributors")
        names = tuple(
            n
            for c in (contributors if isinstance(contributors, list) else [])
            if isinstance(c, dict) and (n := _text(c.get("name")))
        )
        seconds = _int(item.get("duration"))
        return Candidate(
            source_id=str(source_id),
            title=title or "",
            artist=artist or "",
            artists=names,
            duration_ms=seconds * 1000 if seconds else None,
            isrc=_text(item.get("isrc")),
            preview_url=_url(item.get("preview")),
            via=via,
        )

    def _by_isrc(self, client: PoliteClient, isrc: str, out: Lookup) -> None:
        status, doc = client.get_json(
            f"{self.base_url}/track/isrc:{quote(isrc)}",
            check=self.check,
            ok_statuses=frozenset({404}),
        )
        if status == 404:  # Deezer answers 200 + error 800; a 404 means the same
            return
        error = self._error(doc)
        if error is not None:
            if error[0] == 800:  # "no data": not on Deezer under this ISRC
                return
            raise SourceError(f"Deezer error on the ISRC lookup: {error[1]}")
        try:
            out.candidates.append(self.candidate(doc, via="isrc"))
        except ValueError as exc:
            out.problems.append(f"ISRC lookup {isrc}: {exc}")

    def _search(
        self,
        client: PoliteClient,
        q: str,
        pages: int,
        out: Lookup,
        good_enough: Callable[[list[Candidate]], bool],
    ) -> None:
        url: str | None = f"{self.base_url}/search"
        params: dict[str, Any] | None = {"q": q, "limit": self.page_size}
        seen = 0
        for _ in range(pages):
            if url is None:
                break
            _, doc = client.get_json(url, params=params, check=self.check)
            error = self._error(doc)
            if error is not None:
                raise SourceError(f"Deezer error on search: {error[1]}")
            items = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(items, list):
                raise SourceError(
                    f"unexpected Deezer search response (no 'data' list): {str(doc)[:80]!r}"
                )
            found = []
            for item in items:
                seen += 1
                try:
                    found.append(self.candidate(item, via="search"))
                except ValueError as exc:
                    out.problems.append(f"search result {seen}: {exc}")
            out.candidates.extend(found)
            if good_enough(found):
                break
            nxt = _url(doc.get("next"))
            url, params = (_rebase(nxt, self.base_url), None) if nxt else (None, None)

    def lookup(
        self,
        client: PoliteClient,
        query: TrackQuery,
        market: str | None,
        good_enough: Callable[[list[Candidate]], bool],
    ) -> Lookup:
        """ISRC lookup when the ISRC is known, then ``artist:"…" track:"…"`` (two pages at
        most), then a plain ``artist title`` query when the advanced one found nothing."""
        out = Lookup()
        if query.isrc:
            self._by_isrc(client, query.isrc, out)
            if good_enough(out.candidates):
                return out
        if not (query.title and query.artist):
            out.note = "the catalog has no title and artist to search with"
            return out
        artist = normalise_artist(query.artist)
        title = normalise_title(query.title)
        self._search(client, f'artist:"{artist}" track:"{title}"', self.max_pages, out, good_enough)
        if not any(c.via == "search" for c in out.candidates):
            self._search(client, f"{artist} {title}", 1, out, good_enough)
        return out


# --- iTunes ------------------------------------------------------------------------------------


@register
class ITunesSource(PreviewSource):
    """The iTunes Search API: one search per track (it has no ISRC lookup)."""

    name = "itunes"
    default_base_url = "https://itunes.apple.com"
    # documented: "approximately 20 calls per minute"; 1 + 60/4 = 16 in any minute
    api_limit = HostLimit(rate=0.25, burst=1)
    uses_market = True
    page_size = 25

    @staticmethod
    def candidate(item: Any) -> Candidate | None:
        """A candidate from a search result; None for non-songs; ValueError when unreadable."""
        if not isinstance(item, dict):
            raise ValueError(f"not an object ({type(item).__name__})")
        if item.get("wrapperType", "track") != "track" or item.get("kind", "song") != "song":
            return None
        source_id = _int(item.get("trackId"))
        title = _text(item.get("trackName"))
        artist = _text(item.get("artistName"))
        missing = [
            n
            for n, v in (("trackId", source_id), ("trackName", title), ("artistName", artist))
            if not v
        ]
        if missing:
            raise ValueError(f"result without {', '.join(missing)}")
        return Candidate(
            source_id=str(source_id),
            title=title or "",
            artist=artist or "",
            duration_ms=_int(item.get("trackTimeMillis")),
            isrc=None,
            preview_url=_url(item.get("previewUrl")),
            via="search",
        )

    def lookup(
        self,
        client: PoliteClient,
        query: TrackQuery,
        market: str | None,
        good_enough: Callable[[list[Candidate]], bool],
    ) -> Lookup:
        """``term = "<artist> <title>"`` (normalised), ``media=music``, ``entity=song``."""
        out = Lookup()
        if not (query.title and query.artist):
            out.note = "the catalog has no title and artist to search with"
            return out
        params = {
            "term": f"{normalise_artist(query.artist)} {normalise_title(query.title)}",
            "media": "music",
            "entity": "song",
            "limit": self.page_size,
            "country": (market or "US").upper(),
        }
        _, doc = client.get_json(f"{self.base_url}/search", params=params)
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list):
            raise SourceError(f"unexpected iTunes response (no 'results' list): {str(doc)[:80]!r}")
        for i, item in enumerate(results, start=1):
            try:
                candidate = self.candidate(item)
            except ValueError as exc:
                out.problems.append(f"search result {i}: {exc}")
                continue
            if candidate is not None:
                out.candidates.append(candidate)
        return out


# --- Spotify -----------------------------------------------------------------------------------


@register
class SpotifySource(PreviewSource):
    """Spotify's Web API with client credentials: ISRC, duration and any preview it returns."""

    name = "spotify"
    default_base_url = "https://api.spotify.com"
    default_auth_url = "https://accounts.spotify.com"
    # Spotify documents a rolling 30 s window without a number; 2 + 2 * 30 = 62 per 30 s
    api_limit = HostLimit(rate=2.0, burst=2)
    batch_size = 50
    uses_market = True

    def __init__(
        self,
        base_url: str | None = None,
        auth_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> None:
        super().__init__(base_url)
        self.auth_url = (auth_url or (base_url if base_url else self.default_auth_url)).rstrip("/")
        self.client_id = client_id or os.environ.get("SPOTIFY_CLIENT_ID")
        self.client_secret = client_secret or os.environ.get("SPOTIFY_CLIENT_SECRET")
        self._token: str | None = None
        self._expires_at = 0.0
        self._batch = True

    def requests_for(self, tracks: int) -> int:
        """One batch request (or one per track without it) and a download per preview."""
        return (1 if self._batch and tracks > 1 else tracks) + tracks

    def api_hosts(self) -> list[str]:
        """The API host and the accounts host."""
        return list(dict.fromkeys([host_of(self.base_url), host_of(self.auth_url)]))

    def prepare(self, client: PoliteClient) -> None:
        """Check the credentials are set and fetch a token (raises DataError otherwise)."""
        super().prepare(client)
        if not (self.client_id and self.client_secret):
            raise DataError(
                "spotify: set SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET (client credentials "
                "of an app at developer.spotify.com) in the environment"
            )
        self._authenticate(client)

    def _authenticate(self, client: PoliteClient) -> None:
        url = f"{self.auth_url}/api/token"
        try:
            doc = client.post_json(
                url,
                data={"grant_type": "client_credentials"},
                auth=(self.client_id or "", self.client_secret or ""),
            )
        except FetchError as exc:
            if exc.status in (400, 401, 403):
                raise DataError(
                    f"spotify: the accounts service refused the client credentials "
                    f"(HTTP {exc.status}); check SPOTIFY_CLIENT_ID and SPOTIFY_CLIENT_SECRET"
                ) from None
            raise
        token = _text(doc.get("access_token")) if isinstance(doc, dict) else None
        if token is None:
            raise DataError(f"spotify: {url} answered without an access_token")
        expires = _int(doc.get("expires_in")) or 3600
        self._token = token
        self._expires_at = client.clock() + max(60, expires - 60)

    def _get(
        self, client: PoliteClient, path: str, params: dict[str, Any] | None
    ) -> tuple[int, Any]:
        if self._token is None or client.clock() >= self._expires_at:
            self._authenticate(client)
        for attempt in (1, 2):
            try:
                return client.get_json(
                    f"{self.base_url}{path}",
                    params=params,
                    headers={"Authorization": f"Bearer {self._token}"},
                    ok_statuses=frozenset({404}),
                )
            except FetchError as exc:
                if exc.status == 401 and attempt == 1:  # token expired early: renew once
                    self._authenticate(client)
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _parse(requested: str, obj: Any) -> Lookup:
        if not isinstance(obj, dict):
            raise SourceError(f"not a track object ({type(obj).__name__})")
        got = _text(obj.get("id"))
        linked = obj.get("linked_from")
        linked_id = _text(linked.get("id")) if isinstance(linked, dict) else None
        if requested not in (got, linked_id):
            raise SourceError(f"Spotify answered with another track ({got!r})")
        artists = obj.get("artists")
        names = tuple(
            n
            for a in (artists if isinstance(artists, list) else [])
            if isinstance(a, dict) and (n := _text(a.get("name")))
        )
        external = obj.get("external_ids")
        isrc = _text(external.get("isrc")) if isinstance(external, dict) else None
        duration = _int(obj.get("duration_ms"))
        candidate = Candidate(
            source_id=requested,
            title=_text(obj.get("name")) or "",
            artist=names[0] if names else "",
            artists=names,
            duration_ms=duration,
            isrc=isrc,
            preview_url=_url(obj.get("preview_url")),
            via="id",
        )
        return Lookup([candidate], [], isrc=isrc, duration_ms=duration)

    def _single(
        self, client: PoliteClient, track_id: str, params: dict[str, Any]
    ) -> Lookup | SourceError:
        status, doc = self._get(client, f"/v1/tracks/{track_id}", params or None)
        if status == 404:
            return Lookup()
        try:
            return self._parse(track_id, doc)
        except SourceError as exc:
            return exc

    def lookup_many(
        self, client: PoliteClient, queries: list[TrackQuery], market: str | None
    ) -> dict[str, Lookup | SourceError | FetchError]:
        """``GET /v1/tracks?ids=`` (50 at a time), or one by one where the batch is gone."""
        ids = [q.track_id for q in queries if TRACK_ID_RE.match(q.track_id)]
        params: dict[str, Any] = {"market": market.upper()} if market else {}
        out: dict[str, Lookup | SourceError | FetchError] = {}
        if self._batch and len(ids) > 1:
            try:
                status, doc = self._get(client, "/v1/tracks", {"ids": ",".join(ids), **params})
            except FetchError as exc:
                if exc.status not in (403, 404, 410):
                    raise
                status, doc = 404, None
            if status == 404:  # the several-tracks endpoint is gone for development-mode apps
                self._batch = False
            else:
                tracks = doc.get("tracks") if isinstance(doc, dict) else None
                if not isinstance(tracks, list) or len(tracks) != len(ids):
                    raise SourceError(
                        f"unexpected Spotify response (no 'tracks' list of {len(ids)})"
                    )
                for track_id, obj in zip(ids, tracks, strict=True):
                    try:
                        out[track_id] = Lookup() if obj is None else self._parse(track_id, obj)
                    except SourceError as exc:
                        out[track_id] = exc
                return out
        for track_id in ids:
            try:
                out[track_id] = self._single(client, track_id, params)
            except BudgetExhausted:
                break  # keep what was looked up; the caller stops on the spent budget
            except Throttled:
                raise
            except FetchError as exc:
                if exc.status == 400:  # "invalid id"
                    out[track_id] = Lookup()
                    continue
                out[track_id] = exc
                break  # a failing service: leave the rest of the batch for the next run
        return out


def make_source(
    name: str, base_url: str | None = None, auth_url: str | None = None
) -> PreviewSource:
    """Instantiate a registered source.

    Parameters
    ----------
    name
        A key of :data:`PREVIEW_SOURCES`.
    base_url
        Replaces the API's scheme and host (tests and mirrors).
    auth_url
        Spotify only: the accounts host (default: ``base_url`` when given, else Spotify's).

    Raises
    ------
    DataError
        For an unknown source.
    """
    if name not in PREVIEW_SOURCES:
        raise DataError(f"unknown preview source {name!r} (known: {', '.join(PREVIEW_SOURCES)})")
    if name == "spotify":
        return SpotifySource(base_url, auth_url)
    return PREVIEW_SOURCES[name](base_url)


__all__ = [
    "PREVIEW_SOURCES",
    "DeezerSource",
    "ITunesSource",
    "Lookup",
    "PreviewSource",
    "SourceError",
    "SpotifySource",
    "make_source",
    "register",
]
