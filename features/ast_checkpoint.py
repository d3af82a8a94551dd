"""Load a pretrained Audio Spectrogram Transformer (``transformers.ASTModel``) from a checkpoint.

``load_ast`` takes a local folder (``config.json`` plus ``model.safetensors`` or
``pytorch_model.bin``, as ``save_pretrained`` or ``hf download`` leave it) or a
Hugging Face hub id such as ``MIT/ast-finetuned-audioset-10-10-0.4593``. Nothing is downloaded
unless the caller asks for it: with ``allow_download=False`` (the default) the hub id must already
be in the local Hugging Face cache, ``local_files_only=True`` is passed to ``from_pretrained`` (so
no network request is even attempted), and nothing global (``HF_HUB_OFFLINE`` and the like) is
set. A checkpoint trained for classification (``ASTForAudioClassification``) loads as its encoder;
the classifier head is dropped.

Feed it :func:`features.fbank.ast_windows` (``(W, 1024, 128)``, AST's Kaldi fbank normalised
with the AudioSet statistics).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import DataError

if TYPE_CHECKING:
    from transformers import ASTModel


def load_ast(
    name_or_path: str | Path,
    allow_download: bool = False,
    cache_dir: str | Path | None = None,
) -> ASTModel:
    """Load ``transformers.ASTModel`` from a local folder or a hub id, in eval mode.

    Parameters
    ----------
    name_or_path : str or Path
        A folder holding ``config.json`` and the weights, or a hub id.
    allow_download : bool, default False
        Allow ``from_pretrained`` to download a hub id missing from the cache (the CLI's
        ``--allow-download``); otherwise only local files are read.
    cache_dir : str or Path, optional
        The Hugging Face cache to look in (default: ``transformers``' own, e.g.
        ``~/.cache/huggingface/hub``).

    Returns
    -------
    transformers.ASTModel
        The encoder, in eval mode.

    Raises
    ------
    DataError
        One line: the folder is not an AST checkpoint, or the hub id is not cached and
        downloads are not allowed.
    """
    from transformers import ASTModel

    target = Path(name_or_path)
    is_folder = target.is_dir()
    if not is_folder and target.exists():
        raise DataError(f"{name_or_path}: an AST checkpoint must be a folder or a hub id")
    source = str(target if is_folder else name_or_path)
    # transformers logs an error and a traceback-like message for some failures; the DataError
    # below says it in one line instead
    tf_logger = logging.getLogger("transformers")
    level = tf_logger.level
    tf_logger.setLevel(logging.CRITICAL)
    try:
        model = ASTModel.from_pretrained(
            source,
            local_files_only=is_folder or not allow_download,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except (OSError, ValueError) as exc:
        if is_folder:
            raise DataError(
                f"{target}: not a loadable AST checkpoint ({_first_line(exc)})"
            ) from exc
        if not allow_download:
            raise DataError(
                f"{name_or_path}: AST checkpoint is neither a local folder nor in the Hugging "
                "Face cache; download it first (hf download "
                f"{name_or_path}) or allow downloads (--allow-download)"
            ) from exc
        raise DataError(f"{name_or_path}: cannot load AST checkpoint ({_first_line(exc)})") from exc
    finally:
        tf_logger.setLevel(level)
    if getattr(model.config, "model_type", "") != "audio-spectrogram-transformer":
        raise DataError(
            f"{name_or_path}: not an AST checkpoint (model_type {model.config.model_type!r})"
        )
    model.eval()
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def state_sha256(model: nn.Module) -> str:
    """sha256 over a model's parameters and buffers (names, shapes, bytes), for provenance.

    Used for every pretrained encoder (AST, MusiCNN): unlike a file's sha256 it does not
    change with the file format or the metadata a converter writes.

    Parameters
    ----------
    model : torch.nn.Module
        The loaded encoder (e.g. a ``transformers.ASTModel``).

    Returns
    -------
    str
        Hex digest; equal for equal weights whatever file format they came from.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
