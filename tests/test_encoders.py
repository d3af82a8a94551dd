"""Pretrained encoders for MP2/MP3: AST checkpoint loading, segment encoders, frozen vs fine-tuned."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ASTConfig, ASTModel

from musicpop.features.ast_checkpoint import load_ast, state_sha256
from musicpop.features.errors import DataError
from musicpop.features.fbank import ast_windows
from musicpop.features.musicnn_weights import load_tagger
from musicpop.models.blocks import SpectrogramEncoder
from musicpop.models.encoders import (
    ASTBackbone,
    MusicnnBackbone,
    SegmentEncoder,
    SegmentEncoderConfig,
    build_encoder,
)
from musicpop.models.mp2 import MP2, MP2Config
from musicpop.models.mp3 import MP3, MP3Config
from musicpop.models.musicnn import Musicnn, MusicnnConfig


def _tiny_ast_config() -> ASTConfig:
    """A tiny AST with AST's input (1024 x 128) and 16 x 16 patches without overlap (512)."""
    return ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        frequency_stride=16,
        time_stride=16,
    )


@pytest.fixture(scope="module")
def tiny_ast_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-ast")
    torch.manual_seed(0)
    ASTModel(_tiny_ast_config()).save_pretrained(folder)
    return folder


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Fail any outgoing connection and record its address."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


# --- AST checkpoints -----------------------------------------------------------------------


def test_load_ast_from_a_saved_folder(tiny_ast_dir: Path, no_network: list[object]) -> None:
    model = load_ast(tiny_ast_dir)
    assert isinstance(model, ASTModel) and not model.training
    assert model.config.hidden_size == 32
    reference = ASTModel.from_pretrained(tiny_ast_dir)
    assert state_sha256(model) == state_sha256(reference)
    assert no_network == []


def test_fbank_windows_through_ast(tiny_ast_dir: Path) -> None:
    t = np.arange(30 * 16_000) / 16_000
    clip = (0.4 * np.sin(2 * np.pi * 330.0 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(
        np.float32
    )
    windows = torch.from_numpy(ast_windows(clip))  # (3, 1024, 128)
    backbone = ASTBackbone(load_ast(tiny_ast_dir))
    with torch.no_grad():
        first = backbone(windows)
        second = backbone(windows)
        hidden = backbone.ast(input_values=windows).last_hidden_state
    assert first.shape == (3, 32)
    assert hidden.shape == (3, 2 + 8 * 64, 32)  # [CLS], distillation, 8 x 64 patches
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # eval mode: deterministic
    assert not torch.allclose(first[0], first[1])  # windows differ


@pytest.mark.timeout(30)
def test_uncached_hub_id_is_a_data_error_without_network(
    tmp_path: Path, no_network: list[object]
) -> None:
    with pytest.raises(DataError) as err:
        load_ast("MIT/ast-finetuned-audioset-10-10-0.4593", cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert "MIT/ast-finetuned-audioset-10-10-0.4593" in message and "--allow-download" in message
    assert no_network == []


def test_folder_without_weights_is_a_data_error(tmp_path: Path) -> None:
    _tiny_ast_config().save_pretrained(tmp_path)  # config.json only
    with pytest.raises(DataError, match="not a loadable AST checkpoint"):
        load_ast(tmp_path)
    file = tmp_path / "config.json"
    with pytest.raises(DataError, match="must be a folder or a hub id"):
        load_ast(file)


# --- segment encoders ----------------------------------------------------------------------


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_segment_encoder_on_precomputed_embeddings() -> None:
    torch.manual_seed(0)
    enc = SegmentEncoder(SegmentEncoderConfig.musicnn(dim=32, n_heads=2))
    x = torch.randn(4, 10, 200)
    extra = torch.randn(4, 1, 32)
    h = enc(x, extra)
    assert h.shape == (4, 1 + 1 + 10, 32)
    assert enc(torch.randn(4, 7, 200)).shape == (4, 1 + 7, 32)  # positions interpolated
    h[:, 0].sum().backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(enc))
    assert enc.backbone_frozen and len(enc.param_groups(1e-3)) == 1


@pytest.fixture(scope="module")
def pretrained_musicnn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return load_tagger("MSD_musicnn", tmp_path_factory.mktemp("cache")).model.state_dict()


def _musicnn_backbone(state: dict[str, torch.Tensor]) -> MusicnnBackbone:
    net = Musicnn(MusicnnConfig())
    net.load_state_dict(state)
    return MusicnnBackbone(net)


def test_frozen_musicnn_backbone_gets_no_gradient(pretrained_musicnn: dict) -> None:
    torch.manual_seed(0)
    backbone = _musicnn_backbone(pretrained_musicnn)
    enc = SegmentEncoder(SegmentEncoderConfig.musicnn(dim=32, n_heads=2), backbone)
    enc.train()
    assert not backbone.training  # frozen: eval mode whatever the encoder's mode
    patches = torch.rand(2, 3, 64, 96) * 3  # MusiCNN reads any length; 64 frames are cheaper
    h = enc(patches)
    assert h.shape == (2, 1 + 3, 32)
    h.pow(2).mean().backward()
    assert all(g is None for g in _grads(backbone))
    assert all(not p.requires_grad for p in backbone.parameters())
    own = [p for n, p in enc.named_parameters() if not n.startswith("backbone.")]
    assert all(p.grad is not None for p in own)
    groups = enc.param_groups(1e-3)
    assert len(groups) == 1 and not {id(p) for p in backbone.parameters()} & {
        id(p) for p in groups[0]["params"]
    }
    # the frozen backbone gives the pretrained embeddings
    with torch.no_grad():
        expected = backbone.musicnn(patches.reshape(6, 64, 96)).embedding.view(2, 3, 200)
    torch.testing.assert_close(enc.segment_embeddings(patches), expected)


def test_fine_tuned_musicnn_backbone_trains_at_a_lower_rate(pretrained_musicnn: dict) -> None:
    torch.manual_seed(0)
    backbone = _musicnn_backbone(pretrained_musicnn)
    config = SegmentEncoderConfig.musicnn(dim=32, n_heads=2, freeze_backbone=False)
    enc = SegmentEncoder(config, backbone)
    enc.train()
    assert backbone.training
    bn = backbone.musicnn.dense_bn
    assert not bn.training  # batch norms keep the pretrained statistics
    running = bn.running_mean.clone()
    enc(torch.rand(2, 2, 64, 96) * 3).pow(2).mean().backward()  # 64-frame patches: cheaper
    torch.testing.assert_close(bn.running_mean, running, rtol=0, atol=0)
    tuned = [p for p in backbone.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in tuned)
    assert sum(float(p.grad.abs().sum()) for p in tuned) > 0
    assert backbone.musicnn.classifier.weight.grad is None  # the tag layer is not trained
    groups = enc.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in tuned}


@pytest.mark.parametrize("freeze", [True, False])
def test_ast_backbone_frozen_or_fine_tuned(tiny_ast_dir: Path, freeze: bool) -> None:
    torch.manual_seed(0)
    backbone = ASTBackbone(load_ast(tiny_ast_dir))
    config = SegmentEncoderConfig.ast(hidden_size=32, dim=32, n_heads=2, freeze_backbone=freeze)
    enc = SegmentEncoder(config, backbone)
    enc.train()
    h = enc(torch.randn(2, 3, 1024, 128), torch.randn(2, 1, 32))
    assert h.shape == (2, 1 + 1 + 3, 32)
    (h[:, 0] * torch.randn(32)).sum().backward()  # (a plain sum of a layer norm has no gradient)
    grads = _grads(backbone)
    if freeze:
        assert all(g is None for g in grads)
    else:
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def test_build_encoder_checks_its_backbone(pretrained_musicnn: dict, tiny_ast_dir: Path) -> None:
    from musicpop.models.blocks import EncoderConfig

    scratch, segments = EncoderConfig(), SegmentEncoderConfig()
    assert isinstance(build_encoder("scratch", scratch, segments), SpectrogramEncoder)
    with pytest.raises(ValueError, match="takes no backbone"):
        build_encoder("scratch", scratch, segments, _musicnn_backbone(pretrained_musicnn))
    with pytest.raises(ValueError, match="needs a ASTBackbone"):
        build_encoder("ast", scratch, segments, _musicnn_backbone(pretrained_musicnn))
    with pytest.raises(ValueError, match="segment_dim is 200"):
        build_encoder("ast", scratch, segments, ASTBackbone(load_ast(tiny_ast_dir)))
    with pytest.raises(ValueError, match="encoder_type must be one of"):
        build_encoder("vgg", scratch, segments)


# --- MP2 / MP3 with a pretrained encoder ---------------------------------------------------


@pytest.mark.parametrize("conditioning", ["token", "joint"])
def test_mp2_on_musicnn_patch_embeddings(conditioning: str) -> None:
    torch.manual_seed(0)
    config = MP2Config(
        n_regions=3,
        conditioning=conditioning,
        encoder_type="musicnn",
        segments=SegmentEncoderConfig.musicnn(dim=32, n_heads=2),
    )
    model = MP2(config)
    assert isinstance(model.encoder, SegmentEncoder)
    x = torch.randn(4, 10, 200)
    region = torch.tensor([0, 1, 2, 1])
    targets = torch.randn(4, 2)
    preds, loss = model(x, region, targets)
    assert preds.shape == (4, 2) and loss is not None
    loss.backward()
    assert model.predict_all_regions(x).shape == (4, 3, 2)


def test_mp2_fine_tunes_musicnn_then_mp3_starts_from_it(pretrained_musicnn: dict) -> None:
    torch.manual_seed(0)
    segments = SegmentEncoderConfig.musicnn(dim=32, n_heads=2, freeze_backbone=False)
    mp2 = MP2(
        MP2Config(n_regions=2, conditioning="token", encoder_type="musicnn", segments=segments),
        backbone=_musicnn_backbone(pretrained_musicnn),
    )
    patches = torch.rand(2, 2, 64, 96) * 3
    _, loss = mp2(patches, torch.tensor([0, 1]), torch.randn(2, 2))
    assert loss is not None
    loss.backward()
    assert mp2.encoder.backbone is not None
    tuned = [p for p in mp2.encoder.backbone.parameters() if p.requires_grad]
    assert tuned and all(p.grad is not None for p in tuned)
    mp3 = MP3(
        MP3Config(n_regions=2, horizon=5, encoder_type="musicnn", segments=segments),
        backbone=_musicnn_backbone(pretrained_musicnn),
    )
    mp3.load_encoder(mp2.encoder.state_dict())
    mp2.eval()
    mp3.eval()
    with torch.no_grad():
        torch.testing.assert_close(mp3.encoder(patches), mp2.encoder(patches))
        preds, _ = mp3(patches, torch.tensor([0, 1]))
    assert preds.shape == (2, 5, 2)


def test_scratch_remains_the_default() -> None:
    assert MP2Config().encoder_type == MP3Config().encoder_type == "scratch"
    torch.manual_seed(0)
    model = MP2(MP2Config(n_regions=2))
    assert isinstance(model.encoder, SpectrogramEncoder)
    preds, _ = model(torch.randn(2, 128, 400), torch.tensor([0, 1]))
    assert preds.shape == (2, 2)
