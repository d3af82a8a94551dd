"""One configuration system: presets, a user's TOML, and command-line options that never
silently override the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicpop.benchmark.cli import build_parser
from musicpop.benchmark.config import load_config
from musicpop.benchmark.pipeline import config_from_args
from musicpop.features.errors import DataError


def _config(*argv: str):
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_a_config_file_is_not_overridden_by_command_line_defaults(tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(
        'seed = 7\nsuite = "classical"\nresults_dir = "elsewhere"\nprofile = "full"\n'
        'tracking_uri = "sqlite:///mine.db"\n'
    )
    config = _config("--config", str(user))
    assert (config.seed, config.suite, str(config.results_dir)) == (7, "classical", "elsewhere")
    assert config.profile == "full" and config.n_trials == load_config("full").n_trials
    assert config.tracking_uri == "sqlite:///mine.db"
    # what is given on the command line wins over the file
    given = _config("--config", str(user), "--seed", "3", "--suite", "deep", "--profile", "quick")
    assert (given.seed, given.suite, given.profile) == (3, "deep", "quick")


def test_defaults_without_a_file() -> None:
    config = _config()
    assert (config.seed, config.suite, config.profile) == (0, "all", "quick")
    assert str(config.results_dir) == "results" and str(config.data_dir) == "data/demo"


def test_model_tables_merge_into_the_preset(tmp_path: Path) -> None:
    user = tmp_path / "deep.toml"
    user.write_text('profile = "full"\n[models.mp2.training]\nlr = 0.002\n')
    config = load_config(None, user)
    training = config.model_params("mp2")["training"]
    assert training["lr"] == 0.002 and training["batch_size"] == 24  # the rest of the preset
    assert config.model_params("mp2")["config"]["encoder"]["dim"] == 768
    user.write_text('profile = "huge"\n')
    with pytest.raises(DataError, match="unknown profile 'huge'"):
        load_config(None, user)
