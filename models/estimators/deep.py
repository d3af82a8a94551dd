"""The spectrogram transformers behind the estimator contract, and their training loop.

``MP2Estimator`` and ``MP3Estimator`` follow :mod:`models.estimators.base`: ``__init__`` stores
parameters, ``fit(X, y) -> self`` learns from the clip arrays in ``X["clips"]`` (the model's
feature set, served through Feast), ``predict(X) -> DataFrame`` with ``index = X.index``.
Training: standardised targets, random
fixed-length crops (another clip of the track each epoch when asked), augmentations, AdamW with
warm-up and cosine decay, early stopping on songs held out from the training rows, a checkpoint
each epoch (an interrupted fit resumes), mixed precision and DataLoader workers on CUDA only.
Prediction averages over crops that cover every clip of the track.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ...features.errors import DataError
from ...features.targets import CHARTED, TARGETS, curve_columns, curve_statistics
from ..augment import AugmentConfig, augment_batch
from ..blocks import cosine_with_warmup
from ..mp2 import MP2, MP2Config
from ..mp3 import MP3, MP3Config
from .base import CLIPS_COLUMN, ID_COLUMNS, BenchmarkEstimator, Trial

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainingConfig:
    """Optimisation settings shared by MP2 and MP3.

    Attributes
    ----------
    epochs : int
        Maximum passes over the training units (tracks, or (track, region) rows).
    batch_size, eval_batch_size : int
        Crops per optimiser step / per inference batch.
    lr, weight_decay : float
        AdamW peak learning rate and decoupled weight decay.
    warmup_epochs : float
        Linear warm-up length; cosine decay to 0 over the remaining steps.
    grad_clip : float
        Max gradient norm (0 = no clipping).
    patience : int
        Epochs without a validation improvement before stopping.
    val_fraction : float
        Share of the training songs held out for early stopping (0 = none; needs >= 5 songs).
    num_workers : int
        DataLoader workers, used on CUDA only (CPU runs load in the main process).
    amp : bool
        Mixed precision (bfloat16, or float16 with loss scaling), used on CUDA only.
    cpu_threads : int
        torch intra-op threads during fit and predict (0 = torch's default). On a busy shared
        machine 1 thread can be many times faster than 2 that spin-wait on each other.
    """

    epochs: int = 60
    batch_size: int = 16
    eval_batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    patience: int = 20
    val_fraction: float = 0.15
    num_workers: int = 4
    amp: bool = True
    cpu_threads: int = 0


def with_overrides(base: Any, overrides: Any, what: str) -> Any:
    """``base`` (a dataclass) with fields replaced from a mapping (nested for nested dataclasses).

    Parameters
    ----------
    base : dataclass instance
        The defaults.
    overrides : Mapping, dataclass instance or None
        A dataclass is returned as is (copied); a mapping, e.g. a TOML table, replaces the fields
        it names; None returns a copy of ``base``.
    what : str
        Name used in error messages.

    Returns
    -------
    dataclass instance
        A new object; ``base`` is not modified.
    """
    if overrides is None:
        return copy.deepcopy(base)
    if dataclasses.is_dataclass(overrides):
        return copy.deepcopy(overrides)
    if not isinstance(overrides, Mapping):
        raise DataError(f"{what}: expected a table of settings, got {type(overrides).__name__}")
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise DataError(f"{what}: unknown setting(s) {unknown}; known: {sorted(fields)}")
    changes = {}
    for key, value in overrides.items():
        current = getattr(base, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            value = with_overrides(current, value, f"{what}.{key}")
        changes[key] = value
    return dataclasses.replace(copy.deepcopy(base), **changes)


# --- data -----------------------------------------------------------------------------------


def _fit_length(clip: np.ndarray, length: int) -> np.ndarray:
    """Clip tiled (wrap-padded) along time up to ``length`` frames when it is shorter."""
    if clip.shape[1] >= length:
        return clip
    return np.pad(clip, ((0, 0), (0, length - clip.shape[1])), mode="wrap")


def covering_crops(clip: np.ndarray, length: int) -> list[np.ndarray]:
    """Fixed-length crops whose union covers the whole clip (evenly spaced, overlapping).

    Parameters
    ----------
    clip : np.ndarray
        ``(n_mels, n_frames)`` log-mel.
    length : int
        Crop length in frames; a shorter clip is tiled up to it and gives one crop.

    Returns
    -------
    list of np.ndarray
        ``ceil(n_frames / length)`` crops of shape ``(n_mels, length)``.
    """
    clip = _fit_length(clip, length)
    n_frames = clip.shape[1]
    n = math.ceil(n_frames / length)
    starts = np.linspace(0, n_frames - length, n).round().astype(int) if n > 1 else [0]
    return [clip[:, s : s + length] for s in starts]


def _input_stats(tracks: Sequence[Sequence[np.ndarray]]) -> tuple[float, float]:
    """Mean and std of all values of the training tracks' clips (in track order)."""
    total = count = sq = 0.0
    for clips in tracks:
        for clip in clips:
            c = np.asarray(clip, dtype=np.float64)
            total += c.sum()
            sq += np.square(c).sum()
            count += c.size
    mean = total / count
    std = math.sqrt(max(sq / count - mean * mean, 1e-12))
    return float(mean), float(std)


class CropDataset(Dataset):
    """Crops of the training units: ``(x (M, L) float32, region index, target)``.

    A unit is a track (target ``(R, K)``, NaN where the track has no row for a region) or a
    (track, region) row (target ``(K,)``). With ``random`` each item draws its clip (when
    ``different_clip``) and crop start from a generator seeded by (seed, epoch, index), so a
    resumed run, and any number of workers, see the same crops; otherwise clip 0, centred.
    """

    def __init__(
        self,
        units: list[tuple[str, int, np.ndarray]],
        spectrograms: Mapping[str, Sequence[np.ndarray]],
        length: int,
        seed: int,
        random: bool,
        different_clip: bool,
    ) -> None:
        self.units = units
        self.spectrograms = spectrograms
        self.length = length
        self.seed = seed
        self.random = random
        self.different_clip = different_clip
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        track_id, region, target = self.units[i]
        clips = self.spectrograms[track_id]
        if self.random:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            clip = clips[int(rng.integers(len(clips)))] if self.different_clip else clips[0]
            clip = _fit_length(clip, self.length)
            start = int(rng.integers(clip.shape[1] - self.length + 1))
        else:
            clip = _fit_length(clips[0], self.length)
            start = (clip.shape[1] - self.length) // 2
        x = np.asarray(clip[:, start : start + self.length], dtype=np.float32)
        return torch.from_numpy(x), region, torch.from_numpy(target)


# --- estimators -----------------------------------------------------------------------------


class SpectrogramEstimator(BenchmarkEstimator):
    """Shared fit/predict of the spectrogram transformers (subclasses: MP2, MP3).

    Parameters
    ----------
    config : Mapping or MP2Config or MP3Config, optional
        Model hyper-parameters overriding the config dataclass's defaults (a mapping, e.g. a TOML
        table ``{"encoder": {"dim": 64}}``, or a dataclass). ``n_regions``, ``encoder.n_mels``
        (and MP3's ``horizon``) are set from the data.
    training : Mapping or TrainingConfig, optional
        Optimisation settings overriding :class:`TrainingConfig`'s defaults.
    augment : Mapping or AugmentConfig, optional
        Augmentations overriding :class:`~models.augment.AugmentConfig`'s defaults.
    regions : list of str, optional
        The region vocabulary; default: the regions seen in ``fit``.
    seed : int
        Seeds the validation split, crops, augmentations, initialisation and dropout.
    checkpoint_dir : Path, optional
        Where a checkpoint is written each epoch; a fit finding a matching one resumes from it.
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    progress : bool
        Show a tqdm bar over epochs.
    """

    inputs = "clips"
    exposes_encoder = True
    checkpoints = True
    logs_model = "pytorch"
    runtime = ("seed", "regions", "progress")
    family: ClassVar[str] = ""

    def __init__(
        self,
        config: Any = None,
        training: Any = None,
        augment: Any = None,
        regions: Sequence[str] | None = None,
        seed: int = 0,
        checkpoint_dir: Path | None = None,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.config = config
        self.training = training
        self.augment = augment
        self.regions = regions
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir
        self.device = device
        self.progress = progress

    @classmethod
    def search_space(cls, trial: Trial, fixed: Mapping[str, Any]) -> dict[str, Any]:
        """Optimiser settings searched for every spectrogram model (same budget as LightGBM).

        Searched: peak learning rate, weight decay and encoder dropout; everything in ``fixed``
        (a table of the configuration) is kept as given and merged over the sample.
        """
        training = {
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-3, 0.3, log=True),
        }
        config = {"encoder": {"dropout": trial.suggest_float("dropout", 0.0, 0.3)}}
        params: dict[str, Any] = {"training": training, "config": config}
        return _merge_params(params, fixed)

    # -- hooks for subclasses --

    def _default_config(self) -> Any:
        raise NotImplementedError

    def _resolve_config(self, config: Any, y: pd.DataFrame) -> Any:
        raise NotImplementedError

    def _target_columns(self, y: pd.DataFrame) -> list[str]:
        raise NotImplementedError

    def _build_model(self, config: Any) -> nn.Module:
        raise NotImplementedError

    def _after_init(self, model: nn.Module) -> None:
        """Called on a freshly built model before training (MP3 loads MP2's encoder here)."""

    def _format(self, preds: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def _end_epoch(self, epoch: int, record: dict[str, float]) -> None:
        """Called after each epoch's checkpoint is written (a hook for callers and tests)."""

    # -- checks --

    def _clips(self, X: pd.DataFrame, what: str) -> dict[str, Sequence[np.ndarray]]:
        """Each track's clip arrays from ``X["clips"]``, checked."""
        missing = [c for c in (*ID_COLUMNS, CLIPS_COLUMN) if c not in X.columns]
        if missing:
            raise DataError(f"{type(self).__name__}.{what}: X lacks column(s) {missing}")
        first = X.drop_duplicates("track_id")
        spectrograms = dict(zip(first["track_id"], first[CLIPS_COLUMN], strict=True))
        absent = sorted(t for t, clips in spectrograms.items() if clips is None)
        if absent:
            raise DataError(
                f"{type(self).__name__}.{what}: no clip arrays for {len(absent)} "
                f"track(s), e.g. {absent[:5]} (run `benchmark features extract` first)"
            )
        empty = [t for t, clips in spectrograms.items() if len(clips) == 0]
        if empty:
            raise DataError(f"{type(self).__name__}.{what}: track(s) without clips: {empty[:5]}")
        shapes = {
            np.shape(c)[:1] if np.ndim(c) == 2 else np.shape(c)
            for clips in spectrograms.values()
            for c in clips
        }
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise DataError(
                f"{type(self).__name__}.{what}: spectrograms must all be (n_mels, n_frames) "
                f"arrays with the same n_mels; found leading shapes {sorted(shapes)[:5]}"
            )
        return spectrograms

    def _region_indices(self, regions: pd.Series) -> np.ndarray:
        unknown = sorted(set(regions) - set(self.region_index_))
        if unknown:
            raise DataError(
                f"{type(self).__name__}: region(s) {unknown} are not in the model's region list "
                f"{self.regions_}"
            )
        return regions.map(self.region_index_).to_numpy(dtype=np.int64)

    # -- fit --

    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def fit(self, X: pd.DataFrame, y: pd.DataFrame) -> SpectrogramEstimator:
        """Train on the (track, region) rows of ``X`` with targets ``y``.

        Parameters
        ----------
        X : pd.DataFrame
            ``track_id``, ``song_id``, ``region`` and ``clips`` (the track's clip arrays,
            ``(n_mels, n_frames)`` each) per row.
        y : pd.DataFrame
            Target columns (same index as ``X``); NaN marks unobserved curve periods.

        Returns
        -------
        SpectrogramEstimator
            ``self``, with ``model_``, ``history_``, ``encoder_state_dict_`` and the
            standardisation statistics set.
        """
        spectrograms = self._clips(X, "fit")
        if len(X) == 0:
            raise DataError(f"{type(self).__name__}.fit: no training rows")
        if not y.index.equals(X.index):
            raise DataError(f"{type(self).__name__}.fit: y's index differs from X's")
        columns = self._target_columns(y)
        self.target_columns_ = columns
        self.regions_ = list(self.regions) if self.regions is not None else sorted(set(X["region"]))
        self.region_index_ = {r: i for i, r in enumerate(self.regions_)}
        regions = self._region_indices(X["region"])

        targets = y[columns].to_numpy(dtype=np.float64)
        mean = np.nanmean(targets, axis=0)
        std = np.nanstd(targets, axis=0)
        mean = np.where(np.isnan(mean), 0.0, mean)
        std = np.where(~np.isfinite(std) | (std < 1e-8), 1.0, std)
        self.target_mean_, self.target_std_ = mean, std
        z = ((targets - mean) / std).astype(np.float32)  # NaN stays NaN

        first = np.asarray(spectrograms[X["track_id"].iloc[0]][0])
        name = type(self).__name__
        self.config_ = self._resolve_config(
            with_overrides(self._default_config(), self.config, f"{name} config"), y
        )
        self.config_.n_regions = len(self.regions_)
        self.config_.encoder = dataclasses.replace(self.config_.encoder, n_mels=first.shape[0])
        self.training_ = self._training_config()
        self.augment_ = with_overrides(AugmentConfig(), self.augment, f"{name} augment")
        self.input_mean_, self.input_std_ = _input_stats(
            [spectrograms[t] for t in sorted(set(X["track_id"]))]
        )

        device = self._resolve_device()
        torch.manual_seed(self.seed)
        model = self._build_model(self.config_)
        self._after_init(model)
        model.to(device)
        shares = bool(model.shares_encoder)

        # validation songs carved from the training rows (seeded)
        songs = np.array(sorted(set(X["song_id"].astype(str))))
        n_val = round(self.training_.val_fraction * len(songs)) if len(songs) >= 5 else 0
        rng = np.random.default_rng(self.seed)
        val_songs = set(rng.choice(songs, size=n_val, replace=False)) if n_val else set()
        is_val = X["song_id"].astype(str).isin(val_songs).to_numpy()
        self.validation_songs_ = sorted(val_songs)

        def units(mask: np.ndarray) -> list[tuple[str, int, np.ndarray]]:
            tracks = X["track_id"].to_numpy()[mask]
            regs, tz = regions[mask], z[mask]
            if not shares:
                return [(t, int(r), v) for t, r, v in zip(tracks, regs, tz, strict=True)]
            out: dict[str, np.ndarray] = {}
            for t, r, v in zip(tracks, regs, tz, strict=True):
                m = out.setdefault(t, np.full((len(self.regions_), len(columns)), np.nan, "f4"))
                m[r] = v
            return [(t, -1, m) for t, m in sorted(out.items())]

        train_units, val_units = units(~is_val), units(is_val)
        length = self.config_.encoder.n_frames
        train_set = CropDataset(
            train_units, spectrograms, length, self.seed, True, self.augment_.different_clip
        )
        val_set = CropDataset(val_units, spectrograms, length, self.seed, False, False)
        with self._threads():
            self._train(model, train_set, val_set, device, shares, self._fingerprint(X, z))
        return self

    def _training_config(self) -> TrainingConfig:
        return with_overrides(TrainingConfig(), self.training, f"{type(self).__name__} training")

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """Use ``training.cpu_threads`` torch threads inside the block (restored after)."""
        wanted = self._training_config().cpu_threads
        before = torch.get_num_threads()
        if wanted > 0:
            torch.set_num_threads(wanted)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _fingerprint(self, X: pd.DataFrame, z: np.ndarray) -> str:
        h = hashlib.sha256()
        h.update(self.family.encode())
        settings = {
            "config": dataclasses.asdict(self.config_),
            "training": dataclasses.asdict(self.training_),
            "augment": dataclasses.asdict(self.augment_),
            "seed": self.seed,
            "regions": self.regions_,
        }
        h.update(json.dumps(settings, sort_keys=True, default=str).encode())
        h.update("\n".join(X["track_id"].astype(str) + "|" + X["region"].astype(str)).encode())
        h.update(np.nan_to_num(z, nan=-999.0).tobytes())
        return h.hexdigest()

    def _train(
        self,
        model: nn.Module,
        train_set: CropDataset,
        val_set: CropDataset,
        device: torch.device,
        shares: bool,
        fingerprint: str,
    ) -> None:
        tc = self.training_
        cuda = device.type == "cuda"
        steps_per_epoch = math.ceil(len(train_set) / tc.batch_size)
        total = steps_per_epoch * tc.epochs
        warmup = round(tc.warmup_epochs * steps_per_epoch)
        optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_with_warmup(s, warmup, total)
        )
        amp = cuda and tc.amp
        amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

        state: dict[str, Any] = {
            "epoch": -1,
            "history": [],
            "best_val": math.inf,
            "best_epoch": -1,
            "best_state": None,
            "bad_epochs": 0,
            "done": False,
        }
        path = Path(self.checkpoint_dir) / CHECKPOINT_NAME if self.checkpoint_dir else None
        if path is not None and path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("fingerprint") == fingerprint:
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                scaler.load_state_dict(saved["scaler"])
                state = saved["state"]
            else:
                warnings.warn(
                    f"{path}: checkpoint is from another configuration or data; starting afresh",
                    stacklevel=3,
                )

        mean = torch.tensor(self.input_mean_, device=device)
        std = torch.tensor(self.input_std_, device=device)
        workers = min(tc.num_workers, os.cpu_count() or 1) if cuda else 0

        def loader(dataset: CropDataset, order: list[int] | None, batch: int) -> DataLoader:
            return DataLoader(
                dataset,
                batch_size=batch,
                sampler=order,
                num_workers=workers,
                pin_memory=cuda,
                persistent_workers=False,
            )

        def step_inputs(
            batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], gen: torch.Generator | None
        ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
            xb, rb, yb = batch
            if gen is not None:
                xb = augment_batch(xb, self.augment_, gen)
            xb = ((xb.to(device, non_blocking=True) - mean) / std).float()  # (B, M, L)
            region = None if shares else rb.to(device)
            return xb, region, yb.to(device)

        start = state["epoch"] + 1
        bar = tqdm(
            range(start, tc.epochs),
            desc=f"{type(self).__name__} fit",
            unit="epoch",
            disable=not self.progress or state["done"],
        )
        for epoch in bar:
            if state["done"]:
                break
            t0 = time.perf_counter()
            torch.manual_seed(self.seed * 100_003 + epoch)
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            train_set.epoch = epoch
            order = np.random.default_rng([self.seed, epoch]).permutation(len(train_set)).tolist()
            model.train()
            losses = []
            for batch in loader(train_set, order, tc.batch_size):
                xb, region, yb = step_inputs(batch, gen)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    _, loss = model(xb, region, yb)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if tc.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(float(loss.detach()))
            record = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "lr": float(optimizer.param_groups[0]["lr"]),
            }
            val = self._evaluate(model, loader(val_set, None, tc.eval_batch_size), step_inputs)
            score = record["train_loss"] if val is None else val
            if val is not None:
                record["val_loss"] = val
            if score < state["best_val"] - 1e-6:
                state["best_val"], state["best_epoch"], state["bad_epochs"] = score, epoch, 0
                state["best_state"] = {
                    k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                }
            else:
                state["bad_epochs"] += 1
            record["seconds"] = time.perf_counter() - t0
            state["history"].append(record)
            state["epoch"] = epoch
            if val is not None and state["bad_epochs"] >= tc.patience:
                state["done"] = True
            if epoch == tc.epochs - 1:
                state["done"] = True
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k.endswith("loss")})
            if path is not None:
                self._save(path, fingerprint, model, optimizer, scheduler, scaler, state)
            self._end_epoch(epoch, record)

        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
        model.eval()
        self.model_ = model
        self.device_ = device
        self.history_ = list(state["history"])
        self.best_epoch_ = int(state["best_epoch"])
        self.encoder_state_dict_ = {
            k: v.detach().cpu().clone() for k, v in model.encoder.state_dict().items()
        }

    @staticmethod
    def _evaluate(model: nn.Module, loader: DataLoader, step_inputs: Any) -> float | None:
        if len(loader.dataset) == 0:
            return None
        model.eval()
        total = weight = 0.0
        with torch.no_grad():
            for batch in loader:
                xb, region, yb = step_inputs(batch, None)
                _, loss = model(xb, region, yb)
                n = float((~torch.isnan(yb)).sum())
                total += float(loss) * n
                weight += n
        return total / max(weight, 1.0)

    @staticmethod
    def _save(
        path: Path,
        fingerprint: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        state: dict[str, Any],
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "state": state,
            },
            tmp,
        )
        os.replace(tmp, path)

    # -- predict --

    def predict(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predict the target columns for each (track, region) row of ``X``.

        Each track's prediction is the mean over crops covering every one of its clips.

        Parameters
        ----------
        X : pd.DataFrame
            ``track_id``, ``song_id``, ``region`` and ``clips`` per row.

        Returns
        -------
        pd.DataFrame
            Index ``X.index``; the fitted target columns in their original units (plus, for
            MP3, the scalar targets derived from the predicted curve).
        """
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit first")
        spectrograms = self._clips(X, "predict")
        regions = self._region_indices(X["region"])
        tracks = X["track_id"].to_numpy()
        with self._threads(), self._inference():
            if self.model_.shares_encoder:
                unique = sorted(set(tracks))
                means = self._mean_over_crops(spectrograms, [(t, None) for t in unique])
                track_pos = {t: i for i, t in enumerate(unique)}
                rows = np.array([track_pos[t] for t in tracks], dtype=np.int64)
                out = means[rows, regions]  # (N, ...)
            else:
                pairs = sorted(set(zip(tracks, regions.tolist(), strict=True)))
                means = self._mean_over_crops(spectrograms, pairs)  # (U, ...)
                pair_pos = {p: i for i, p in enumerate(pairs)}
                keys = zip(tracks, regions.tolist(), strict=True)
                out = means[np.array([pair_pos[p] for p in keys], dtype=np.int64)]  # (N, ...)
        return self._format(out, X)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.model_.training
        self.model_.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.model_.train(was_training)

    def _mean_over_crops(
        self,
        spectrograms: Mapping[str, Sequence[np.ndarray]],
        items: list[tuple[str, int | None]],
    ) -> np.ndarray:
        """Mean standardised prediction over all covering crops of each item's clips.

        Returns (U, R, ...) for items without a region (every region at once), else (U, ...).
        """
        length = self.config_.encoder.n_frames
        batch = self.training_.eval_batch_size
        device = self.device_
        sums: list[np.ndarray | float] = [0.0] * len(items)
        counts = np.zeros(len(items))

        def crops() -> Iterator[tuple[int, np.ndarray]]:
            for i, (t, _) in enumerate(items):
                for clip in spectrograms[t]:
                    for c in covering_crops(np.asarray(clip), length):
                        yield i, c

        def run(buf: list[tuple[int, np.ndarray]]) -> None:
            idx = [i for i, _ in buf]
            x = torch.from_numpy(np.stack([c for _, c in buf]).astype(np.float32)).to(device)
            x = (x - self.input_mean_) / self.input_std_  # (B, M, L)
            if items[idx[0]][1] is None:
                preds = self.model_.predict_all_regions(x)  # (B, R, K)
            else:
                region = torch.tensor([items[i][1] for i in idx], device=device)
                preds, _ = self.model_(x, region)  # (B, K)
            for i, p in zip(idx, preds.float().cpu().numpy(), strict=True):
                sums[i] = sums[i] + p.astype(np.float64)
                counts[i] += 1

        buf: list[tuple[int, np.ndarray]] = []
        for item in tqdm(
            crops(), desc=f"{type(self).__name__} predict", unit="crop", disable=not self.progress
        ):
            buf.append(item)
            if len(buf) == batch:
                run(buf)
                buf = []
        if buf:
            run(buf)
        return np.stack([s / c for s, c in zip(sums, counts, strict=True)])


class MP2Estimator(SpectrogramEstimator):
    """MP2 behind the estimator contract: predicts ``log1p_sum`` and ``log1p_debut``.

    See ``SpectrogramEstimator`` for the parameters; ``config`` is an ``MP2Config``.
    Fitted attributes: ``model_``, ``config_``, ``history_`` (per-epoch ``train_loss``,
    ``val_loss``, ``lr``, ``seconds``), ``best_epoch_``, ``encoder_state_dict_`` (for MP3),
    ``target_mean_``/``target_std_``, ``input_mean_``/``input_std_``, ``regions_``.
    """

    family: ClassVar[str] = "MP2"

    def _default_config(self) -> MP2Config:
        return MP2Config()

    def _resolve_config(self, config: MP2Config, y: pd.DataFrame) -> MP2Config:
        config = copy.deepcopy(config)
        config.n_targets = len(self._target_columns(y))
        return config

    def _target_columns(self, y: pd.DataFrame) -> list[str]:
        curves = set(curve_columns(y.columns))
        columns = [c for c in y.columns if c not in curves]
        if not columns:
            raise DataError("MP2Estimator.fit: y has no scalar target column")
        empty = [c for c in columns if y[c].isna().all()]
        if empty:
            raise DataError(f"MP2Estimator.fit: y has no value in {empty}")
        return columns  # NaN values (two-part targets on uncharted rows) are masked in the loss

    def _build_model(self, config: MP2Config) -> nn.Module:
        return MP2(config)

    def _format(self, preds: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
        values = preds * self.target_std_ + self.target_mean_  # (N, K)
        return pd.DataFrame(values, index=X.index, columns=self.target_columns_)


class MP3Estimator(SpectrogramEstimator):
    """MP3 behind the estimator contract: predicts the log1p curve ``curve_00..curve_{H-1}``.

    Parameters are those of ``SpectrogramEstimator`` (``config`` is an ``MP3Config``) plus
    ``encoder_state_dict``: MP2's ``encoder_state_dict_``, loaded into the encoder when
    ``config.init_from_mp2`` is on. ``predict`` also returns the scalar targets it was fitted
    with (``log1p_charted_sum``, ``log1p_debut``, ``log1p_floor_sum``), derived from the
    predicted curve by ``features.targets.curve_statistics``,
    the function that builds the real targets, on the curve weighted by MP3's per-period
    on-chart probability (learned from the NaN pattern of the ``missing`` null policy), as
    off-chart periods are left out of the real targets.
    """

    family: ClassVar[str] = "MP3"
    predicts_curve = True
    accepts_encoder = True

    def __init__(
        self,
        config: Any = None,
        training: Any = None,
        augment: Any = None,
        regions: Sequence[str] | None = None,
        seed: int = 0,
        checkpoint_dir: Path | None = None,
        device: str = "auto",
        progress: bool = True,
        encoder_state_dict: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        super().__init__(config, training, augment, regions, seed, checkpoint_dir, device, progress)
        self.encoder_state_dict = encoder_state_dict

    def _default_config(self) -> MP3Config:
        return MP3Config()

    def _resolve_config(self, config: MP3Config, y: pd.DataFrame) -> MP3Config:
        config = copy.deepcopy(config)
        config.horizon = len(self._target_columns(y))
        curves = set(self._target_columns(y))
        self.scalar_targets_ = [c for c in y.columns if c not in curves]
        unknown = sorted(set(self.scalar_targets_) - set(TARGETS) - {CHARTED})
        if unknown:
            raise DataError(f"MP3Estimator.fit: cannot derive {unknown} from a curve")
        if CHARTED in self.scalar_targets_ and config.presence_weight <= 0:
            raise DataError(
                "MP3Estimator.fit: P(charts) needs the on-chart head (presence_weight > 0)"
            )
        return config

    def _target_columns(self, y: pd.DataFrame) -> list[str]:
        columns = curve_columns(y.columns)
        if not columns:
            raise DataError("MP3Estimator.fit: y has no curve_00..curve_{H-1} columns")
        expected = [f"curve_{i:02d}" for i in range(len(columns))]
        if columns != expected:
            raise DataError(
                f"MP3Estimator.fit: curve columns are not {expected[0]}..{expected[-1]}"
            )
        return columns

    def _build_model(self, config: MP3Config) -> nn.Module:
        return MP3(config)

    def _after_init(self, model: nn.Module) -> None:
        self.encoder_from_mp2_ = False
        if self.config_.init_from_mp2 and self.encoder_state_dict is not None:
            try:
                model.load_encoder(dict(self.encoder_state_dict))
            except RuntimeError as err:
                raise ValueError(
                    f"MP3Estimator: MP2's encoder does not fit MP3's encoder config: {err}"
                ) from err
            self.encoder_from_mp2_ = True

    def _format(self, preds: np.ndarray, X: pd.DataFrame) -> pd.DataFrame:
        curve = preds[..., 0] * self.target_std_ + self.target_mean_  # (N, H) log1p
        frame = pd.DataFrame(curve, index=X.index, columns=self.target_columns_)
        streams = np.expm1(np.clip(curve, 0.0, None))  # (N, H)
        charted = None
        stats = {"sum_floor": streams.sum(axis=1)}  # every period counted: the upper bound
        if self.config_.presence_weight > 0:
            # two-part: P(charts) is the on-chart probability of the window's first period,
            # which every charted row has on the chart and no uncharted row has
            stats[CHARTED] = 1.0 / (1.0 + np.exp(-preds[:, 0, 1]))
            # the charted sum counts charted periods only (off-chart ones are NaN under the
            # ``missing`` policy): weight each period by its on-chart probability, so the sum
            # is the expected charted sum; the debut period is charted by definition
            p_on = 1.0 / (1.0 + np.exp(-preds[..., 1]))  # (N, H)
            p_on[:, 0] = 1.0
            streams = streams * p_on
            charted = p_on >= 0.5
        stats.update(curve_statistics(streams, charted))
        for target in self.scalar_targets_:
            if target == CHARTED:
                frame[target] = stats[CHARTED]
            else:
                frame[target] = np.log1p(np.asarray(stats[TARGETS[target]], dtype=np.float64))
        return frame


def _merge_params(sampled: dict[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """``sampled`` with ``fixed`` merged over it (tables merged key by key, recursively)."""
    out = copy.deepcopy(sampled)
    for key, value in fixed.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_params(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out
