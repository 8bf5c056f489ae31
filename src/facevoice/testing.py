"""Builders of labelled test material shared by the tests and the benchmarks.

``spliced_speech``: real voices with silence and noise spliced in at known places, the
labelled test of the speech filters (each voice counts as speech throughout, each spliced
gap as non-speech); ``speech_scores``: frame-level precision and recall of kept sample
ranges against those labels.
"""

from __future__ import annotations

import numpy as np

#: the gaps spliced between voices: (kind, seconds, level in dBFS)
GAPS = (("silence", 0.8, None), ("white noise", 1.0, -50.0), ("white noise", 0.6, -35.0))


def spliced_speech(voices: list[np.ndarray], sample_rate: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(signal, per-sample speech labels): each voice followed by the next gap of :data:`GAPS`."""
    rng = np.random.default_rng(seed)
    parts, labels = [], []
    for i, v in enumerate(voices):
        kind, seconds, level = GAPS[i % len(GAPS)]
        n = int(round(seconds * sample_rate))
        gap = np.zeros(n, np.float32) if level is None else \
            (10 ** (level / 20.0) * rng.standard_normal(n)).astype(np.float32)
        parts += [np.asarray(v, np.float32), gap]
        labels += [np.ones(len(v), bool), np.zeros(n, bool)]
    return np.concatenate(parts), np.concatenate(labels)


def speech_scores(ranges: list[tuple[int, int]], labels: np.ndarray, sample_rate: int,
                  frame_ms: float = 10.0) -> dict[str, float]:
    """Frame-level precision and recall of speech (a frame is speech when most of it is)."""
    kept = np.zeros(len(labels), bool)
    for a, b in ranges:
        kept[a:b] = True
    flen = max(1, int(round(frame_ms * sample_rate / 1000)))
    n = len(labels) // flen
    truth = labels[:n * flen].reshape(n, flen).mean(1) > 0.5
    said = kept[:n * flen].reshape(n, flen).mean(1) > 0.5
    tp = float((truth & said).sum())
    return {"precision": tp / max(1.0, float(said.sum())), "recall": tp / max(1.0, float(truth.sum())),
            "kept_of_gaps": float((said & ~truth).sum()) / max(1.0, float((~truth).sum()))}
