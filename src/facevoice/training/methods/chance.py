"""``chance``: a scorer that knows nothing, the floor every table is read against.

No trainable parameters. Each face and each voice is given a pseudo-random unit vector of
``dim`` dimensions drawn from a generator seeded by the SHA-256 of the item's input tensor
(its dtype, shape and bytes, as the embedder hands it over, with the modality as a prefix).
The same input therefore always gets the same vector, on any device and in any batch, while
two different inputs, even of one person, get independent vectors: cosine scores carry no
identity information and every protocol stays at its chance level (verification AUC 0.5,
EER 0.5, 1:N accuracy 1/N, retrieval mAP at the expected AP of a random ranking) up to
sampling noise. Unlike the analytic chance row of the comparison tables, this one goes
through the whole pipeline (training, embeddings, trial lists, metrics, bootstrap), so its
row checks the evaluation itself: a chance scorer that scores above chance means a leak.

Training: one stage of one epoch in which nothing is updated (the trainer's stage with no
trainable parameters: evaluation only); ``model.pt``, ``log.csv``, ``curve.png`` and
``run.json`` are written as for every method, and the validation AUC in the log is this
scorer's. ``P`` and ``K`` are unused (no batch is drawn).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from facevoice.training.methods import COMMON_DEFAULTS, FaceVoiceModel, optimizer, stage

NAME = "chance"
NETWORK = False  # no network: its jobs ask for no GPU (facevoice.common.config.has_network)

PAPER = {
    **COMMON_DEFAULTS,
    "dim": 128,
    # one evaluation-only epoch: nothing to train (lr unused)
    "stages": {"main": stage(1, 2, 1, optimizer("sgd", lr=0.0))},
}

DEMO = {**PAPER, "face_size": 64, "crop_frames": [100, 200], "eval_max_frames": 600}

DEBUG = {**DEMO, "face_size": 32, "crop_frames": [40, 60], "eval_max_frames": 200, "dim": 16}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS: dict = {}


def hashed_unit_vectors(x: torch.Tensor, dim: int, tag: str) -> torch.Tensor:
    """One unit vector of ``dim`` per item of the batch ``x``, a function of the item's bytes only."""
    items = x.detach().to("cpu").contiguous()
    out = np.empty((len(items), dim), dtype=np.float32)
    for i, item in enumerate(items):
        arr = item.numpy()
        h = hashlib.sha256()
        h.update(f"{tag}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.tobytes())
        seed = int.from_bytes(h.digest()[:16], "little")
        vec = np.random.default_rng(seed).standard_normal(dim)
        out[i] = vec / max(np.linalg.norm(vec), 1e-12)
    return torch.from_numpy(out).to(x.device)


class Chance(FaceVoiceModel):
    name = NAME

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes)
        self.dim = int(hp["dim"])  # face_weights (a config's, for every method) is ignored: no network

    def weights_source(self) -> str:
        return "none (no network)"

    def loss(self, faces, voices, labels):
        raise RuntimeError("chance has nothing to train: the trainer only evaluates it")

    def embed_face(self, faces):
        return hashed_unit_vectors(faces, self.dim, "face")

    def embed_voice(self, voices):
        return hashed_unit_vectors(voices, self.dim, "voice")


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> Chance:
    return Chance(hp, n_classes, n_bins, face_weights)
