"""Scores of a face and a voice embedding: the scorers ``facevoice evaluate`` and the FAME score
files share (not a stage: :mod:`facevoice.evaluation.evaluate` and :mod:`facevoice.evaluation.fame`
both import it).

Scores are similarities, higher = same person: cosine (a zero vector scores 0) by default, or
the score an embeddings file's metadata names as the method's own (``score``: ``abs_cosine``
for avgatn, :data:`SCORERS`; :func:`method_scorer`). A scorer has ``pairs(face, voice)``
(row-aligned (n, d) arrays -> (n,) scores) and ``matrix(face, voice)`` ((n, d), (m, d) ->
(n, m)), and optionally ``prepare_face(x)`` / ``prepare_voice(x)`` applied once to all
embeddings of a modality; it always receives the face first.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

import numpy as np

from facevoice.common.io import read_parquet_meta

PAIR_CHUNK = 8192



class CosineScorer:
    """Cosine similarity; rows are L2-normalised once (a zero vector stays zero)."""

    name = "cosine"

    @staticmethod
    def _normalise(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        n = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(n > 0, n, 1.0)

    def prepare_face(self, x: np.ndarray) -> np.ndarray:
        return self._normalise(x)

    def prepare_voice(self, x: np.ndarray) -> np.ndarray:
        return self._normalise(x)

    def pairs(self, face: np.ndarray, voice: np.ndarray) -> np.ndarray:
        if face.shape[1] != voice.shape[1]:
            raise ValueError(f"cosine needs equal dimensions (face {face.shape[1]}, voice {voice.shape[1]})")
        return np.einsum("ij,ij->i", face, voice)

    def matrix(self, face: np.ndarray, voice: np.ndarray) -> np.ndarray:
        return face @ voice.T


class AbsCosineScorer(CosineScorer):
    """|cosine|: the score of a method trained on the absolute cosine (avgatn, Chen et al., eq. 10-11)."""

    name = "abs_cosine"

    def pairs(self, face: np.ndarray, voice: np.ndarray) -> np.ndarray:
        return np.abs(super().pairs(face, voice))

    def matrix(self, face: np.ndarray, voice: np.ndarray) -> np.ndarray:
        return np.abs(super().matrix(face, voice))


#: scores a method can name as its own (``SCORE`` in its plug-in; ``score`` in its embeddings)
SCORERS = {"cosine": CosineScorer, "abs_cosine": AbsCosineScorer}


class PairwiseScorer:
    """Wraps ``fn(face (n, d), voice (n, d)) -> (n,)``; ``matrix`` broadcasts it in chunks."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))

    def pairs(self, face: np.ndarray, voice: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(face, voice), dtype=np.float64).reshape(-1)

    def matrix(self, face: np.ndarray, voice: np.ndarray) -> np.ndarray:
        out = np.empty((face.shape[0], voice.shape[0]))
        step = max(1, PAIR_CHUNK // max(1, voice.shape[0]))
        for lo in range(0, face.shape[0], step):
            f = face[lo:lo + step]
            out[lo:lo + step] = self.pairs(np.repeat(f, voice.shape[0], axis=0),
                                           np.tile(voice, (f.shape[0], 1))).reshape(f.shape[0], -1)
        return out


def as_scorer(obj: Any = None):
    """None -> cosine; an object with pairs() and matrix() -> itself; a callable -> pairwise."""
    if obj is None:
        return CosineScorer()
    if isinstance(obj, type):
        obj = obj()
    if hasattr(obj, "pairs") and hasattr(obj, "matrix"):
        return obj
    if callable(obj):
        return PairwiseScorer(obj)
    raise TypeError(f"not a scorer: {obj!r}")


def load_scorer(spec: str | None):
    """``package.module:name`` -> scorer (None -> cosine)."""
    if not spec:
        return CosineScorer()
    mod, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--scorer wants package.module:name, got {spec!r}")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    scorer = as_scorer(obj)
    if not hasattr(scorer, "name"):
        scorer.name = spec
    return scorer


def prepare(scorer, modality: str, x: np.ndarray) -> np.ndarray:
    fn = getattr(scorer, f"prepare_{modality}", None)
    return fn(x) if fn is not None else x


def method_scorer(embeddings: str | os.PathLike, scorer_spec: str | None = None) -> tuple[Any, float | None]:
    """(scorer, decision threshold or None) for an embeddings file: ``scorer_spec``
    (``package.module:name``) when given, else the score its metadata names as the method's own
    (``score``, with ``score_threshold``: avgatn's |cos| > 0.5), else cosine."""
    scorer = load_scorer(scorer_spec)
    if scorer_spec is not None:
        return scorer, None
    emb_meta = read_parquet_meta(embeddings)
    threshold = emb_meta.get("score_threshold")
    if emb_meta.get("score"):
        if emb_meta["score"] not in SCORERS:
            raise ValueError(f"{embeddings} names the score {emb_meta['score']!r}; known: {', '.join(SCORERS)}")
        scorer = SCORERS[emb_meta["score"]]()
    return scorer, threshold
