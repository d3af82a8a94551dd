"""The demo stages of ``benchmark run`` on a demo regenerated in place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from musicpop.benchmark.pipeline import Pipeline, prepare_demo
from musicpop.features.charts import read_streams
from musicpop.features.demo import make_demo
from musicpop.features.layout import DataLayout

TINY = {"songs": 8, "regions": 2, "weeks": 12, "top_n": 5, "seed": 3, "workers": 1}


def _chart_rows(folder: Path) -> pd.DataFrame:
    """Every (region, date, track) row of the demo's chart files, as the charts reader sees them."""
    layout = DataLayout(folder)
    streams = read_streams(layout.root).drop(columns=["source_file"])  # the folder differs
    return streams.sort_values(list(streams.columns)).reset_index(drop=True)


@pytest.mark.slow
def test_a_regenerated_demo_replaces_the_ingested_streams(tmp_path: Path) -> None:
    quiet = {"progress": lambda _: None}
    folder = make_demo(tmp_path / "demo", popularity_seed=1, **quiet, **TINY)
    prepare_demo(DataLayout(folder), Pipeline(DataLayout(folder)))
    first = _chart_rows(folder)

    # the same songs and audio, a new popularity draw, in the same folder
    make_demo(folder, popularity_seed=2, **quiet, **TINY)
    prepare_demo(DataLayout(folder), Pipeline(DataLayout(folder)))
    second = _chart_rows(folder)

    # what a fresh folder ingests from the same parameters
    fresh = make_demo(tmp_path / "fresh", popularity_seed=2, **quiet, **TINY)
    prepare_demo(DataLayout(fresh), Pipeline(DataLayout(fresh)))
    expected = _chart_rows(fresh)

    assert not first.equals(second)  # the new draw changed the streams
    pd.testing.assert_frame_equal(second, expected)
