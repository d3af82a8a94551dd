"""The ``benchmark`` command: a thin argparse layer over plain functions.

Every sub-command parses its arguments and calls one function from ``features`` or ``benchmark``;
everything the CLI does can be called from a notebook the same way. Heavy libraries (Feast, MLflow,
Essentia, torch) are imported inside the handlers so that ``benchmark --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..features.errors import DataError

DISTRIBUTION = "music-popularity"
DEFAULT_DATA_DIR = Path("data/demo")
# Where `benchmark run` writes when given no option: relative to the folder it is run from, like
# `mlflow ui`, never inside the installed package.
RUN_OUTPUTS = """\
outputs, relative to the folder you run it from unless given:
  data/demo/          the demo dataset, its features and its Feast store (--data-dir)
  results/<dataset>/  summary.md, summary.csv, plots, report.html (--results-dir)
  mlflow.db           the MLflow tracking store, sqlite:///mlflow.db (--tracking-uri)
  mlartifacts/        the MLflow artifacts, next to a sqlite tracking store

to keep the demo elsewhere: benchmark demo --out DIR, then benchmark run --data-dir DIR"""


def package_version() -> str:
    """The installed version of the ``music-popularity`` distribution (single-sourced in pyproject).

    Returns
    -------
    str
        The version, or ``unknown`` when the code runs without being installed.
    """
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _data_dir_arg(parser: argparse.ArgumentParser, default: Path | None = DEFAULT_DATA_DIR) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help=f"dataset folder holding streams/catalog/popularity tables (default: {default})",
    )


# --- handlers -------------------------------------------------------------------------------


def _cmd_ingest_charts(args: argparse.Namespace) -> int:
    from ..features.charts import ingest_charts

    report = ingest_charts(args.paths, args.data_dir)
    print(report.summary())
    return 0


def _cmd_ingest_audio(args: argparse.Namespace) -> int:
    from ..features.catalog import ingest_audio

    report = ingest_audio(args.folder, args.data_dir, mapping=args.mapping)
    print(report.summary())
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from ..features.targets import build_targets

    table = build_targets(args.data_dir, horizon=args.horizon, null_policy=args.null_policy)
    print(
        f"wrote {args.data_dir / 'popularity.parquet'}: {len(table):,} (track, region, period) rows, "
        f"horizon {args.horizon}, null policy {args.null_policy}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..features.demo import make_demo

    out = make_demo(
        args.out, songs=args.songs, regions=args.regions, seed=args.seed, null=args.null
    )
    print(f"demo dataset written to {out}")
    return 0


def _cmd_features_extract(args: argparse.Namespace) -> int:
    from ..features.extract import extract_features

    report = extract_features(args.data_dir, workers=args.workers)
    print(report.summary())
    return 0


def _cmd_store(args: argparse.Namespace) -> int:
    from ..features import store

    if args.action == "apply":
        store.apply(args.data_dir, period=args.period)
        print(f"feast apply done for {args.data_dir}")
    elif args.action == "materialize":
        store.materialize(args.data_dir)
        print(f"materialized the online store for {args.data_dir}")
    else:
        print(store.info(args.data_dir))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run_from_cli

    return run_from_cli(args)


def _cmd_ui(args: argparse.Namespace) -> int:
    from .tracking import launch_ui

    return launch_ui(args.tracking_uri, port=args.port)


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark",
        description=(
            "Audio-only music popularity prediction. Ingest chart files and audio previews, build "
            "popularity targets, extract Essentia and log-mel features into a Feast store, then "
            "benchmark tuned LightGBM against the MP2/MP3 spectrogram transformers (MLflow + results/). "
            "Start with: benchmark run --suite all"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s ({DISTRIBUTION}) {package_version()}",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_: str, **kw):
        p = sub.add_parser(name, help=help_, description=help_, **kw)
        p.set_defaults(handler=handler)
        return p

    # ingest
    ingest = sub.add_parser("ingest", help="load chart files or audio previews into a data dir")
    ingest_sub = ingest.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = ingest_sub.add_parser(
        "charts",
        help="ingest chart files (CSV or kworb HTML, format detected from content) into streams.parquet",
        description=(
            "Reads files and folders recursively. Each file's format is detected from its content; "
            "unknown or broken files are skipped and reported. Re-ingesting the same files adds nothing."
        ),
    )
    p.add_argument("paths", nargs="+", type=Path, help="chart files or folders")
    _data_dir_arg(p)
    p.set_defaults(handler=_cmd_ingest_charts)
    p = ingest_sub.add_parser(
        "audio",
        help="link audio previews to tracks (file stem = track id, or a mapping CSV)",
        description=(
            "Links audio files under FOLDER to catalog tracks. A file named <track_id>.mp3 (or "
            "<track_id>_<k>.mp3 for further clips) is linked directly; otherwise --mapping gives a CSV "
            "with columns path,track_id (and optionally song_id to override song grouping)."
        ),
    )
    p.add_argument("folder", type=Path, help="folder of audio files (mp3, ogg, wav, flac)")
    p.add_argument("--mapping", type=Path, default=None, help="CSV: path,track_id[,song_id]")
    _data_dir_arg(p)
    p.set_defaults(handler=_cmd_ingest_audio)

    # targets
    p = add(
        "targets",
        _cmd_targets,
        "build popularity.parquet (curves, sum, debut, peak, Lee & Lee rank metrics) from streams.parquet",
    )
    _data_dir_arg(p)
    p.add_argument(
        "--horizon", type=int, default=26, help="periods since debut in each curve (default 26)"
    )
    p.add_argument(
        "--null-policy",
        choices=["missing", "zero", "floor"],
        default="missing",
        help="value of off-chart periods: missing=NaN (masked), zero, floor=region's lowest charted streams",
    )

    # demo
    p = add(
        "demo", _cmd_demo, "generate the built-in synthetic demo dataset (audio + charts + truth)"
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_DATA_DIR, help="output folder (default data/demo)"
    )
    p.add_argument(
        "--songs", type=int, default=None, help="number of songs (default: the demo size)"
    )
    p.add_argument(
        "--regions", type=int, default=None, help="number of regions (default: the demo size)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    p.add_argument(
        "--null",
        action="store_true",
        help="make popularity independent of the audio (a negative control)",
    )

    # features
    feats = sub.add_parser("features", help="audio feature extraction")
    feats_sub = feats.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = feats_sub.add_parser(
        "extract",
        help="extract Essentia low-level features and log-mel spectrograms for every clip",
        description=(
            "Extracts both feature sets for every catalog track with audio in a process pool. Results "
            "are cached by audio hash and extractor parameters; a re-run or a resumed run extracts "
            "only what is missing. Failures go to DIR/extract_errors.parquet."
        ),
    )
    _data_dir_arg(p)
    p.add_argument("--workers", type=int, default=None, help="processes (default: number of cores)")
    p.set_defaults(handler=_cmd_features_extract)

    # store
    p = add(
        "store", _cmd_store, "the Feast feature store: apply definitions, materialize, or show info"
    )
    p.add_argument("action", choices=["apply", "materialize", "info"])
    p.add_argument(
        "--period",
        choices=["weekly", "daily"],
        default=None,
        help="popularity rows the store serves (apply only; default weekly)",
    )
    _data_dir_arg(p)

    # run
    p = add(
        "run",
        _cmd_run,
        "run a benchmark suite: the whole pipeline on the demo (default) or on --data-dir",
        epilog=RUN_OUTPUTS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--suite",
        default="all",
        help=(
            "all, classical (global_mean, region_mean, lightgbm, oracle), deep (mp2, mp3), or a "
            "comma-separated list of model names (default all)"
        ),
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=(
            "an ingested data dir (streams.parquet, catalog.parquet, clips.parquet), or a demo "
            "written by `benchmark demo --out DIR` (ingested on the first run); default: the "
            "built-in demo in ./data/demo, generated and ingested when absent"
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file whose settings override the profile (keys of benchmark.config.BenchmarkConfig)",
    )
    p.add_argument(
        "--profile",
        choices=["quick", "full"],
        default="quick",
        help="quick: minutes on a laptop CPU; full: the numbers to publish (wants a GPU for MP2/MP3)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the split, search and models")
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default sqlite:///mlflow.db, in the current folder)",
    )
    p.add_argument(
        "--optuna-storage", default=None, help="Optuna RDB storage URL (default in memory)"
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=Path("results"),
        help="reports go to DIR/<dataset>/ (default ./results)",
    )
    p.add_argument("--workers", type=int, default=None, help="feature-extraction processes")

    # ui
    p = add("ui", _cmd_ui, "start the MLflow UI on 127.0.0.1 over the project's tracking store")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (DataError, FileNotFoundError) as exc:
        print(f"benchmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted; finished work is kept and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
