"""Pretrained MusiCNN / VGG weights: from the ``musicnn`` wheel's checkpoints to safetensors.

The ``musicnn`` package (``pip install --no-deps musicnn==0.1.0``; ISC licence, MTG-UPF) ships
TensorFlow-1 checkpoints of four taggers trained on the Million Song Dataset (``MSD_*``) and
MagnaTagATune (``MTT_*``), 50 tags each. This module never imports TensorFlow:

1. :func:`checkpoint_prefix` finds a model's checkpoint inside the installed package and checks
   its two files against the sha256 the wheel's ``RECORD`` lists for them;
2. :func:`convert_checkpoint` reads it with :mod:`features.tf_checkpoint`, keeps the weights
   (batch-norm statistics included; Adam's slots and ``beta*_power`` are dropped), and maps every
   TensorFlow variable to our ``state_dict`` (conv kernels ``(kh, kw, in, out)`` ->
   ``(out, in, kh, kw)``, the mid-end's ``(7, C, 1, out)`` -> Conv1d ``(out, C, 7)``, dense
   kernels transposed);
3. :func:`weights_file` writes the result once into the cache folder as
   ``<model>.safetensors`` plus ``<model>.json`` (its sha256, the source checkpoint's sha256,
   the converter version), atomically and under a file lock; later calls verify the sha256 and
   reconvert a missing, stale or corrupt file instead of failing;
4. :func:`load_tagger` builds the torch model from the safetensors file (never pickle), in eval
   mode, with its tag names and provenance.

Cache folder: the ``cache_dir`` argument, else ``$MUSICPOP_CACHE_DIR/musicnn``, else
``$XDG_CACHE_HOME/musicpop/musicnn``, else ``~/.cache/musicpop/musicnn``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..models.musicnn import Musicnn, MusicnnConfig, MusicnnVGG, MusicnnVGGConfig
from .errors import DataError
from .layout import file_sha256
from .tf_checkpoint import read_index, read_tensors

#: Bumped whenever the conversion changes what it writes; part of the cache's validity check.
CONVERTER_VERSION = 1
#: The pretrained models of the ``musicnn`` wheel this module converts.
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
#: How to install the package that holds the weights (its metadata pins numpy<1.17).
INSTALL_HINT = "pip install --no-deps musicnn==0.1.0"
CACHE_ENV = "MUSICPOP_CACHE_DIR"

_OPTIMIZER_SLOT = re.compile(r"(/Adam(_\d+)?$)|(^beta[12]_power$)")


@dataclass(frozen=True)
class PretrainedTagger:
    """A pretrained tagger ready for inference, with what provenance records need.

    Attributes
    ----------
    name : str
        The model, one of :data:`MODELS`.
    model : torch.nn.Module
        :class:`~musicpop.models.musicnn.Musicnn` or ``MusicnnVGG``, in eval mode.
    tag_names : tuple of str
        The 50 tags as the ``musicnn`` package names them (``"instrumental"``, ``"Hip-Hop"``).
    feature_names : tuple of str
        Column names for the tag probabilities, e.g. ``msd_tag_instrumental``.
    weights_sha256 : str
        sha256 of the safetensors file the weights were loaded from.
    weights_path : Path
        That file.
    """

    name: str
    model: nn.Module
    tag_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    weights_sha256: str
    weights_path: Path

    @property
    def embedding_dim(self) -> int:
        """Size of the embedding the model returns (200 for MusiCNN, 256 for the VGG)."""
        if isinstance(self.model, Musicnn):
            return self.model.config.backend_units
        assert isinstance(self.model, MusicnnVGG)
        return self.model.config.embedding_dim


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise DataError(f"unknown musicnn model {model!r}; choose one of {', '.join(MODELS)}")


def _package_dir() -> Path:
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the musicnn package (pretrained MusiCNN weights) is not installed: {INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def tag_names(model: str) -> tuple[str, ...]:
    """The 50 tags of ``model`` in output order, from the package's ``configuration`` module.

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.

    Returns
    -------
    tuple of str
        The tags as the package spells them.
    """
    _check_model(model)
    _package_dir()
    configuration = importlib.import_module("musicnn.configuration")
    return tuple(configuration.MSD_LABELS if model.startswith("MSD") else configuration.MTT_LABELS)


def tag_feature_names(model: str) -> tuple[str, ...]:
    """Column names for ``model``'s tag probabilities: ``msd_tag_instrumental``, ``mtt_tag_no_vocals``.

    The tag is lower-cased and every run of non-alphanumerics becomes one ``_``; the VGG models
    get ``msd_vgg_tag_...`` / ``mtt_vgg_tag_...``.

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.

    Returns
    -------
    tuple of str
        One unique name per tag, in output order.
    """
    _check_model(model)
    dataset, arch = model.split("_")
    prefix = dataset.lower() + ("_vgg" if arch == "vgg" else "")
    names = tuple(
        f"{prefix}_tag_{re.sub(r'[^0-9a-z]+', '_', tag.lower()).strip('_')}"
        for tag in tag_names(model)
    )
    if len(set(names)) != len(names):
        raise DataError(f"tag names of {model} collide after normalisation: {names}")
    return names


def _record_hashes() -> dict[str, str]:
    """sha256 (hex) of each file of the installed wheel, from its ``RECORD``; {} if unknown."""
    try:
        files = importlib.metadata.distribution("musicnn").files or []
    except importlib.metadata.PackageNotFoundError:
        return {}
    hashes = {}
    for f in files:
        if f.hash is not None and f.hash.mode == "sha256":
            digest = base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4))
            hashes[Path(f.locate()).resolve().as_posix()] = digest.hex()
    return hashes


def checkpoint_prefix(model: str) -> Path:
    """The checkpoint prefix of ``model`` inside the installed ``musicnn`` package.

    The ``.index`` and ``.data`` files are checked against the sha256 that the wheel's
    ``RECORD`` lists (when it lists them).

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.

    Returns
    -------
    Path
        ``<site-packages>/musicnn/<model>/`` (the files are ``.index`` and
        ``.data-00000-of-00001`` in that folder, TensorFlow's prefix being the folder itself).

    Raises
    ------
    DataError
        The package is missing, the checkpoint is absent, or a file differs from the wheel's.
    """
    _check_model(model)
    folder = _package_dir() / model
    recorded = _record_hashes()
    for name in (".index", ".data-00000-of-00001"):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: checkpoint file missing; reinstall with {INSTALL_HINT}")
        expected = recorded.get(path.resolve().as_posix())
        if expected is not None and file_sha256(path) != expected:
            raise DataError(
                f"{path}: differs from the file the musicnn wheel installed (sha256); "
                f"reinstall with {INSTALL_HINT}"
            )
    return folder


def _bn(prefix: str, tf_scope: str) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    def same(a: np.ndarray) -> np.ndarray:
        return a

    return {
        f"{prefix}.weight": (f"{tf_scope}/gamma", same),
        f"{prefix}.bias": (f"{tf_scope}/beta", same),
        f"{prefix}.running_mean": (f"{tf_scope}/moving_mean", same),
        f"{prefix}.running_var": (f"{tf_scope}/moving_variance", same),
    }


def _conv2d(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)


def _conv1d(a: np.ndarray) -> np.ndarray:
    return a[:, :, 0, :].transpose(2, 1, 0)  # (7, C, 1, out) -> (out, C, 7)


def _dense(a: np.ndarray) -> np.ndarray:
    return a.T  # (in, out) -> (out, in)


def _bias(a: np.ndarray) -> np.ndarray:
    return a


def name_map(model: str) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """Our ``state_dict`` key -> (TensorFlow variable, transform) for ``model``.

    TensorFlow numbered the unnamed layers in the order the graph created them; for MusiCNN:
    batch norms 0 (input), 1-2 (timbral), 3-5 (temporal), 6-8 (mid-end), 9 (pooled features),
    10 (penultimate); convs 0-1 (timbral), 2-4 (temporal), 5-7 (mid-end); dense 0 (penultimate)
    and 1 (tags). The VGG's convs are named ``1CNN`` .. ``5CNN``, each followed by batch norm
    ``k``; batch norm 0 normalises the input.

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.

    Returns
    -------
    dict
        Every weight of the model, batch-norm statistics included (not ``num_batches_tracked``).
    """
    _check_model(model)
    m: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {}

    def bn_scope(i: int) -> str:
        return "batch_normalization" + (f"_{i}" if i else "")

    def conv_scope(i: int) -> str:
        return "conv2d" + (f"_{i}" if i else "")

    m.update(_bn("input_bn", bn_scope(0)))
    if model.endswith("_musicnn"):
        layers = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)]
        layers += [f"midend.{i}" for i in range(3)]
        for i, layer in enumerate(layers):
            transform = _conv1d if layer.startswith("midend") else _conv2d
            m[f"{layer}.conv.weight"] = (f"{conv_scope(i)}/kernel", transform)
            m[f"{layer}.conv.bias"] = (f"{conv_scope(i)}/bias", _bias)
            m.update(_bn(f"{layer}.bn", bn_scope(i + 1)))
        m.update(_bn("pool_bn", bn_scope(9)))
        m.update(_bn("dense_bn", bn_scope(10)))
        m["dense.weight"] = ("dense/kernel", _dense)
        m["dense.bias"] = ("dense/bias", _bias)
        m["classifier.weight"] = ("dense_1/kernel", _dense)
        m["classifier.bias"] = ("dense_1/bias", _bias)
    else:
        for i in range(5):
            m[f"convs.{i}.conv.weight"] = (f"{i + 1}CNN/kernel", _conv2d)
            m[f"convs.{i}.conv.bias"] = (f"{i + 1}CNN/bias", _bias)
            m.update(_bn(f"convs.{i}.bn", bn_scope(i + 1)))
        m["classifier.weight"] = ("dense/kernel", _dense)
        m["classifier.bias"] = ("dense/bias", _bias)
    return m


def build_model(model: str) -> nn.Module:
    """An untrained torch model with the architecture of ``model`` (random weights)."""
    _check_model(model)
    if model.endswith("_musicnn"):
        return Musicnn(MusicnnConfig())
    return MusicnnVGG(MusicnnVGGConfig())


def convert_checkpoint(model: str) -> dict[str, torch.Tensor]:
    """Read ``model``'s TensorFlow checkpoint and return our ``state_dict`` (float32, contiguous).

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.

    Returns
    -------
    dict of str to torch.Tensor
        The weights under our names (see :func:`name_map`).

    Raises
    ------
    DataError
        The package or checkpoint is missing or corrupt, a weight is absent, the checkpoint holds
        a weight the port does not use, or a shape disagrees with the torch model.
    """
    prefix = checkpoint_prefix(model)
    mapping = name_map(model)
    index = read_index(f"{prefix}/.index")
    weights = {name for name in index if not _OPTIMIZER_SLOT.search(name)}
    used = {tf_name for tf_name, _ in mapping.values()}
    if weights != used:
        raise DataError(
            f"{prefix}/.index: checkpoint weights do not match the port "
            f"(missing: {sorted(used - weights)}, unused: {sorted(weights - used)})"
        )
    tensors = read_tensors(f"{prefix}/", sorted(used))
    expected = build_model(model).state_dict()
    state: dict[str, torch.Tensor] = {}
    for key, (tf_name, transform) in mapping.items():
        array = np.ascontiguousarray(transform(tensors[tf_name]), dtype=np.float32)
        if tuple(array.shape) != tuple(expected[key].shape):
            raise DataError(
                f"{prefix}/.index: {tf_name} has shape {array.shape} after conversion, "
                f"the port's {key} needs {tuple(expected[key].shape)}"
            )
        state[key] = torch.from_numpy(array)
    return state


def cache_dir(path: Path | str | None = None) -> Path:
    """The folder of converted weights (see the module docstring for the order of precedence)."""
    if path is not None:
        return Path(path)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "musicnn"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "musicpop" / "musicnn"


def _source_sha256(prefix: Path) -> str:
    h = hashlib.sha256()
    for name in (".index", ".data-00000-of-00001"):
        h.update(file_sha256(prefix / name).encode())
    return h.hexdigest()


def _cached_sha256(weights: Path, record: Path, source: str) -> str | None:
    """The sha256 of a valid cached file, or None when it must be (re)converted."""
    try:
        meta = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not weights.is_file():
        return None
    if meta.get("converter_version") != CONVERTER_VERSION or meta.get("source_sha256") != source:
        return None
    digest = file_sha256(weights)
    return digest if digest == meta.get("sha256") else None


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def weights_file(model: str = "MSD_musicnn", cache: Path | str | None = None) -> tuple[Path, str]:
    """The converted weights of ``model``, converting them first when needed.

    Parameters
    ----------
    model : str
        One of :data:`MODELS`.
    cache : Path or str, optional
        The cache folder; :func:`cache_dir` decides when omitted.

    Returns
    -------
    path : Path
        ``<cache>/<model>.safetensors``.
    sha256 : str
        Its sha256, verified against ``<cache>/<model>.json``.

    Raises
    ------
    DataError
        The ``musicnn`` package is not installed, its checkpoint is corrupt, or the cache folder
        cannot be written.
    """
    prefix = checkpoint_prefix(model)
    folder = cache_dir(cache)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the weights cache ({exc.strerror})") from exc
    weights, record = folder / f"{model}.safetensors", folder / f"{model}.json"
    source = _source_sha256(prefix)
    with FileLock(folder / f".{model}.lock"):
        digest = _cached_sha256(weights, record, source)
        if digest is not None:
            return weights, digest
        state = convert_checkpoint(model)
        # one metadata key: safetensors keeps the metadata in a hash map, whose order (and so the
        # file's bytes and sha256) would otherwise change from one conversion to the next
        provenance = {"model": model, "source_sha256": source, "converter": CONVERTER_VERSION}
        metadata = {"musicpop": json.dumps(provenance, sort_keys=True)}
        try:
            _write_atomic(weights, lambda p: save_file(state, p, metadata=metadata))
            digest = file_sha256(weights)
            meta = {
                "model": model,
                "sha256": digest,
                "source_sha256": source,
                "converter_version": CONVERTER_VERSION,
                "musicnn_version": importlib.metadata.version("musicnn"),
            }
            _write_atomic(record, lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))
        except OSError as exc:
            raise DataError(f"{folder}: cannot write converted weights ({exc.strerror})") from exc
    return weights, digest


def load_tagger(model: str = "MSD_musicnn", cache: Path | str | None = None) -> PretrainedTagger:
    """Load a pretrained ``musicnn`` tagger as a torch module (eval mode, CPU).

    Parameters
    ----------
    model : str
        One of :data:`MODELS` (default ``MSD_musicnn``).
    cache : Path or str, optional
        The cache folder of converted weights; :func:`cache_dir` decides when omitted.

    Returns
    -------
    PretrainedTagger
        The module with its tag names, feature names and the weights' sha256.

    Raises
    ------
    DataError
        The ``musicnn`` package is not installed (the message says how to install it), or its
        checkpoint is corrupt.
    """
    path, digest = weights_file(model, cache)
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{path}: cannot read converted weights ({exc})") from exc
    net = build_model(model)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise DataError(
            f"{path}: weights do not fit {model} (missing {missing}, extra {unexpected})"
        )
    net.eval()
    return PretrainedTagger(
        name=model,
        model=net,
        tag_names=tag_names(model),
        feature_names=tag_feature_names(model),
        weights_sha256=digest,
        weights_path=path,
    )
