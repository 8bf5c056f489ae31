"""``dje``: discriminative joint embeddings (Wang et al., SIGIR 2020).

Face stream (Inception-ResNet-V1 -> 512) and voice stream (DIMNet-voice -> 512), a fully
connected layer shared by both streams to a 256-D space, L2-normalised. Loss (eq. 5)::

    L = rank_weight * L_rank + lambda1 * L_id + lambda2 * L_center

``L_rank``: the bi-directional ranking loss with online hardest negatives (eq. 1,
:func:`facevoice.training.losses.bidirectional_ranking_loss`), Euclidean distances on the
normalised embeddings; pairs are face i / voice i of a P x K batch (one face and one voice
of the same person). ``L_id``: cross-entropy over the training identities, one classifier
for both modalities. ``L_center``: center loss (eq. 4) with per-identity centers shared by
faces and voices, updated every batch (Wen et al.'s rule).

Stage ``speaker_pretrain`` (paper profile), before ``main``: "the face subnetwork is
initialized with pre-trained weights on the VGGFace2 dataset, and the voice subnetwork is
initialized with pre-trained weights on Voxceleb1" (implementation details). The face weights
are ``train.face_weights``; the voice stream is pre-trained here as a speaker classifier
(DIMNet-voice + a linear classifier, cross-entropy; :class:`facevoice.training.methods.SpeakerPretrainModel`),
then ``main`` trains all of it, the voice stream included, as the paper's "initialized" and
"seamlessly train the face subnetwork and voice subnetwork" read (fine-tuned, not frozen).

Choices where the paper is silent (named in the hyperparameters):

- ``L_id`` classifies the shared FC's output *before* L2 normalisation; ``L_rank`` and
  ``L_center`` act on the normalised embedding (the one that is scored).
- centers move by Wen et al.'s update with rate ``center_alpha`` = 0.5;
- the hardest negative o' (a') is used in both terms of its direction (eq. 1 defines it once);
- negatives are samples of *other identities* (a P x K batch holds several pairs per person);
- epochs 50 and batches of 16 identities x 4 faces x 4 voices (Liu et al.'s, same authors);
- lr decays log-linearly from 1e-3 to 1e-8 over the epochs, per epoch;
- voice crops of 3-6 s (300-600 frames) in training; whole utterances (<= 10 s) to embed;
- the voice pre-training (paper: task, data and schedule not given): speaker identification
  over the training identities only, with the project's one pre-training schedule; the
  choices are written once, at :class:`facevoice.training.methods.SpeakerPretrainModel` and
  :data:`facevoice.training.methods.SPEAKER_PRETRAIN` (``demo`` and ``debug`` list the stage off).

Ablations (paper table 3), as variants: ``separate_fc`` (last FC not shared),
``emb128`` / ``emb512`` (embedding size), ``id_only``, ``center_only``, ``rank_only``,
``rank_id``, ``rank_center`` (loss subsets); ``no_pretrain`` (voice stream from scratch: stage
``speaker_pretrain`` off; not in the paper). The VGG-Face + VGG-Vox backbone pair of the
table is not offered: neither network is in the project's dependencies.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.losses import bidirectional_ranking_loss, center_loss, update_centers
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

NAME = "dje"

PAPER = {
    **COMMON_DEFAULTS,
    # speaker pre-training of the voice stream (schedule: choice), then the joint training;
    # epochs and P x K of main: paper silent -> Liu et al.'s (same group): 50 epochs, 16 x 4 x 4
    "stages": with_speaker_pretrain(
        {"main": stage(50, 16, 4, optimizer("sgd", lr=1e-3, lr_end=1e-8, schedule="log",
                                            momentum=0.9, weight_decay=5e-4))}, SPEAKER_PRETRAIN),
    "face_net": {"type": "inception_resnet_v1", "dim": 512, "dropout": 0.6},
    "voice_net": {"type": "dimnet", "dim": 512, "channels": [256, 384, 576, 864]},
    "embedding_dim": 256,
    "shared_fc": True,
    "alpha1": 0.6, "alpha2": 0.6,       # ranking margins
    "beta1": 0.2, "beta2": 0.2,         # negative-separation margins
    "lambda1": 1.0,                     # identity loss
    "lambda2": 0.001,                   # center loss
    "lambda3": 0.1, "lambda4": 0.1,     # separation terms inside the ranking loss
    "rank_weight": 1.0,                 # 0 for the ablations without ranking loss
    "center_alpha": 0.5,                # choice: Wen et al.'s center update rate
}

DEMO = {
    **PAPER,
    **TWO_STREAM_DEMO,
    "face_net": {"type": "small_cnn", "dim": 128, "channels": [16, 32, 64, 96]},
    "voice_net": {"type": "dimnet", "dim": 128, "channels": [64, 96, 128, 160]},
    "embedding_dim": 64,
    "stages": with_speaker_pretrain(TWO_STREAM_DEMO["stages"], SPEAKER_PRETRAIN_OFF),
}

DEBUG = {**DEMO, **TWO_STREAM_DEBUG, "embedding_dim": 16,
         "stages": with_speaker_pretrain(TWO_STREAM_DEBUG["stages"], SPEAKER_PRETRAIN_OFF)}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "separate_fc": {"description": "table 3: last FC not shared", "overrides": {"shared_fc": False}},
    "emb128": {"description": "table 3: embedding size 128", "overrides": {"embedding_dim": 128}},
    "emb512": {"description": "table 3: embedding size 512", "overrides": {"embedding_dim": 512}},
    "id_only": {"description": "table 3: only identity loss", "overrides": {"rank_weight": 0.0, "lambda2": 0.0}},
    "center_only": {"description": "table 3: only center loss", "overrides": {"rank_weight": 0.0, "lambda1": 0.0}},
    "rank_only": {"description": "table 3: only ranking loss", "overrides": {"lambda1": 0.0, "lambda2": 0.0}},
    "rank_id": {"description": "table 3: ranking + identity loss", "overrides": {"lambda2": 0.0}},
    "rank_center": {"description": "table 3: ranking + center loss", "overrides": {"lambda1": 0.0}},
    "no_pretrain": NO_PRETRAIN_VARIANT,
}


class DJE(SpeakerPretrainModel):
    name = NAME

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes, n_bins, face_weights)
        d = int(hp["embedding_dim"])
        self.fc_face = nn.Linear(self.face_net.dim, d)
        self.fc_voice = self.fc_face if hp["shared_fc"] else nn.Linear(self.voice_net.dim, d)
        if hp["shared_fc"] and self.face_net.dim != self.voice_net.dim:
            raise ValueError("a shared FC needs face_net.dim == voice_net.dim")
        self.classifier = nn.Linear(d, n_classes)
        self.register_buffer("centers", torch.zeros(n_classes, d))
        self.init_speaker_pretrain()

    def face_head(self, feats):
        return self.fc_face(feats)

    def voice_head(self, feats):
        return self.fc_voice(feats)

    def loss(self, faces, voices, labels):
        if self.in_speaker_stage:
            return self.speaker_loss(voices, labels)
        hp = self.hp
        zf, zv = self.encode_face(faces).float(), self.encode_voice(voices).float()
        ef, ev = F.normalize(zf, dim=1), F.normalize(zv, dim=1)
        l_rank, terms = bidirectional_ranking_loss(ef, ev, labels, hp["alpha1"], hp["alpha2"], hp["beta1"],
                                                   hp["beta2"], hp["lambda3"], hp["lambda4"])
        both = torch.cat([ef, ev])
        both_labels = torch.cat([labels, labels])
        l_id = F.cross_entropy(self.classifier(torch.cat([zf, zv])), both_labels)
        l_cen = center_loss(both, both_labels, self.centers)
        if self.training:
            update_centers(self.centers, both, both_labels, float(hp["center_alpha"]))
        total = hp["rank_weight"] * l_rank + hp["lambda1"] * l_id + hp["lambda2"] * l_cen
        terms.update({"rank": l_rank.detach(), "id": l_id.detach(), "center": l_cen.detach()})
        return total, terms


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> DJE:
    return DJE(hp, n_classes, n_bins, face_weights)
