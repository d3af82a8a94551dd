"""CPU cost of the pretrained encoders: MusiCNN / VGG tags and embeddings, AST front end and forward.

``python -m musicpop.benchmark.perf pretrained [--threads N] [--repeats R] [--no-ast-base]``
times, on a 30 s clip at 16 kHz (the real preview in ``../shared/data/audio`` when present, else
a synthetic one): the musicnn front end; MusiCNN and the VGG on its ten 3 s patches (weights from
the ``musicnn`` wheel, converted once into the cache); the AST fbank of three 10.24 s windows;
an AST-base forward pass over them (random weights: the cost does not depend on them); and one
MP2 training step (forward + backward + AdamW) with MusiCNN frozen (precomputed patch embeddings,
batch 8 clips) and fine-tuned (patches through MusiCNN, batch 2 clips). Prints wall and CPU
seconds per clip (medians of the repeats; CPU time sums all threads of this process) and the
real-time factor (audio seconds per wall second), after the load average, so that a figure says
whether the machine was idle.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ...features.audio import load_audio
from ...features.fbank import ast_windows
from ...features.musicnn import musicnn_input, musicnn_outputs
from ...features.musicnn_weights import load_tagger
from ...models.encoders import MusicnnBackbone, SegmentEncoderConfig
from ...models.mp2 import MP2, MP2Config

CLIP_SECONDS = 30.0
REAL_CLIP = (
    Path(__file__).resolve().parents[3] / "shared" / "data" / "audio" / "vibe_ace_preview_1.mp3"
)


def _clip() -> tuple[np.ndarray, str]:
    if REAL_CLIP.is_file():
        return load_audio(REAL_CLIP, 16_000)[: int(CLIP_SECONDS * 16_000)], REAL_CLIP.name
    t = np.arange(int(CLIP_SECONDS * 16_000)) / 16_000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))
    return x.astype(np.float32), "synthetic 30 s clip"


def _median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU (this process, all threads) seconds of ``fn`` after a warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _mp2_step(fine_tune: bool, batch: int) -> Callable[[], None]:
    torch.manual_seed(0)
    segments = SegmentEncoderConfig.musicnn(freeze_backbone=not fine_tune)
    config = MP2Config(n_regions=12, encoder_type="musicnn", segments=segments)
    backbone = MusicnnBackbone(load_tagger("MSD_musicnn").model) if fine_tune else None
    model = MP2(config, backbone=backbone).train()
    groups = model.encoder.param_groups(1e-4)
    rest = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([*groups, {"params": rest, "lr": 1e-4}])
    x = torch.rand(batch, 10, 187, 96) * 3 if fine_tune else torch.randn(batch, 10, 200)
    targets = torch.randn(batch, 12, 2)

    def step() -> None:
        opt.zero_grad()
        _, loss = model(x, None, targets)
        assert loss is not None
        loss.backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> int:
    """Print the timings; return 0."""
    parser = argparse.ArgumentParser(prog="python -m musicpop.benchmark.perf pretrained")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-ast-base", action="store_true", help="skip the AST-base forward")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    signal, source = _clip()
    seconds = len(signal) / 16_000
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"clip: {source}, {seconds:.1f} s; torch threads: {args.threads}; CPU only")
    print(f"load average before (1, 5, 15 min): {load} on {os.cpu_count()} CPUs")
    rows: list[tuple[str, tuple[float, float]]] = []
    rows.append(("musicnn front end", _median_seconds(lambda: musicnn_input(signal), args.repeats)))
    for model in ("MSD_musicnn", "MSD_vgg"):
        tagger = load_tagger(model)
        rows.append(
            (
                f"{model} end to end (front end + 10 patches)",
                _median_seconds(lambda t=tagger: musicnn_outputs(signal, t), args.repeats),
            )
        )
    rows.append(
        ("AST fbank, 3 windows", _median_seconds(lambda: ast_windows(signal), args.repeats))
    )
    if not args.no_ast_base:
        from transformers import ASTConfig, ASTModel

        ast = ASTModel(ASTConfig()).eval()  # AST-base: 768 wide, 12 layers, 1214 tokens
        windows = torch.from_numpy(ast_windows(signal))

        def forward() -> None:
            with torch.inference_mode():
                ast(input_values=windows)

        rows.append(("AST-base forward, 3 windows", _median_seconds(forward, 1)))
    for fine_tune in (False, True):
        batch = 2 if fine_tune else 8
        label = "fine-tuned" if fine_tune else "frozen, precomputed"
        wall, cpu = _median_seconds(_mp2_step(fine_tune, batch), args.repeats)
        rows.append(
            (
                f"MP2 train step per clip, MusiCNN {label} (batch {batch})",
                (wall / batch, cpu / batch),
            )
        )
    width = max(len(name) for name, _ in rows)
    print(f"{'':{width}}  wall s/clip  CPU s/clip  x real time (wall)")
    for name, (wall, cpu) in rows:
        print(f"{name:{width}}  {wall:11.3f}  {cpu:10.3f}  {seconds / wall:8.0f}")
    return 0
