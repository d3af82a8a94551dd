"""Feature-extraction speed of every audio feature set, for 1 and 2 worker processes.

Stages: decoding, Essentia low-level, log-mel, MSD MusiCNN (tags, embedding and patch embeddings,
one forward pass: the ``musicnn`` and ``musicnn_patches`` sets), the MusiCNN front end
(``musicnn_input``) and the AST front end (``ast_fbank``).

``python -m musicpop.benchmark.perf extraction [--audio DIR] [--clips N] [--workers 1 2]``

Runs on N generated 30 s stereo 44.1 kHz MP3 clips (a chord pad, a bass line and a drum pattern),
or on the audio files in ``--audio DIR``. For every stage and worker count it prints clips/s and
the real-time factor (seconds of audio processed per second), overall and per worker.

Method: each stage runs in a ``spawn`` process pool that is warmed up first (imports done, the
MusiCNN weights loaded once per worker as extraction does). A task times only its stage inside
the worker (the feature stages get an already decoded signal), repeating it ``--repeat`` times;
a stage's throughput is the number of clips divided by the busiest worker's total stage time, so
worker start-up and the decoding a stage excludes are not counted but contention between the
concurrent workers is. The ``end-to-end`` row is plain wall time for what ``extract_features``
runs per clip for the default feature sets (decode once, every default set's extractor).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import numpy as np
import soundfile as sf

from ...features import fbank
from ...features.audio import load_audio, load_audio_rates
from ...features.feature_sets import FEATURE_SETS
from ...features.lowlevel import LOWLEVEL_SAMPLE_RATE, extract_lowlevel
from ...features.mel import MelConfig, log_mel
from ...features.pretrained import musicnn_compute, musicnn_input_compute, process_tagger

AUDIO_SUFFIXES = {".mp3", ".ogg", ".wav", ".flac"}
FAST_STAGES = ("log-mel", "musicnn front end", "AST fbank windows")
"""Stages repeated 10x as often (they take milliseconds)."""
MEL_RATE = MelConfig().sample_rate


def _monoloader(path: str, rate: int) -> np.ndarray:
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    return es.MonoLoader(filename=path, sampleRate=rate)()


def _stage_decode_ours_both(path: str, _: object) -> object:
    return load_audio_rates(path, [LOWLEVEL_SAMPLE_RATE, MEL_RATE])


def _stage_decode_monoloader_both(path: str, _: object) -> object:
    return _monoloader(path, LOWLEVEL_SAMPLE_RATE), _monoloader(path, MEL_RATE)


def _stage_decode_ours_16k(path: str, _: object) -> object:
    return load_audio(path, MEL_RATE)


def _stage_decode_monoloader_16k(path: str, _: object) -> object:
    return _monoloader(path, MEL_RATE)


def _stage_lowlevel(_: str, signals: tuple[np.ndarray, np.ndarray]) -> object:
    return extract_lowlevel(signals[0])


def _stage_mel(_: str, signals: tuple[np.ndarray, np.ndarray]) -> object:
    return log_mel(signals[1], MelConfig()).astype(np.float16)


def _stage_musicnn(_: str, signals: tuple[np.ndarray, np.ndarray]) -> object:
    return musicnn_compute(signals[1])


def _stage_musicnn_input(_: str, signals: tuple[np.ndarray, np.ndarray]) -> object:
    return musicnn_input_compute(signals[1])


def _stage_ast_fbank(_: str, signals: tuple[np.ndarray, np.ndarray]) -> object:
    return fbank.compute(signals[1])


def _stage_music_extractor(path: str, _: object) -> object:
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    return es.MusicExtractor()(path)


# name -> (function, needs decoded signals, description)
STAGES: dict[str, tuple[Callable[[str, object], object], bool, str]] = {
    "decode ours 44.1k+16k": (_stage_decode_ours_both, False, "soundfile + soxr, decoded once"),
    "decode MonoLoader 44.1k+16k": (_stage_decode_monoloader_both, False, "two MonoLoader calls"),
    "decode ours 16k": (_stage_decode_ours_16k, False, "soundfile + soxr"),
    "decode MonoLoader 16k": (_stage_decode_monoloader_16k, False, "essentia MonoLoader"),
    "essentia low-level": (_stage_lowlevel, True, "essentia.standard.Extractor, 44.1 kHz"),
    "log-mel": (_stage_mel, True, "AST front end to float16"),
    "musicnn (tags, embeddings)": (_stage_musicnn, True, "sets musicnn + musicnn_patches"),
    "musicnn front end": (_stage_musicnn_input, True, "set musicnn_input (float16)"),
    "AST fbank windows": (_stage_ast_fbank, True, "set ast_fbank (float16)"),
    "MusicExtractor (ref)": (_stage_music_extractor, False, "decodes the file itself"),
}


def _warm(_: int) -> int:
    import essentia.standard  # noqa: F401

    extract_lowlevel(np.random.default_rng(0).normal(0, 0.1, 44_100).astype(np.float32))
    process_tagger()  # extraction loads the weights once per worker, before its first clip
    time.sleep(0.2)  # keep this worker busy so that every worker gets a warm-up task
    return os.getpid()


def _timed(stage: str, path: str, repeat: int) -> tuple[int, float]:
    """Run one stage on one clip ``repeat`` times in a worker; return (pid, seconds per run)."""
    function, needs_signal, _ = STAGES[stage]
    signals = load_audio_rates(path, [LOWLEVEL_SAMPLE_RATE, MEL_RATE]) if needs_signal else None
    start = time.perf_counter()
    for _ in range(repeat):
        function(path, signals)
    return os.getpid(), (time.perf_counter() - start) / repeat


def _end_to_end(path: str) -> int:
    from ...features.extract import MAX_CLIP_SECONDS, MIN_CLIP_SECONDS, extract_clip

    defaults = {fs.extractor.name: fs.extractor for fs in FEATURE_SETS.values() if fs.default}
    results = extract_clip(path, list(defaults.values()), MIN_CLIP_SECONDS, MAX_CLIP_SECONDS)
    for result in results.values():
        if "error_type" in result:
            raise RuntimeError(result["message"])
    return os.getpid()


def _pool(workers: int) -> futures.ProcessPoolExecutor:
    pool = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(_warm, range(workers)))
    return pool


def make_clips(folder: Path, count: int, seconds: float = 30.0) -> list[Path]:
    """Write ``count`` synthetic stereo 44.1 kHz MP3 clips (pad, bass, drums) into ``folder``.

    Parameters
    ----------
    folder : Path
        Output folder.
    count : int
        Number of clips.
    seconds : float, default 30.0
        Duration of each clip.

    Returns
    -------
    list of Path
        The written files.
    """
    rate = 44_100
    t = np.arange(int(seconds * rate)) / rate
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        bpm = 90 + 10 * i
        root = 110.0 * 2 ** (i / 12)
        pad = sum(0.08 * np.sin(2 * np.pi * root * r * t) for r in (1, 1.25, 1.5, 2))
        bass = 0.15 * np.sin(2 * np.pi * root / 2 * t) * (np.sin(2 * np.pi * bpm / 60 * t) > 0)
        drums = np.zeros_like(t)
        for beat in np.arange(0, seconds, 60 / bpm):
            j = int(beat * rate)
            hit = rng.normal(0, 0.3, 2_000) * np.exp(-np.arange(2_000) / 300)
            drums[j : j + 2_000] += hit[: len(drums) - j]
        mono = pad + bass + drums
        stereo = np.stack([mono, np.roll(mono, 200)], axis=1).astype(np.float32)
        path = folder / f"clip_{i:02d}.mp3"
        sf.write(path, stereo, rate, format="MP3")
        paths.append(path)
    return paths


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def run(
    paths: list[Path], worker_counts: list[int], repeat: int, stages: list[str]
) -> list[dict[str, object]]:
    """Measure every stage for every worker count; return one row per (stage, workers).

    Parameters
    ----------
    paths : list of Path
        Audio clips.
    worker_counts : list of int
        Pool sizes to measure.
    repeat : int
        Runs of a stage per clip and task (the :data:`FAST_STAGES` get 10x as many).
    stages : list of str
        Names from :data:`STAGES`.

    Returns
    -------
    list of dict
        ``stage``, ``workers``, ``clips_per_s``, ``rtf`` (overall), ``rtf_per_worker``.
    """
    seconds = [sf.info(str(p)).duration for p in paths]
    audio_seconds = float(sum(seconds))
    rows: list[dict[str, object]] = []
    for workers in worker_counts:
        with _pool(workers) as pool:
            for stage in stages:
                reps = repeat * 10 if stage in FAST_STAGES else repeat
                busy: dict[int, float] = defaultdict(float)
                for pid, per_run in pool.map(
                    _timed, [stage] * len(paths), map(str, paths), [reps] * len(paths)
                ):
                    busy[pid] += per_run
                elapsed = max(busy.values())
                rows.append(_row(stage, workers, len(paths), audio_seconds, elapsed))
                print(_format(rows[-1]), flush=True)
            start = time.perf_counter()
            list(pool.map(_end_to_end, map(str, paths)))
            rows.append(
                _row("end-to-end", workers, len(paths), audio_seconds, time.perf_counter() - start)
            )
            print(_format(rows[-1]), flush=True)
    return rows


def _row(
    stage: str, workers: int, clips: int, audio_seconds: float, elapsed: float
) -> dict[str, object]:
    return {
        "stage": stage,
        "workers": workers,
        "clips_per_s": clips / elapsed,
        "rtf": audio_seconds / elapsed,
        "rtf_per_worker": audio_seconds / elapsed / workers,
    }


def _format(row: dict[str, object]) -> str:
    return (
        f"{row['stage']:<30} {row['workers']:>7} {row['clips_per_s']:>10.2f} "
        f"{row['rtf']:>10.0f}x {row['rtf_per_worker']:>10.0f}x"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the extraction figures; see the module docstring.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (without the program name).

    Returns
    -------
    int
        Exit status (0).
    """
    parser = argparse.ArgumentParser(
        prog="python -m musicpop.benchmark.perf extraction", description=__doc__
    )
    parser.add_argument(
        "--audio", type=Path, default=None, help="folder of clips (default: generate)"
    )
    parser.add_argument("--clips", type=int, default=8, help="generated clips (default 8)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=2, help="runs per clip and stage (default 2)")
    parser.add_argument(
        "--music-extractor", action="store_true", help="also time essentia's MusicExtractor (slow)"
    )
    args = parser.parse_args(argv)
    stages = [s for s in STAGES if args.music_extractor or s != "MusicExtractor (ref)"]
    with tempfile.TemporaryDirectory(prefix="perf-extraction-") as tmp:
        if args.audio is not None:
            paths = _audio_files(args.audio)
            if not paths:
                parser.error(f"no MP3/OGG/WAV/FLAC files in {args.audio}")
            source = f"{len(paths)} files from {args.audio}"
        else:
            paths = make_clips(Path(tmp), args.clips)
            source = f"{len(paths)} generated 30 s stereo 44.1 kHz MP3 clips"
        total = sum(sf.info(str(p)).duration for p in paths)
        print(f"extraction speed on {source} ({total:.0f} s of audio); {os.cpu_count()} CPU cores")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        print(f"{'stage':<30} {'workers':>7} {'clips/s':>10} {'x real':>11} {'x real/wkr':>11}")
        run(paths, args.workers, args.repeat, stages)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
