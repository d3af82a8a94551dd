"""``collect previews``: find, check and download a 30 s preview for each catalog track.

For every catalog track that has no clip yet (none in ``clips.parquet`` and no
``<track_id>[_k].<ext>`` file in the audio folder) and no final decision from the chosen source,
the collector asks the source for candidates (:mod:`.sources`), decides (:mod:`.matching`),
downloads the matched preview into the audio folder (:mod:`.clips`) and records the decision.

Decisions (``DIR/collect/previews.parquet``, one row per (track_id, source), the latest wins):

============== =========================================================== =================
status         meaning                                                     re-run
============== =========================================================== =================
downloaded     matched; the clip is in the audio folder                    skipped
ambiguous      two distinct recordings score within the margin             ``--retry``
not_found      no acceptable candidate (the best one and why is recorded)  ``--retry``
no_preview     matched, but the source offers no preview for it            ``--retry``
preview_failed the preview link answered 4xx, or the body was not usable   ``--retry``
               audio (not audio, undecodable, too short, silent)
error          the service failed (timeouts, 5xx after retries, a body     retried
               that could not be read); nothing was decided
============== =========================================================== =================

Every decision is appended to a journal line the moment it is made and folded into the table at
the end of the run (and at the start of the next one, after a crash), so a re-run continues
where the last one stopped and never sends a request for a track already decided. Preview URLs
expire (Deezer's carry a signed token), so none is stored: the table keeps the source's track id
and the preview's host; a re-run that needs a preview asks the source again.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from ..catalog import AUDIO_EXTENSIONS, read_clips
from ..errors import DataError
from ..layout import CollectLayout, DataLayout
from .client import (
    BudgetExhausted,
    ClientStats,
    FetchError,
    HostLimit,
    PoliteClient,
    Throttled,
    client_or,
    host_of,
)
from .clips import ClipRejected, store_clip
from .matching import Candidate, Decision, MatchPolicy, TrackQuery, decide
from .sources import PreviewSource, SourceError, make_source

DECISION_COLUMNS = [
    "track_id",
    "source",
    "status",
    "method",
    "source_id",
    "score",
    "title_score",
    "artist_score",
    "duration_ms",
    "reference_duration_ms",
    "duration_delta_s",
    "candidates",
    "runner_up_id",
    "runner_up_score",
    "matched_title",
    "matched_artist",
    "isrc",
    "preview_host",
    "audio_file",
    "format",
    "sha256",
    "download_sha256",
    "bytes",
    "reason",
    "decided_at",
]
"""Columns of ``DIR/collect/previews.parquet`` (see docs/collect.md)."""

STATUSES = ("downloaded", "ambiguous", "not_found", "no_preview", "preview_failed", "error")
RETRYABLE_STATUSES = ("ambiguous", "not_found", "no_preview", "preview_failed")
"""Final statuses that ``--retry`` may reopen (``error`` is always retried)."""
PROVENANCE_COLUMNS = [
    "path",
    "track_id",
    "source",
    "source_id",
    "sha256",
    "download_sha256",
    "format",
    "fetched_at",
    "preview_host",
]
"""Columns of ``AUDIO/provenance.csv`` (a valid ``benchmark ingest audio --mapping`` file)."""

_FLOAT = ("score", "title_score", "artist_score", "duration_delta_s", "runner_up_score")
_INT = ("duration_ms", "reference_duration_ms", "candidates", "bytes")
_CLIP_STEM = re.compile(r"^([0-9A-Za-z]{22})(?:_\d+)?$")


# --- the decisions table -----------------------------------------------------------------------


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=DECISION_COLUMNS)
    for column in DECISION_COLUMNS:
        if column in _FLOAT:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif column in _INT:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
        elif column == "decided_at":
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        else:
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def read_previews(data_dir: Path | str) -> pd.DataFrame:
    """The decisions table ``DIR/collect/previews.parquet`` with any journal not yet folded in.

    Parameters
    ----------
    data_dir
        The dataset folder.

    Returns
    -------
    pandas.DataFrame
        :data:`DECISION_COLUMNS`, one row per (track_id, source) (the latest decision).
    """
    return _DecisionLog(CollectLayout.of(data_dir)).load()


class _DecisionLog:
    """The table plus an append-only journal of the decisions of the run in progress."""

    def __init__(self, layout: CollectLayout) -> None:
        self.layout = layout

    def load(self) -> pd.DataFrame:
        frames = []
        if self.layout.previews_table.exists():
            table = DataLayout(self.layout.data_dir).collected_previews.read()
            missing = {"track_id", "source", "status"} - set(table.columns)
            if missing:
                raise DataError(
                    f"{self.layout.previews_table}: missing column(s) {sorted(missing)}"
                )
            frames.append(table)
        rows = []
        if self.layout.previews_journal.exists():
            for line in self.layout.previews_journal.read_text(errors="replace").splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line torn by a crash
                    row = json.loads(line)
                    if isinstance(row, dict) and row.get("track_id") and row.get("source"):
                        rows.append(row)
        if rows:
            frames.append(pd.DataFrame(rows))
        if not frames:
            return _typed(pd.DataFrame(columns=DECISION_COLUMNS))
        frames = [_typed(f) for f in frames if len(f)]
        if not frames:
            return _typed(pd.DataFrame(columns=DECISION_COLUMNS))
        table = pd.concat(frames, ignore_index=True)
        return table.drop_duplicates(["track_id", "source"], keep="last").reset_index(drop=True)

    def append(self, row: dict[str, Any]) -> None:
        self.layout.collect_dir.mkdir(parents=True, exist_ok=True)
        with self.layout.previews_journal.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def compact(self) -> pd.DataFrame:
        table = self.load()
        if len(table) or self.layout.previews_table.exists():
            table = table.sort_values(["track_id", "source"]).reset_index(drop=True)
            DataLayout(self.layout.data_dir).collected_previews.write(table)
        self.layout.previews_journal.unlink(missing_ok=True)
        return table


def write_provenance(layout: CollectLayout, table: pd.DataFrame) -> int:
    """Write ``AUDIO/provenance.csv`` from the decisions: one row per downloaded clip on disk.

    Returns
    -------
    int
        Rows written.
    """
    done = table[(table["status"] == "downloaded") & table["audio_file"].notna()]
    rows = []
    for row in done.sort_values("track_id").itertuples():
        if not (layout.audio_dir / row.audio_file).is_file():
            continue
        rows.append(
            {
                "path": row.audio_file,
                "track_id": row.track_id,
                "source": row.source,
                "source_id": row.source_id,
                "sha256": row.sha256,
                "download_sha256": row.download_sha256,
                "format": row.format,
                "fetched_at": pd.Timestamp(row.decided_at).isoformat(),
                "preview_host": row.preview_host,
            }
        )
    if not rows and not layout.provenance_csv.exists():
        return 0
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PROVENANCE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    layout.audio_dir.mkdir(parents=True, exist_ok=True)
    tmp = layout.provenance_csv.with_name(f".{layout.provenance_csv.name}.{os.getpid()}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    os.replace(tmp, layout.provenance_csv)
    return len(rows)


# --- the report --------------------------------------------------------------------------------


@dataclass
class PreviewReport:
    """What one :func:`collect_previews` call did."""

    source: str
    data_dir: str
    audio_dir: str
    catalog_tracks: int = 0
    with_clip: int = 0
    already_decided: Counter = field(default_factory=Counter)
    pending: int = 0
    attempted: int = 0
    statuses: Counter = field(default_factory=Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (track_id, item problem)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (track_id, reason)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (track_id, preview problem)
    undecided: list[tuple[str, str, str]] = field(default_factory=list)  # ambiguous, not found
    stopped: str | None = None  # why the run stopped early
    stop_cause: str | None = None  # "budget", "throttled", "errors" or "start"
    stats: ClientStats = field(default_factory=ClientStats)
    seconds: float = 0.0

    def stop(self, cause: str, message: str) -> None:
        """Record why the run stopped early."""
        self.stop_cause, self.stopped = cause, message

    @property
    def failed(self) -> bool:
        """True when the run was stopped by the service (throttling, errors), not the budget."""
        return self.stop_cause in ("throttled", "errors", "start")

    @property
    def complete(self) -> bool:
        """True when every pending track was attempted and nothing stopped the run early."""
        return self.stopped is None and self.attempted == self.pending

    def summary(self) -> str:
        """Human-readable lines: what was pending, decided, downloaded, and what went wrong."""
        decided = ", ".join(f"{n} {s}" for s, n in sorted(self.already_decided.items()))
        lines = [
            f"previews from {self.source} into {self.audio_dir}: {self.catalog_tracks:,} catalog "
            f"tracks, {self.with_clip:,} with a clip, "
            f"{sum(self.already_decided.values()):,} already decided by {self.source}"
            + (f" ({decided})" if decided else "")
            + f"; {self.pending:,} to do, {self.attempted:,} attempted in {self.seconds:.1f} s",
            "decisions: "
            + (
                ", ".join(f"{self.statuses[s]} {s}" for s in STATUSES if self.statuses[s]) or "none"
            ),
        ]
        for status in ("ambiguous", "not_found", "no_preview"):
            examples = [(t, r) for s, t, r in self.undecided if s == status][:3]
            if examples:
                lines.append(f"{status}, e.g.")
                lines.extend(f"  {track}: {reason}" for track, reason in examples)
        for title, items in (
            ("previews rejected", self.rejected),
            ("errors (retried on the next run)", self.errors),
            ("unreadable items in responses", self.problems),
        ):
            if items:
                lines.append(f"{title}: {len(items)}, e.g.")
                lines.extend(f"  {track}: {what}" for track, what in items[:5])
        lines.append(self.stats.summary())
        if self.stopped:
            lines.append(f"STOPPED EARLY: {self.stopped}; a re-run continues from here")
        elif self.attempted < self.pending:
            lines.append(f"{self.pending - self.attempted:,} tracks left for a later run (--limit)")
        if self.statuses["downloaded"]:
            lines.append(
                f"next: benchmark ingest audio {self.audio_dir} --data-dir {self.data_dir}"
            )
        return "\n".join(lines)


# --- the collector -----------------------------------------------------------------------------


def _remove_stale_parts(audio_dir: Path) -> None:
    """Remove temporary downloads left by a killed run (the caller holds the lock)."""
    if audio_dir.is_dir():
        for part in audio_dir.glob(".*.part"):
            part.unlink(missing_ok=True)


def _tracks_with_clips(data_dir: Path, audio_dir: Path) -> set[str]:
    have = set(read_clips(data_dir)["track_id"])
    if audio_dir.is_dir():
        for path in audio_dir.iterdir():
            match = _CLIP_STEM.match(path.stem)
            if match and path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
                have.add(match.group(1))
    return have


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _row(query: TrackQuery, source: str, status: str, reason: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(DECISION_COLUMNS)
    row.update(
        track_id=query.track_id,
        source=source,
        status=status,
        reason=reason,
        reference_duration_ms=query.duration_ms,
        decided_at=_now(),
    )
    row.update(values)
    return row


def _decision_values(decision: Decision) -> dict[str, Any]:
    values: dict[str, Any] = {"candidates": decision.examined}
    best = decision.best
    if best is not None:
        c = best.candidate
        values.update(
            method="isrc" if c.via == "isrc" else ("spotify_id" if c.via == "id" else "search"),
            source_id=c.source_id,
            score=round(best.score, 4),
            title_score=round(best.title, 4),
            artist_score=round(best.artist, 4),
            duration_ms=c.duration_ms,
            duration_delta_s=best.duration_delta_s,
            matched_title=c.title,
            matched_artist=c.artist,
            isrc=c.isrc,
        )
    if decision.runner_up is not None:
        values.update(
            runner_up_id=decision.runner_up.candidate.source_id,
            runner_up_score=round(decision.runner_up.score, 4),
        )
    return values


@dataclass
class _Run:
    """The state of one collection run (what the helpers below share)."""

    layout: CollectLayout
    source: PreviewSource
    client: PoliteClient
    policy: MatchPolicy
    market: str | None
    min_seconds: float
    log: _DecisionLog
    report: PreviewReport

    def record(self, row: dict[str, Any]) -> str:
        """Journal a decision, count it, and return its status."""
        self.log.append(row)
        self.report.statuses[row["status"]] += 1
        if row["status"] == "error":
            self.report.errors.append((row["track_id"], row["reason"]))
        elif row["status"] == "preview_failed":
            self.report.rejected.append((row["track_id"], row["reason"]))
        elif row["status"] != "downloaded":
            self.report.undecided.append((row["status"], row["track_id"], row["reason"]))
        return row["status"]

    def download(
        self, query: TrackQuery, candidate: Candidate, values: dict[str, Any], why: str
    ) -> str:
        """Download the matched candidate's preview, record the outcome and return its status."""
        name = self.source.name
        url = candidate.preview_url
        if url is None:
            reason = f"{why}; but {name} offers no preview for it"
            return self.record(_row(query, name, "no_preview", reason, **values))
        values["preview_host"] = host_of(url)
        self.client.set_limit(host_of(url), self.source.preview_limit)
        part = self.layout.clip_part(query.track_id, os.getpid())
        self.layout.audio_dir.mkdir(parents=True, exist_ok=True)
        try:
            got = self.client.download(url, part)
            stored = store_clip(
                self.layout,
                query.track_id,
                part,
                got.head,
                got.sha256,
                got.content_type,
                self.min_seconds,
            )
        except Throttled:
            raise
        except FetchError as exc:
            status = "preview_failed" if exc.status and 400 <= exc.status < 500 else "error"
            reason = f"{why}; preview download failed: {exc.reason}"
            return self.record(_row(query, name, status, reason, **values))
        except ClipRejected as exc:
            reason = f"{why}; preview rejected: {exc}"
            return self.record(_row(query, name, "preview_failed", reason, **values))
        finally:
            part.unlink(missing_ok=True)
        values.update(
            audio_file=stored.path.name,
            format=stored.format,
            sha256=stored.sha256,
            download_sha256=stored.download_sha256,
            bytes=got.size,
        )
        stored_as = "" if stored.path.suffix == f".{stored.format}" else ", stored as FLAC"
        reason = f"{why}; {stored.seconds:.1f} s {stored.format}{stored_as}"
        return self.record(_row(query, name, "downloaded", reason, **values))

    def search_one(self, query: TrackQuery) -> bool:
        """Look one track up, decide, download. Returns False when it ended in ``error``."""
        name = self.source.name

        def good_enough(found: list[Candidate]) -> bool:
            return decide(query, found, self.policy).status == "matched"

        try:
            lookup = self.source.lookup(self.client, query, self.market, good_enough)
        except Throttled:
            raise
        except (SourceError, FetchError) as exc:
            reason = exc.reason if isinstance(exc, FetchError) else str(exc)
            self.record(_row(query, name, "error", f"lookup failed: {reason}"))
            return False
        self.report.problems.extend((query.track_id, p) for p in lookup.problems)
        decision = decide(query, lookup.candidates, self.policy)
        values = _decision_values(decision)
        if decision.status != "matched" or decision.best is None:
            reason = decision.reason
            if lookup.note:
                reason = f"{lookup.note}; {reason}"
            if lookup.problems and not lookup.candidates:
                reason += f"; unreadable items: {'; '.join(lookup.problems[:3])}"
            self.record(_row(query, name, decision.status, reason, **values))
            return True
        return self.download(query, decision.best.candidate, values, decision.reason) != "error"

    def direct_batch(self, batch: list[TrackQuery]) -> tuple[int, bool]:
        """Spotify: look a batch up by track id. Returns (attempted, any success)."""
        name = self.source.name
        try:
            results = self.source.lookup_many(self.client, batch, self.market)
        except Throttled:
            raise
        except (FetchError, SourceError) as exc:  # the whole batch failed: retried next run
            reason = exc.reason if isinstance(exc, FetchError) else str(exc)
            for query in batch:
                self.record(_row(query, name, "error", f"lookup failed: {reason}"))
            return len(batch), False
        attempted, ok = 0, False
        for query in batch:
            result = results.get(query.track_id)
            if result is None:
                continue  # not reached (the service failed earlier in the batch)
            attempted += 1
            if isinstance(result, FetchError | SourceError):
                reason = result.reason if isinstance(result, FetchError) else str(result)
                self.record(_row(query, name, "error", f"lookup failed: {reason}"))
                continue
            ok = True
            if not result.candidates:
                self.record(_row(query, name, "not_found", f"{name} has no track with this id"))
                continue
            candidate = result.candidates[0]
            values = {
                "method": "spotify_id",
                "source_id": candidate.source_id,
                "score": 1.0,
                "candidates": 1,
                "duration_ms": result.duration_ms,
                "matched_title": candidate.title,
                "matched_artist": candidate.artist,
                "isrc": result.isrc,
            }
            if candidate.preview_url is None:
                why = "no preview_url (Spotify returns none to development-mode apps)"
                why += f"; ISRC {result.isrc} recorded" if result.isrc else "; no ISRC either"
                self.record(_row(query, name, "no_preview", why, **values))
            else:
                self.download(query, candidate, values, "looked up by its Spotify id")
        return attempted, ok


def _affordable(src: PreviewSource, client: PoliteClient, remaining: int) -> int:
    """How many of the next tracks to take: a batch, cut to what the budget can cover."""
    size = min(src.batch_size, remaining)
    left = client.requests_left
    while left is not None and size > 0 and src.requests_for(size) > left:
        size -= 1
    return size


def _queries(
    catalog: pd.DataFrame, decisions: pd.DataFrame, track_ids: list[str]
) -> Iterator[TrackQuery]:
    """TrackQuery per id: catalog title/artist, plus ISRC and duration from Spotify's rows."""
    known = decisions[decisions["isrc"].notna() | decisions["duration_ms"].notna()]
    spotify = known[known["source"] == "spotify"].set_index("track_id")
    other_isrc = known[known["isrc"].notna()].drop_duplicates("track_id").set_index("track_id")
    by_id = catalog.set_index("track_id")
    for track_id in track_ids:
        row = by_id.loc[track_id]
        isrc = duration = None
        if track_id in spotify.index:
            isrc = spotify.at[track_id, "isrc"]
            duration = spotify.at[track_id, "duration_ms"]
        if isrc is None and track_id in other_isrc.index:
            isrc = other_isrc.at[track_id, "isrc"]
        yield TrackQuery(
            track_id=track_id,
            title=row["title"] if isinstance(row["title"], str) else None,
            artist=row["artist"] if isinstance(row["artist"], str) else None,
            isrc=isrc if isinstance(isrc, str) else None,
            duration_ms=int(duration) if pd.notna(duration) else None,
        )


def collect_previews(
    data_dir: Path | str,
    source: str,
    *,
    audio_dir: Path | str | None = None,
    limit: int | None = None,
    market: str | None = None,
    retry: tuple[str, ...] = (),
    base_url: str | None = None,
    auth_url: str | None = None,
    max_requests: int | None = None,
    rate: float | None = None,
    contact: str | None = None,
    timeout: float = 20.0,
    policy: MatchPolicy | None = None,
    min_seconds: float = 5.0,
    max_consecutive_errors: int = 5,
    client: PoliteClient | None = None,
    progress: bool | None = None,
    no_wait: bool = True,
) -> PreviewReport:
    """Find and download previews for the catalog tracks that have no clip.

    Parameters
    ----------
    data_dir
        The dataset folder (needs ``catalog.parquet``: run ``benchmark ingest charts`` first).
    source
        ``deezer``, ``itunes`` or ``spotify`` (:data:`~.sources.PREVIEW_SOURCES`).
    audio_dir
        Where clips go (default ``DIR/raw/audio``).
    limit
        Attempt at most this many tracks.
    market
        ISO country code: iTunes' ``country`` and Spotify's ``market`` (Deezer has none).
    retry
        Final statuses to reopen (of :data:`RETRYABLE_STATUSES`).
    base_url, auth_url
        Replace the service's scheme and host (a local server in tests); ``auth_url`` is
        Spotify's accounts host (default: ``base_url`` when given).
    max_requests
        The request budget of this run (attempts, retries included).
    rate
        Requests per second to the API host, instead of the source's default.
    contact
        Operator contact for the User-Agent.
    timeout
        Seconds per connect/read.
    policy
        Matching thresholds (default :class:`~.matching.MatchPolicy()`).
    min_seconds
        Shortest acceptable clip.
    max_consecutive_errors
        Stop after this many tracks in a row ended in ``error`` (a failing service).
    client
        A ready client (tests); by default one is made from the arguments above.
    progress
        Show a progress bar; None shows it only on a terminal.

    Returns
    -------
    PreviewReport
        What was decided, downloaded and reported.

    Raises
    ------
    DataError
        Missing catalog, unknown source or status, bad credentials, or another run holding
        the lock.
    """
    started = time.perf_counter()
    if max_requests is not None and max_requests < 0:
        raise DataError("--max-requests must be >= 0")
    if rate is not None and not rate > 0:
        raise DataError("--rate must be > 0 (requests per second)")
    layout = CollectLayout.of(data_dir, audio_dir)
    bad = sorted(set(retry) - set(RETRYABLE_STATUSES))
    if bad:
        raise DataError(f"--retry: unknown status {bad} (use {', '.join(RETRYABLE_STATUSES)})")
    if limit is not None and limit < 0:
        raise DataError("--limit must be >= 0")
    src = make_source(source, base_url, auth_url)
    if rate is not None:
        src.api_limit = HostLimit(rate=rate, burst=max(1, min(src.api_limit.burst, int(rate))))
    catalog = DataLayout(layout.data_dir).catalog.read(["track_id", "title", "artist"])
    layout.collect_dir.mkdir(parents=True, exist_ok=True)
    with DataLayout(layout.data_dir).writing("collect previews", no_wait=no_wait):
        report = PreviewReport(source, str(layout.data_dir), str(layout.audio_dir))
        log = _DecisionLog(layout)
        try:
            decisions = log.compact()
            with client_or(
                client, max_requests=max_requests, contact=contact, timeout=timeout
            ) as http:
                run = _Run(
                    layout, src, http, policy or MatchPolicy(), market, min_seconds, log, report
                )
                _collect(run, catalog, decisions, retry, limit, max_consecutive_errors, progress)
                report.stats = http.stats
        finally:
            table = log.compact()
            write_provenance(layout, table)
            report.seconds = time.perf_counter() - started
        return report


def _collect(
    run: _Run,
    catalog: pd.DataFrame,
    decisions: pd.DataFrame,
    retry: tuple[str, ...],
    limit: int | None,
    max_consecutive_errors: int,
    progress: bool | None,
) -> None:
    report, src = run.report, run.source
    _remove_stale_parts(run.layout.audio_dir)
    have = _tracks_with_clips(run.layout.data_dir, run.layout.audio_dir)
    mine = decisions[decisions["source"] == src.name].set_index("track_id")["status"]
    report.catalog_tracks = len(catalog)
    todo = []
    for track_id in catalog["track_id"]:
        if track_id in have:
            report.with_clip += 1
            continue
        status = mine.get(track_id)
        if status is not None and status != "error":
            report.already_decided[status] += 1
            if status not in retry:
                continue
        todo.append(track_id)
    report.pending = len(todo)
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return
    queries = list(_queries(catalog, decisions, todo))
    bar = tqdm(
        total=len(queries),
        desc=f"previews ({src.name})",
        unit="track",
        disable=None if progress is None else not progress,
    )
    failures = 0
    try:
        try:
            src.prepare(run.client)
        except FetchError as exc:
            if isinstance(exc, Throttled):
                raise
            report.stop("start", f"cannot start: {exc}")
            return
        start = 0
        while start < len(queries):
            size = _affordable(src, run.client, len(queries) - start)
            if size == 0:
                report.stop(
                    "budget",
                    f"the request budget ({run.client.max_requests}) has "
                    f"{run.client.requests_left} requests left, fewer than one more track "
                    f"may need ({src.requests_for(1)})",
                )
                break
            batch = queries[start : start + size]
            start += size
            if src.batch_size > 1:
                attempted, ok = run.direct_batch(batch)
                report.attempted += attempted
                bar.update(attempted)
                failures = 0 if ok else failures + attempted
                if attempted < len(batch):
                    start -= len(batch) - attempted  # not reached: try them again
                    if run.client.requests_left != 0 and not ok:  # the service failed
                        failures = max(failures, max_consecutive_errors)
            else:
                ok = run.search_one(batch[0])
                report.attempted += 1
                bar.update(1)
                failures = 0 if ok else failures + 1
            bar.set_postfix(
                {s: report.statuses[s] for s in ("downloaded", "not_found") if report.statuses[s]}
            )
            if failures >= max_consecutive_errors:
                last = report.errors[-1][1] if report.errors else "service errors"
                report.stop("errors", f"{failures} tracks in a row failed (last: {last})")
                break
    except BudgetExhausted as exc:
        report.stop("budget", f"{exc} (the track in flight is redone by the next run)")
    except Throttled as exc:
        report.stop("throttled", f"throttled by {exc}")
    finally:
        bar.close()


__all__ = [
    "DECISION_COLUMNS",
    "PROVENANCE_COLUMNS",
    "RETRYABLE_STATUSES",
    "STATUSES",
    "PreviewReport",
    "collect_previews",
    "read_previews",
    "write_provenance",
]
