"""Spectrogram-transformer blocks, MP2, MP3 and augmentations on tiny synthetic inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from musicpop.models.augment import AugmentConfig, augment_batch
from musicpop.models.blocks import (
    EncoderConfig,
    SpectrogramEncoder,
    cosine_with_warmup,
    masked_mse,
    pairwise_ranking_loss,
    patch_grid,
)
from musicpop.models.mp2 import MP2, MP2Config
from musicpop.models.mp3 import MP3, MP3Config


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a busy 2-core machine two threads spin-wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = EncoderConfig(n_mels=32, n_frames=64, dim=32, n_layers=2, n_heads=2, pos_dim=8)


def _x(batch: int = 3, frames: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 32, frames, generator=torch.Generator().manual_seed(seed))


def test_patch_grid_follows_ast_formula() -> None:
    # AST: 128 mel x 1024 frames, patch 16 stride 10 -> 12 x 101 patches
    assert patch_grid(128, 1024, 16, 10) == (12, 101)
    assert patch_grid(128, 400, 16, 16) == (8, 25)
    with pytest.raises(ValueError, match="smaller than one"):
        patch_grid(128, 10, 16, 16)


@pytest.mark.parametrize("pos_mode", ["add", "concat"])
def test_encoder_token_count_and_variable_length(pos_mode: str) -> None:
    enc = SpectrogramEncoder(dataclasses.replace(TINY, pos_mode=pos_mode))
    h = enc(_x())
    assert h.shape == (3, 1 + 2 * 4, 32)
    # another clip length: positional grid is interpolated
    h = enc(_x(frames=160))
    assert h.shape == (3, 1 + 2 * 10, 32)
    h = enc(_x(frames=16))
    assert h.shape == (3, 1 + 2 * 1, 32)


def test_concat_positions_differ_from_added() -> None:
    torch.manual_seed(0)
    add = SpectrogramEncoder(dataclasses.replace(TINY, pos_mode="add"))
    torch.manual_seed(0)
    cat = SpectrogramEncoder(dataclasses.replace(TINY, pos_mode="concat"))
    assert add.patch_embed.proj.out_channels == 32
    assert cat.patch_embed.proj.out_channels == 32 - 8
    assert cat.pos_embed.weight.shape[1] == 8


@pytest.mark.parametrize("pos_mode", ["add", "concat"])
@pytest.mark.parametrize("conditioning", ["token", "joint"])
def test_mp2_variants_run_forward_and_backward(pos_mode: str, conditioning: str) -> None:
    torch.manual_seed(0)
    cfg = MP2Config(
        n_regions=3,
        conditioning=conditioning,
        ranking_weight=0.5,
        encoder=dataclasses.replace(TINY, pos_mode=pos_mode),
    )
    model = MP2(cfg)
    x = _x(4)
    region = torch.tensor([0, 1, 2, 1])
    targets = torch.randn(4, 2)
    preds, loss = model(x, region, targets)
    assert preds.shape == (4, 2)
    loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None
    all_preds, _ = model(x, None)
    assert all_preds.shape == (4, 3, 2)
    # predicting every region at once agrees with one region at a time
    model.eval()
    with torch.no_grad():
        one, _ = model(x, region)
        every = model.predict_all_regions(x)
    torch.testing.assert_close(every[torch.arange(4), region], one, atol=1e-5, rtol=1e-5)
    assert model.shares_encoder == (conditioning == "joint")


def test_mp2_region_changes_prediction_for_same_audio() -> None:
    torch.manual_seed(0)
    model = MP2(MP2Config(n_regions=2, conditioning="token", encoder=TINY))
    x = _x(1).expand(8, -1, -1)
    region = torch.tensor([0, 1] * 4)
    target = torch.tensor([[1.0, 1.0], [-1.0, -1.0]] * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        _, loss = model(x, region, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        preds, _ = model(x[:2], torch.tensor([0, 1]))
    assert preds[0, 0] > 0.5 and preds[1, 0] < -0.5


def test_mp3_shapes_and_encoder_from_mp2() -> None:
    torch.manual_seed(0)
    mp2 = MP2(MP2Config(n_regions=2, encoder=TINY))
    mp3 = MP3(MP3Config(n_regions=2, horizon=6, encoder=TINY))
    mp3.load_encoder(mp2.encoder.state_dict())
    torch.testing.assert_close(
        mp3.encoder.patch_embed.proj.weight, mp2.encoder.patch_embed.proj.weight
    )
    preds, loss = mp3(_x(3), torch.tensor([0, 1, 0]))
    assert preds.shape == (3, 6, 2) and loss is None  # curve and on-chart logit
    assert mp3(_x(3), None)[0].shape == (3, 2, 6, 2)
    wrong = MP3(MP3Config(n_regions=2, horizon=6, encoder=dataclasses.replace(TINY, dim=16)))
    with pytest.raises(RuntimeError):
        wrong.load_encoder(mp2.encoder.state_dict())


def test_masked_mse_ignores_nan() -> None:
    preds = torch.tensor([[1.0, 5.0, 2.0]], requires_grad=True)
    targets = torch.tensor([[0.0, float("nan"), 4.0]])
    loss = masked_mse(preds, targets)
    assert loss.item() == pytest.approx((1.0 + 4.0) / 2)
    loss.backward()
    assert preds.grad[0, 1] == 0.0 and preds.grad[0, 0] != 0.0
    assert masked_mse(preds, torch.full((1, 3), float("nan"))).item() == 0.0


def test_mp3_loss_is_blind_to_unobserved_periods() -> None:
    torch.manual_seed(0)
    mp3 = MP3(MP3Config(n_regions=1, horizon=5, presence_weight=0.0, encoder=TINY))
    x = _x(2)
    region = torch.zeros(2, dtype=torch.long)
    preds, _ = mp3(x, region)
    targets = preds[..., 0].detach().clone()
    targets[:, 3:] = float("nan")
    _, loss = mp3(x, region, targets)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    targets[:, 0] += 1.0
    assert mp3(x, region, targets)[1].item() == pytest.approx(2 / 6, rel=1e-4)  # 6 observed
    smooth = MP3(
        MP3Config(n_regions=1, horizon=5, smoothness_weight=1.0, presence_weight=0, encoder=TINY)
    )
    assert smooth(x, region, targets)[1] > 0


def test_mp3_presence_term_reads_nan_as_off_chart_only_on_rows_with_data() -> None:
    torch.manual_seed(0)
    mp3 = MP3(MP3Config(n_regions=2, horizon=4, presence_weight=1.0, encoder=TINY))
    x = _x(2)
    preds, _ = mp3(x, None)
    curve = preds[..., 0].detach()
    nan = float("nan")
    targets = curve.clone()
    targets[:, 1] = nan  # region 1: no row for these tracks: no presence target at all
    targets[:, 0, 2:] = nan  # region 0: charted 2 periods, then off the chart
    _, loss = mp3(x, None, targets)
    logit = preds[:, 0, :, 1].detach()
    on = torch.tensor([1.0, 1.0, 0.0, 0.0]).expand_as(logit)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, on)
    assert loss.item() == pytest.approx(bce.item(), rel=1e-4)  # the MSE part is 0


def test_ranking_loss_prefers_correct_order_within_region() -> None:
    y = torch.tensor([[1.0], [2.0], [3.0], [0.0]])
    groups = torch.tensor([0, 0, 0, 1])
    good = pairwise_ranking_loss(y * 3, y, groups)
    bad = pairwise_ranking_loss(-y * 3, y, groups)
    assert good < bad
    # a lone row in its region forms no pair
    lone = pairwise_ranking_loss(torch.zeros(1, 1), torch.ones(1, 1), torch.zeros(1))
    assert lone.item() == 0.0


def test_cosine_schedule() -> None:
    assert cosine_with_warmup(0, 10, 100) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 10, 100) == pytest.approx(1.0)
    assert cosine_with_warmup(55, 10, 100) == pytest.approx(0.5)
    assert cosine_with_warmup(100, 10, 100) == pytest.approx(0.0)


def test_presets_match_the_brief() -> None:
    """The quick sizes are the dataclass defaults; the full preset's tables make AST-base."""
    from musicpop.benchmark.config import load_config
    from musicpop.models.estimators.deep import with_overrides

    full = load_config("full")
    mp2 = with_overrides(MP2Config(), full.model_params("mp2")["config"], "mp2").encoder
    mp3 = with_overrides(MP3Config(), full.model_params("mp3")["config"], "mp3").encoder
    assert (mp2.dim, mp2.n_layers, mp2.n_heads, mp2.stride) == (768, 12, 12, 10)
    assert mp3 == mp2
    quick = MP2Config().encoder
    assert quick.dim < 128 and quick.n_layers <= 3
    # the quick preset keeps the dataclass sizes; it sets only when training stops
    quick_mp2 = load_config("quick").model_params("mp2")
    assert "config" not in quick_mp2 and set(quick_mp2) <= {"training"}


OFF = AugmentConfig(time_mask=0, freq_mask=0, roll=False, different_clip=False)

ALL_AUG = AugmentConfig(
    time_mask=10,
    freq_mask=4,
    roll=True,
    gain=1.0,
    pitch_shift=2.5,
    timbre_tilt=1.0,
    timbre_eq=0.5,
)


@pytest.mark.parametrize(
    "cfg",
    [
        replace(OFF, time_mask=10),
        replace(OFF, freq_mask=4),
        replace(OFF, roll=True),
        replace(OFF, gain=1.0),
        replace(OFF, pitch_shift=2.5),
        replace(OFF, timbre_tilt=1.0),
        replace(OFF, timbre_eq=0.5),
        ALL_AUG,
    ],
)
def test_augmentations_keep_shape_change_data_and_are_seeded(cfg: AugmentConfig) -> None:
    x = _x(4, frames=50)
    a = augment_batch(x.clone(), cfg, torch.Generator().manual_seed(1))
    b = augment_batch(x.clone(), cfg, torch.Generator().manual_seed(1))
    c = augment_batch(x.clone(), cfg, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, x)
    assert not torch.equal(a, c)


def test_augmentations_off_is_identity_and_roll_keeps_values() -> None:
    x = _x(2, frames=20)
    torch.testing.assert_close(augment_batch(x, OFF, torch.Generator()), x)
    rolled = augment_batch(x, replace(OFF, roll=True), torch.Generator().manual_seed(0))
    torch.testing.assert_close(rolled.sort(dim=2).values, x.sort(dim=2).values)
    gained = augment_batch(x, replace(OFF, gain=2.0), torch.Generator().manual_seed(0))
    offset = (gained - x).flatten(1)
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-6)
    assert offset.abs().max() <= 2.0
    with pytest.raises(ValueError, match="n_mels"):
        augment_batch(x[0], AugmentConfig(), torch.Generator())


def test_pitch_shift_moves_energy_along_mel_axis() -> None:
    x = torch.zeros(1, 32, 8)
    x[:, 10] = 5.0
    bins = torch.arange(32, dtype=torch.float32)
    centres = []
    for seed in range(5):
        y = augment_batch(x, replace(OFF, pitch_shift=3.0), torch.Generator().manual_seed(seed))
        column = y[0, :, 0]
        centres.append(float((bins * column).sum() / column.sum()))
        assert column.sum().item() == pytest.approx(5.0, rel=1e-5)  # energy moved, not lost
    assert all(abs(c - 10) <= 3 for c in centres)
    assert max(abs(c - 10) for c in centres) > 0.5
