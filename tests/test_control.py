"""The negative control: permuted features carry no signal; a real signal is detected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SYNTHETIC_SET, synthetic_data

from musicpop.benchmark.config import load_config
from musicpop.benchmark.control import run_control, song_permuted

pytestmark = pytest.mark.slow


def test_song_permutation_keeps_values_and_breaks_the_link() -> None:
    data = synthetic_data(n_songs=60, n_features=3, seed=4)
    permuted = song_permuted(data, SYNTHETIC_SET, seed=1)
    original = data.inputs[SYNTHETIC_SET].columns
    assert sorted(permuted.columns["lowlevel.f0"].round(9).unique()) == sorted(
        original.groupby(data.frame["song_id"])["lowlevel.f0"].first().round(9)
    )
    # every row of a song carries one (other) song's features
    per_song = permuted.columns.groupby(data.frame["song_id"])["lowlevel.f0"].nunique()
    assert (per_song == 1).all()
    signal = np.corrcoef(original["lowlevel.f0"], data.frame["log1p_charted_sum"])[0, 1]
    broken = np.corrcoef(permuted.columns["lowlevel.f0"], data.frame["log1p_charted_sum"])[0, 1]
    assert signal > 0.5 and abs(broken) < 0.3


def test_control_finds_the_planted_signal_and_no_difference_between_permutations(
    tmp_path: Path, tracking_uri: str
) -> None:
    data = synthetic_data(n_songs=80, n_features=4, signal=True, seed=5)
    config = load_config(
        "quick",
        dataset="control",
        features=SYNTHETIC_SET,
        n_folds=3,
        n_trials=1,
        bootstrap=200,
        tracking_uri=tracking_uri,
        results_dir=tmp_path,
        models={"lightgbm": {"max_estimators": 60}},
    )
    result = run_control(config, seeds=[3], pairs=["permuted", "null"], data=data)
    table = result.comparisons
    assert len(table) == 2 * 2  # pairs x targets
    null = table[table["pair"] == "null"]
    assert (null["diff_ci_low"] > 0).all()  # the real features beat permuted ones: a true win
    rates = result.rates().set_index(["pair", "outcome"])
    assert rates.loc[("null", "false win"), "count"] == 2
    assert rates.loc[("permuted", "false win"), "n"] == 2
    assert "| permuted | false win |" in result.markdown("control")


def test_rates_pool_the_pairs_and_means_have_t_intervals() -> None:
    from musicpop.benchmark.control import ControlResult

    rows = []
    for seed in range(10):
        for pair, shift in (("permuted", 0.0), ("null", -0.2)):
            diff = shift + (0.05 if seed % 2 else -0.05)
            rows.append(
                {"seed": seed, "pair": pair, "target": "y", "first": "a", "second": "b"}
                | {"diff": diff, "diff_ci_low": diff - 0.1, "diff_ci_high": diff + 0.1}
            )
    result = ControlResult(pd.DataFrame(rows), "spearman_region")
    rates = result.rates().set_index(["pair", "outcome"])
    # null: every interval [-0.35, -0.05] or [-0.25, -0.05] is below 0, none above
    assert rates.loc[("null", "false loss"), "count"] == 10
    assert rates.loc[("all", "false loss"), "count"] == 10
    assert rates.loc[("all", "false win"), "n"] == 20
    means = result.mean_differences().set_index("pair")
    assert means.loc["permuted", "mean"] == pytest.approx(0.0, abs=1e-12)
    assert means.loc["permuted", "ci_low"] < 0 < means.loc["permuted", "ci_high"]
    assert means.loc["null", "ci_high"] < 0  # a systematic difference is outside its interval
    assert "## Mean difference over seeds" in result.markdown("t")
