"""Extractors of the pretrained-encoder feature sets: MusiCNN outputs and front-end inputs.

The feature-set registry (:mod:`features.feature_sets`) declares, from these functions:

- ``musicnn`` (tabular) and ``musicnn_patches`` (clips), both from one extractor, ``musicnn``
  (:func:`musicnn_compute`): MSD MusiCNN's 200-d penultimate embedding and 50 tag
  probabilities (``msd_tag_instrumental``, ...), per clip as means over its 3 s patches, plus the
  ``(P, 200)`` patch embeddings, all computed by one forward pass per clip;
- ``musicnn_input`` (clips, ``musicnn_frontend`` extractor, :func:`musicnn_input_compute`): the
  front-end patches ``(P, 187, 96)`` that fine-tuning MusiCNN reads;

(``ast_fbank``, the AST front end, is :func:`features.fbank.compute`.) The pretrained weights are
loaded once per process (:func:`process_tagger`), not per clip, and their sha256 is part of the
extractor's parameters, so other weights are another cache key and ``features/musicnn.json``
names them (the provenance of every model that reads the sets). torch is imported only when a clip is computed, so importing the registry stays
light.
"""

from __future__ import annotations

import dataclasses
import functools
import multiprocessing
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError

if TYPE_CHECKING:
    from .musicnn_weights import PretrainedTagger

#: The tagger whose outputs the feature store holds.
MUSICNN_MODEL = "MSD_musicnn"
#: Width of MusiCNN's penultimate layer (the embedding).
EMBEDDING_DIM = 200
#: Columns of the embedding in the ``musicnn`` feature set.
EMBEDDING_COLUMNS = tuple(f"musicnn.emb_{i:03d}" for i in range(EMBEDDING_DIM))
#: Columns of ``MSD_musicnn``'s 50 tag probabilities, in output order; equal to
#: ``features.musicnn_weights.tag_feature_names("MSD_musicnn")`` (a test checks it), written out
#: so that the registry needs neither torch nor the ``musicnn`` package to be imported.
MSD_TAG_COLUMNS = tuple(
    f"msd_tag_{tag}"
    for tag in (
        "rock pop alternative indie electronic female_vocalists dance 00s alternative_rock jazz "
        "beautiful metal chillout male_vocalists classic_rock soul indie_rock mellow electronica "
        "80s folk 90s chill instrumental punk oldies blues hard_rock ambient acoustic "
        "experimental female_vocalist guitar hip_hop 70s party country easy_listening sexy "
        "catchy funk electro heavy_metal progressive_rock 60s rnb indie_pop sad house happy"
    ).split()
)
#: Sample rate of MusiCNN's front end.
SAMPLE_RATE = 16_000


@functools.cache
def process_tagger(model: str = MUSICNN_MODEL) -> PretrainedTagger:
    """The pretrained tagger of this process, loaded once (an extraction worker runs many clips).

    In a worker process (one with a parent) torch gets one thread, as the pool already runs one
    worker per core, and glibc's malloc keeps freed memory for reuse (:func:`reuse_freed_memory`).

    Parameters
    ----------
    model : str
        A model of :data:`features.musicnn_weights.MODELS`.

    Returns
    -------
    PretrainedTagger
        The same object for every call with the same ``model`` in this process.
    """
    import torch

    from .musicnn_weights import load_tagger

    if multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)
        reuse_freed_memory()
    return load_tagger(model)


def reuse_freed_memory() -> bool:
    """Keep glibc's malloc from returning large freed blocks to the system at once.

    By default glibc serves each allocation above a (dynamic) threshold with its own ``mmap``
    and unmaps it when freed; MusiCNN's forward pass allocates and frees tens of megabytes per
    layer, so every clip paid about 250,000 page faults, and more system than user CPU time
    (measured: 0.54 s user + 0.65 s system per 30 s clip; with this setting 0.49 s + 0.01 s).
    Raising the mmap threshold to 512 MB and the trim threshold to 1 GB makes freed blocks
    available to the next allocation instead. Results are unchanged; the process keeps up to
    about 1 GB of freed memory. Called in extraction workers only.

    Returns
    -------
    bool
        Whether the settings were applied (False where the C library is not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 512 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))


def musicnn_compute(signal_16k: np.ndarray) -> dict[str, np.ndarray]:
    """The ``musicnn`` extractor: every MusiCNN output the feature store keeps, for one clip.

    Parameters
    ----------
    signal_16k : np.ndarray
        Mono float32 at 16 kHz (at least 2.98 s: one patch).

    Returns
    -------
    dict[str, np.ndarray]
        ``embedding`` ``(200,)`` (mean over the clip's 3 s patches), ``tags`` ``(50,)`` (mean tag
        probabilities, in :data:`MSD_TAG_COLUMNS` order) and ``patch_embeddings`` ``(P, 200)``,
        float32.
    """
    from .musicnn import musicnn_outputs

    tagger = process_tagger()
    if tagger.feature_names != MSD_TAG_COLUMNS:
        raise RuntimeError(f"{tagger.weights_path}: its tags differ from MSD_TAG_COLUMNS")
    out = musicnn_outputs(signal_16k, tagger)
    return {
        "embedding": out["embedding"],
        "tags": out["tags"],
        "patch_embeddings": out["patch_embeddings"],
    }


def musicnn_parameters() -> dict[str, Any]:
    """Everything that determines :func:`musicnn_compute`'s output, the weights' sha256 included.

    ``weights_sha256`` is :func:`features.ast_checkpoint.state_sha256` of the loaded network (a
    hash of the tensors themselves, whatever file they came from): the value the provenance of
    every model that reads these outputs names.

    Raises
    ------
    DataError
        The ``musicnn`` package (which holds the weights) is not installed.
    """
    import torch

    from .ast_checkpoint import state_sha256
    from .musicnn import MusicnnFrontendConfig

    try:
        sha256 = state_sha256(process_tagger().model)
    except DataError as exc:
        raise DataError(
            f"{exc} (the feature sets musicnn and musicnn_patches need it; to extract other "
            "sets, name them: --sets essentia,mel)"
        ) from exc
    return {
        "model": MUSICNN_MODEL,
        "weights_sha256": sha256,
        "frontend": dataclasses.asdict(MusicnnFrontendConfig()),
        "torch_version": torch.__version__.split("+")[0],
    }


def musicnn_input_compute(signal_16k: np.ndarray) -> dict[str, np.ndarray]:
    """The ``musicnn_frontend`` extractor: ``{"musicnn_input": (P, 187, 96) float16}``."""
    from .musicnn import musicnn_input

    return {"musicnn_input": musicnn_input(signal_16k).astype(np.float16)}


def musicnn_input_parameters() -> dict[str, Any]:
    """Everything that determines :func:`musicnn_input_compute`'s output (the front end)."""
    from .musicnn import MusicnnFrontendConfig

    return {"frontend": dataclasses.asdict(MusicnnFrontendConfig())}
