"""``biq_mwrn``: double-stream network, MWRN and bi-quintuple loss (Liu et al.).

Face stream (Inception-ResNet-V1) and voice stream (DIMNet-voice), both to 256-D, topped by
one network shared by both modalities: the multi-modal weighted residual network (MWRN,
eq. 1-2)::

    F(x) = W2 tanh(W1 x);   out = tanh(x + eta F(x)),   eta learnable, initialised to 0

(ReZero-style: at the start the top network is tanh(x) and W1, W2 receive no gradient
until eta moves). Loss (eq. 19): ``L = biq_weight * L_BiQ + id_weight * L_ID``, where
``L_BiQ`` is the bi-quintuple loss (eq. 17, :func:`facevoice.training.losses.bi_quintuple_loss`:
cross-modal and mixed-modal TriHard, face and voice anchors, L2-normalised features,
margin 0.6) and ``L_ID`` is cross-entropy on faces plus cross-entropy on voices with one
classifier (eq. 18).

Stage ``speaker_pretrain`` (paper profile), before ``main``: the paper's implementation
section: "语音子网络采用与 DIMNet-Voice 方法相同的结构,并使用在 Voxceleb1 上的预训练权重进行
初始化" (the voice subnetwork has DIMNet-Voice's structure and is initialised with weights
pre-trained on Voxceleb1; the face subnetwork likewise from VGGFace2, ``train.face_weights``).
The voice stream is pre-trained here as a speaker classifier (DIMNet-voice + a linear
classifier, cross-entropy; :class:`facevoice.training.methods.SpeakerPretrainModel`), then ``main`` trains
all of it, the voice stream included: "initialised" (初始化), not frozen.

Choices where the paper is silent (named in the hyperparameters):

- hidden width of W1 = 256 (``top_hidden``), no biases in W1, W2 (as written in eq. 1);
- the ID classifier reads the top network's output before L2 normalisation;
- lr decays log-linearly from 1e-3 to 1e-8 over the 50 epochs, per epoch;
- voice crops of 3-6 s (300-600 frames) in training; whole utterances (<= 10 s) to embed;
- the voice pre-training (paper: task, data and schedule not given): speaker identification
  over the training identities only, with the project's one pre-training schedule; the
  choices are written once, at :class:`facevoice.training.methods.SpeakerPretrainModel` and
  :data:`facevoice.training.methods.SPEAKER_PRETRAIN` (``demo`` and ``debug`` list the stage off).

Ablations (paper table 4, and the margin sweep of fig. 7) as variants: ``sfc`` (one
shared FC, ``W x``), ``dfc`` (two FC, ``W2 tanh(W1 x)``), ``dfc_r`` (two FC with a
residual, ``tanh(x + F(x))``), ``id_only``, ``biq_only``, ``margin_0.2`` ... ``margin_1.0``;
``no_pretrain`` (voice stream from scratch: stage ``speaker_pretrain`` off; not in the paper).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.losses import bi_quintuple_loss
from facevoice.training.methods import (
    COMMON_DEFAULTS,
    NO_PRETRAIN_VARIANT,
    SPEAKER_PRETRAIN,
    SPEAKER_PRETRAIN_OFF,
    TWO_STREAM_DEBUG,
    TWO_STREAM_DEMO,
    SpeakerPretrainModel,
    optimizer,
    stage,
    with_speaker_pretrain,
)

NAME = "biq_mwrn"
TOPS = ("sfc", "dfc", "dfc_r", "mwrn")

PAPER = {
    **COMMON_DEFAULTS,
    # speaker pre-training of the voice stream (schedule: choice), then the paper's 50 epochs
    "stages": with_speaker_pretrain(
        {"main": stage(50, 16, 4, optimizer("sgd", lr=1e-3, lr_end=1e-8, schedule="log",
                                            momentum=0.9, weight_decay=5e-4))}, SPEAKER_PRETRAIN),
    "face_net": {"type": "inception_resnet_v1", "dim": 256, "dropout": 0.6},
    "voice_net": {"type": "dimnet", "dim": 256, "channels": [256, 384, 576, 864]},
    "top": "mwrn",          # sfc | dfc | dfc_r | mwrn (table 4)
    "top_hidden": 256,      # choice: width of W1
    "eta_init": 0.0,        # ReZero: the scale starts at 0
    "margin": 0.6,
    "biq_weight": 1.0,
    "id_weight": 1.0,
}

DEMO = {**PAPER, **TWO_STREAM_DEMO, "top_hidden": 64,
        "stages": with_speaker_pretrain(TWO_STREAM_DEMO["stages"], SPEAKER_PRETRAIN_OFF)}

DEBUG = {**DEMO, **TWO_STREAM_DEBUG, "top_hidden": 16,
         "stages": with_speaker_pretrain(TWO_STREAM_DEBUG["stages"], SPEAKER_PRETRAIN_OFF)}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "sfc": {"description": "table 4: one shared FC layer", "overrides": {"top": "sfc"}},
    "dfc": {"description": "table 4: two shared FC layers", "overrides": {"top": "dfc"}},
    "dfc_r": {"description": "table 4: two FC layers with a residual connection (eta fixed to 1)",
              "overrides": {"top": "dfc_r"}},
    "id_only": {"description": "fig. 6: ID loss only", "overrides": {"biq_weight": 0.0}},
    "biq_only": {"description": "fig. 6: bi-quintuple loss only", "overrides": {"id_weight": 0.0}},
    **{f"margin_{m}": {"description": f"fig. 7: margin m = {m}", "overrides": {"margin": m}}
       for m in (0.2, 0.4, 0.8, 1.0)},
    "no_pretrain": NO_PRETRAIN_VARIANT,
}


class TopNet(nn.Module):
    """The shared top network: SFC, DFC, DFC-R or MWRN."""

    def __init__(self, kind: str, dim: int, hidden: int, eta_init: float = 0.0):
        super().__init__()
        if kind not in TOPS:
            raise ValueError(f"unknown top network {kind!r}; known: {', '.join(TOPS)}")
        self.kind = kind
        if kind == "sfc":
            self.fc = nn.Linear(dim, dim, bias=False)
        else:
            self.w1 = nn.Linear(dim, hidden, bias=False)
            self.w2 = nn.Linear(hidden, dim, bias=False)
        if kind == "mwrn":
            self.eta = nn.Parameter(torch.tensor(float(eta_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "sfc":
            return self.fc(x)
        f = self.w2(torch.tanh(self.w1(x)))
        if self.kind == "dfc":
            return f
        if self.kind == "dfc_r":
            return torch.tanh(x + f)
        return torch.tanh(x + self.eta * f)


class BiQMWRN(SpeakerPretrainModel):
    name = NAME

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes, n_bins, face_weights)
        d = self.stream_dim("the shared top network")
        self.top = TopNet(hp["top"], d, int(hp["top_hidden"]), float(hp["eta_init"]))
        self.classifier = nn.Linear(d, n_classes)
        self.init_speaker_pretrain()

    def face_head(self, feats):
        return self.top(feats)

    def voice_head(self, feats):
        return self.top(feats)

    def loss(self, faces, voices, labels):
        if self.in_speaker_stage:
            return self.speaker_loss(voices, labels)
        hp = self.hp
        fc, vc = self.encode_face(faces).float(), self.encode_voice(voices).float()
        l_biq, terms = bi_quintuple_loss(fc, labels, vc, labels, float(hp["margin"]))
        l_id = F.cross_entropy(self.classifier(fc), labels) + F.cross_entropy(self.classifier(vc), labels)
        total = hp["biq_weight"] * l_biq + hp["id_weight"] * l_id
        terms.update({"biq": l_biq.detach(), "id": l_id.detach()})
        if self.hp["top"] == "mwrn":
            terms["eta"] = self.top.eta.detach().clone()
        return total, terms


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> BiQMWRN:
    return BiQMWRN(hp, n_classes, n_bins, face_weights)
