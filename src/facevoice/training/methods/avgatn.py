"""``avgatn``: audio-visual generative adversarial and triplet network (Chen et al.).

Three stages, in training order:

``face_features``
    The paper starts from face-recognition CNN features extracted beforehand (Ren et al.'s
    53 x 49 feature matrices). Here a face CNN (``face_net``) is trained as an identity
    classifier on the training identities (cross-entropy), then frozen; with VGGFace2
    weights (``train.face_weights``) in the paper profile it only fine-tunes. This stage
    keeps its last epoch (``select_last``): its cross-modal validation AUC means nothing yet.
``gan`` (updates made by :meth:`AVGATN.train_step`)
    Generators G_f (face features) and G_a (MFCC matrix): two convolutions and two fully
    connected layers each, the second FC (the *common layer*) shared by both, batch norm
    after every layer. ``h`` = features before the common layer, ``s`` = after. Two
    cross-modal discriminators on concatenations: D_Cf scores (h_f, s_f), its own modality's
    pair, and (h_f, s_a), the other modality's common feature beside its h; D_Ca likewise
    (h_a, s_a) and (h_a, s_f). Eq. 6-9 of the paper::

        L_DCf = -mean[log D_Cf(h_f, s_f) + log(1 - D_Cf(h_f, s_a))]       (6)
        L_DCa = -mean[log D_Ca(h_a, s_a) + log(1 - D_Ca(h_a, s_f))]       (7)
        L_Gf  =  mean[log(1 - D_Cf(h_f, s_a))]                             (8)
        L_Ga  =  mean[log(1 - D_Ca(h_a, s_f))]                             (9)

    each minimised: a discriminator learns to tell whether the common feature beside its
    modality's ``h`` came from its own modality (output -> 1) or the other (output -> 0),
    and the generators learn to make the other modality's common feature pass as the
    discriminator's own ("recognised by each modality's discriminator as generated inside
    that modality", the paper's stated aim). Eq. 6-7 are printed as
    ``mean[log D(h_f, s_a) + log(1 - D(h_f, s_f))]`` to be minimised: the same direction, but
    a loss without a lower bound (a perfect discriminator drives it to -inf, and minimising
    it only grows the logits, the two players' losses falling without end). The
    paper's own description (its GAN background, eq. 1: the discriminator "maximises the score
    of correct discrimination"; eq. 6-7 turn that into a minimisation for gradient descent) is the textbook
    value function V = log D(own) + log(1 - D(other)) with D maximising it, so L_D = -V:
    a binary cross-entropy, >= 0, with limit 0 for a perfect discriminator (binary
    cross-entropy on the logits, :func:`discriminator_losses`). Eq. 8-9 are V's second term,
    minimised by the generators as printed (the minimax game; 0 for a perfect discriminator,
    negative while the generators fool it). One discriminator update, then
    ``g_steps`` (5) generator updates, all on the same batch (the face CNN's features are
    computed once per batch). Every update is counted in buffers (``d_updates``,
    ``g_updates``), saved with the checkpoints. In the generator updates the discriminators
    score the same batch of both pairs as in their own update (only the other-modality
    pairs' logits enter eq. 8-9) with their batch norm's running statistics frozen
    (:func:`frozen_statistics`), so they normalise as in the update that trained them and
    one-sided batches never move them. The stage runs its fixed schedule and keeps its last
    epoch (``select_last``), as the paper trains the GAN for a fixed 30,000 iterations: a
    GAN's losses do not settle where a validation AUC could choose, and the matching
    stage, which does select on the validation AUC, starts from where the GAN ended.
``match``
    With the GAN frozen, the matching network (two FC layers, shared by both modalities) maps
    s_f and s_a, as one batch of both, to t_f and t_a and is trained with the triplet loss
    of eq. 10-11 on ``d = |cos|``: ``max(d(t_f, t~_a) - d(t_f, t_a) + margin, 0)``, margin 0.2; and the
    identity network (two FC layers, softmax) on the concatenation [s_f, s_a] with
    cross-entropy (eq. 12). ``id_acc`` in ``log.csv`` is its accuracy on the training batches
    (the only identities it knows: evaluation identities are never seen in training).

Score: the absolute cosine |cos(t_f, t_a)| of the embeddings (``SCORE``), the distance the
matching network is trained on (eq. 10-11; the paper takes the absolute value "to make the
threshold decision at test time easy"), used everywhere the method is scored: model
selection, every evaluation protocol, and the paper's decision rule |cos| > 0.5
(``SCORE_THRESHOLD``; the evaluation reports the accuracy at it beside AUC/EER). The
ablation variants keep the same score.

Choices where the paper is silent (named in the hyperparameters):

- one face frame per sample: the paper's face sample is a 53 x 49 matrix, the CNN features
  of the 49 frames of a 0.5 s window side by side, as its voice sample is 25 MFCC x 49
  frames; both generators convolve along time with the features (the coefficients) as
  channels, then average-pool over time. Our pairs hold one aligned frame, so G_f sees a
  one-step sequence whose channels are the face CNN's features (its convolutions act as
  fully connected layers on them); G_a convolves along time over the MFCC coefficients as
  the paper. (An earlier version ran G_f's convolutions along the feature vector as a
  1-channel sequence and pooled over it: a few numbers per channel, position-averaged over
  an arbitrary order of features, left to carry the face; on the positive control its
  best validation AUC was 0.59 and its unseen-unheard AUC U 60.9 [49.4, 71.4]; with the
  features as channels 0.65 and 67.7 [55.9, 77.5].)
- voices embed in windows: the paper's samples, in training and in test, are 0.5 s windows
  (49 MFCC frames); ours are whole utterances (up to ``eval_max_frames``). The batch norm
  after the time pooling learns the spread of features pooled over training crops, and
  pooled over a whole utterance that spread shrinks (by about crop / utterance length), so
  a voice embeds as the mean of the unit embeddings of its consecutive ``voice_window``-frame
  windows (the last one ending at the utterance's end), normalised (:func:`voice_windows`,
  :meth:`AVGATN.embed_voice`). ``voice_window`` must lie in ``crop_frames``; every profile
  crops exactly ``voice_window`` frames (49 in the paper and demo profiles), so training and
  embedding pool over the same length;
- batch norm everywhere (the paper: after every layer) sees in training the statistics it
  uses in evaluation: the common layer's FC is shared, its batch norm is per modality (one
  set of statistics over two modalities would mix them), and each modality goes through it
  alone in training and in evaluation; the matching network's FC layers and batch norm are
  shared (the paper: one network for both modalities), and it trains on the faces and voices
  of a batch as one batch (normalising each modality with its own batch's statistics in
  training would not be what the running statistics, a mix of both, give in evaluation);
- a triplet's negative t~_a is a voice of another identity drawn at random from the batch;
- the identity network is trained together with the matching network (one loss, weight
  ``id_weight`` = 1); the paper trains both in its second step;
- the discriminators see the own and the other-modality pairs in one batch (batch norm statistics
  over both), in their updates and, with their running statistics frozen, in the
  generators' (the alternatives: eval mode, whose running statistics lag behind the batches
  early on; one-sided batches, whose statistics the discriminator was never trained on);
- the paper's 70,000 iterations of batch 100 (30,000 GAN, 40,000 stage 2) become epochs
  of P x K batches (10 identities x 5 pairs = 100 pairs); Adam 1e-4 (not given), in the
  GAN stage of every profile: at 1e-3 (the demo's rate elsewhere) the generators, with the
  discriminators' cross-entropy of eq. 6-7, win the game within a few epochs by giving up
  what tells people apart (debug profile: validation AUC after the match stage 0.54 at
  1e-3, 0.78 at 1e-4, the GAN's last epoch kept).

Ablations, as variants: ``no_common`` (each generator its own last layer), ``no_matching``
(score = cosine of the common features s; the match stage trains only the identity
network). The paper's third ablation (section 4.3.3, table 1: the identity network on s_a,
s_f or [s_f, s_a]) is not offered: it compares the identity network's ID accuracy on the
five characters it was trained on, and our evaluation scores face-voice association on
other identities by |cos(t_f, t_a)|, to which the identity network contributes nothing (it
shares no parameters with the generators or the matching network and trains on frozen s);
those variants gave the very same embeddings, and so the same tables, as ``avgatn``. The
identity network takes [s_f, s_a], as the paper's model; its accuracy on the training
batches is ``id_acc`` in ``log.csv``.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.methods import COMMON_DEFAULTS, DEMO_EPOCHS, FaceVoiceModel, make_optimizer, optimizer, stage
from facevoice.training.nets import build_image_encoder, standardize_images

NAME = "avgatn"
SCORE = "abs_cosine"   # |cos(t_f, t_a)|: the method's own score (facevoice.evaluation.evaluate.SCORERS)
SCORE_THRESHOLD = 0.5  # the paper's decision threshold on that score

PAPER = {
    **COMMON_DEFAULTS,
    "voice_feature": "mfcc",
    "crop_frames": [49, 49],            # 0.5 s windows: 25 MFCC (features.mfcc.n_mfcc) x 49 frames, as the paper
    "eval_max_frames": 1000,
    "voice_window": 49,                 # voices embed as the mean of windows of this many frames (training crops)
    "face_size": 160,
    "stages": {
        "face_features": stage(10, 10, 5, optimizer("adam", lr=1e-4)),
        "gan": stage(30, 10, 5, optimizer("adam", lr=1e-4, betas=[0.5, 0.999])),
        "match": stage(40, 10, 5, optimizer("adam", lr=1e-4)),
    },
    "face_net": {"type": "inception_resnet_v1", "dim": 512, "dropout": 0.6},
    "conv_channels": [32, 64],          # G_f / G_a: two convolutions (k3, s2)
    "hidden_dim": 512,                  # h: the first FC's width (before the common layer)
    "common_dim": 256,                  # s: the common layer's width
    "match_dims": [256, 128],           # matching network: two FC layers
    "id_hidden": 256,                   # identity network: FC -> softmax
    "disc_hidden": 256,                 # discriminators: FC -> 1
    "shared_common": True,
    "matching": True,
    "id_weight": 1.0,
    "g_steps": 5,                       # generator updates per discriminator update
    "margin": 0.2,
}

DEMO = {
    **PAPER,
    # CPU demo: small CNN on 64 px faces, narrow generators, 30 epochs a stage (10 of face pre-training)
    "face_size": 64,
    "eval_max_frames": 600,
    "stages": {
        "face_features": stage(10, 8, 2, optimizer("adam", lr=1e-3)),
        "gan": stage(DEMO_EPOCHS, 8, 2, optimizer("adam", lr=1e-4, betas=[0.5, 0.999])),  # the paper profile's
        "match": stage(DEMO_EPOCHS, 8, 2, optimizer("adam", lr=1e-3)),
    },
    "face_net": {"type": "small_cnn", "dim": 128, "channels": [16, 32, 64, 96]},
    "conv_channels": [16, 32],
    "hidden_dim": 128,
    "common_dim": 64,
    "match_dims": [64, 64],
    "id_hidden": 64,
    "disc_hidden": 64,
}

DEBUG = {
    **DEMO,
    # tests: tiny encoders, 32 px faces, log-mel (the synthetic corpus has no MFCC)
    "voice_feature": "logmel",
    "face_size": 32,
    "crop_frames": [40, 40],
    "eval_max_frames": 200,
    "voice_window": 40,
    "stages": {
        "face_features": stage(2, 8, 2, optimizer("adam", lr=3e-3)),
        "gan": stage(3, 8, 2, optimizer("adam", lr=1e-4, betas=[0.5, 0.999])),
        "match": stage(6, 8, 2, optimizer("adam", lr=3e-3)),
    },
    "face_net": {"type": "debug", "dim": 16},
    # G_f's convolutions take the 16 face features as channels: at [8, 8] they kept half of
    # them (the synthetic corpus's validation AUC 0.68; 0.80 at [32, 32])
    "conv_channels": [32, 32],
    "hidden_dim": 32,
    "common_dim": 16,
    "match_dims": [16, 16],
    "id_hidden": 16,
    "disc_hidden": 16,
}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "no_common": {"description": "without the common (shared last) layer", "overrides": {"shared_common": False}},
    "no_matching": {"description": "without the matching network (cosine of the common features)",
                    "overrides": {"matching": False}},
    # No id_face / id_voice (the paper's table 1: the identity network on s_f, s_a or both): the
    # identity network shares no parameters with what the evaluation scores, so those variants gave
    # the same embeddings and the same tables (module docstring, "Ablations").
}


def _fc(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU())


class Generator(nn.Module):
    """Two Conv1d (k3, s2, p1) + BN + ReLU, average pooling over the sequence, FC + BN + ReLU -> h."""

    def __init__(self, in_channels: int, channels: list[int], hidden: int):
        super().__init__()
        layers, c = [], in_channels
        for out in channels:
            layers += [nn.Conv1d(c, out, 3, stride=2, padding=1), nn.BatchNorm1d(out), nn.ReLU()]
            c = out
        self.conv = nn.Sequential(*layers)
        self.fc = _fc(c, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> h (B, hidden)
        return self.fc(self.conv(x).mean(dim=2))


class Common(nn.Module):
    """The common layer: one FC (shared between modalities or not), batch norm per modality."""

    def __init__(self, hidden: int, dim: int, shared: bool):
        super().__init__()
        self.fc_f = nn.Linear(hidden, dim)
        self.fc_a = self.fc_f if shared else nn.Linear(hidden, dim)
        self.bn_f = nn.BatchNorm1d(dim)
        self.bn_a = nn.BatchNorm1d(dim)

    def face(self, h: torch.Tensor) -> torch.Tensor:
        return self.bn_f(self.fc_f(h))

    def voice(self, h: torch.Tensor) -> torch.Tensor:
        return self.bn_a(self.fc_a(h))


class Discriminator(nn.Module):
    """FC + BN + LeakyReLU -> FC -> logit, on the concatenation (h, s)."""

    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h, s], dim=1)).squeeze(1)


@contextlib.contextmanager
def frozen_statistics(*modules: nn.Module):
    """Batch norm in ``modules`` normalises with the batch's statistics (train mode) but leaves
    its running statistics and counts as they are."""
    bns = [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [m.track_running_stats for m in bns]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, t in zip(bns, tracking):
            m.track_running_stats = t


def voice_windows(voices: torch.Tensor, window: int) -> torch.Tensor:
    """(B, bins, T) -> (B, n, bins, window): consecutive windows, the last one ending at the end
    (overlapping the one before when T is not a multiple); voices shorter than a window are
    tiled to it, as the training loader tiles short utterances."""
    t = voices.shape[2]
    if t < window:
        voices = voices.repeat(1, 1, -(-window // t))[:, :, :window]
        t = window
    starts = list(range(0, t - window + 1, window))
    if starts[-1] + window < t:
        starts.append(t - window)
    return torch.stack([voices[:, :, s: s + window] for s in starts], dim=1)


def _bce(own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """-mean[log D(own)] - mean[log(1 - D(other))] from logits (one mean when both are one batch size)."""
    return (F.binary_cross_entropy_with_logits(own, torch.ones_like(own))
            + F.binary_cross_entropy_with_logits(other, torch.zeros_like(other)))


def discriminator_losses(other_f: torch.Tensor, own_f: torch.Tensor, other_a: torch.Tensor,
                         own_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6-7 from discriminator logits, as a loss to minimise: -mean[log D(own) + log(1 - D(other))]
    for D_Cf (own (h_f, s_f), other (h_f, s_a)) and D_Ca; >= 0, 0 for a perfect discriminator."""
    return _bce(own_f, other_f), _bce(own_a, other_a)


def generator_losses(other_f: torch.Tensor, other_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8-9 from the logits of the other-modality pairs: mean[log(1 - D_Cf(h_f, s_a))],
    mean[log(1 - D_Ca(h_a, s_f))]; 0 for a perfect discriminator, negative while it is fooled."""
    return F.logsigmoid(-other_f).mean(), F.logsigmoid(-other_a).mean()


def abs_cos_triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                         margin: float) -> torch.Tensor:
    """Eq. 10-11: mean(max(|cos(a, n)| - |cos(a, p)| + margin, 0))."""
    d_pos = F.cosine_similarity(anchor, positive, dim=1).abs()
    d_neg = F.cosine_similarity(anchor, negative, dim=1).abs()
    return F.relu(d_neg - d_pos + margin).mean()


def random_negatives(labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each sample, the index of a random sample of another identity in the batch."""
    other = (labels[:, None] != labels[None, :]).float()
    if not bool((other.sum(1) > 0).all()):
        raise ValueError("a triplet needs at least two identities in the batch")
    return torch.multinomial(other.cpu(), 1, generator=generator).squeeze(1).to(labels.device)


class AVGATN(FaceVoiceModel):
    name = NAME
    custom_steps = ("gan",)
    select_last = ("face_features", "gan")
    adversarial_stages = ("gan",)  # its discriminator and generator terms: curve.png draws them apart

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes)
        self.face_net = build_image_encoder(hp["face_net"], face_weights)
        self.face_classifier = nn.Linear(self.face_net.dim, n_classes)
        ch, hid, dim = list(hp["conv_channels"]), int(hp["hidden_dim"]), int(hp["common_dim"])
        self.gen_f = Generator(self.face_net.dim, ch, hid)  # features as channels, one time step
        self.gen_a = Generator(n_bins, ch, hid)
        self.common = Common(hid, dim, bool(hp["shared_common"]))
        self.disc_f = Discriminator(hid + dim, int(hp["disc_hidden"]))
        self.disc_a = Discriminator(hid + dim, int(hp["disc_hidden"]))
        m1, m2 = (int(x) for x in hp["match_dims"])
        self.matcher = nn.Sequential(_fc(dim, m1), nn.Linear(m1, m2))  # shared by both modalities
        lo, hi = (int(x) for x in hp["crop_frames"])
        if not lo <= int(hp["voice_window"]) <= hi:
            raise ValueError(f"voice_window ({hp['voice_window']}) must lie in crop_frames [{lo}, {hi}]: the "
                             f"windows voices embed in are what the pooled batch norm saw in training")
        self.identity = nn.Sequential(_fc(2 * dim, int(hp["id_hidden"])), nn.Linear(int(hp["id_hidden"]), n_classes))
        self.register_buffer("d_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_updates", torch.zeros((), dtype=torch.long))
        self._parts = {
            "face_features": [self.face_net, self.face_classifier],
            "gan": [self.gen_f, self.gen_a, self.common, self.disc_f, self.disc_a],
            "match": ([self.matcher] if hp["matching"] else []) + [self.identity],
        }
        self.set_stage(0)

    def weights_source(self) -> str:
        return self.face_net.weights_source

    # --- stages: what trains, what is frozen
    def set_stage(self, index: int) -> None:
        super().set_stage(index)
        train = {id(p) for m in self._parts[self.stage_name] for p in m.parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in train)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:  # frozen parts keep their batch-norm statistics
            for sname, mods in self._parts.items():
                if sname != self.stage_name:
                    for m in mods:
                        m.eval()
        return self

    def stage_optimizers(self, cfg: dict) -> dict[str, torch.optim.Optimizer]:
        if self.stage_name != "gan":
            return super().stage_optimizers(cfg)
        gen = [*self.gen_f.parameters(), *self.gen_a.parameters(), *self.common.parameters()]
        disc = [*self.disc_f.parameters(), *self.disc_a.parameters()]
        return {"d": make_optimizer(disc, cfg), "g": make_optimizer(gen, cfg)}

    # --- features
    def face_features(self, faces: torch.Tensor) -> torch.Tensor:
        return self.face_net(standardize_images(faces))

    def face_hs(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gen_f(feats.float()[:, :, None])
        return h, self.common.face(h)

    def voice_hs(self, voices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gen_a(voices)
        return h, self.common.voice(h)

    def _out(self, s: torch.Tensor) -> torch.Tensor:
        return self.matcher(s) if self.hp["matching"] and self.stage_name == "match" else s

    def disc_logits(self, h_f, s_f, h_a, s_a) -> tuple[torch.Tensor, torch.Tensor]:
        """D_Cf and D_Ca on one batch of the other-modality pairs then their own pairs (their
        batch norm normalises over both): ``(out_f, out_a)``, each ``(2B,)``, other first."""
        out_f = self.disc_f(torch.cat([h_f, h_f]), torch.cat([s_a, s_f]))
        out_a = self.disc_a(torch.cat([h_a, h_a]), torch.cat([s_f, s_a]))
        return out_f, out_a

    # --- training
    def loss(self, faces, voices, labels):
        if self.stage_name == "face_features":
            logits = self.face_classifier(self.face_features(faces).float())
            l_id = F.cross_entropy(logits, labels)
            acc = (logits.argmax(1) == labels).float().mean()
            return l_id, {"face_id": l_id.detach(), "face_acc": acc.detach()}
        if self.stage_name != "match":
            raise RuntimeError(f"stage {self.stage_name} is trained by train_step")
        with torch.no_grad():
            _, s_f = self.face_hs(self.face_features(faces))
            _, s_a = self.voice_hs(voices)
        terms = {}
        total = torch.zeros((), device=faces.device)
        if self.hp["matching"]:  # faces and voices as one batch, as the running statistics mix them
            t_f, t_a = self.matcher(torch.cat([s_f, s_a])).split(len(s_f))
            neg = random_negatives(labels)
            l_tri = abs_cos_triplet_loss(t_f, t_a, t_a[neg], float(self.hp["margin"]))
            total = total + l_tri
            terms["triplet"] = l_tri.detach()
        logits = self.identity(torch.cat([s_f, s_a], 1))
        l_id = F.cross_entropy(logits, labels)
        total = total + float(self.hp["id_weight"]) * l_id
        terms.update({"id": l_id.detach(), "id_acc": (logits.argmax(1) == labels).float().mean().detach()})
        return total, terms

    def train_step(self, faces, voices, labels, opts, autocast):
        """One discriminator update, then ``g_steps`` generator updates, on this batch."""
        with torch.no_grad(), autocast:
            feats = self.face_features(faces).float()
        with autocast:
            h_f, s_f = self.face_hs(feats)
            h_a, s_a = self.voice_hs(voices)
            # the discriminators see the generators' outputs as fixed inputs
            n = len(h_f)
            out_f, out_a = self.disc_logits(h_f.detach(), s_f.detach(), h_a.detach(), s_a.detach())
            l_df, l_da = discriminator_losses(out_f[:n], out_f[n:], out_a[:n], out_a[n:])
            l_d = (l_df + l_da).float()
        opts["d"].zero_grad(set_to_none=True)
        if not torch.isfinite(l_d):
            return {"loss": l_d.detach()}
        l_d.backward()
        opts["d"].step()
        self.d_updates += 1
        g_losses = []
        for _ in range(int(self.hp["g_steps"])):
            with autocast:
                h_f, s_f = self.face_hs(feats)
                h_a, s_a = self.voice_hs(voices)
                with frozen_statistics(self.disc_f, self.disc_a):  # D as in its update, statistics kept
                    out_f, out_a = self.disc_logits(h_f, s_f, h_a, s_a)
                l_gf, l_ga = generator_losses(out_f[:n], out_a[:n])
                l_g = (l_gf + l_ga).float()
            opts["g"].zero_grad(set_to_none=True)
            l_g.backward()
            opts["g"].step()
            self.g_updates += 1
            g_losses.append(l_g.detach())
        opts["d"].zero_grad(set_to_none=True)  # the generator updates left gradients on D
        l_g = torch.stack(g_losses).mean()
        return {"loss": l_d.detach() + l_g, "d": l_d.detach(), "d_f": l_df.detach(), "d_a": l_da.detach(),
                "g": l_g, "cos_s": F.cosine_similarity(s_f, s_a, dim=1).mean().detach()}

    # --- embeddings: the common features s (before the match stage), then t
    def embed_face(self, faces):
        _, s = self.face_hs(self.face_features(faces))
        return F.normalize(self._out(s).float(), dim=1)

    def embed_voice(self, voices):
        """The mean of the unit embeddings of the voice's ``voice_window``-frame windows, normalised."""
        win = voice_windows(voices, int(self.hp["voice_window"]))
        b, n = win.shape[:2]
        _, s = self.voice_hs(win.flatten(0, 1))
        t = F.normalize(self._out(s).float(), dim=1).view(b, n, -1)
        return F.normalize(t.mean(dim=1), dim=1)


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> AVGATN:
    return AVGATN(hp, n_classes, n_bins, face_weights)
