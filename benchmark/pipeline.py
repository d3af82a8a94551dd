"""The main job: ``benchmark run`` from raw files to ``results/<dataset>/report.html``.

Stages talk only through tables on disk and each skips work already done:

demo -> ingest charts -> ingest audio -> targets -> extract features -> Feast apply + materialize
-> benchmark (``run_suite``) -> report.

The demo and ingestion stages run only for a demo: the built-in one (``data/demo`` under the
current folder) or one written elsewhere by ``benchmark demo --out DIR``; on a user's own data dir
the pipeline starts from the ingested tables. A stage is skipped when a fingerprint of its inputs
and parameters matches the one recorded in the data dir's pipeline state after its last
successful run and its outputs are intact (a damaged table among them runs the stage again; a
damaged state file runs every stage again, with a warning).

The job holds the data dir's writer lock while it writes tables: through the preparation stages.
Loading the benchmark's rows and inputs (read only; tables are replaced atomically) and the
benchmark itself (tuning, fitting, evaluation, MLflow, the report) run without it, so that several
workers of a shared Optuna study (``--study-name``, ``--optuna-storage``) run at once on one data
dir; what the benchmark still writes there is the deep models' per-epoch checkpoints, in a folder
keyed by code, data and configuration, each written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..features.errors import DataError
from ..features.feature_sets import available_feature_sets, get_feature_set
from ..features.layout import DataLayout, file_checksum, write_json_atomic
from .config import BenchmarkConfig, load_config

DEMO_DIR = Path("data/demo")


@dataclass
class StageTiming:
    """Wall time and outcome of one pipeline stage."""

    stage: str
    seconds: float
    status: str


def _fingerprint(paths: Iterable[Path], params: object = None) -> str:
    """Hash of file names, sizes and modification times under ``paths`` plus ``params``."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for root in paths:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            if f.exists():
                st = f.stat()
                h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}".encode())
            else:
                h.update(f"{f}|missing".encode())
    return h.hexdigest()


def _intact(output: Path) -> bool:
    """Whether a stage's output exists and, for a table, passes its checksum: a damaged output
    makes its stage run again instead of failing a later one."""
    if not output.exists():
        return False
    if output.suffix != ".parquet":
        return True
    try:
        file_checksum(output)
    except (DataError, OSError):
        return False
    return True


class Pipeline:
    """Runs the stages in order, timing each and skipping the ones whose inputs did not change."""

    def __init__(self, layout: DataLayout) -> None:
        self.layout = layout
        self.timings: list[StageTiming] = []

    def _state(self) -> dict[str, str]:
        """The recorded stage fingerprints; a damaged state file is reset with a warning."""
        state_file = self.layout.pipeline_state
        if not state_file.exists():
            return {}
        try:
            state = state_file.read()
        except DataError as exc:
            state = None
            problem = str(exc)
        else:
            problem = f"{state_file.path}: not a table of stage fingerprints"
        if not isinstance(state, dict) or not all(isinstance(v, str) for v in state.values()):
            warnings.warn(f"{problem}; every stage runs again", stacklevel=2)
            return {}
        return state

    def stage(
        self,
        name: str,
        action: Callable[[], object],
        *,
        inputs: Iterable[Path] = (),
        params: object = None,
        outputs: Iterable[Path] = (),
    ) -> object:
        """Run ``action`` unless the fingerprint of ``inputs`` + ``params`` is unchanged and all
        ``outputs`` exist intact (a damaged table among them runs the stage again). Prints one
        line per stage with its time."""
        inputs, outputs = list(inputs), list(outputs)
        key = _fingerprint(inputs, params) if inputs or params is not None else None
        state = self._state()
        if key is not None and state.get(name) == key and all(_intact(p) for p in outputs):
            self.timings.append(StageTiming(name, 0.0, "up to date"))
            print(f"[{name}] up to date, skipped")
            return None
        print(f"[{name}] ...", flush=True)
        start = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - start
        self.timings.append(StageTiming(name, seconds, "ran"))
        print(f"[{name}] done in {seconds:.1f} s", flush=True)
        if key is not None:
            # the key of the inputs the action saw: an input changed meanwhile reruns next time
            state = self._state()
            state[name] = key
            self.layout.pipeline_state.write(state)
        return result


def prepare_demo(layout: DataLayout, pipeline: Pipeline, *, seed: int = 0) -> None:
    """Generate (when absent) and ingest the built-in demo dataset into ``layout``."""
    from ..features.catalog import ingest_audio
    from ..features.charts import ingest_charts
    from ..features.demo import is_demo, make_demo

    raw = layout.raw_dir
    if is_demo(layout.root):
        # a demo of any size generated earlier (benchmark demo --songs ...) is kept as it is
        pipeline.timings.append(StageTiming("demo", 0.0, "up to date"))
        print(f"[demo] {raw} exists, kept")
    else:
        pipeline.stage("demo", lambda: make_demo(layout.root, seed=seed))

    def ingest_demo_charts() -> None:
        # The demo's raw folder is the whole source of these tables: a regenerated demo (another
        # --signal or --popularity-seed) replaces them. Ingesting on top would keep the old
        # streams as "conflicts", since ingestion never overwrites a stored row.
        for table in (layout.streams, layout.catalog, layout.clips, layout.catalog_mapping):
            table.path.unlink(missing_ok=True)
        print(ingest_charts([raw / "charts"], layout.root).summary())

    pipeline.stage(
        "ingest charts",
        ingest_demo_charts,
        inputs=[raw / "charts"],
        outputs=[layout.streams.path, layout.catalog.path],
    )
    pipeline.stage(
        "ingest audio",
        lambda: print(
            ingest_audio(raw / "audio", layout.root, mapping=raw / "catalog.csv").summary()
        ),
        inputs=[raw / "audio", raw / "catalog.csv", layout.streams.path],
        outputs=[layout.clips.path],
    )


def prepare_features(
    config: BenchmarkConfig, layout: DataLayout, pipeline: Pipeline, *, workers: int | None
) -> None:
    """Targets, the suite's audio feature sets and the Feast store for ``config.data_dir``."""
    from ..features import store
    from ..features.extract import extract_features
    from ..features.targets import build_targets

    for table in (layout.streams, layout.catalog):
        if not table.exists():
            raise DataError(
                f"{table.path}: missing; ingest chart files first "
                f"(benchmark ingest charts PATH --data-dir {layout.root})"
            )
    pipeline.stage(
        "targets",
        lambda: build_targets(layout.root, horizon=config.horizon, null_policy=config.null_policy),
        inputs=[layout.streams.path],
        params={"horizon": config.horizon, "null_policy": config.null_policy},
        outputs=[layout.popularity.path],
    )
    sets = [get_feature_set(run.features, layout) for run in config.model_runs() if run.features]
    audio = sorted({fs.name for fs in sets if fs.extractor is not None})
    if audio:
        pipeline.stage(
            "extract features",
            lambda: print(extract_features(layout.root, workers=workers, sets=audio).summary()),
            inputs=[layout.catalog.path, layout.clips.path],
            params={"sets": audio},
            outputs=[get_feature_set(name).table(layout).path for name in audio],
        )
    sources = [store.popularity_source(layout, config.period)]
    sources += [store.view_source(layout, fs) for fs in available_feature_sets(layout)]
    pipeline.stage(
        "feast apply + materialize",
        lambda: (store.apply(layout.root, period=config.period), store.materialize(layout.root)),
        inputs=[layout.features_dir, layout.popularity.path],
        params={"period": config.period},
        outputs=[source.path for source in sources],
    )


def run_pipeline(
    config: BenchmarkConfig, *, demo: bool, workers: int | None = None, no_wait: bool = False
) -> tuple[Any, list[StageTiming], Path]:
    """Run every stage for ``config`` and return the benchmark's results.

    Parameters
    ----------
    config : BenchmarkConfig
        What to run and where (``config.data_dir``).
    demo : bool
        Generate and ingest the built-in demo into ``config.data_dir`` first.
    workers : int, optional
        Feature-extraction processes (default: the number of cores).
    no_wait : bool
        Fail at once when another command is writing the data dir.

    Returns
    -------
    tuple[Results, list[StageTiming], Path]
        The benchmark results, the stage timings, and the HTML report.
    """
    from .data import load_benchmark_data
    from .report import render_pages
    from .runner import run_suite, select_runs

    layout = DataLayout(config.data_dir)
    with layout.writing("benchmark run", no_wait=no_wait):
        pipeline = Pipeline(layout)
        if demo:
            prepare_demo(layout, pipeline, seed=config.seed)
        prepare_features(config, layout, pipeline, workers=workers)

        start = time.perf_counter()
        print(
            f"[benchmark] suite {config.suite!r}, profile {config.profile!r}, "
            f"{config.period} charts ...",
            flush=True,
        )
    # From here on the data dir is only read (the tables are replaced atomically by writers), so
    # the lock is released: the workers of a shared study load their rows side by side instead of
    # one after another.
    data = load_benchmark_data(config, select_runs(config))
    loaded = time.perf_counter() - start
    results = run_suite(config, data)
    seconds = time.perf_counter() - start
    pipeline.timings.append(StageTiming("benchmark", seconds, "ran"))
    # what the benchmark stage spent its time on (parts of the time above)
    pipeline.timings.append(StageTiming("  rows + inputs (Feast)", loaded, "part"))
    for part, part_seconds in results.timings.items():
        pipeline.timings.append(StageTiming(f"  {part}", part_seconds, "part"))
    print(f"[benchmark] done in {seconds:.1f} s", flush=True)

    start = time.perf_counter()
    timings = [asdict(t) for t in pipeline.timings]
    report = render_pages(results, data, timings=timings)
    pipeline.timings.append(StageTiming("report", time.perf_counter() - start, "ran"))
    assert results.results_dir is not None
    write_json_atomic(results.results_dir / "timings.json", [asdict(t) for t in pipeline.timings])
    return results, pipeline.timings, report


def peak_memory() -> str:
    """The peak resident memory of this process, readable (``resource.getrusage``).

    Worker processes (feature extraction) are not counted: a forked child's high-water mark
    starts at its parent's, so theirs would say nothing of their own.

    Returns
    -------
    str
        E.g. ``"1.02 GiB (maximum resident set of this process)"``.
    """
    import resource
    import sys

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    size = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    text = f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"
    return f"{text} (maximum resident set of this process)"


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    """The configuration of ``benchmark run``: preset < ``--config`` file < options given.

    Options left out on the command line are None and change nothing, so a setting of the
    ``--config`` file is never replaced by a command-line default.
    """
    overrides = {
        "suite": args.suite,
        "seed": args.seed,
        "features": args.features,
        "tracking_uri": args.tracking_uri,
        "optuna_storage": getattr(args, "optuna_storage", None),
        "study_name": getattr(args, "study_name", None),
        "results_dir": args.results_dir,
        "period": getattr(args, "period", None),
        "allow_download": getattr(args, "allow_download", None),
    }
    return load_config(args.profile, args.config, data_dir=args.data_dir, **overrides)


def run_from_cli(args: argparse.Namespace) -> int:
    """``benchmark run``: build the config from the arguments and run the pipeline."""
    from ..features.demo import is_demo
    from .report import terminal_table

    config = config_from_args(args)
    if args.data_dir is not None and not config.data_dir.is_dir():
        raise DataError(
            f"{config.data_dir}: data dir not found (for a demo there: benchmark demo --out "
            f"{config.data_dir})"
        )
    # the built-in demo, or a demo that `benchmark demo --out DIR` wrote: its raw files get ingested
    demo = (args.data_dir is None and config.data_dir == DEMO_DIR) or is_demo(config.data_dir)
    config.model_runs()  # fail fast on an unknown suite or model name
    total = time.perf_counter()
    results, timings, report = run_pipeline(
        config, demo=demo, workers=args.workers, no_wait=args.no_wait
    )
    print()
    print(terminal_table(results))
    print()
    width = max(len(t.stage) for t in timings)
    for t in timings:
        print(f"  {t.stage:<{width}}  {t.seconds:7.1f} s  {t.status}")
    print(f"  {'total':<{width}}  {time.perf_counter() - total:7.1f} s")
    print(f"  peak memory: {peak_memory()}")
    print()
    print(f"Report:    {report}")
    print(f"Summary:   {report.parent / 'summary.md'}")
    print(f"MLflow UI: benchmark ui   (or: mlflow ui --backend-store-uri {config.tracking_uri})")
    return 0


def experiments_from_cli(args: argparse.Namespace) -> int:
    """``benchmark experiment NAME``: prepare the data dir like ``benchmark run``, then run."""
    from .experiments import EXPERIMENTS, experiment_names, not_applicable, run_experiment

    if args.list or not args.name:
        for experiment in EXPERIMENTS.values():
            print(f"{experiment.name:<12} {experiment.title}")
            print(f"{'':<12} {experiment.question}")
        return 0
    names = experiment_names() if args.name == "all" else [args.name]
    unknown = [name for name in names if name not in EXPERIMENTS]
    if unknown:
        raise DataError(
            f"unknown experiment {unknown[0]!r}; known: {', '.join(EXPERIMENTS)} or all"
        )
    config = config_from_args(args)
    if args.name == "all":
        for name in list(names):
            reason = not_applicable(name, config)
            if reason:
                print(f"[{name}] skipped: {reason}")
                names.remove(name)
    if not config.data_dir.is_dir():
        raise DataError(
            f"{config.data_dir}: data dir not found; ingest charts and features first "
            "(benchmark ingest charts ..., benchmark ingest features ...)"
        )
    layout = DataLayout(config.data_dir)
    with layout.writing("benchmark experiment", no_wait=args.no_wait):
        prepare_features(config, layout, Pipeline(layout), workers=None)
        for name in names:
            result = run_experiment(name, config)
            print(f"[{name}] {len(result.variant_seconds)} variants in {result.seconds:.0f} s")
            print(f"  {Path(config.results_dir) / config.dataset / 'experiments' / (name + '.md')}")
    print(f"  peak memory: {peak_memory()}")
    return 0
