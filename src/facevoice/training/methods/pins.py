"""``pins``: Learnable PINs-style contrastive two-stream model, a baseline (Nagrani et al., ECCV 2018).

Nagrani, Albanie, Zisserman, *Learnable PINs: cross-modal embeddings for person identity*
(cited by Zhong et al. 2025, Wang et al. 2020 and Liu et al., which report its figures).
Two streams, a face network and a voice network, each ending in an embedding that is
L2-normalised; a contrastive loss on face-voice pairs pulls the pairs of one person together and pushes mined negative pairs
apart by a margin; negatives are mined in the batch with a curriculum that makes them
harder as training goes on.

Loss (:func:`contrastive_loss`), Hadsell et al.'s contrastive loss with balanced halves::

    L = 1/2 mean_i d(f_i, v_i)^2  +  1/2 mean_n [m - d_n]_+^2

on Euclidean distances d of the normalised embeddings f (faces) and v (voices). Positives:
face i with voice i of the P x K batch (same identity). Negatives: for every face f_i one
voice of another identity, and for every voice v_i one face of another identity (2 B
negatives for B pairs), drawn by the curriculum: the candidates are sorted from the closest
(hardest) to the farthest, and one is drawn uniformly among the ``ceil((1 - tau) n)``
hardest of the n candidates (tau = 0: any negative, at random; tau = 1: the hardest).

Choices (named in the hyperparameters):

- positives are pairs of the *same identity* (the paper's self-supervision takes face and
  voice from the same video, with no identity labels); only face i / voice i pairs are
  positives, and other same-identity pairs of the batch are neither positive nor negative;
- the curriculum: tau starts at 0.3 and grows by 0.1 every ``tau_every`` training steps up
  to 0.8 (the paper's schedule is not in our seeds; these values follow a public
  re-implementation); the step count is a buffer, so it is saved in checkpoints and a
  resumed run continues the schedule;
- margin m = 0.6 (the same re-implementation; on unit vectors d lies in [0, 2]);
- negatives mined in both directions (face anchors and voice anchors);
- encoders: the project's Inception-ResNet-V1 (faces) and DIMNet-voice on magnitude
  spectrograms (257 bins; the paper's VGG-M streams on spectrograms are not in the
  project's dependencies), both ending in a 256-D embedding (the paper's embedding size);
- SGD momentum 0.9, weight decay 5e-4, lr 1e-3 -> 1e-8 log-linearly over 50 epochs,
  batches of 16 identities x 4 pairs: the schedule of Wang et al. 2020 and Liu et al., kept the same
  across the metric-learning methods.

Variants: ``no_hard_mining`` (tau fixed at 0: random negatives throughout), ``hardest``
(tau fixed at 1: the hardest negative from the first step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from facevoice.training.losses import pairwise_distances
from facevoice.training.methods import (
    COMMON_DEFAULTS,
    TWO_STREAM_DEBUG,
    TWO_STREAM_DEMO,
    TwoStreamModel,
    optimizer,
    stage,
)

NAME = "pins"

PAPER = {
    **COMMON_DEFAULTS,
    "voice_feature": "spectrogram",
    "crop_frames": [300, 300],      # 3 s spectrogram crops (the paper's input length)
    "stages": {"main": stage(50, 16, 4, optimizer("sgd", lr=1e-3, lr_end=1e-8, schedule="log",
                                                   momentum=0.9, weight_decay=5e-4))},
    "face_net": {"type": "inception_resnet_v1", "dim": 256, "dropout": 0.6},
    "voice_net": {"type": "dimnet", "dim": 256, "channels": [256, 384, 576, 864]},
    "margin": 0.6,
    "tau_start": 0.3,               # curriculum: hardness at the first step
    "tau_step": 0.1,                # added every tau_every training steps
    "tau_every": 500,
    "tau_max": 0.8,
}

DEMO = {**PAPER, **TWO_STREAM_DEMO, "crop_frames": [150, 150], "tau_every": 20}

DEBUG = {**DEMO, **TWO_STREAM_DEBUG, "tau_every": 8}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "no_hard_mining": {"description": "random negatives throughout (tau fixed at 0, no curriculum)",
                       "overrides": {"tau_start": 0.0, "tau_step": 0.0, "tau_max": 0.0}},
    "hardest": {"description": "the hardest negative from the first step (tau fixed at 1, no curriculum)",
                "overrides": {"tau_start": 1.0, "tau_step": 0.0, "tau_max": 1.0}},
}


def curriculum_tau(step: int, start: float, inc: float, every: int, top: float) -> float:
    """tau after ``step`` training steps: ``start``, + ``inc`` every ``every`` steps, at most ``top``."""
    return float(min(start + inc * (int(step) // max(1, int(every))), top))


def mine_negatives(dist: torch.Tensor, valid: torch.Tensor, tau: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative column per row of ``dist`` among the ``valid`` ones, by the curriculum.

    Candidates are sorted from the smallest distance (hardest); one is drawn uniformly among
    the ``max(1, ceil((1 - tau) n))`` hardest of a row's n candidates. Returns (column index,
    row has a candidate).
    """
    d = dist.detach().masked_fill(~valid, float("inf"))
    order = d.argsort(dim=1)  # hardest first, invalid (inf) last
    n = valid.sum(1)
    k = torch.clamp(torch.ceil((1.0 - float(tau)) * n.float() - 1e-6), min=1).long()
    k = torch.minimum(k, n.clamp(min=1))
    r = torch.rand(len(d), generator=generator).to(d.device)  # torch's CPU generator: seeded by the trainer
    pick = torch.minimum((r * k).long(), k - 1)
    return order.gather(1, pick[:, None])[:, 0], n > 0


def contrastive_loss(face: torch.Tensor, voice: torch.Tensor, labels: torch.Tensor, margin: float,
                     tau: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """The PINs contrastive loss on pairs (face i, voice i); see the module docstring.

    ``face``, ``voice``: (B, d), L2-normalised here; ``labels``: (B,) identities. Returns
    (loss, {pos, neg, pos_dist, neg_dist}), the terms detached.
    """
    f = F.normalize(face.float(), dim=1)
    v = F.normalize(voice.float(), dim=1)
    dist = pairwise_distances(f, v)  # (faces, voices)
    other = labels[:, None] != labels[None, :]
    pos_d = dist.diagonal()
    j_v, ok_f = mine_negatives(dist, other, tau, generator)        # face anchors -> negative voices
    j_f, ok_v = mine_negatives(dist.t(), other.t(), tau, generator)  # voice anchors -> negative faces
    rows = torch.arange(len(labels), device=dist.device)
    neg_d = torch.cat([dist[rows, j_v][ok_f], dist.t()[rows, j_f][ok_v]])
    pos = (pos_d ** 2).mean()
    neg = (F.relu(margin - neg_d) ** 2).mean() if len(neg_d) else pos_d.sum() * 0.0
    loss = 0.5 * pos + 0.5 * neg
    return loss, {"pos": pos.detach(), "neg": neg.detach(), "pos_dist": pos_d.detach().mean(),
                  "neg_dist": neg_d.detach().mean() if len(neg_d) else torch.tensor(float("nan"))}


class Pins(TwoStreamModel):
    name = NAME

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes, n_bins, face_weights)
        self.stream_dim("one embedding space")
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # curriculum clock

    def tau(self) -> float:
        hp = self.hp
        return curriculum_tau(int(self.steps), hp["tau_start"], hp["tau_step"], hp["tau_every"], hp["tau_max"])

    def loss(self, faces, voices, labels):
        f = self.encode_face(faces)
        v = self.encode_voice(voices)
        tau = self.tau()
        total, terms = contrastive_loss(f, v, labels, float(self.hp["margin"]), tau)
        if self.training:
            self.steps += 1
        terms["tau"] = torch.tensor(tau)
        return total, terms


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> Pins:
    return Pins(hp, n_classes, n_bins, face_weights)

