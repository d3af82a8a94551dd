"""notebooks/feature_retrieval.ipynb runs top to bottom on a tiny data dir and plots a mel."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_synthetic_tables

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "feature_retrieval.ipynb"


@pytest.mark.slow
def test_feature_retrieval_notebook_executes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    data_dir = tmp_path / "data"
    write_synthetic_tables(data_dir, tracks=6, regions=2, features=3, n_mels=16, n_frames=20)
    monkeypatch.setenv("MUSICPOP_DATA_DIR", str(data_dir))  # the kernel inherits it

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": NOTEBOOK.parent}},
    ).execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs)
    assert "essentia_v1" in text and str(data_dir) in text
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert (data_dir / "feast" / "online_store.db").is_file()
