"""``fop``: two-stream fusion and orthogonal projection, a baseline (Saeed et al., ICASSP 2022).

Saeed, Khan, Nawaz, Yousaf, Del Bue, *Fusion and orthogonal projection for improved
face-voice association* (cited by Zhong et al. 2025 as its ref. 19). Zhong et al. 2025
(``ssnet_fop``) puts the same fusion and loss on top of *one* shared network; this baseline keeps the original
two streams: a face encoder on images and a voice encoder on log-mel frames, each with its
own projection, trained end to end in one stage.

Model: face features b = face_net(face), voice features e = voice_net(voice); projections
u = l2(tanh(W_u b)), v = l2(tanh(W_v e)) to ``fop_dim``; gate k = sigmoid(W [e, b] + B);
fused I = k * u + (1 - k) * v for the pair face i / voice i of a batch; loss::

    L = ce_weight * CE(I W_c, y) + opl_weight * L_OC(I)

with L_OC the orthogonal projection loss (1 - mean cosine of same-identity pairs + w |mean
cosine of different-identity pairs|). The projection, gate, fusion and loss are
``ssnet_fop``'s own code (:meth:`SSNetFOP.project`, :meth:`SSNetFOP.loss_from_features`,
imported, not copied), so the two methods differ only in the encoders. Scored embeddings:
u (faces) and v (voices); the fusion exists only in training.

Choices (named in the hyperparameters):

- encoders: Inception-ResNet-V1 (faces) and DIMNet-voice (64 log-mel), both 512-D, as in
  Wang et al. 2020 and Liu et al. The FOP paper trains only its heads on features precomputed by VGGFace
  and an utterance-level speaker network; neither is in the project's dependencies, and the
  baseline here trains the encoders too (``face_weights`` may still start the face stream
  from VGGFace2);
- the gate reads the encoders' features [e, b] (``ssnet_fop``'s eq. 7), not the projected
  embeddings as FOP's reference code does; d = 128 (FOP's ``dim_embed``);
- L_OC weight alpha = 1 (FOP's reference code default), negative-term weight 1 with its
  absolute value as the equation is written (the reference code uses 0.7: variant
  ``opl_neg_07``); the diagonal is excluded from the positive mean;
- Adam, lr 1e-5 and weight decay 0.01 (FOP's reference code); batches of 128 pairs, 32
  identities x 4 (``ssnet_fop``'s stage 2; the reference code leaves the batch size to a
  flag), 50 epochs and lr x 0.98 per epoch (ours, as ``ssnet_fop``); the demo and debug
  profiles use lr 1e-3 / 3e-3 and weight decay 1e-4 to learn in a few CPU epochs;
- no ``fop_tied_init``: two separate encoders give no shared feature space to start from,
  and the voice features need not have the face features' width.

Variants: ``ce_only`` (fusion + cross-entropy, no L_OC), ``no_fusion`` (the FOP loss on u
and v directly, no gate), ``opl_neg_07`` (the reference code's 0.7 on the negative term).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.methods import COMMON_DEFAULTS, DEMO_EPOCHS, TwoStreamModel, optimizer, stage
from facevoice.training.methods.ssnet_fop import SSNetFOP

NAME = "fop"

PAPER = {
    **COMMON_DEFAULTS,
    "face_net": {"type": "inception_resnet_v1", "dim": 512, "dropout": 0.6},
    "voice_net": {"type": "dimnet", "dim": 512, "channels": [256, 384, 576, 864]},
    "fusion": True,
    "fop_dim": 128,                # FOP's dim_embed
    "ce_weight": 1.0,
    "opl_weight": 1.0,             # alpha (FOP's reference code: alpha_list [1])
    "opl_neg_weight": 1.0,         # as the equation is written (reference code: 0.7)
    "stages": {"main": stage(50, 32, 4, optimizer("adam", lr=1e-5, gamma=0.98, schedule="exp",
                                                   weight_decay=0.01))},
}

DEMO = {
    **PAPER,
    # CPU demo: small CNN on 64 px faces, narrow DIMNet, a few epochs at a larger lr
    "face_size": 64,
    "crop_frames": [100, 200],
    "eval_max_frames": 600,
    "face_net": {"type": "small_cnn", "dim": 128, "channels": [16, 32, 64, 96]},
    "voice_net": {"type": "dimnet", "dim": 128, "channels": [64, 96, 128, 160]},
    "fop_dim": 64,
    "stages": {"main": stage(DEMO_EPOCHS, 8, 2, optimizer("adam", lr=1e-3, gamma=0.9, schedule="exp",
                                                          weight_decay=1e-4))},
}

DEBUG = {
    **DEMO,
    "face_size": 32,
    "crop_frames": [40, 60],
    "eval_max_frames": 200,
    "face_net": {"type": "debug", "dim": 16},
    "voice_net": {"type": "debug1d", "dim": 16},
    "fop_dim": 16,
    "stages": {"main": stage(4, 8, 2, optimizer("adam", lr=3e-3, gamma=0.9, schedule="exp", weight_decay=1e-4))},
}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "ce_only": {"description": "fusion + cross-entropy only (no orthogonal projection loss)",
                "overrides": {"opl_weight": 0.0}},
    "no_fusion": {"description": "FOP loss on the face and voice embeddings directly, no gated fusion",
                  "overrides": {"fusion": False}},
    "opl_neg_07": {"description": "negative term of L_OC weighted 0.7, as FOP's reference code",
                   "overrides": {"opl_neg_weight": 0.7}},
}


class TwoStreamFOP(TwoStreamModel):
    name = NAME

    # the heads and the loss are ssnet_fop's (same attribute names: proj_face, proj_voice, gate,
    # fop_classifier, and the hp keys fusion, ce_weight, opl_weight, opl_neg_weight)
    project = SSNetFOP.project
    loss_from_features = SSNetFOP.loss_from_features

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes, n_bins, face_weights)
        fb, fe = self.face_net.dim, self.voice_net.dim
        d = int(hp["fop_dim"])
        self.proj_face = nn.Linear(fb, d)
        self.proj_voice = nn.Linear(fe, d)
        self.gate = nn.Linear(fe + fb, d) if hp["fusion"] else None  # reads [e, b]
        self.fop_classifier = nn.Linear(d, n_classes, bias=False)

    def loss(self, faces, voices, labels):
        return self.loss_from_features(self.backbone_face(faces), self.backbone_voice(voices), labels)

    # scored embeddings: u = l2(tanh(W_u b)) and v = l2(tanh(W_v e)), as SSNetFOP.project
    def embed_face(self, faces):
        return F.normalize(torch.tanh(self.proj_face(self.backbone_face(faces).float())), dim=1)

    def embed_voice(self, voices):
        return F.normalize(torch.tanh(self.proj_voice(self.backbone_voice(voices).float())), dim=1)


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> TwoStreamFOP:
    return TwoStreamFOP(hp, n_classes, n_bins, face_weights)
