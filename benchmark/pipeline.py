"""The main job: ``benchmark run`` from raw files to ``results/<dataset>/report.html``.

Stages talk only through tables on disk and each skips work already done:

demo -> ingest charts -> ingest audio -> targets -> extract features -> Feast apply + materialize
-> benchmark (``run_suite``) -> HTML report.

The demo and ingestion stages run only for a demo: the built-in one (``data/demo`` under the current
folder) or one written elsewhere by ``benchmark demo --out DIR``; on a user's own data dir the
pipeline starts from the ingested tables. A stage is skipped when a fingerprint of its inputs and
parameters matches the one recorded in ``DIR/pipeline_state.json`` after its last successful run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..features.errors import DataError
from .config import BenchmarkConfig, load_config

DEMO_DIR = Path("data/demo")
STATE_FILE = "pipeline_state.json"


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


class Pipeline:
    """Runs the stages in order, timing each and skipping the ones whose inputs did not change."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.timings: list[StageTiming] = []
        self._state_path = self.data_dir / STATE_FILE

    def _state(self) -> dict[str, str]:
        if self._state_path.exists():
            return json.loads(self._state_path.read_text())
        return {}

    def _save_state(self, state: dict[str, str]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self._state_path)

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
        ``outputs`` exist. Prints one line per stage with its time."""
        inputs, outputs = list(inputs), list(outputs)
        key = _fingerprint(inputs, params) if inputs or params is not None else None
        state = self._state()
        if key is not None and state.get(name) == key and all(p.exists() for p in outputs):
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
            self._save_state(state)
        return result


def prepare_demo(data_dir: Path, pipeline: Pipeline, *, seed: int = 0) -> None:
    """Generate (when absent) and ingest the built-in demo dataset into ``data_dir``."""
    from ..features.catalog import ingest_audio
    from ..features.charts import ingest_charts
    from ..features.demo import is_demo, make_demo

    raw = data_dir / "raw"
    if is_demo(data_dir):
        # a demo of any size generated earlier (benchmark demo --songs ...) is kept as it is
        pipeline.timings.append(StageTiming("demo", 0.0, "up to date"))
        print(f"[demo] {raw} exists, kept")
    else:
        pipeline.stage("demo", lambda: make_demo(data_dir, seed=seed))
    pipeline.stage(
        "ingest charts",
        lambda: print(ingest_charts([raw / "charts"], data_dir).summary()),
        inputs=[raw / "charts"],
        outputs=[data_dir / "streams.parquet", data_dir / "catalog.parquet"],
    )
    pipeline.stage(
        "ingest audio",
        lambda: print(ingest_audio(raw / "audio", data_dir, mapping=raw / "catalog.csv").summary()),
        inputs=[raw / "audio", raw / "catalog.csv", data_dir / "streams.parquet"],
        outputs=[data_dir / "clips.parquet"],
    )


def prepare_features(config: BenchmarkConfig, pipeline: Pipeline, *, workers: int | None) -> None:
    """Targets, audio features and the Feast store for ``config.data_dir``."""
    from ..features import store
    from ..features.extract import extract_features
    from ..features.targets import build_targets

    data_dir = config.data_dir
    for required in ("streams.parquet", "catalog.parquet"):
        if not (data_dir / required).exists():
            raise DataError(
                f"{data_dir / required}: missing; ingest chart files first "
                f"(benchmark ingest charts PATH --data-dir {data_dir})"
            )
    pipeline.stage(
        "targets",
        lambda: build_targets(data_dir, horizon=config.horizon, null_policy=config.null_policy),
        inputs=[data_dir / "streams.parquet"],
        params={"horizon": config.horizon, "null_policy": config.null_policy},
        outputs=[data_dir / "popularity.parquet"],
    )
    pipeline.stage(
        "extract features",
        lambda: print(extract_features(data_dir, workers=workers).summary()),
        inputs=[data_dir / "catalog.parquet", data_dir / "clips.parquet"],
        outputs=[
            data_dir / "features" / "essentia_lowlevel.parquet",
            data_dir / "features" / "mel.parquet",
        ],
    )
    feature_files = [
        data_dir / "features" / "essentia_lowlevel.parquet",
        data_dir / "features" / "mel.parquet",
        data_dir / "popularity.parquet",
    ]
    pipeline.stage(
        "feast apply + materialize",
        lambda: (store.apply(data_dir, period=config.period), store.materialize(data_dir)),
        inputs=feature_files,
        params={"period": config.period},
    )


def run_pipeline(config: BenchmarkConfig, *, demo: bool, workers: int | None = None):
    """Run every stage for ``config`` and return the benchmark's :class:`Results`.

    Parameters
    ----------
    config : BenchmarkConfig
        What to run and where (``config.data_dir``).
    demo : bool
        Generate and ingest the built-in demo into ``config.data_dir`` first.
    workers : int, optional
        Feature-extraction processes (default: the number of cores).

    Returns
    -------
    tuple[Results, list[StageTiming], Path]
        The benchmark results, the stage timings, and the HTML report.
    """
    from . import tracking
    from .html_report import write_html_report
    from .runner import run_suite

    pipeline = Pipeline(config.data_dir)
    if demo:
        prepare_demo(config.data_dir, pipeline, seed=config.seed)
    prepare_features(config, pipeline, workers=workers)

    start = time.perf_counter()
    print(f"[benchmark] suite {config.suite!r}, profile {config.profile!r} ...", flush=True)
    results = run_suite(config)
    seconds = time.perf_counter() - start
    pipeline.timings.append(StageTiming("benchmark", seconds, "ran"))
    print(f"[benchmark] done in {seconds:.1f} s", flush=True)

    start = time.perf_counter()
    report = write_html_report(
        results.results_dir,
        config.data_dir,
        title=f"Popularity benchmark: {config.dataset}",
        config=config.to_dict(),
        timings=[asdict(t) for t in pipeline.timings],
        commit=tracking.git_commit(),
        best_classical=results.best_classical,
    )
    pipeline.timings.append(StageTiming("report", time.perf_counter() - start, "ran"))
    (results.results_dir / "timings.json").write_text(
        json.dumps([asdict(t) for t in pipeline.timings], indent=1)
    )
    return results, pipeline.timings, report


def run_from_cli(args: argparse.Namespace) -> int:
    """``benchmark run``: build the config from the arguments and run the pipeline."""
    from ..features.demo import is_demo

    data_dir = DEMO_DIR if args.data_dir is None else Path(args.data_dir)
    if args.data_dir is not None and not data_dir.is_dir():
        raise DataError(
            f"{data_dir}: data dir not found (for the demo there: benchmark demo --out {data_dir})"
        )
    # the built-in demo, or a demo that `benchmark demo --out DIR` wrote: its raw files get ingested
    demo = args.data_dir is None or is_demo(data_dir)
    config = load_config(
        args.profile,
        args.config,
        data_dir=data_dir,
        suite=args.suite,
        seed=args.seed,
        tracking_uri=args.tracking_uri,
        optuna_storage=args.optuna_storage,
        results_dir=args.results_dir,
    )
    config.model_names()  # fail fast on an unknown suite or model name
    total = time.perf_counter()
    results, timings, report = run_pipeline(config, demo=demo, workers=args.workers)
    print()
    print(results.table())
    print()
    width = max(len(t.stage) for t in timings)
    for t in timings:
        print(f"  {t.stage:<{width}}  {t.seconds:7.1f} s  {t.status}")
    print(f"  {'total':<{width}}  {time.perf_counter() - total:7.1f} s")
    print()
    print(f"Report:    {report}")
    print(f"Summary:   {results.results_dir / 'summary.md'}")
    print(f"MLflow UI: benchmark ui   (or: mlflow ui --backend-store-uri {config.tracking_uri})")
    return 0
