"""The ``benchmark`` command: a thin argparse layer over plain functions.

Every sub-command parses its arguments and calls one function from ``features`` or ``benchmark``;
everything the CLI does can be called from a notebook the same way. Commands that write a data
dir hold its writer lock (a second writer waits, or fails at once with ``--no-wait``). Heavy
libraries (Feast, MLflow, Essentia, torch) are imported inside the handlers so that
``benchmark --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..features.errors import DataError
from ..features.layout import DataLayout

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


def _writer_args(parser: argparse.ArgumentParser) -> None:
    _data_dir_arg(parser)
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once if another benchmark command is writing the data dir (default: wait)",
    )


# --- handlers -------------------------------------------------------------------------------


def _cmd_ingest_charts(args: argparse.Namespace) -> int:
    from ..features.charts import ingest_charts

    with DataLayout(args.data_dir).writing("ingest charts", no_wait=args.no_wait):
        report = ingest_charts(args.paths, args.data_dir)
    print(report.summary())
    return 0


def _cmd_ingest_audio(args: argparse.Namespace) -> int:
    from ..features.catalog import ingest_audio

    with DataLayout(args.data_dir).writing("ingest audio", no_wait=args.no_wait):
        report = ingest_audio(args.folder, args.data_dir, mapping=args.mapping)
    print(report.summary())
    return 0


def _cmd_ingest_features(args: argparse.Namespace) -> int:
    from ..features.user_tables import ingest_feature_table

    exclude = args.exclude_columns.split(",") if args.exclude_columns else []
    with DataLayout(args.data_dir).writing("ingest features", no_wait=args.no_wait):
        report = ingest_feature_table(
            args.file,
            args.data_dir,
            args.name,
            id_column=args.id_column,
            exclude_columns=exclude,
            description=args.description,
            skip_bad_rows=args.skip_bad_rows,
        )
    print(report.summary())
    return 0


def _cmd_targets(args: argparse.Namespace) -> int:
    from ..features.targets import build_targets

    layout = DataLayout(args.data_dir)
    with layout.writing("targets", no_wait=args.no_wait):
        table = build_targets(
            args.data_dir,
            horizon=args.horizon,
            null_policy=args.null_policy,
            burn_in_days=args.burn_in_days,
            reentry_gap_days=args.reentry_gap_days,
            uncharted=args.uncharted,
        )
    print(
        f"wrote {layout.popularity.path}: {len(table):,} (track, region, period) rows, "
        f"horizon {args.horizon}, null policy {args.null_policy}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..features.demo import make_demo

    with DataLayout(args.out).writing("demo", no_wait=args.no_wait):
        out = make_demo(
            args.out,
            songs=args.songs,
            regions=args.regions,
            seed=args.seed,
            null=args.null,
            signal=args.signal,
            popularity_seed=args.popularity_seed,
        )
    print(f"demo dataset written to {out}")
    return 0


def _cmd_features_extract(args: argparse.Namespace) -> int:
    from ..features.extract import MAX_CLIP_SECONDS, extract_features

    sets = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else None
    with DataLayout(args.data_dir).writing("features extract", no_wait=args.no_wait):
        report = extract_features(
            args.data_dir,
            workers=args.workers,
            scheduler=args.scheduler,
            sets=sets,
            max_seconds=args.max_seconds or MAX_CLIP_SECONDS,
        )
    print(report.summary())
    return 0


def _cmd_features_list(args: argparse.Namespace) -> int:
    from ..features.feature_sets import feature_sets

    layout = DataLayout(args.data_dir)
    for fs in feature_sets(layout).values():
        present = "present" if fs.table(layout).exists() else "not built"
        print(f"{fs.name:<24} {fs.kind:<8} {fs.source:<6} {fs.service:<28} {present}")
        print(f"{'':<24} {fs.description}")
    return 0


def _cmd_store(args: argparse.Namespace) -> int:
    from ..features import store

    layout = DataLayout(args.data_dir)
    if args.action == "apply":
        with layout.writing("store apply", no_wait=args.no_wait):
            store.apply(args.data_dir, period=args.period)
        print(f"feast apply done for {args.data_dir}")
    elif args.action == "materialize":
        with layout.writing("store materialize", no_wait=args.no_wait):
            store.materialize(args.data_dir)
        print(f"materialized the online store for {args.data_dir}")
    else:
        print(store.info(args.data_dir))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run_from_cli

    return run_from_cli(args)


def _cmd_control(args: argparse.Namespace) -> int:
    from .config import load_config
    from .control import run_control, write_control

    config = load_config(
        args.profile,
        args.config,
        data_dir=args.data_dir,
        features=args.features,
        tracking_uri=args.tracking_uri,
        results_dir=args.results_dir,
    )
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    result = run_control(config, seeds, model=args.model, pairs=pairs)
    out = Path(config.results_dir) / config.dataset / "control.md"
    write_control(result, out, f"Negative control on {config.dataset}: {args.model}")
    print(result.rates().to_string(index=False))
    print(f"\nReport: {out}")
    return 0


def _cmd_experiment(args: argparse.Namespace) -> int:
    from .pipeline import experiments_from_cli

    return experiments_from_cli(args)


def _cmd_ui(args: argparse.Namespace) -> int:
    from .tracking import launch_ui

    return launch_ui(args.tracking_uri, port=args.port)


# --- collect: kworb chart pages and 30 s previews (features/collect) --------------------------


def _cmd_collect_charts(args: argparse.Namespace) -> int:
    from ..features.collect.kworb import collect_kworb

    if args.source != "kworb":
        raise DataError(f"collect charts: unknown source {args.source!r} (known: kworb)")
    report = collect_kworb(
        args.data_dir,
        args.regions.split(","),
        period=args.period,
        tracks=args.tracks,
        fetch_date=args.fetch_date,
        base_url=args.base_url,
        max_requests=args.max_requests,
        rate=args.rate,
        contact=args.contact,
        timeout=args.timeout,
        ingest=not args.no_ingest,
    )
    print(report.summary())
    return 0 if report.ok else 1


def _cmd_collect_previews(args: argparse.Namespace) -> int:
    from ..features.collect.previews import collect_previews

    report = collect_previews(
        args.data_dir,
        args.source,
        audio_dir=args.audio_dir,
        limit=args.limit,
        market=args.market,
        retry=tuple(s.strip() for s in args.retry.split(",") if s.strip()),
        base_url=args.base_url,
        auth_url=args.auth_url,
        max_requests=args.max_requests,
        rate=args.rate,
        contact=args.contact,
        timeout=args.timeout,
    )
    print(report.summary())
    return 1 if report.failed else 0


def _add_collect_commands(sub: argparse._SubParsersAction) -> None:
    """``benchmark collect charts|previews`` (see docs/collect.md)."""
    import os
    from datetime import date

    collect = sub.add_parser(
        "collect",
        help="fetch real data politely: kworb chart pages, 30 s previews (research use only)",
    )
    collect_sub = collect.add_subparsers(dest="what", metavar="WHAT", required=True)

    def polite(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir", type=Path, required=True, help="dataset folder (created when missing)"
        )
        p.add_argument("--max-requests", type=int, default=None, help="request budget of this run")
        p.add_argument("--rate", type=float, default=None, help="requests/s to the service")
        p.add_argument("--base-url", default=None, help="the service's base URL (mirrors, tests)")
        p.add_argument(
            "--contact",
            default=os.environ.get("MUSICPOP_CONTACT"),
            help="e-mail or URL added to the User-Agent (default: $MUSICPOP_CONTACT)",
        )
        p.add_argument("--timeout", type=float, default=30.0, help="seconds per connect/read")

    p = collect_sub.add_parser(
        "charts",
        help="fetch kworb.net country (and track) pages into DIR/raw/kworb/<date>/, then ingest",
        description=(
            "Fetches https://kworb.net/spotify/country/<cc>_<period>.html for each region (and, "
            "with --tracks, the track page of every listed track) into DIR/raw/kworb/<fetch "
            "date>/, never re-fetching a saved page, reads each page with the chart readers "
            "(reporting any page they cannot read, by file and reason), and ingests the readable "
            "ones. Exit status 1 when a page failed or could not be read."
        ),
    )
    p.add_argument("--source", default="kworb", help="chart source (kworb)")
    p.add_argument(
        "--regions", required=True, help="comma-separated region codes, e.g. us,gb,global"
    )
    p.add_argument("--period", choices=["daily", "weekly"], default="daily")
    p.add_argument("--tracks", action="store_true", help="also fetch the listed tracks' pages")
    p.add_argument(
        "--fetch-date",
        type=date.fromisoformat,
        default=None,
        help="fetch folder date YYYY-MM-DD (default today, UTC; an earlier one resumes it)",
    )
    p.add_argument("--no-ingest", action="store_true", help="fetch and check only")
    polite(p)
    p.set_defaults(handler=_cmd_collect_charts)

    p = collect_sub.add_parser(
        "previews",
        help="find and download 30 s previews for catalog tracks without a clip",
        description=(
            "For each catalog track without a clip, looks the track up (by ISRC when known, "
            "else by artist and title), accepts a match only on score, version markers and "
            "duration, downloads the preview into the audio folder as <track_id>.<ext>, and "
            "records every decision in DIR/collect/previews.parquet. A re-run skips everything "
            "decided. Then: benchmark ingest audio AUDIO_DIR --data-dir DIR. Previews are for "
            "research use only (docs/collect.md)."
        ),
    )
    p.add_argument(
        "--source", required=True, help="deezer, itunes or spotify (spotify: ISRCs, durations)"
    )
    p.add_argument("--limit", type=int, default=None, help="attempt at most N tracks")
    p.add_argument("--market", default=None, help="country code for iTunes and Spotify")
    p.add_argument(
        "--audio-dir", type=Path, default=None, help="where clips go (default DIR/raw/audio)"
    )
    p.add_argument(
        "--retry",
        default="",
        help="reopen decided tracks: comma-separated not_found,ambiguous,no_preview,preview_failed",
    )
    p.add_argument(
        "--auth-url", default=None, help="spotify accounts base URL (default: --base-url)"
    )
    polite(p)
    p.set_defaults(handler=_cmd_collect_previews)


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``benchmark`` argument parser (every sub-command and its options)."""
    parser = argparse.ArgumentParser(
        prog="benchmark",
        description=(
            "Audio-only music popularity prediction. Ingest chart files and audio previews, build "
            "popularity targets, extract audio feature sets into a Feast store, then benchmark "
            "tuned LightGBM against the MP2/MP3 spectrogram transformers (MLflow + results/). "
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
    ingest = sub.add_parser(
        "ingest", help="load chart files, audio previews or your own feature table into a data dir"
    )
    ingest_sub = ingest.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = ingest_sub.add_parser(
        "charts",
        help="ingest chart files (CSV or kworb HTML, format detected from content) into the streams table",
        description=(
            "Reads files and folders recursively. Each file's format is detected from its content; "
            "unknown or broken files are skipped and reported. Re-ingesting the same files adds nothing."
        ),
    )
    p.add_argument("paths", nargs="+", type=Path, help="chart files or folders")
    _writer_args(p)
    p.set_defaults(handler=_cmd_ingest_charts)
    p = ingest_sub.add_parser(
        "audio",
        help="link audio previews to tracks (file stem = track id, or a mapping CSV)",
        description=(
            "Links audio files under FOLDER to catalog tracks. A file named <track_id>.mp3 (or "
            "<track_id>_<k>.mp3 for further clips) is linked directly; otherwise --mapping gives a CSV "
            "with columns path,track_id (and optionally song_id to override song grouping). Every "
            "audio file, found in FOLDER or named by the mapping, must resolve (after following "
            "symlinks) inside FOLDER: one that resolves outside it (a symlink to a system file, "
            "../, an absolute path elsewhere) is rejected, never linked, and listed with the reason."
        ),
    )
    p.add_argument("folder", type=Path, help="folder of audio files (mp3, ogg, wav, flac)")
    p.add_argument(
        "--mapping",
        type=Path,
        default=None,
        help="CSV: path,track_id[,song_id]; a relative path is taken from the CSV's folder, else "
        "from FOLDER, and must resolve inside FOLDER",
    )
    _writer_args(p)
    p.set_defaults(handler=_cmd_ingest_audio)
    p = ingest_sub.add_parser(
        "features",
        help="store your own per-track table (descriptors, embeddings) as a feature set",
        description=(
            "Checks a CSV or Parquet table keyed by track id with numeric columns (ids, types, "
            "repeated tracks, missing values; every bad line is reported by number) and stores it "
            "as feature set NAME of the data dir, versioned: the same file again changes nothing, "
            "a changed file becomes the next version. Then `benchmark store apply` registers its "
            "Feast view and FeatureService NAME_v<version>, and any tabular model can read it: "
            "benchmark run --features NAME, or lightgbm[NAME]. See docs/own-features.md."
        ),
    )
    p.add_argument("file", type=Path, help="the table: .csv, .tsv or .parquet, one row per track")
    p.add_argument(
        "--name", required=True, help="feature-set name (lower case, digits, underscores)"
    )
    p.add_argument(
        "--id-column",
        default="track_id",
        help="column of Spotify track ids, bare or as URL/URI (default track_id)",
    )
    p.add_argument(
        "--exclude-columns",
        default=None,
        help="comma-separated columns not to store (text columns, metadata)",
    )
    p.add_argument(
        "--description", default=None, help="one line shown by Feast and `features list`"
    )
    p.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="leave bad lines out (reported and recorded) instead of failing",
    )
    _writer_args(p)
    p.set_defaults(handler=_cmd_ingest_features)

    _add_collect_commands(sub)

    # targets
    p = add(
        "targets",
        _cmd_targets,
        "build the popularity table (curves, sum, debut, peak, Lee & Lee rank metrics) from the "
        "streams table",
    )
    _writer_args(p)
    p.add_argument(
        "--horizon", type=int, default=26, help="periods since debut in each curve (default 26)"
    )
    p.add_argument(
        "--null-policy",
        choices=["missing", "zero", "floor"],
        default="missing",
        help="value of off-chart periods: missing=NaN (masked), zero, floor=region's lowest charted streams",
    )
    p.add_argument(
        "--burn-in-days",
        type=int,
        default=28,
        help="a debut this close to the start of a region's data is left-censored (default 28)",
    )
    p.add_argument(
        "--reentry-gap-days",
        type=int,
        default=365,
        help="a debut this long after the track first charted anywhere, or after its release, "
        "is a re-entry (default 365)",
    )
    p.add_argument(
        "--uncharted",
        action="store_true",
        help="also write rows (charted = false) for catalog tracks with audio that never charted "
        "in a region: the two-part targets, see docs/targets.md",
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
        help="make popularity independent of everything audible (a negative control)",
    )
    p.add_argument(
        "--signal",
        default="realistic",
        help="strength of the audio signal: realistic (calibrated to real charts), strong (a "
        "pipeline check: models must find it), or the share of within-region variance the "
        "audio explains, in [0, 1] (default realistic)",
    )
    p.add_argument(
        "--popularity-seed",
        type=int,
        default=None,
        help="a new draw of popularity for the same songs and audio (default: --seed)",
    )
    p.add_argument(
        "--no-wait", action="store_true", help="fail at once if another command writes --out"
    )

    # features
    feats = sub.add_parser("features", help="audio feature sets: extract, list")
    feats_sub = feats.add_subparsers(dest="what", metavar="WHAT", required=True)
    p = feats_sub.add_parser(
        "extract",
        help="extract the audio feature sets of the registry for every clip",
        description=(
            "Extracts the audio feature sets (default: every default set of the registry; see "
            "`benchmark features list`) for every catalog track with audio, in a process pool. "
            "Results are cached by audio hash and extractor parameters; a re-run or a resumed run "
            "extracts only what is missing, and a damaged cache entry is recomputed. Failures go "
            "to the data dir's extraction-errors table."
        ),
    )
    _writer_args(p)
    p.add_argument("--workers", type=int, default=None, help="processes (default: number of cores)")
    p.add_argument(
        "--scheduler",
        default=None,
        help="'processes' (a local pool) or dask://HOST:PORT (a Dask cluster; its workers run "
        "--nthreads 1 and see the audio paths); default: $BENCHMARK_EXTRACT_SCHEDULER, else "
        "processes",
    )
    p.add_argument(
        "--sets", default=None, help="comma-separated feature-set names (default: the default sets)"
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="clips longer than this are cut to their start (default 60); the summary counts them",
    )
    p.set_defaults(handler=_cmd_features_extract)
    p = feats_sub.add_parser(
        "list", help="list the feature sets of the registry and whether the data dir has them"
    )
    _data_dir_arg(p)
    p.set_defaults(handler=_cmd_features_list)

    # store
    p = add(
        "store",
        _cmd_store,
        "the Feast feature store: apply definitions (rebuilds a damaged registry), materialize "
        "(rebuilds a damaged online store), or show info",
    )
    p.add_argument("action", choices=["apply", "materialize", "info"])
    p.add_argument(
        "--period",
        choices=["weekly", "daily"],
        default=None,
        help="popularity rows the store serves (apply only; default weekly)",
    )
    _writer_args(p)

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
        default=None,
        help=(
            "all, classical (global_mean, region_mean, lightgbm, oracle), deep (mp2, mp3), "
            "pretrained (lightgbm[musicnn], mp2_musicnn, mp3_musicnn), or a comma-separated list "
            "of models (e.g. mp2_ast, mp2_musicnn_finetune); a model may name a feature set: "
            "lightgbm[musicnn] (default: the config's suite, else all)"
        ),
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=(
            "an ingested data dir (streams, catalog and clips tables), or a demo written by "
            "`benchmark demo --out DIR` (ingested on the first run); default: the built-in "
            "demo in ./data/demo, generated and ingested when absent"
        ),
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file whose settings override the preset (keys of BenchmarkConfig, [models.NAME])",
    )
    p.add_argument(
        "--profile",
        choices=["quick", "full"],
        default=None,
        help="preset: quick (minutes on a laptop CPU) or full (the numbers to publish; wants a GPU "
        "for MP2/MP3); default: the config's, else quick",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the split, search and models")
    p.add_argument(
        "--period",
        choices=["weekly", "daily"],
        default=None,
        help="chart period of the targets and the store (default: the config's, else weekly)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="feature set of every tabular model that does not name one (e.g. spotify_audio_features)",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default sqlite:///mlflow.db, in the current folder)",
    )
    p.add_argument(
        "--optuna-storage", default=None, help="Optuna RDB storage URL (default in memory)"
    )
    p.add_argument(
        "--study-name",
        default=None,
        help="prefix of the Optuna study names; workers with the same name and storage share them",
    )
    p.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="reports go to DIR/<dataset>/ (default ./results)",
    )
    p.add_argument("--workers", type=int, default=None, help="feature-extraction processes")
    p.add_argument(
        "--allow-download",
        action="store_true",
        default=None,
        help=(
            "let models download pretrained weights they do not find locally (mp2_ast's AST "
            "checkpoint from the Hugging Face hub); without it nothing is downloaded"
        ),
    )
    p.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once if another benchmark command is writing the data dir",
    )

    # control
    p = add(
        "control",
        _cmd_control,
        "negative control: the false-win rate of the paired test on pairs of equal expected skill",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a data dir the pipeline has run on (default data/demo)",
    )
    p.add_argument("--seeds", type=int, default=20, help="comparisons per pair kind (default 20)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds run from here (default 0)")
    p.add_argument(
        "--model", default="lightgbm", help="a tabular model, e.g. lightgbm or lightgbm[musicnn]"
    )
    p.add_argument("--features", default=None, help="the model's feature set (default its own)")
    p.add_argument(
        "--pairs",
        default="permuted",
        help="permuted (two song-permuted copies of the features: valid on any data) and/or null "
        "(real against permuted features: equal skill only on a null demo), comma-separated",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML overriding the preset")
    p.add_argument("--profile", choices=["quick", "full"], default=None)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--results-dir", type=Path, default=None)

    # experiment
    p = add(
        "experiment",
        _cmd_experiment,
        "run one of the design's questions as an experiment (regions, null-policy, grouping, "
        "horizon, season, deep-design) on a data dir; writes "
        "results/<dataset>/experiments/NAME.md",
        epilog="see docs/experiments.md; `benchmark experiment --list` names them",
    )
    p.add_argument(
        "name",
        nargs="?",
        default=None,
        help="experiment name, or all (skips those the suite cannot run, with the reason)",
    )
    p.add_argument("--list", action="store_true", help="list the experiments and their questions")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a data dir with charts and a feature set (default: ./data/demo)",
    )
    p.add_argument("--config", type=Path, default=None, help="TOML settings over the preset")
    p.add_argument("--profile", choices=["quick", "full"], default=None, help="preset (quick)")
    p.add_argument(
        "--suite", default=None, help="models, as for `benchmark run` (default: the config's)"
    )
    p.add_argument("--features", default=None, help="feature set of the tabular models")
    p.add_argument("--seed", type=int, default=None, help="seed of splits, search and bootstrap")
    p.add_argument("--period", choices=["weekly", "daily"], default=None, help="chart period")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    p.add_argument("--results-dir", type=Path, default=None, help="pages go to DIR/<dataset>/")
    p.add_argument(
        "--no-wait", action="store_true", help="fail at once if the data dir is being written"
    )

    # ui
    p = add("ui", _cmd_ui, "start the MLflow UI on 127.0.0.1 over the project's tracking store")
    p.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    p.add_argument("--port", type=int, default=5000)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``benchmark`` command."""
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
