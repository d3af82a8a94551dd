"""Pretrained encoders through the real ``benchmark run`` on a tiny generated demo.

One tiny demo (``benchmark demo``) serves three runs of the real CLI: the MusiCNN probe and MP2 on
frozen MusiCNN patch embeddings; MP2 fine-tuning a tiny random AST saved with
``save_pretrained`` into a temporary folder; and an AST hub id that is not in the (empty) Hugging
Face cache, which must fail at once with one line and download nothing. Provenance is read
where a user reads it: ``summary.csv``, the report and MLflow.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_benchmark, save_tiny_ast
from transformers import ASTModel

from musicpop.features.ast_checkpoint import state_sha256
from musicpop.features.musicnn_weights import load_tagger

pytestmark = pytest.mark.slow

TINY = """
n_folds = 2
n_trials = 0
bootstrap = 100

[models.lightgbm]
min_child_samples = 3
n_estimators = 40
"""
MP2_MUSICNN = """
[models.mp2_musicnn]
training = { epochs = 2, patience = 2 }
"""
MP2_AST = """
[models.mp2_ast]
ast_checkpoint = "{checkpoint}"
config = {{ segments = {{ dim = 16, n_heads = 2 }} }}
training = {{ epochs = 1, batch_size = 8, eval_batch_size = 8 }}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A tiny demo, a private weights cache and an empty Hugging Face cache."""
    root = tmp_path_factory.mktemp("pretrained-run")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "TRANSFORMERS_", "MUSICPOP_"))
    }
    env.update(
        PYTHONUNBUFFERED="1",
        MUSICPOP_CACHE_DIR=str(root / "weights"),
        HF_HOME=str(root / "hf-home"),  # empty: no checkpoint is cached
    )
    demo = run_benchmark(
        "demo", "--songs", "16", "--regions", "2", "--seed", "5", cwd=root, env=env
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    return root, env


def test_musicnn_probe_and_mp2_on_frozen_musicnn(work: tuple[Path, dict[str, str]]) -> None:
    from mlflow import MlflowClient

    root, env = work
    (root / "musicnn.toml").write_text(TINY + MP2_MUSICNN)
    suite = "region_mean,lightgbm,lightgbm[musicnn],mp2_musicnn"
    run = run_benchmark("run", "--suite", suite, "--config", "musicnn.toml", cwd=root, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    summary = pd.read_csv(root / "results" / "demo" / "summary.csv")
    rows = summary.drop_duplicates("model").set_index("model")
    sha = state_sha256(load_tagger("MSD_musicnn", root / "weights").model)
    for model in ("lightgbm[musicnn]", "mp2_musicnn"):
        assert rows.loc[model, "encoder"] == "MSD_musicnn"
        assert rows.loc[model, "encoder_weights_sha256"] == sha
        assert bool(rows.loc[model, "encoder_frozen"]) is True
    assert (rows.loc["lightgbm[musicnn]", "kind"], rows.loc["mp2_musicnn", "kind"]) == (
        "probe",
        "deep",
    )
    assert rows.loc["lightgbm[essentia]", "kind"] == "classical"
    assert pd.isna(rows.loc["lightgbm[essentia]", "encoder"])
    # the reference of the paired differences stays the best model on hand-crafted features
    assert set(summary["reference"].dropna()) <= {"region_mean", "lightgbm[essentia]"}
    scored = summary[(summary["metric"] == "spearman") & summary["value"].notna()]
    assert {"lightgbm[musicnn]", "mp2_musicnn"} <= set(scored["model"])

    # the report: a models table with the provenance, and the instrumental section
    report = (root / "results" / "demo" / "summary.md").read_text()
    assert "## Models" in report and f"| MSD_musicnn | {sha[:16]} | yes |" in report
    assert "## Instrumental or vocal?" in report
    instrumental = pd.read_csv(root / "results" / "demo" / "instrumental.csv")
    assert set(instrumental["statistic"]) == {
        "mean",
        "region_centred_mean",
        "difference",
        "spearman_region",
    }
    html = (root / "results" / "demo" / "report.html").read_text()
    assert 'id="instrumental"' in html and sha[:16] in html

    # MLflow: the model's run carries the same provenance as tags
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("demo")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'model'")
    tags = {r.data.tags["model"]: r.data.tags for r in runs}
    for model in ("lightgbm[musicnn]", "mp2_musicnn"):
        assert tags[model]["encoder"] == "MSD_musicnn"
        assert tags[model]["encoder_weights_sha256"] == sha
        assert tags[model]["encoder_frozen"] == "True"
    assert tags["lightgbm[essentia]"]["encoder"] == "none"


def test_mp2_fine_tunes_an_ast_saved_in_a_folder(work: tuple[Path, dict[str, str]]) -> None:
    root, env = work
    checkpoint = root / "tiny-ast"
    save_tiny_ast(checkpoint)
    (root / "ast.toml").write_text(TINY + MP2_AST.format(checkpoint=checkpoint))
    run = run_benchmark("run", "--suite", "mp2_ast", "--config", "ast.toml", cwd=root, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = pd.read_csv(root / "results" / "demo" / "summary.csv").drop_duplicates("model")
    row = rows.set_index("model").loc["mp2_ast"]
    assert row["encoder"] == f"ast:{checkpoint}"
    assert row["encoder_weights_sha256"] == state_sha256(ASTModel.from_pretrained(checkpoint))
    assert bool(row["encoder_frozen"]) is False
    assert pd.notna(
        pd.read_csv(root / "results" / "demo" / "summary.csv")
        .query("model == 'mp2_ast' and metric == 'rmse'")["value"]
        .iloc[0]
    )


def test_an_uncached_hub_id_is_one_clear_line_and_nothing_is_downloaded(
    work: tuple[Path, dict[str, str]],
) -> None:
    root, env = work
    hub_id = "musicpop-tests/no-such-ast"
    (root / "hub.toml").write_text(TINY + MP2_AST.format(checkpoint=hub_id))
    run = run_benchmark("run", "--suite", "mp2_ast", "--config", "hub.toml", cwd=root, env=env)
    assert run.returncode == 2
    error = run.stderr.strip().splitlines()[-1]
    assert error.startswith(f"benchmark: error: {hub_id}: AST checkpoint is neither")
    assert "--allow-download" in error and "Traceback" not in run.stderr
    hub_cache = Path(env["HF_HOME"])
    assert not hub_cache.exists() or not any(hub_cache.rglob("*no-such-ast*"))
