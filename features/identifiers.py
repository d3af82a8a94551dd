"""Spotify track ids and region codes: parsing and validation, one place for the whole project.

A Spotify track id is 22 characters of base62 (``[0-9A-Za-z]{22}``). It appears bare, inside
``https://open.spotify.com/track/<id>`` URLs and inside ``spotify:track:<id>`` URIs. A region is a
lower-case ISO 3166-1 alpha-2 code or ``global``.
"""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError

TRACK_ID_RE = re.compile(r"^[0-9A-Za-z]{22}$")
"""A bare, valid Spotify track id (full match)."""

# One pattern for the three spellings; anchored so that a 23-character string is not cut to 22.
_TRACK_REF = (
    r"^\s*(?:https?://open\.spotify\.com/(?:intl-[a-z]{2}/)?track/|spotify:track:)?"
    r"([0-9A-Za-z]{22})(?:\?[^\s]*)?\s*$"
)
_TRACK_REF_RE = re.compile(_TRACK_REF)
_TRACK_REF_NAMED = _TRACK_REF.replace("([0-9A-Za-z]{22})", "(?P<id>[0-9A-Za-z]{22})")  # for RE2
_REGION_RE = re.compile(r"^(?:[a-z]{2}|global)$")


def parse_track_id(text: object) -> str | None:
    """Return the track id in ``text``, or None when it holds no valid id.

    Parameters
    ----------
    text
        A bare id, an ``open.spotify.com/track/<id>`` URL (query string allowed) or a
        ``spotify:track:<id>`` URI. Anything else (None, NaN, numbers) gives None.

    Returns
    -------
    str or None
        The 22-character base62 id.
    """
    if not isinstance(text, str):
        return None
    match = _TRACK_REF_RE.match(text)
    return match.group(1) if match else None


def parse_track_ids(values: pd.Series) -> pd.Series:
    """Vectorised :func:`parse_track_id`: the id of each value, NaN where there is none.

    Parameters
    ----------
    values
        Strings in any of the spellings accepted by :func:`parse_track_id`.

    Returns
    -------
    pandas.Series
        Object series of ids (NaN for invalid entries), same index as ``values``.
    """
    raw = values.to_numpy(dtype=object)
    try:
        refs = pa.array(raw, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # non-string entries hold no id
        refs = pa.array([v if isinstance(v, str) else None for v in raw], type=pa.string())
    ids = pc.struct_field(pc.extract_regex(refs, _TRACK_REF_NAMED), [0])
    return pd.Series(ids.to_numpy(zero_copy_only=False), index=values.index, dtype=object)


def normalise_region(text: str) -> str:
    """Return the canonical region code: lower-case ISO 3166-1 alpha-2, or ``global``.

    Parameters
    ----------
    text
        A region code in any case, with surrounding whitespace allowed (``"US"``, ``" global"``).

    Returns
    -------
    str
        The normalised code.

    Raises
    ------
    DataError
        If ``text`` is not a two-letter code or ``global``.
    """
    code = str(text).strip().lower()
    if not _REGION_RE.match(code):
        raise DataError(f"not a region code (two letters or 'global'): {text!r}")
    return code


def is_region(text: str) -> bool:
    """Return True when ``text`` normalises to a region code (see :func:`normalise_region`)."""
    return bool(_REGION_RE.match(str(text).strip().lower()))
