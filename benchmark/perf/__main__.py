"""Dispatch ``python -m musicpop.benchmark.perf WHAT``."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, help); each module has ``main(argv) -> int``
SCRIPTS = {
    "extraction": (
        "musicpop.benchmark.perf.extraction",
        "decoding and every audio feature set (Essentia, log-mel, MusiCNN, front ends): clips/s",
    ),
    "store": (
        "musicpop.benchmark.perf.store",
        "Feast online latency p50/p99, offline retrieval time",
    ),
    "train": ("musicpop.benchmark.perf.training", "MP2/MP3 training throughput (samples/s)"),
    "scale": (
        "musicpop.benchmark.perf.scale",
        "benchmark run stages on a real chart table replicated 1x, 4x, 16x: time and peak memory",
    ),
    "scaleout": (
        "musicpop.benchmark.perf.scaleout",
        "Dask extraction, the store on PostgreSQL, shared Optuna studies, fit/bootstrap scaling",
    ),
    "pretrained": (
        "musicpop.benchmark.perf.pretrained",
        "MusiCNN/VGG tags and embeddings, AST front end and forward: s per 30 s clip (CPU)",
    ),
}
GROUPS = {"features": ["extraction", "store"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m musicpop.benchmark.perf", description=__doc__)
    parser.add_argument(
        "what",
        choices=[*SCRIPTS, *GROUPS],
        help="; ".join(f"{k}: {v[1]}" for k, v in SCRIPTS.items()),
    )
    args, rest = parser.parse_known_args(argv)
    names = GROUPS.get(args.what, [args.what])
    for name in names:
        module = importlib.import_module(SCRIPTS[name][0])
        rc = module.main(rest)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
