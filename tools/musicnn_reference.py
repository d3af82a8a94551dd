"""Reference MusiCNN / VGG outputs from the ORIGINAL ``musicnn`` code running on TensorFlow.

Run in a throwaway environment outside the repository, never in the project's venv. Python 3.11,
TensorFlow 2.15 (the last release whose Keras 2 still has the ``tf.compat.v1.layers`` the
original graph is built with) and NumPy 1.26 (value-based casting, under which musicnn's
``log10(10000 * float16 + 1)`` is computed in float32, as it was written for)::

    python3.11 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install "tensorflow-cpu==2.15.1" "numpy<2" "librosa>=0.10" soundfile
    /tmp/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfenv/bin/python tools/musicnn_reference.py --out tests/fixtures/musicnn \\
        ../shared/data/audio/Kevin_MacLeod_-_Vibe_Ace.ogg \\
        ../shared/data/audio/vibe_ace_preview_1.mp3 ../shared/data/audio/vibe_ace_preview_2.mp3

(measured with tensorflow-cpu 2.15.1, numpy 1.26.4, librosa 0.11.0, soundfile 0.13). Nothing of
musicnn is patched: the front end is ``musicnn.extractor.batch_data`` (librosa load at 16 kHz,
mel spectrogram, float16, ``log10(10000 x + 1)``, 187-frame patches without overlap), the
network ``musicnn.models.define_model`` restored from the wheel's checkpoint with
``tf.compat.v1.train.Saver`` as ``musicnn.extractor.extractor`` does it, in inference mode.

For each audio file, plus a synthetic clip (:func:`synthetic_clip`, written to a 16 kHz float WAV
so that ``librosa.load`` reads it back bit for bit), ``<out>/<stem>.npz`` holds, for each model
``M`` of ``MSD_musicnn MTT_musicnn MSD_vgg MTT_vgg``:

- ``M/e2e_tags`` ``(P, 50)`` and ``M/e2e_embedding`` ``(P, D)``: from the audio file, end to end
  (the embedding is MusiCNN's ``penultimate``, 200-d, or the VGG's flattened ``pool5``, 256-d);
- ``M/net_tags`` and ``M/net_embedding``: the network alone, fed ``input``;

and ``input`` ``(Q, 187, 96)`` float16: the first ``Q`` (at most 4) patches of musicnn's front end
rounded to float16 for storage, so that a port can be fed exactly the same numbers.

``tests/test_musicnn.py`` compares the PyTorch port with these arrays; to check the port on your
own audio, run this script on your files and then ``tools/musicnn_compare.py`` in the project's
environment on the output folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_vgg", "MTT_vgg")
PATCH_FRAMES = 187
NET_PATCHES = 4
SYNTHETIC_NAME = "synthetic"


def synthetic_clip(seconds: float = 10.0, sample_rate: int = 16_000) -> np.ndarray:
    """A deterministic synthetic music-like clip, float32 in [-1, 1] (no random generator).

    A bass line and a chord of harmonic tones changing every half second, a hi-hat-like burst
    every quarter second (a decaying 6 kHz-ish tone with a deterministic chaotic carrier), and a
    slow chirp; pure closed-form NumPy, so the project's tests regenerate it exactly.
    """
    n = int(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    step = np.floor(t / 0.5).astype(np.int64)
    bass_notes = np.array([0, 0, 5, 7, 3, 3, 10, 7])
    f_bass = 55.0 * 2.0 ** (bass_notes[step % 8] / 12.0)
    bass = sum(np.sin(2 * np.pi * k * f_bass * t) / k for k in range(1, 6))
    chord = sum(
        np.sin(2 * np.pi * 220.0 * 2.0 ** ((bass_notes[step % 8] + iv) / 12.0) * t)
        for iv in (12, 16, 19)
    )
    beat = np.exp(-40.0 * np.mod(t, 0.25))
    carrier = np.sin(2 * np.pi * 5_800.0 * t + 30.0 * np.sin(2 * np.pi * 733.0 * t))
    chirp = np.sin(2 * np.pi * (300.0 * t + 40.0 * t**2))
    x = 0.35 * bass + 0.12 * chord + 0.25 * beat * carrier + 0.08 * chirp
    return (0.9 * x / np.max(np.abs(x))).astype(np.float32)


def _run_network(
    model: str, batches: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tags (sigmoid) and embeddings of the original graph for each named input batch."""
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, PATCH_FRAMES, 96])
        is_training = tf.compat.v1.placeholder(tf.bool)
        outputs = models.define_model(x, is_training, model, 50)
        tags = tf.nn.sigmoid(outputs[0])
        if "vgg" in model:
            embedding = tf.compat.v1.layers.flatten(outputs[5])  # pool5, (B, T*M*C)
        else:
            embedding = outputs[8]  # penultimate
    import musicnn

    prefix = os.path.dirname(musicnn.__file__) + "/" + model + "/"
    results = {}
    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().restore(sess, prefix)
        for name, batch in batches.items():
            t, e = sess.run([tags, embedding], feed_dict={x: batch, is_training: False})
            results[name] = (t.astype(np.float32), e.astype(np.float32))
    return results


def main(argv: list[str] | None = None) -> None:
    """Write ``<out>/<stem>.npz`` for each audio file and the synthetic clip."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("audio", nargs="*", type=Path, help="audio files (any librosa reads)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)

    import soundfile as sf
    from musicnn.extractor import batch_data

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / f"{SYNTHETIC_NAME}.wav"
        sf.write(synthetic, synthetic_clip(), 16_000, subtype="FLOAT")
        clips = {SYNTHETIC_NAME: synthetic, **{p.stem: p for p in args.audio}}
        fronts = {
            name: batch_data(str(path), PATCH_FRAMES, PATCH_FRAMES)[0]
            for name, path in clips.items()
        }
    inputs = {name: b[:NET_PATCHES].astype(np.float16) for name, b in fronts.items()}
    arrays: dict[str, dict[str, np.ndarray]] = {name: {"input": inputs[name]} for name in clips}
    for model in MODELS:
        feeds = {f"e2e/{n}": b for n, b in fronts.items()}
        feeds |= {f"net/{n}": b.astype(np.float32) for n, b in inputs.items()}
        for key, (tags, emb) in _run_network(model, feeds).items():
            kind, name = key.split("/", 1)
            arrays[name][f"{model}/{kind}_tags"] = tags
            arrays[name][f"{model}/{kind}_embedding"] = emb
    for name, values in arrays.items():
        np.savez_compressed(args.out / f"{name}.npz", **values)
        print(
            name,
            {k: v.shape for k, v in values.items() if k.startswith("MSD_musicnn") or k == "input"},
        )


if __name__ == "__main__":
    main()
