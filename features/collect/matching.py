"""Matching a catalog track to a preview service's candidates: score, duration check, decision.

Score
-----
Both titles go through the catalog's own :func:`~features.catalog.normalise_title` (version
descriptors removed, case, accents and punctuation folded; kworb's ``(w/ X)`` credit is removed
first), and so do their *cores* (every bracketed group and dash suffix removed: film credits and
subtitles are placed differently by each service); the title similarity is the better of the two.
Both artists go through :func:`~features.catalog.normalise_artist`. Similarity of two
normalised strings is difflib's ratio (``2 * matches / total length``) of their *sorted tokens*,
so word order does not matter. ``title`` compares the titles; ``artist`` is the best similarity
between the catalog's main artist and any artist the service credits (the whole credit and each
name split at ``, & / ; x feat. ft. with and``). The score is their mean.

A candidate is *acceptable* when

1. ``title >= min_title`` and ``artist >= min_artist`` and ``score >= min_score``;
2. its *version markers* agree with the track's: live, remix, acoustic, instrumental, karaoke,
   a cappella, sped up, slowed, demo, cover, extended, orchestral, part N, read only from the title's
   bracketed groups and the part after a spaced dash (so "Live Forever" is not a live version);
   descriptors that do not change the recording (remaster, radio edit, single version, feat.)
   are not markers;
3. its full-track duration is within ``max(duration_tolerance_s, duration_tolerance_rel *
   reference)`` of the track's, **when both are known**. A 30 s preview has no duration of its
   own, so the comparison is between full-track durations; the catalog has none, the reference
   is the duration Spotify reported for the very track (``collect previews --source spotify``
   records it). When it is unknown the check is skipped and the decision says so.

A candidate found by ISRC (the same recording by definition) is accepted on a looser text
check (``title >= isrc_min_title``, markers not compared) plus the duration check: it guards
against a wrong ISRC, not against spelling differences between services.

Decision
--------
Acceptable candidates are grouped into recordings (same ISRC, or same normalised title and
artist with durations within ``same_recording_s``; the first in the service's order represents
the group). One group, or a best group ahead of the next by more than ``margin``: *matched*.
Two groups within ``margin``: *ambiguous* (nothing is downloaded). No acceptable candidate:
*not_found*, with the best rejected candidate and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from ..catalog import normalise_artist, normalise_title

_MARKERS: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "live": r"\blive\b|\ben vivo\b|\bao vivo\b",
        "remix": r"\bre-?mix(?:ed)?\b|\brmx\b|\bbootleg\b|(?<!original )(?<!radio )(?<!album )\bmix\b",
        "acoustic": r"\bacoustic\b|\bunplugged\b",
        "instrumental": r"\binstrumental\b",
        "karaoke": r"\bkaraoke\b|\boriginally performed by\b|\bin the style of\b",
        "a cappella": r"\ba ?cappella\b|\bacapella\b",
        "sped up": r"\bsped[ -]?up\b|\bspeed up\b|\bnightcore\b",
        "slowed": r"\bslowed\b",
        "demo": r"\bdemo\b",
        "cover": r"\bcover\b|\btribute\b",
        "extended": r"\bextended\b",
        "orchestral": r"\borchestral\b|\bsymphonic\b",
        "part": r"\bp(?:ar)?t\.?\s*(?:\d+|[ivx]+)\b|\bpart (?:one|two|three|four)\b",
    }.items()
}
_BRACKET_GROUPS = re.compile(r"[\(\[]([^\)\]]*)[\)\]]")
_DASH_PART = re.compile(r"\s[-\u2013\u2014]\s(.*)$")
_KWORB_WITH = re.compile(r"\s*[\(\[]\s*w/[^\)\]]*[\)\]]", re.IGNORECASE)
_ARTIST_SEPARATORS = re.compile(
    r"\s*(?:,|&|\+|/|;|\bx\b|\bfeat\.?|\bft\.?|\bfeaturing\b|\bwith\b|\band\b)\s*", re.IGNORECASE
)


@dataclass(frozen=True)
class TrackQuery:
    """What is known of a catalog track when looking for its preview."""

    track_id: str
    title: str | None
    artist: str | None
    isrc: str | None = None
    duration_ms: int | None = None  # the full track's duration (from Spotify), if known


@dataclass(frozen=True)
class Candidate:
    """A track offered by a preview service (parsed from its documented fields)."""

    source_id: str
    title: str
    artist: str  # the credit as displayed
    artists: tuple[str, ...] = ()  # individual names, when the service lists them
    duration_ms: int | None = None
    isrc: str | None = None
    preview_url: str | None = None
    via: str = "search"  # "search" | "isrc" | "id"


@dataclass(frozen=True)
class MatchPolicy:
    """Thresholds of :func:`decide` (see the module docstring for their meaning)."""

    min_score: float = 0.85
    min_title: float = 0.80
    min_artist: float = 0.75
    isrc_min_title: float = 0.50
    margin: float = 0.05
    duration_tolerance_s: float = 7.0
    duration_tolerance_rel: float = 0.04
    same_recording_s: float = 3.0

    def duration_tolerance(self, reference_ms: int) -> float:
        """Seconds two full-track durations may differ for a reference of ``reference_ms``."""
        return max(self.duration_tolerance_s, self.duration_tolerance_rel * reference_ms / 1000)


@dataclass(frozen=True)
class Assessment:
    """One candidate scored against one track; ``rejected`` is None when acceptable."""

    candidate: Candidate
    title: float
    artist: float
    score: float
    duration_delta_s: float | None
    rejected: str | None


@dataclass(frozen=True)
class Decision:
    """The outcome for one track: ``matched``, ``ambiguous`` or ``not_found``."""

    status: str
    best: Assessment | None
    runner_up: Assessment | None
    examined: int
    reason: str


def version_markers(title: str) -> frozenset[str]:
    """Version markers in the bracketed groups and dash suffix of a raw title.

    Parameters
    ----------
    title
        A title as a service or a chart prints it, e.g. ``"Song - Live at Wembley"``.

    Returns
    -------
    frozenset of str
        E.g. ``{"live"}``; empty for the original studio version.
    """
    parts = _BRACKET_GROUPS.findall(title)
    dash = _DASH_PART.search(_BRACKET_GROUPS.sub(" ", title))
    if dash:
        parts.append(dash.group(1))
    text = " ".join(parts)
    return frozenset(name for name, pattern in _MARKERS.items() if pattern.search(text))


def similarity(a: str, b: str) -> float:
    """Ratio (0..1) of two normalised strings after sorting their tokens."""
    if not a or not b:
        return 0.0
    if a == b:
        return 1.0
    a_sorted, b_sorted = " ".join(sorted(a.split())), " ".join(sorted(b.split()))
    return SequenceMatcher(None, a_sorted, b_sorted, autojunk=False).ratio()


def _clean_title(title: str) -> str:
    return normalise_title(_KWORB_WITH.sub("", title))


def _core_title(title: str) -> str:
    """The title without any bracketed group or dash suffix (film credits, subtitles, ...)."""
    core = _DASH_PART.sub("", _BRACKET_GROUPS.sub(" ", title))
    return normalise_title(core) if core.strip() else _clean_title(title)


def title_similarity(a: str, b: str) -> float:
    """The better of the normalised titles' and the core titles' similarities.

    The catalog's normaliser keeps brackets that name no version (``(Spider-Man: Into the
    Spider-Verse)``) and services place such subtitles differently (after a dash, in brackets
    or not at all); comparing the cores too makes that irrelevant, while the version markers
    still tell a live or remixed recording from the original.
    """
    return max(
        similarity(_clean_title(a), _clean_title(b)), similarity(_core_title(a), _core_title(b))
    )


def _artist_names(candidate: Candidate) -> list[str]:
    names = [candidate.artist, *candidate.artists]
    for credit in list(names):
        names.extend(p for p in _ARTIST_SEPARATORS.split(credit) if p)
    return [normalise_artist(n) for n in dict.fromkeys(n.strip() for n in names) if n]


def assess(query: TrackQuery, candidate: Candidate, policy: MatchPolicy) -> Assessment:
    """Score ``candidate`` against ``query`` and say why it is rejected, if it is.

    Parameters
    ----------
    query
        The catalog track (title, artist, and the reference duration when known).
    candidate
        The service's track.
    policy
        Thresholds.

    Returns
    -------
    Assessment
        Title, artist and overall scores, the duration difference (None when not compared)
        and the rejection reason (None when acceptable).
    """
    title = title_similarity(query.title or "", candidate.title)
    main = normalise_artist(query.artist or "")
    artist = max((similarity(main, name) for name in _artist_names(candidate)), default=0.0)
    score = (title + artist) / 2
    delta = None
    if query.duration_ms and candidate.duration_ms:
        delta = (candidate.duration_ms - query.duration_ms) / 1000
    reasons = []
    if candidate.via == "isrc":
        if title < policy.isrc_min_title:
            reasons.append(
                f"title similarity {title:.2f} < {policy.isrc_min_title} for an ISRC hit"
            )
    else:
        if title < policy.min_title:
            reasons.append(f"title similarity {title:.2f} < {policy.min_title}")
        if artist < policy.min_artist:
            reasons.append(f"artist similarity {artist:.2f} < {policy.min_artist}")
        if score < policy.min_score and not reasons:
            reasons.append(f"score {score:.2f} < {policy.min_score}")
        ours, theirs = version_markers(query.title or ""), version_markers(candidate.title)
        if ours != theirs:
            reasons.append(
                f"version markers differ (candidate: {', '.join(sorted(theirs)) or 'none'}; "
                f"track: {', '.join(sorted(ours)) or 'none'})"
            )
    if delta is not None and abs(delta) > policy.duration_tolerance(query.duration_ms or 0):
        reasons.append(
            f"duration differs by {delta:+.0f} s "
            f"(tolerance {policy.duration_tolerance(query.duration_ms or 0):.0f} s)"
        )
    return Assessment(candidate, title, artist, score, delta, "; ".join(reasons) or None)


def _same_recording(a: Assessment, b: Assessment, query: TrackQuery, policy: MatchPolicy) -> bool:
    ca, cb = a.candidate, b.candidate
    if ca.isrc and cb.isrc:
        return ca.isrc.upper() == cb.isrc.upper()
    if title_similarity(ca.title, cb.title) < 1.0:
        return False
    if not set(_artist_names(ca)) & set(_artist_names(cb)):
        return False
    if ca.duration_ms is None or cb.duration_ms is None:
        return True
    return abs(ca.duration_ms - cb.duration_ms) / 1000 <= policy.same_recording_s


def _describe(a: Assessment) -> str:
    c = a.candidate
    return f"{c.source_id} {c.artist!r} - {c.title!r} (score {a.score:.2f})"


def decide(query: TrackQuery, candidates: list[Candidate], policy: MatchPolicy) -> Decision:
    """Decide which candidate, if any, is the track's recording.

    Parameters
    ----------
    query
        The catalog track.
    candidates
        The service's candidates in its own (relevance) order.
    policy
        Thresholds.

    Returns
    -------
    Decision
        ``matched`` (``best`` is the match), ``ambiguous`` (``best`` and ``runner_up`` are
        distinct recordings within ``margin``) or ``not_found`` (``best`` is the best rejected
        candidate, if any); ``reason`` is one line for the decisions table.
    """
    assessed = [assess(query, c, policy) for c in candidates]
    accepted = [a for a in assessed if a.rejected is None]
    if not accepted:
        if not assessed:
            return Decision("not_found", None, None, 0, "the service returned no candidate")
        best = max(assessed, key=lambda a: a.score)
        return Decision(
            "not_found",
            best,
            None,
            len(assessed),
            f"no acceptable candidate among {len(assessed)}; best {_describe(best)}: "
            f"{best.rejected}",
        )
    groups: list[Assessment] = []
    for a in accepted:  # service order: the first of a recording represents it
        if not any(_same_recording(a, g, query, policy) for g in groups):
            groups.append(a)
    groups.sort(key=lambda a: -a.score)  # stable: ties keep the service's order
    best = groups[0]
    checked = "duration checked" if best.duration_delta_s is not None else "duration unknown"
    if len(groups) > 1 and groups[1].score >= best.score - policy.margin:
        return Decision(
            "ambiguous",
            best,
            groups[1],
            len(assessed),
            f"{len(groups)} distinct acceptable recordings within {policy.margin}: "
            f"{_describe(best)} and {_describe(groups[1])}",
        )
    runner = groups[1] if len(groups) > 1 else None
    via = "ISRC" if best.candidate.via == "isrc" else best.candidate.via
    return Decision(
        "matched",
        best,
        runner,
        len(assessed),
        f"matched by {via}: {_describe(best)}; {checked}",
    )


__all__ = [
    "Assessment",
    "Candidate",
    "Decision",
    "MatchPolicy",
    "TrackQuery",
    "assess",
    "decide",
    "similarity",
    "title_similarity",
    "version_markers",
]
