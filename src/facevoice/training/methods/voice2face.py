"""``voice2face``: reconstructing faces from voices (Wen et al., NeurIPS 2019, as a news article reports it).

Four networks (the article's figure and table):

voice embedding network
    five Conv1d (k3, s2, p1), the first four with BN + ReLU, average pooling over time,
    64-D (:class:`facevoice.training.nets.DIMNetVoice`: channels 256-384-576-864, then the fifth
    conv to 64; its batch norm after the pooling is the project's choice, see ``nets``).
    Pre-trained as a speaker classifier over the training identities (stage ``pretrain``),
    then frozen. Its output e is L2-normalised before the generator.
generator G
    transposed convolutions 64 -> 1024 (4x4, k4 s1 p0) -> 512 -> 256 -> 128 -> 64 (k4 s2
    p1 each, doubling the side) -> 3 (k1), ReLU between; a 64 x 64 RGB face in [-1, 1]
    (``generator.channels``; the side is 4 x 2^(len - 1), so 4 channels give 32 px).
discriminator D and classifier C
    one convolutional trunk with LeakyReLU (0.2): Conv 1x1 3 -> 32, then k4 s2 p1 32 ->
    64 -> 128 -> 256 -> 512, then k4 s1 p0 to a 64-D vector (6 layers, ``trunk``); D is a
    linear real/fake output on it, C a linear classifier over the training identities.

Stage ``pretrain`` (a plain loss): the voice network + a linear speaker classifier, cross
entropy over the training identities; in the same stage, with parameters of its own, the
face embedding network (``face_net``) + a linear identity classifier on the real faces
of the training identities. That face network is the *judge* of the article's
evaluation ("a face embedding network trained on the training identities scores the
generated faces"); it is frozen afterwards, like the voice network.

Stage ``gan`` (the model makes its own updates, :meth:`Voice2Face.train_step`): with the
voice network and the judge frozen (no gradient, eval-mode batch norms), per batch::

    e     = l2(l2(voice_net(voice)) + 0.05 n),  n ~ N(0, I)      (training only)
    f'    = G(e)
    L_D   = BCE(D(f), 1) + BCE(D(f'), 0) + CE(C(f), y)            -> trunk, D, C   ("d")
    L_G   = BCE(D(f'), 1) + CE(C(f'), y)                          -> G             ("g")

f the real faces (mapped to [-1, 1]), y the identity of face and voice i (a P x K batch
pairs them). One D/C update, then one G update against the updated D and C (the order of
the authors' public code). Adam 2e-4, betas (0.5, 0.999), for both optimizers. The loss
reported as ``loss`` is L_D + L_G; every term is logged.

Embeddings (so the common protocols and tables include the method): ``embed_face`` is
the judge's embedding of a real face; ``embed_voice`` the judge's embedding of the face
generated from that voice (no noise). Each is L2-normalised, centred on the running mean of
its kind (``centre_embeddings``, below) and normalised again. Cosine scores between them are
the article's cross-modal matching score ("matching a generated face to a real one becomes
face recognition"), and V-F 1:2 matching on them is its 1:2 protocol.
:meth:`Voice2Face.generate_faces` gives the pictures (``facevoice generate``).

Choices where the article is silent (named in the hyperparameters). Where the authors'
public code (cmu-mlsp/reconstructing_faces_from_voices) settles a detail, it is followed:
no batch norm in G or in the trunk; D and C linear heads without bias on the trunk's
64-D output; real faces resized to 64 px, flipped at random, as 2 x - 1; the 0.05
perturbation of e (``embedding_noise``); one D/C update then one G update per batch;
crops of 300-800 frames (3-8 s) in training; 30,000 iterations of batch 128 (here 30
epochs of 1,000 batches of 64 identities x 2 pairs). Ours:

- G ends with tanh (the authors' last 1x1 conv is linear), so its faces are in [-1, 1];
  generated faces enter the judge as (f' + 1) / 2, the same [0, 1] images (with the
  project's fixed standardisation) as real faces; BCE is taken on logits;
- the voices and the real faces of a batch are of the *same* identities (the trainer's
  P x K pairs; the authors draw the two batches independently);
- pre-training (the article cites a speaker-recognition pre-training, no schedule): Adam
  1e-3 with lr x 0.95 per epoch, 30 epochs, linear classifiers on the raw voice and face
  features; the judge is a plain CNN at the generator's 64 px (Inception-ResNet-V1 does
  not fit 64 px inputs) trained on the same batches;
- whole utterances (<= 10 s) to embed and to generate from;
- the score centres each kind of embedding (``centre_embeddings``; the article names no
  score beyond face recognition): the judge never saw a generated face in training, and every
  generated face lands near one common point of its space (the mean of their normalised
  embeddings has norm 0.7, that of real faces 0.36, on the positive control). Uncentred, a
  trial's cosine then carries a term that depends on the real face alone (how close it lies
  to that point), the same for its true and its impostor voices. The running means (momentum
  ``centre_momentum`` per GAN step, the plain mean over the first steps) are of the real
  training faces and of the faces the scored generator makes from the training voices of
  each batch; they are buffers of the model, saved with it. On the positive control's
  validation identities: AUC 0.59 -> 0.62 for the same generator;
- ``generator_average`` (``demo`` and ``debug``: 0.995; ``paper``: 0, the authors' code): the
  faces scored and drawn come from an exponential moving average of G's weights, updated after
  every G step (the average of a GAN's generator, as in progressive GANs). A few hundred GAN
  steps leave G's last epoch a lottery: on the positive control the validation AUC moved by up
  to 0.05 between epochs, 0.54-0.64 over the last 40; with the average and the centring it
  rises smoothly to 0.69 (GAN epoch 22), then stays within 0.63-0.69 (last epoch: 0.66);
- before the generator is trained (stage ``pretrain``) there is no cross-modal score:
  ``embed_voice`` returns NaN, so the trainer's validation AUC is undefined for that
  stage and its last epoch is the one the GAN stage starts from; the GAN stage keeps its
  last epoch too, as the authors' code keeps its last iteration's generator (both in
  ``select_last``): the validation AUC (the judge's cosine of real faces against faces
  generated from voices) is logged every epoch but chooses nothing, because a GAN's
  losses do not settle where it could (on the demo it chose an early, untrained generator).

Profiles: ``demo`` keeps the 64 px faces and the layer counts with narrow networks
(about 1.2 s per GAN epoch on one CPU core for the demo corpus; 20 + 60 epochs at a
learning rate of 2e-3, since 20 GAN epochs at 1e-3 never got the generator's identity term
below chance); ``debug`` makes 32 px
faces (one up-sampling layer fewer in G and in the trunk) with a higher learning rate
(2e-3) so that the tests' few hundred GAN steps learn something.

Variants: ``no_classifier`` (no C: G learns from D only; the identity term is what the
article credits for faces that match the speaker), ``no_adversarial`` (no D: G learns
from C only, no realism term), ``no_noise`` (no embedding perturbation), ``uncentred`` (the
judge's plain cosine), ``no_average`` (G's own last weights score).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.methods import COMMON_DEFAULTS, FaceVoiceModel, make_optimizer, optimizer, stage
from facevoice.training.nets import build_image_encoder, build_voice_encoder, standardize_images

NAME = "voice2face"

PAPER = {
    **COMMON_DEFAULTS,
    "face_size": 64,                     # the generator's 64 x 64 faces; real faces resized to it
    "face_aug": {"flip": True, "crop_scale": 1.0, "jitter": 0.0},  # flips only (authors' code)
    "crop_frames": [300, 800],           # 3-8 s training crops (authors' code)
    "eval_max_frames": 1000,
    "voice_net": {"type": "dimnet", "dim": 64, "channels": [256, 384, 576, 864]},
    # the judge (face embedding network trained on the training identities); choice: plain CNN
    "face_net": {"type": "small_cnn", "dim": 128, "channels": [32, 64, 128, 256]},
    "generator": {"channels": [1024, 512, 256, 128, 64]},
    "trunk": {"channels": [32, 64, 128, 256, 512], "dim": 64},
    "leaky_slope": 0.2,
    "embedding_noise": 0.05,             # the authors' perturbation of e (their code)
    "adversarial_weight": 1.0,           # D's real/fake terms (0: no discriminator)
    "classifier_weight": 1.0,            # C's identity terms (0: no classifier)
    # the faces scored and drawn come from G's own weights (0.0, the authors' code) or from an
    # exponential moving average of them with this decay (a choice: see the module docstring)
    "generator_average": 0.0,
    # the score: the cosine of the judge's embeddings, each centred first on the mean embedding of
    # its kind (real training faces; faces generated from training voices), a choice, see above
    "centre_embeddings": True,
    "centre_momentum": 0.01,             # the running means' update per GAN step
    "stages": {
        "pretrain": stage(30, 64, 2, optimizer("adam", lr=1e-3, gamma=0.95, schedule="exp")),  # choice
        # the authors' code: 30,000 iterations of batch 128 -> 30 epochs of 1,000 batches of 64 x 2
        "gan": stage(30, 64, 2, optimizer("adam", lr=2e-4, betas=[0.5, 0.999]), batches_per_epoch=1000),
    },
}

DEMO = {
    **PAPER,
    # CPU demo: the same 64 px faces and layer counts, narrow networks, a few hundred GAN steps
    "crop_frames": [100, 200],
    "eval_max_frames": 600,
    # a few hundred GAN steps: the last epoch's generator is a lottery between epochs (validation
    # AUC 0.54-0.64 over the control's last 40); the average of its weights is not
    "generator_average": 0.995,
    "voice_net": {"type": "dimnet", "dim": 64, "channels": [64, 96, 128, 160]},
    "face_net": {"type": "small_cnn", "dim": 64, "channels": [16, 32, 64, 96]},
    "generator": {"channels": [128, 64, 32, 16, 8]},
    "trunk": {"channels": [8, 16, 32, 64, 128], "dim": 64},
    # 20 pre-training epochs, then 60 GAN epochs (about 660 updates) at 2e-3: at 1e-3 and 20
    # epochs the generator's identity term never fell below chance (faces: a green lattice)
    "stages": {
        "pretrain": stage(20, 8, 2, optimizer("adam", lr=2e-3, gamma=0.9, schedule="exp")),
        "gan": stage(60, 8, 2, optimizer("adam", lr=2e-3, betas=[0.5, 0.999])),
    },
}

DEBUG = {
    **DEMO,
    # tests: 32 px faces, tiny networks, short crops, a fast (and noisier) GAN
    "face_size": 32,
    "crop_frames": [40, 60],
    "eval_max_frames": 200,
    "voice_net": {"type": "dimnet", "dim": 16, "channels": [16, 16, 16, 16]},
    "face_net": {"type": "small_cnn", "dim": 32, "channels": [8, 16, 32]},
    "generator": {"channels": [128, 64, 32, 16]},
    "trunk": {"channels": [8, 16, 32, 64], "dim": 16},
    "stages": {
        "pretrain": stage(12, 8, 2, optimizer("adam", lr=3e-3, gamma=0.9, schedule="exp")),
        "gan": stage(50, 8, 2, optimizer("adam", lr=2e-3, betas=[0.5, 0.999])),
    },
}

PROFILES = {"paper": PAPER, "demo": DEMO, "debug": DEBUG}

VARIANTS = {
    "no_classifier": {"description": "no identity classifier C: G learns from the discriminator only",
                      "overrides": {"classifier_weight": 0.0}},
    "no_adversarial": {"description": "no discriminator D: G learns from the identity classifier only",
                       "overrides": {"adversarial_weight": 0.0}},
    "no_noise": {"description": "no perturbation of the voice embedding before the generator",
                 "overrides": {"embedding_noise": 0.0}},
    "uncentred": {"description": "the judge's plain cosine: embeddings not centred on their kind's mean",
                  "overrides": {"centre_embeddings": False}},
    "no_average": {"description": "faces from G's last weights, not from the moving average of them",
                   "overrides": {"generator_average": 0.0}},
}


# --------------------------------------------------------------------------- networks


def image_side(n_layers: int) -> int:
    """Side of the generator's image for ``n_layers`` channel counts: 4 x 2^(n - 1)."""
    return 4 * 2 ** (n_layers - 1)


class Generator(nn.Module):
    """e (B, d) -> faces (B, 3, s, s) in [-1, 1], s = 4 x 2^(len(channels) - 1)."""

    def __init__(self, in_dim: int, channels: list[int]):
        super().__init__()
        if len(channels) < 1:
            raise ValueError("generator.channels needs at least one entry")
        layers: list[nn.Module] = [nn.ConvTranspose2d(in_dim, channels[0], 4, 1, 0), nn.ReLU(inplace=True)]
        for a, b in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(channels[-1], 3, 1, 1, 0))
        self.net = nn.Sequential(*layers)
        self.side = image_side(len(channels))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(e[:, :, None, None]))


class Trunk(nn.Module):
    """The conv trunk D and C share: (B, 3, s, s) in [-1, 1] -> (B, dim)."""

    def __init__(self, channels: list[int], dim: int, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 1, 1, 0), nn.LeakyReLU(slope, inplace=True)]
        for a, b in zip(channels, channels[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(slope, inplace=True)]
        layers.append(nn.Conv2d(channels[-1], dim, 4, 1, 0))
        self.net = nn.Sequential(*layers)
        self.side = image_side(len(channels))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


# --------------------------------------------------------------------------- losses


def discriminator_loss(d_real: torch.Tensor, d_fake: torch.Tensor, c_real: torch.Tensor | None,
                       labels: torch.Tensor, adversarial_weight: float = 1.0, classifier_weight: float = 1.0):
    """L_D = a [BCE(sigmoid(d_real), 1) + BCE(sigmoid(d_fake), 0)] + c CE(c_real, labels).

    ``d_real``/``d_fake``: real/fake logits (B,) or (B, 1); ``c_real``: identity logits of
    the real faces (or None when c = 0). Returns (total, terms)."""
    terms: dict[str, torch.Tensor] = {}
    total = d_real.new_zeros((), dtype=torch.float32)
    if adversarial_weight:
        r, f = d_real.float().reshape(-1), d_fake.float().reshape(-1)
        real = F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
        fake = F.binary_cross_entropy_with_logits(f, torch.zeros_like(f))
        total = total + adversarial_weight * (real + fake)
        terms.update({"d_real": real.detach(), "d_fake": fake.detach()})
    if classifier_weight:
        ce = F.cross_entropy(c_real.float(), labels)
        total = total + classifier_weight * ce
        terms["c_real"] = ce.detach()
    return total, terms


def generator_loss(d_fake: torch.Tensor | None, c_fake: torch.Tensor | None, labels: torch.Tensor,
                   adversarial_weight: float = 1.0, classifier_weight: float = 1.0):
    """L_G = a BCE(sigmoid(d_fake), 1) + c CE(c_fake, labels): fool D, and be classified
    by C as the speaker. Returns (total, terms)."""
    terms: dict[str, torch.Tensor] = {}
    total = None
    if adversarial_weight:
        x = d_fake.float().reshape(-1)
        adv = F.binary_cross_entropy_with_logits(x, torch.ones_like(x))
        total = adversarial_weight * adv
        terms["g_adv"] = adv.detach()
    if classifier_weight:
        ce = F.cross_entropy(c_fake.float(), labels)
        total = classifier_weight * ce if total is None else total + classifier_weight * ce
        terms["g_id"] = ce.detach()
    return total, terms


# --------------------------------------------------------------------------- the model


class Voice2Face(FaceVoiceModel):
    name = NAME
    custom_steps = ("gan",)
    # pretrain: no generator yet, no cross-modal validation score; gan: the authors' code keeps
    # the generator of its last iteration (a GAN's losses do not settle where a validation AUC
    # could choose; on the demo, whose validation identities' faces and voices are of different
    # people, the AUC picked an early, untrained generator)
    select_last = ("pretrain", "gan")
    unscored_stages = ("pretrain",)  # the trainer does not validate it (embed_voice would give NaN)
    adversarial_stages = ("gan",)  # its discriminator and generator terms: curve.png draws them apart

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes)
        if list(hp["stages"]) != ["pretrain", "gan"]:
            raise ValueError(f"voice2face has the stages pretrain and gan, in that order (got {list(hp['stages'])})")
        if int(hp["stages"]["gan"]["epochs"]) < 1:
            raise ValueError("voice2face: stages.gan.epochs must be at least 1 (before the GAN stage there is "
                             "no generator, so voices have no embedding to score)")
        self.adv_w = float(hp["adversarial_weight"])
        self.cls_w = float(hp["classifier_weight"])
        if self.adv_w < 0 or self.cls_w < 0 or not (self.adv_w or self.cls_w):
            raise ValueError("voice2face: adversarial_weight and classifier_weight must be >= 0, not both 0")
        g_ch = [int(c) for c in hp["generator"]["channels"]]
        t_ch = [int(c) for c in hp["trunk"]["channels"]]
        side = int(hp["face_size"] or 0)
        if image_side(len(g_ch)) != side or image_side(len(t_ch)) != side:
            raise ValueError(f"voice2face: face_size {hp['face_size']} must be 4 x 2^(n - 1) for the "
                             f"{len(g_ch)} generator and {len(t_ch)} trunk channel counts "
                             f"({image_side(len(g_ch))} and {image_side(len(t_ch))} px)")
        self.voice_net = build_voice_encoder(hp["voice_net"], n_bins)
        self.voice_classifier = nn.Linear(self.voice_net.dim, n_classes)
        self.judge = build_image_encoder(hp["face_net"], face_weights)
        self.judge_classifier = nn.Linear(self.judge.dim, n_classes)
        self.generator = Generator(self.voice_net.dim, g_ch)
        self.avg_decay = float(hp["generator_average"])
        if not 0.0 <= self.avg_decay < 1.0:
            raise ValueError(f"voice2face: generator_average must be in [0, 1) (got {self.avg_decay}); 0: no average")
        # the scored generator: an exponential moving average of G's weights (None: G itself)
        self.generator_avg = copy.deepcopy(self.generator).requires_grad_(False) if self.avg_decay else None
        self.centre = bool(hp["centre_embeddings"])
        self.centre_momentum = float(hp["centre_momentum"])
        if not 0.0 < self.centre_momentum <= 1.0:
            raise ValueError(f"voice2face: centre_momentum must be in (0, 1] (got {self.centre_momentum})")
        self.trunk = Trunk(t_ch, int(hp["trunk"]["dim"]), float(hp["leaky_slope"]))
        self.discriminator = nn.Linear(self.trunk.dim, 1, bias=False)
        self.classifier = nn.Linear(self.trunk.dim, n_classes, bias=False)
        # running means of the judge's embeddings of real training faces and of generated ones
        self.register_buffer("real_centre", torch.zeros(self.judge.dim))
        self.register_buffer("fake_centre", torch.zeros(self.judge.dim))
        self.register_buffer("centre_updates", torch.zeros((), dtype=torch.long))
        self.set_stage(0)

    def weights_source(self) -> str:
        return self.judge.weights_source

    # --- parts
    def pretrained_parts(self) -> list[nn.Module]:
        return [self.voice_net, self.voice_classifier, self.judge, self.judge_classifier]

    def gan_parts(self) -> dict[str, list[nn.Module]]:
        d = [self.trunk]
        if self.adv_w:
            d.append(self.discriminator)
        if self.cls_w:
            d.append(self.classifier)
        return {"g": [self.generator], "d": d}

    # --- stages
    def set_stage(self, index: int) -> None:
        super().set_stage(index)
        first = index == 0
        for m in self.pretrained_parts():
            m.requires_grad_(first)
        for m in (self.generator, self.trunk, self.discriminator, self.classifier):
            m.requires_grad_(False)
        if not first:
            for mods in self.gan_parts().values():
                for m in mods:
                    m.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.stage_index > 0:  # frozen: batch norms keep the pre-trained statistics
            for m in self.pretrained_parts():
                m.eval()
        return self

    def stage_optimizers(self, cfg: dict) -> dict[str, torch.optim.Optimizer]:
        if self.stage_index == 0:
            return super().stage_optimizers(cfg)
        return {k: make_optimizer([p for m in mods for p in m.parameters()], cfg)
                for k, mods in self.gan_parts().items()}

    # --- voices and faces
    def voice_embedding(self, voices: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """The generator's input: l2(l2(e) + noise n), n ~ N(0, I) (noise only when asked)."""
        return self._perturbed(F.normalize(self.voice_net(voices).float(), dim=1), noise)

    @staticmethod
    def _perturbed(e: torch.Tensor, noise: float) -> torch.Tensor:
        """l2(e + noise n), n ~ N(0, I); ``e`` itself when ``noise`` is 0."""
        return F.normalize(e + noise * torch.randn_like(e), dim=1) if noise else e

    @staticmethod
    def _image(faces: torch.Tensor) -> torch.Tensor:
        """The GAN's faces in [-1, 1] as images in [0, 1]."""
        return ((faces.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def scored_generator(self) -> nn.Module:
        """The generator whose faces are scored and drawn: the average of G's weights, or G."""
        return self.generator if self.generator_avg is None else self.generator_avg

    def generate(self, voices: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Generated faces in [-1, 1] (the GAN's range), from :meth:`scored_generator`."""
        return self.scored_generator()(self.voice_embedding(voices, noise))

    def generate_faces(self, voices: torch.Tensor) -> torch.Tensor:
        """Faces generated from voices (B, bins, T) -> (B, 3, face_size, face_size) in [0, 1]."""
        return self._image(self.generate(voices))

    def _judge(self, faces01: torch.Tensor) -> torch.Tensor:
        return self.judge(standardize_images(faces01))

    # --- stage 1: speaker classifier and face judge
    def loss(self, faces, voices, labels):
        if self.stage_index != 0:
            raise RuntimeError("voice2face: the gan stage trains through train_step")
        zv = self.voice_net(voices).float()
        zf = self._judge(faces).float()
        lv_logits = self.voice_classifier(zv)
        lf_logits = self.judge_classifier(zf)
        lv = F.cross_entropy(lv_logits, labels)
        lf = F.cross_entropy(lf_logits, labels)
        terms = {"voice_id": lv.detach(), "face_id": lf.detach(),
                 "voice_acc": (lv_logits.argmax(1) == labels).float().mean().detach(),
                 "face_acc": (lf_logits.argmax(1) == labels).float().mean().detach()}
        return lv + lf, terms

    # --- stage 2: the GAN
    def train_step(self, faces, voices, labels, opts, autocast):
        if self.stage_index != 1:
            raise RuntimeError("voice2face: train_step is the gan stage's")
        with torch.no_grad():
            e_clean = self.voice_embedding(voices)
            e = self._perturbed(e_clean, float(self.hp["embedding_noise"]))
        real = faces * 2.0 - 1.0
        with autocast:
            fake = self.generator(e)
        # D and C: real faces vs generated ones (G not updated), C on the real faces' identities
        opts["d"].zero_grad(set_to_none=True)
        with autocast:
            h_real = self.trunk(real)
            h_fake = self.trunk(fake.detach())
            l_d, terms = discriminator_loss(self.discriminator(h_real), self.discriminator(h_fake),
                                            self.classifier(h_real) if self.cls_w else None, labels,
                                            self.adv_w, self.cls_w)
        if not torch.isfinite(l_d.detach()):
            return {"loss": l_d.detach(), **terms}
        l_d.backward()
        opts["d"].step()
        # G: fool the updated D, and be classified by C as the speaker
        opts["g"].zero_grad(set_to_none=True)
        with autocast:
            h = self.trunk(fake)
            l_g, g_terms = generator_loss(self.discriminator(h) if self.adv_w else None,
                                          self.classifier(h) if self.cls_w else None, labels,
                                          self.adv_w, self.cls_w)
        terms.update(g_terms)
        terms["d_loss"] = l_d.detach()
        terms["g_loss"] = l_g.detach()
        if not torch.isfinite(l_g.detach()):
            return {"loss": (l_d + l_g).detach(), **terms}
        l_g.backward(inputs=list(self.generator.parameters()))  # D and C keep the gradients of their own step
        opts["g"].step()
        self._track(faces, e_clean)
        return {"loss": (l_d + l_g).detach(), **terms}

    @torch.no_grad()
    def _track(self, faces: torch.Tensor, e: torch.Tensor) -> None:
        """After a G step: move the average generator, then the running means of the judge's
        embeddings (real faces; faces the scored generator makes from the batch's voice
        embeddings ``e``, without noise)."""
        if self.generator_avg is not None:
            for a, p in zip(self.generator_avg.parameters(), self.generator.parameters()):
                a.lerp_(p.detach(), 1.0 - self.avg_decay)
        if not self.centre:
            return
        rate = max(self.centre_momentum, 1.0 / (int(self.centre_updates) + 1))  # the plain mean at first
        real = F.normalize(self._judge(faces).float(), dim=1).mean(0)
        fake = F.normalize(self._judge(self._image(self.scored_generator()(e))).float(), dim=1).mean(0)
        self.real_centre.lerp_(real, rate)
        self.fake_centre.lerp_(fake, rate)
        self.centre_updates += 1

    def _centred(self, z: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """l2(l2(z) - centre) once the running means exist (``centre_embeddings``), else l2(z)."""
        z = F.normalize(z.float(), dim=1)
        if self.centre and int(self.centre_updates):
            z = F.normalize(z - centre, dim=1)
        return z

    # --- embeddings: the judge's, of real faces and of faces generated from voices
    def embed_face(self, faces):
        return self._centred(self._judge(faces), self.real_centre)

    def embed_voice(self, voices):
        if self.stage_index == 0:  # no generator yet: no cross-modal score (see the module docstring)
            return torch.full((len(voices), self.judge.dim), math.nan, device=voices.device)
        return self._centred(self._judge(self.generate_faces(voices)), self.fake_centre)


def build(hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None) -> Voice2Face:
    return Voice2Face(hp, n_classes, n_bins, face_weights)
