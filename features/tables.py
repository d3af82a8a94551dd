"""Reading the data dir's Parquet tables with one clear error per problem."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .errors import DataError


def read_table(path: Path, columns: Iterable[str], hint: str = "") -> pd.DataFrame:
    """Read a Parquet table and check that it has ``columns``.

    Parameters
    ----------
    path : Path
        The table.
    columns : Iterable[str]
        Columns that must be present.
    hint : str
        What to run when the file is missing (appended to the error).

    Returns
    -------
    pd.DataFrame
        The whole table.

    Raises
    ------
    DataError
        The file is missing, unreadable, or lacks a column; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found" + (f"; {hint}" if hint else ""))
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from exc
    missing = sorted(set(columns) - set(table.columns))
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return table
