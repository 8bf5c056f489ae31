"""``ssnet_fop``: single-stream network, then gated fusion and FOP loss (Zhong et al. 2025).

Stage ``center`` (eq. 1-2): one network (Inception-ResNet-V1, 512-D) embeds faces *and*
spectrograms; loss = softmax cross-entropy over the training identities (a linear layer
with bias on the 512-D features) + lambda/2 x cross-modal center loss, lambda = 1 (the
paper's value, section 3), the center of identity c being the mean of all face and voice
features of c in the batch (:func:`facevoice.training.losses.batch_center_loss`). As in
Wen et al.'s center loss, which eq. 2 is, the center term is on the network's raw
features (``center_normalize: false``, every profile).

Stage ``fop`` (eq. 3-11): the stage-1 network is frozen (the best stage-1 checkpoint on
the validation identities); face features b and voice features e are projected by their
own FC + tanh to d dims and L2-normalised, u = l2(tanh(W_u b)), v = l2(tanh(W_v e)); a
gate k = sigmoid(W [e, b] + B) (d outputs) fuses the pair of face i and voice i,
I = k * u + (1 - k) * v; loss = ce_weight * CE(I W, y) (linear identity classifier, no
bias, eq. 9) + opl_weight * L_OC(I) (eq. 10, :func:`facevoice.training.losses.orthogonal_projection_loss`).
The embeddings that are scored are u (faces) and v (voices); the fusion exists only in
training. With ``cache: true`` (default) the frozen network's features of every training
item are computed once at the start of the stage (no augmentation, whole utterances), as
the paper does ("embeddings extracted from the pre-trained single-stream network").

How a spectrogram enters the image network (the paper does not say): the 1-channel
``bins x frames`` magnitude spectrogram is resized bilinearly to ``face_size x face_size``
and repeated on the 3 input channels; faces and spectrograms then go through the network
in *one* batch, so batch-norm statistics are those of the mixed batch in training and in
evaluation alike. Training crops are fixed-length (``crop_frames`` [300, 300], 3 s); to
embed, an utterance is cut into windows of ``crop_frames[1]`` frames (tiled when shorter)
and the window features are averaged.

Variant ``center_l2`` (not in the paper; ``center_normalize: true``): the center loss on the
L2-normalised features instead. On the raw 512-D features of the paper profile the center
term starts about 60 times the cross-entropy (18 times in the demo profile), so stage 1
first mostly shrinks the features; on unit features it is at most 4, under the
cross-entropy at initialisation. Its results are named ``ssnet_fop-center_l2`` and the
comparison tables' notes say which form a row trained (:meth:`SSNetFOP.note`).

Other choices (named below): "batch 45" (stage 1) and "batch 128" (stage 2) are read as
face-voice pairs: 15 identities x 3 and 32 identities x 4; stage 1 runs 50 epochs, stage 2
the paper's 100; Adam at 1e-5 in both stages with lr x 0.98 per epoch ("exponential
decay", rate not given); d = 128; W_v starts as a copy of W_u (``fop_tied_init``: the
single-stream features of both modalities share one space, so stage 2 starts from the
cross-modal alignment stage 1 reached rather than from two unrelated random projections); L_OC weight alpha = 1 (eq. 11, value not given); the
negative term of L_OC has weight 1 with its absolute value, as eq. 10 writes it (FOP's
reference code uses 0.7: ``opl_neg_weight``), and the diagonal (i = j) is excluded from
the positive mean.

Ablations (paper table 6) as variants: ``no_fusion`` (FOP loss on u and v directly, no
fusion), ``fusion_ce`` (fusion + CE only), ``fusion_cos`` (fusion + orthogonal/cosine loss only).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.losses import batch_center_loss, orthogonal_projection_loss
from facevoice.training.methods import COMMON_DEFAULTS, DEMO_EPOCHS, FaceVoiceModel, optimizer, stage
from facevoice.training.nets import build_image_encoder, standardize_images

NAME = "ssnet_fop"

PAPER = {
    **COMMON_DEFAULTS,
    "voice_feature": "spectrogram",
    "crop_frames": [300, 300],     # choice: 3 s windows, fixed so every window has one time scale
    "face_size": 160,              # choice: the shards' 160 px (paper: 256 px); spectrograms resized to it
    "encoder": {"type": "inception_resnet_v1", "dim": 512, "dropout": 0.6},
    "lambda_center": 1.0,
    "center_normalize": False,     # eq. 1-2: center loss on the raw features (variant center_l2: normalised)
    "fusion": True,
    "fop_dim": 128,                # choice: d of eq. 3-4
    "fop_tied_init": True,         # choice: W_v starts as a copy of W_u (one feature space after stage 1)
    "ce_weight": 1.0,
    "opl_weight": 1.0,             # alpha of eq. 11 (paper silent)
    "opl_neg_weight": 1.0,         # eq. 10 as written (FOP reference code: 0.7)
    "stages": {
        "center": stage(50, 15, 3, optimizer("adam", lr=1e-5, gamma=0.98, schedule="exp")),
        "fop": stage(100, 32, 4, optimizer("adam", lr=1e-5, gamma=0.98, schedule="exp"), cache=True),
    },
}

DEMO = {
    **PAPER,
    "face_size": 64,
    "crop_frames": [150, 150],
    "eval_max_frames": 600,
    "encoder": {"type": "small_cnn", "dim": 128, "channels": [16, 32, 64, 96]},
    "fop_dim": 64,
    "stages": {
        "center": stage(DEMO_EPOCHS, 8, 2, optimizer("adam", lr=1e-3, gamma=0.9, schedule="exp")),
        "fop": stage(DEMO_EPOCHS, 8, 2, optimizer("adam", lr=1e-3, gamma=0.95, schedule="exp"), cache=True),
    },
}

DEBUG = {
    **DEMO,
    "face_size": 32,
    "crop_frames": [40, 40],
    "eval_max_frames": 200,
    "encoder": {"type": "debug", "dim": 16},
    "fop_dim": 16,
    "stages": {
        "center": stage(4, 8, 2, optimizer("adam", lr=1e-3, gamma=0.9, schedule="exp")),
        "fop": stage(20, 8, 2, optimizer("adam", lr=1e-3, gamma=0.95, schedule="exp"), cache=True),
    },
}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "center_l2": {"description": "not in the paper: the stage-1 center loss on L2-normalised features",
                  "overrides": {"center_normalize": True}},
    "no_fusion": {"description": "table 6: single stream + FOP loss, no fusion", "overrides": {"fusion": False}},
    "fusion_ce": {"description": "table 6: fusion + CE loss only", "overrides": {"opl_weight": 0.0}},
    "fusion_cos": {"description": "table 6: fusion + cosine (orthogonal projection) loss only",
                   "overrides": {"ce_weight": 0.0}},
}


class SSNetFOP(FaceVoiceModel):
    name = NAME
    cacheable = ("fop",)

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes)
        self.encoder = build_image_encoder(hp["encoder"], face_weights)
        f = self.encoder.dim
        d = int(hp["fop_dim"])
        self.n_bins = n_bins
        self.center_classifier = nn.Linear(f, n_classes)
        self.proj_face = nn.Linear(f, d)
        self.proj_voice = nn.Linear(f, d)
        self.gate = nn.Linear(2 * f, d)
        self.fop_classifier = nn.Linear(d, n_classes, bias=False)
        if hp["fop_tied_init"]:
            self.proj_voice.load_state_dict(self.proj_face.state_dict())
        self.set_stage(0)

    def weights_source(self) -> str:
        return self.encoder.weights_source

    def note(self) -> str:
        if self.hp["center_normalize"]:
            return "stage-1 center loss on L2-normalised features (variant center_l2, not the paper's)"
        return "stage-1 center loss on raw features (the paper's eq. 1-2: Wen et al.'s center loss)"

    # --- stages
    def set_stage(self, index: int) -> None:
        super().set_stage(index)
        first = index == 0
        for m in (self.encoder, self.center_classifier):
            m.requires_grad_(first)
        for m in (self.proj_face, self.proj_voice, self.gate, self.fop_classifier):
            m.requires_grad_(not first)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage_index > 0:
            self.encoder.eval()  # frozen: its batch norms keep the stage-1 statistics
        return self

    # --- inputs
    def _size(self) -> int:
        return int(self.hp["face_size"])

    def _spectrogram_images(self, voices: torch.Tensor) -> torch.Tensor:
        s = self._size()
        img = F.interpolate(voices[:, None].float(), size=(s, s), mode="bilinear", align_corners=False)
        return img.expand(-1, 3, -1, -1)

    def _windows(self, voices: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(B, bins, T) -> (B * n, bins, win): T cut into n windows of crop_frames[1]."""
        win = int(self.hp["crop_frames"][1])
        b, bins, t = voices.shape
        if t < win:
            voices = voices.repeat(1, 1, -(-win // t))[:, :, :win]
            t = win
        n = t // win
        w = voices[:, :, : n * win].reshape(b, bins, n, win).permute(0, 2, 1, 3).reshape(b * n, bins, win)
        return w, n

    def _encode_mixed(self, faces: torch.Tensor, voices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([standardize_images(faces), self._spectrogram_images(voices)])
        feats = self.encoder(x)
        return feats[: len(faces)], feats[len(faces):]

    def backbone_face(self, faces):
        return self.encoder(standardize_images(faces))

    def backbone_voice(self, voices):
        w, n = self._windows(voices)
        feats = self.encoder(self._spectrogram_images(w))
        return feats.reshape(len(voices), n, -1).mean(1)

    # --- losses
    def loss(self, faces, voices, labels):
        if self.stage_index == 0:
            ff, fv = self._encode_mixed(faces, voices)
            feats = torch.cat([ff, fv]).float()
            both = torch.cat([labels, labels])
            ce = F.cross_entropy(self.center_classifier(feats), both)
            cen = batch_center_loss(F.normalize(feats, dim=1) if self.hp["center_normalize"] else feats, both)
            total = ce + self.hp["lambda_center"] / 2.0 * cen
            return total, {"ce": ce.detach(), "center": cen.detach()}
        with torch.no_grad():
            ff, fv = self._encode_mixed(faces, voices)
        return self.loss_from_features(ff, fv, labels)

    def project(self, face_feats: torch.Tensor, voice_feats: torch.Tensor):
        u = F.normalize(torch.tanh(self.proj_face(face_feats.float())), dim=1)
        v = F.normalize(torch.tanh(self.proj_voice(voice_feats.float())), dim=1)
        return u, v

    def loss_from_features(self, face_feats, voice_feats, labels):
        hp = self.hp
        u, v = self.project(face_feats, voice_feats)
        if hp["fusion"]:
            k = torch.sigmoid(self.gate(torch.cat([voice_feats.float(), face_feats.float()], 1)))
            x = k * u + (1.0 - k) * v
            y = labels
        else:
            x = torch.cat([u, v])
            y = torch.cat([labels, labels])
        ce = F.cross_entropy(self.fop_classifier(x), y)
        opl, terms = orthogonal_projection_loss(x, y, float(hp["opl_neg_weight"]))
        total = hp["ce_weight"] * ce + hp["opl_weight"] * opl
        terms.update({"ce": ce.detach(), "opl": opl.detach()})
        if hp["fusion"]:
            terms["gate"] = k.detach().mean()
        return total, terms

    # --- embeddings: stage 1 the network's features, stage 2 the projections u and v
    def embed_face(self, faces):
        b = self.backbone_face(faces).float()
        if self.stage_index == 0:
            return F.normalize(b, dim=1)
        return F.normalize(torch.tanh(self.proj_face(b)), dim=1)

    def embed_voice(self, voices):
        e = self.backbone_voice(voices).float()
        if self.stage_index == 0:
            return F.normalize(e, dim=1)
        return F.normalize(torch.tanh(self.proj_voice(e)), dim=1)


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> SSNetFOP:
    return SSNetFOP(hp, n_classes, n_bins, face_weights)
