"""``dimnet``: disjoint mapping network, a multi-task identity classifier baseline (Wen et al., ICLR 2019).

Wen, Al Ismail, Liu, Raj, Singh, *Disjoint mapping network for cross-modal matching of
voices and faces* (cited by Zhong et al. 2025, Wang et al. 2020 and Liu et al., which
report its DIMNet-I and DIMNet-IG rows). DIMNet never compares a face with a voice in training: each modality is mapped
*separately* into one embedding space, and that space is supervised only by classifiers of
covariates both modalities share; the classifiers are shared by the modalities, which is
what puts faces and voices of one person in the same place.

Model: face embedding f = face_net(face), voice embedding g = voice_net(voice), both of
``embedding_dim``; one linear classifier per covariate on the embedding, shared by faces and
voices. Loss: the sum over covariates c of ``weight_c * (CE(W_c f, y_c) + CE(W_c g, y_c))``,
each cross-entropy a mean over its modality's items. Scored embedding: f and g,
L2-normalised (the shared-space vector before the classifier).

Choices (named in the hyperparameters):

- covariates: identity only, i.e. DIMNet-I. The trainer's batches carry identity labels
  and nothing else (the manifest's gender is not passed to the model), so DIMNet-IG and the
  gender / nationality heads of the paper are not offered; ``covariates`` lists what is
  used so that a later trainer can add ``gender`` without changing the model's state;
- encoders: Inception-ResNet-V1 (faces) and DIMNet-voice (64 log-mel) as in Wang et al. 2020 /
  Liu et al.; their last layer (linear + batch norm) *is* the embedding (``embedding_dim`` 128);
- the paper samples faces and voices independently; our P x K batches pair face i with
  voice i, which the loss ignores (each modality's items are classified on their own);
- SGD momentum 0.9, weight decay 5e-4, lr 1e-3 -> 1e-8 log-linearly over 50 epochs,
  batches of 16 identities x 4 faces x 4 voices: Wang et al. 2020 and Liu et al.'s schedule, kept the same
  across the metric-learning methods and this baseline.

Variants: ``separate_classifiers`` (one identity classifier per modality: the embeddings are
trained as well, but nothing ties the two spaces together; the ablation that shows why the
classifier is shared), ``emb64`` / ``emb256`` (embedding size).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.methods import (
    COMMON_DEFAULTS,
    TWO_STREAM_DEBUG,
    TWO_STREAM_DEMO,
    TwoStreamModel,
    optimizer,
    stage,
)

NAME = "dimnet"
COVARIATES = ("identity",)  # what the trainer's batches carry

PAPER = {
    **COMMON_DEFAULTS,
    "stages": {"main": stage(50, 16, 4, optimizer("sgd", lr=1e-3, lr_end=1e-8, schedule="log",
                                                   momentum=0.9, weight_decay=5e-4))},
    "face_net": {"type": "inception_resnet_v1", "dim": 128, "dropout": 0.6},
    "voice_net": {"type": "dimnet", "dim": 128, "channels": [256, 384, 576, 864]},
    "covariates": {"identity": 1.0},   # DIMNet-I: identity is the only covariate in our batches
    "shared_classifier": True,
}

DEMO = {**PAPER, **TWO_STREAM_DEMO}

DEBUG = {**DEMO, **TWO_STREAM_DEBUG}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "separate_classifiers": {"description": "one identity classifier per modality (nothing shared)",
                             "overrides": {"shared_classifier": False}},
    "emb64": {"description": "embedding size 64",
              "overrides": {"face_net": {"dim": 64}, "voice_net": {"dim": 64}}},
    "emb256": {"description": "embedding size 256",
               "overrides": {"face_net": {"dim": 256}, "voice_net": {"dim": 256}}},
}


class DIMNet(TwoStreamModel):
    name = NAME

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        unknown = set(hp["covariates"]) - set(COVARIATES)
        if unknown:
            raise ValueError(f"dimnet: covariates {sorted(unknown)} are not in the training batches "
                             f"(available: {', '.join(COVARIATES)})")
        super().__init__(hp, n_classes, n_bins, face_weights)
        d = self.stream_dim("one embedding space")
        self.classifier = nn.Linear(d, n_classes)  # identity head (faces, and voices when shared)
        self.voice_classifier = None if hp["shared_classifier"] else nn.Linear(d, n_classes)

    def loss(self, faces, voices, labels):
        f, g = self.encode_face(faces).float(), self.encode_voice(voices).float()
        vc = self.classifier if self.voice_classifier is None else self.voice_classifier
        logits_f, logits_v = self.classifier(f), vc(g)
        ce_f = F.cross_entropy(logits_f, labels)
        ce_v = F.cross_entropy(logits_v, labels)
        w = float(self.hp["covariates"].get("identity", 0.0))
        total = w * (ce_f + ce_v)
        with torch.no_grad():
            acc_f = (logits_f.argmax(1) == labels).float().mean()
            acc_v = (logits_v.argmax(1) == labels).float().mean()
        return total, {"id_face": ce_f.detach(), "id_voice": ce_v.detach(), "acc_face": acc_f, "acc_voice": acc_v}


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> DIMNet:
    return DIMNet(hp, n_classes, n_bins, face_weights)
