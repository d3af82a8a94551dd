"""Training throughput of MP2 and MP3: samples/s for one forward + backward + AdamW step.

``python -m musicpop.benchmark.perf train [--sizes quick,full] [--devices cpu,cuda] [--threads N]``
times synthetic log-mel batches (128 mel bins, the preset's crop length) at the model sizes of
the ``quick`` and ``full`` presets, on CPU and, when one is present, on CUDA (bfloat16 autocast there, as in
training). On CPU the full size runs a few steps at batch 2, which is enough for a rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import torch
from torch import nn

from ...models.estimators.deep import with_overrides
from ...models.mp2 import MP2, MP2Config
from ...models.mp3 import MP3, MP3Config
from ..config import load_config

N_REGIONS = 12
HORIZON = 26


@dataclasses.dataclass
class Case:
    """One model variant at one size."""

    name: str
    size: str
    build: Callable[[], nn.Module]


def cases(sizes: list[str]) -> list[Case]:
    """The variants timed: MP2 (joint, token, concatenated positions) and MP3, per size."""
    out = []
    for size in sizes:
        preset = load_config(size)
        mp2 = with_overrides(MP2Config(), preset.model_params("mp2").get("config"), "mp2")
        mp3 = with_overrides(MP3Config(), preset.model_params("mp3").get("config"), "mp3")
        mp2.n_regions = mp3.n_regions = N_REGIONS
        mp3.horizon = HORIZON
        token = dataclasses.replace(mp2, conditioning="token")
        concat = dataclasses.replace(
            mp2, encoder=dataclasses.replace(mp2.encoder, pos_mode="concat")
        )
        out.append(Case("MP2 joint", size, lambda c=mp2: MP2(c)))
        if size == "quick":  # the variants differ little in cost at full size; keep CPU time low
            out.append(Case("MP2 token", size, lambda c=token: MP2(c)))
            out.append(Case("MP2 joint, concat pos", size, lambda c=concat: MP2(c)))
        out.append(Case("MP3", size, lambda c=mp3: MP3(c)))
    return out


def time_case(case: Case, device: torch.device, batch: int, steps: int) -> dict[str, float]:
    """Seconds per training step and samples/s for ``steps`` timed steps after one warm-up.

    Parameters
    ----------
    case : Case
        The model to time.
    device : torch.device
        Where to run.
    batch, steps : int
        Batch size and number of timed steps.

    Returns
    -------
    dict
        ``params`` (millions), ``tokens`` (encoder sequence length), ``s_per_step``,
        ``samples_per_s``.
    """
    torch.manual_seed(0)
    model = case.build().to(device).train()
    enc = model.config.encoder
    x = torch.randn(batch, enc.n_mels, enc.n_frames, device=device)
    if isinstance(model, MP3):
        targets = torch.randn(batch, N_REGIONS, HORIZON, device=device)
    else:
        targets = torch.randn(batch, N_REGIONS, 2, device=device)
    region = None
    if isinstance(model, MP2) and not model.shares_encoder:
        region = torch.randint(0, N_REGIONS, (batch,), device=device)
        targets = targets[:, 0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cuda = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            _, loss = model(x, region, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if cuda:
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - t0) / steps
    with torch.no_grad():
        tokens = model.encoder(x[:1]).shape[1]
    return {
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
        "tokens": tokens,
        "s_per_step": seconds,
        "samples_per_s": batch / seconds,
    }


def main(argv: list[str]) -> int:
    """Print the training-throughput table; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m musicpop.benchmark.perf train", description=__doc__
    )
    parser.add_argument("--sizes", default="quick,full", help="comma-separated: quick, full")
    parser.add_argument(
        "--devices",
        default=None,
        help="comma-separated: cpu, cuda (default cpu, + cuda if present)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default per size)")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in ("quick", "full")]
    if bad:
        parser.error(f"unknown size(s) {bad}; choose from quick, full")
    devices = (
        args.devices.split(",")
        if args.devices
        else ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    )
    before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        _print_table(devices, sizes, args.steps)
    finally:
        torch.set_num_threads(before)
    return 0


def _print_table(devices: list[str], sizes: list[str], steps_wanted: int | None) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s)")
    header = f"{'model':<24}{'size':<7}{'device':<7}{'batch':>6}{'params(M)':>11}{'tokens':>8}"
    print(header + f"{'s/step':>10}{'samples/s':>11}")
    for name in devices:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        for case in cases(sizes):
            on_cpu = device.type == "cpu"
            batch = (16 if case.size == "quick" else 2) if on_cpu else 32
            steps = steps_wanted or (5 if case.size == "quick" else 3 if on_cpu else 20)
            r = time_case(case, device, batch, steps)
            print(
                f"{case.name:<24}{case.size:<7}{device.type:<7}{batch:>6}{r['params']:>11.2f}"
                f"{r['tokens']:>8}{r['s_per_step']:>10.3f}{r['samples_per_s']:>11.3g}",
                flush=True,
            )
