"""Method plug-ins: found by name, each a module with its model, loss and hyperparameters.

A method module defines

``NAME``
    its name (``ssnet_fop``, ``dje``, ``biq_mwrn``);
``PROFILES``
    ``{"paper": hp, "demo": hp, "debug": hp}``: the paper's settings; a small profile that
    runs the same code on a CPU in minutes (the demo corpus); tiny encoders for the tests;
``VARIANTS``
    ``{variant: {"description": str, "overrides": {...}}}``: the paper's ablations, run on
    request as ``<method>-<variant>`` (e.g. ``dje-rank_only``, ``biq_mwrn-sfc``);
``build(hp, n_classes, face_weights=None) -> FaceVoiceModel``.
``NETWORK`` (optional, default True)
    False for a scorer without a network (``chance``): its train, embed and generate jobs ask
    for no GPU. A literal, read from the file without importing it
    (:func:`facevoice.common.config.has_network`).

Hyperparameters (``hp``) are one nested dict. Keys every method has:

``stages``
    ``{stage: {epochs, P, K, batches_per_epoch, optimizer: {name, lr, lr_end, gamma, betas,
    schedule, momentum, weight_decay}, cache}}`` in training order. A batch holds ``P``
    identities x ``K`` faces x ``K`` voices; ``batches_per_epoch`` null means
    ceil(train faces / (P K)). ``schedule``: ``const``; ``exp`` (lr x gamma^epoch);
    ``log`` (lr to lr_end, evenly on a log scale over the stage's epochs). ``cache``: the
    stage trains heads on frozen encoder features computed once (methods that allow it).
    A stage with 0 epochs is off (skipped; the next stage starts from the one before it).
``face_size``
    side the faces are resized to (null: as stored in the shards).
``face_aug``
    ``{flip, crop_scale, jitter}``: horizontal flip, random square crop of side
    ``[crop_scale, 1]`` x the image, brightness/contrast jitter of +-``jitter``.
``voice_feature``
    the feature kind read from the voice shards (``logmel``, ``spectrogram``, ``mfcc``).
``crop_frames``
    ``[min, max]``: each training batch crops every voice to one random length in this
    range (frames); shorter utterances are tiled.
``eval_max_frames``
    embeddings use the whole utterance, centre-cropped to at most this many frames.

:func:`resolve` merges, in order: the profile, the variant, config overrides, ``--set``
pairs; a key the method does not have is an error naming the known keys.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from facevoice.training.nets import build_image_encoder, build_voice_encoder, standardize_images


# the methods of the five source papers, in paper order; CITATION.cff names each one's paper
SEED_METHODS = ("ssnet_fop", "avgatn", "dje", "biq_mwrn", "voice2face")


def _discover() -> dict[str, str]:
    """Every module of this package not starting with ``_`` is a method plug-in, found by its
    name; the source papers' methods first (in paper order), then the rest alphabetically."""
    import pkgutil

    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    order = [n for n in SEED_METHODS if n in names] + sorted(n for n in names if n not in SEED_METHODS)
    return {n: f"{__name__}.{n}" for n in order}


MODULES = _discover()
VARIANT_SEP = "-"
NET_KEYS = {"type", "dim", "dropout", "channels", "width"}
OPEN_KEYS = {"face_net", "voice_net", "encoder"}  # replaced as a whole when the type changes


class MethodError(ValueError):
    """An unknown method, variant, profile or hyperparameter."""


def method_names() -> list[str]:
    return list(MODULES)


def get_method(name: str):
    """The plug-in module of a method (``dje``) or of a run name (``dje-rank_only``)."""
    base, _ = split_name(name)
    if base not in MODULES:
        raise MethodError(f"unknown method {base!r}; known: {', '.join(MODULES)}")
    return importlib.import_module(MODULES[base])


def split_name(name: str) -> tuple[str, str | None]:
    """``dje-rank_only`` -> (``dje``, ``rank_only``); ``dje`` -> (``dje``, None)."""
    base, sep, variant = name.partition(VARIANT_SEP)
    return base, (variant if sep else None)


def run_names(include_variants: bool = True) -> list[str]:
    """Every method and, optionally, every ``method-variant`` name."""
    out = []
    for m in MODULES:
        out.append(m)
        if include_variants:
            out += [f"{m}{VARIANT_SEP}{v}" for v in get_method(m).VARIANTS]
    return out


def _merge(base: dict, over: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if k not in out:
            known = ", ".join(sorted(map(str, out)))
            raise MethodError(f"unknown hyperparameter '{where}{k}'; known here: {known}")
        if k in OPEN_KEYS and isinstance(v, dict):
            bad = set(v) - NET_KEYS
            if bad:
                raise MethodError(f"unknown key(s) {sorted(bad)} in '{where}{k}'; known: {sorted(NET_KEYS)}")
            same = v.get("type", out[k].get("type")) == out[k].get("type")
            # another network type starts from its own defaults (only the dim carries over)
            out[k] = {**out[k], **copy.deepcopy(v)} if same else {"dim": out[k].get("dim"), **copy.deepcopy(v)}
        elif isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = _merge(out[k], v, f"{where}{k}.")
        else:
            out[k] = copy.deepcopy(v)
    return out


def _dotted(pairs: dict[str, Any]) -> dict:
    nested: dict = {}
    for key, value in pairs.items():
        node = nested
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return nested


def _apply_globals(hp: dict, over: dict) -> dict:
    """``epochs``, ``P``, ``K``, ``batches_per_epoch`` given at the top level apply to every stage,
    except that a stage that is off (0 epochs, e.g. ``speaker_pretrain`` in the demo profile or
    the ``no_pretrain`` variant) stays off: only its own ``stages.<name>.epochs`` turns it on."""
    over = dict(over or {})
    glob = {k: over.pop(k) for k in ("epochs", "P", "K", "batches_per_epoch") if k in over}
    glob = {k: v for k, v in glob.items() if v is not None}
    if glob:
        over.setdefault("stages", {})
        for stage, st in hp["stages"].items():
            g = glob if int(st["epochs"]) > 0 else {k: v for k, v in glob.items() if k != "epochs"}
            over["stages"][stage] = {**g, **over["stages"].get(stage, {})}
    return over


def resolve(name: str, profile: str = "demo", overrides: dict | None = None,
            sets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The hyperparameters of run ``name`` (``method`` or ``method-variant``)."""
    mod = get_method(name)
    base, variant = split_name(name)
    if profile not in mod.PROFILES:
        raise MethodError(f"unknown profile {profile!r}; known: {', '.join(mod.PROFILES)}")
    hp = copy.deepcopy(mod.PROFILES[profile])
    if variant is not None:
        if variant not in mod.VARIANTS:
            raise MethodError(f"method {base} has no variant {variant!r}; known: {', '.join(mod.VARIANTS)}")
        hp = _merge(hp, mod.VARIANTS[variant]["overrides"], "")
    hp = _merge(hp, _apply_globals(hp, overrides), "")
    hp = _merge(hp, _apply_globals(hp, _dotted(sets or {})), "")
    check_common(hp, name)
    return hp


def check_common(hp: dict, name: str) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise MethodError(f"{name}: {msg}")

    for sname, st in hp["stages"].items():
        need(int(st["epochs"]) >= 0, f"stages.{sname}.epochs must be >= 0")
        need(int(st["P"]) >= 2, f"stages.{sname}.P must be >= 2 (identities per batch)")
        need(int(st["K"]) >= 1, f"stages.{sname}.K must be >= 1")
        opt = st["optimizer"]
        need(opt["name"] in ("sgd", "adam"), f"stages.{sname}.optimizer.name must be sgd or adam")
        need(opt["schedule"] in ("const", "exp", "log"), f"stages.{sname}.optimizer.schedule: const, exp or log")
    lo, hi = hp["crop_frames"]
    need(1 <= int(lo) <= int(hi), "crop_frames must be [min, max] with 1 <= min <= max")
    need(hp["voice_feature"] in ("logmel", "spectrogram", "mfcc"), "voice_feature: logmel, spectrogram or mfcc")


def optimizer(name: str = "sgd", lr: float = 1e-3, lr_end: float | None = None, gamma: float = 1.0,
              schedule: str = "const", momentum: float = 0.9, weight_decay: float = 0.0,
              betas: list[float] | None = None) -> dict:
    """An optimizer setting; ``betas`` (Adam) null means torch's (0.9, 0.999)."""
    return {"name": name, "lr": lr, "lr_end": lr_end, "gamma": gamma, "schedule": schedule,
            "momentum": momentum, "weight_decay": weight_decay, "betas": betas}


def make_optimizer(params: list, cfg: dict) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay) or Adam (``betas``, default (0.9, 0.999)) from an ``optimizer()`` dict."""
    if not params:
        raise ValueError("this stage has no trainable parameters")
    if cfg["name"] == "sgd":
        return torch.optim.SGD(params, lr=float(cfg["lr"]), momentum=float(cfg["momentum"]),
                               weight_decay=float(cfg["weight_decay"]))
    betas = tuple(float(b) for b in (cfg.get("betas") or (0.9, 0.999)))
    return torch.optim.Adam(params, lr=float(cfg["lr"]), betas=betas, weight_decay=float(cfg["weight_decay"]))


def stage(epochs: int, P: int, K: int, opt: dict, batches_per_epoch: int | None = None, cache: bool = False) -> dict:
    return {"epochs": epochs, "P": P, "K": K, "batches_per_epoch": batches_per_epoch, "optimizer": opt,
            "cache": cache}


COMMON_DEFAULTS = {
    "face_size": None,
    "face_aug": {"flip": True, "crop_scale": 0.85, "jitter": 0.1},
    "voice_feature": "logmel",
    "crop_frames": [300, 600],
    "eval_max_frames": 1000,
}

# The two-stream methods' (dje, biq_mwrn, dimnet, pins) small profiles, one definition:
# ``DEMO = {**PAPER, **TWO_STREAM_DEMO, ...}`` (a CPU demo: small CNN on 64 px faces, narrow
# DIMNet voices, a few epochs at a larger lr); ``DEBUG = {**DEMO, **TWO_STREAM_DEBUG, ...}``
# (tests: tiny encoders, 32 px faces, short crops).
_SMALL_SGD = optimizer("sgd", lr=0.05, lr_end=5e-3, schedule="log", momentum=0.9, weight_decay=5e-4)
# The demo's schedules are 30 epochs of about 11 batches: the 6 epochs used before left the
# networks short of fitting even the training identities (train accuracy 0.5 to 0.7, seen-heard
# AUC intervals spanning 50%); 30 take under 30 s per method on a CPU core.
DEMO_EPOCHS = 30
TWO_STREAM_DEMO = {
    "face_size": 64,
    "crop_frames": [100, 200],
    "eval_max_frames": 600,
    "stages": {"main": stage(DEMO_EPOCHS, 8, 2, _SMALL_SGD)},
    "face_net": {"type": "small_cnn", "dim": 64, "channels": [16, 32, 64, 96]},
    "voice_net": {"type": "dimnet", "dim": 64, "channels": [64, 96, 128, 160]},
}
TWO_STREAM_DEBUG = {
    "face_size": 32,
    "crop_frames": [40, 60],
    "eval_max_frames": 200,
    "stages": {"main": stage(4, 8, 2, _SMALL_SGD)},
    "face_net": {"type": "debug", "dim": 16},
    "voice_net": {"type": "debug1d", "dim": 16},
}


# Speaker-classification pre-training of the voice stream (dje, biq_mwrn; see SpeakerPretrainModel).
SPEAKER_STAGE = "speaker_pretrain"
# Choice (the papers give no schedule): the project's one speaker pre-training setting, that
# of voice2face's ``pretrain`` stage: Adam 1e-3, lr x 0.95 per epoch, 30 epochs of batches of
# 64 identities x 2 voices (the trainer's batches also hold 2 faces each; they are not used).
SPEAKER_PRETRAIN = stage(30, 64, 2, optimizer("adam", lr=1e-3, gamma=0.95, schedule="exp"))
# The demo and debug profiles list the stage *off* (0 epochs): their main stage and results
# stay as they were (on the demo corpus the pre-training would see the same few training voices
# as the main stage, and the demo's face stream is not pre-trained either). It is turned on with
# ``--set stages.speaker_pretrain.epochs=N``, with these small-corpus settings (voice2face's demo).
SPEAKER_PRETRAIN_OFF = stage(0, 8, 2, optimizer("adam", lr=2e-3, gamma=0.9, schedule="exp"))
NO_PRETRAIN_VARIANT = {"description": "voice stream from scratch: no speaker pre-training "
                                      "(stage speaker_pretrain off)",
                       "overrides": {"stages": {SPEAKER_STAGE: {"epochs": 0}}}}


def with_speaker_pretrain(stages: dict, pretrain: dict) -> dict:
    """``stages`` with the speaker pre-training stage ``pretrain`` put first."""
    return {SPEAKER_STAGE: copy.deepcopy(pretrain), **copy.deepcopy(stages)}


@dataclass
class Stage:
    name: str
    epochs: int
    P: int
    K: int
    batches_per_epoch: int | None
    optimizer: dict
    cache: bool


class FaceVoiceModel(nn.Module):
    """What the trainer and the embedder call. Subclasses implement the method.

    Inputs: faces ``(B, 3, H, W)`` in [0, 1]; voices ``(B, bins, T)``; labels ``(B,)``.
    In a training batch, face i and voice i belong to identity ``labels[i]`` (P identities
    x K pairs, identity-major).
    """

    name = "base"
    cacheable: tuple[str, ...] = ()  # stages that may train on cached encoder features
    custom_steps: tuple[str, ...] = ()  # stages whose updates the model makes itself (train_step)
    select_last: tuple[str, ...] = ()  # stages kept at their last epoch, not their best validation AUC
    adversarial_stages: tuple[str, ...] = ()  # stages of an adversarial game: their terms on a curve panel of their own
    # stages with no cross-modal score yet (voice2face's pre-training: no generator): the trainer
    # validates nothing there (undefined AUC, its reason recorded); each must be in select_last
    unscored_stages: tuple[str, ...] = ()

    def __init__(self, hp: dict, n_classes: int):
        super().__init__()
        self.hp = copy.deepcopy(hp)
        self.n_classes = int(n_classes)
        self.stage_index = 0

    def note(self) -> str | None:
        """A line the comparison tables print under this model's row (through the embeddings'
        metadata): which form of the method it trained, where a variant changes it."""
        return None

    # --- stages
    def stages(self) -> list[Stage]:
        out = []
        for sname, st in self.hp["stages"].items():
            out.append(Stage(sname, int(st["epochs"]), int(st["P"]), int(st["K"]), st.get("batches_per_epoch"),
                             dict(st["optimizer"]), bool(st.get("cache", False)) and sname in self.cacheable))
        return out

    def set_stage(self, index: int) -> None:
        self.stage_index = index

    @property
    def stage_name(self) -> str:
        return list(self.hp["stages"])[self.stage_index]

    def stage_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def stage_optimizers(self, cfg: dict) -> dict[str, torch.optim.Optimizer]:
        """The current stage's optimizers by name; one (``main``) over :meth:`stage_parameters`
        by default, none when nothing is trainable. The trainer sets every param group's lr
        to the stage's scheduled lr times the group's ``lr_scale`` (default 1) each epoch."""
        params = self.stage_parameters()
        return {"main": make_optimizer(params, cfg)} if params else {}

    def train_step(self, faces: torch.Tensor, voices: torch.Tensor, labels: torch.Tensor,
                   opts: dict[str, torch.optim.Optimizer], autocast) -> dict[str, torch.Tensor]:
        """One batch of a stage in ``custom_steps``: the model zeroes, back-propagates and steps
        its ``opts`` itself (e.g. one discriminator update, then generator updates) and returns
        its loss terms, with the one to report as ``loss``. ``autocast`` is a context manager
        (CUDA mixed precision or nothing). Counters a schedule needs belong in buffers, so
        that they are saved in checkpoints and survive a resume."""
        raise NotImplementedError

    # --- training
    def loss(self, faces: torch.Tensor, voices: torch.Tensor, labels: torch.Tensor):
        raise NotImplementedError

    def backbone_face(self, faces: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def backbone_voice(self, voices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_from_features(self, face_feats: torch.Tensor, voice_feats: torch.Tensor, labels: torch.Tensor):
        raise NotImplementedError

    # --- embeddings for evaluation (the current stage's)
    def embed_face(self, faces: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed_voice(self, voices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def weights_source(self) -> str:
        return "scratch"


class TwoStreamModel(FaceVoiceModel):
    """A face stream and a voice stream (dje, biq_mwrn, dimnet, pins, fop): the encoders
    ``face_net`` (faces) and ``voice_net`` (voices), built from ``hp["face_net"]`` and
    ``hp["voice_net"]`` first, in that order, so that a method's own modules are drawn after
    them. A method adds its heads on the streams' features (:meth:`face_head`,
    :meth:`voice_head`; none by default) and its loss; the embeddings scored are the heads'
    outputs, L2-normalised (:meth:`embed_face`, :meth:`embed_voice`). The face weights the run
    started from are the face stream's.
    """

    def __init__(self, hp: dict, n_classes: int, n_bins: int, face_weights: str | None = None):
        super().__init__(hp, n_classes)
        self.face_net = build_image_encoder(hp["face_net"], face_weights)
        self.voice_net = build_voice_encoder(hp["voice_net"], n_bins)

    def stream_dim(self, needed_by: str) -> int:
        """The streams' common feature width; a ValueError naming ``needed_by`` when they differ."""
        if self.face_net.dim != self.voice_net.dim:
            raise ValueError(f"{self.name}: {needed_by} needs face_net.dim == voice_net.dim")
        return self.face_net.dim

    def weights_source(self) -> str:
        return self.face_net.weights_source

    def backbone_face(self, faces: torch.Tensor) -> torch.Tensor:
        return self.face_net(standardize_images(faces))

    def backbone_voice(self, voices: torch.Tensor) -> torch.Tensor:
        return self.voice_net(voices)

    def face_head(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

    def voice_head(self, feats: torch.Tensor) -> torch.Tensor:
        return feats

    def encode_face(self, faces: torch.Tensor) -> torch.Tensor:
        """The face embedding before normalisation: the head on the face stream."""
        return self.face_head(self.backbone_face(faces))

    def encode_voice(self, voices: torch.Tensor) -> torch.Tensor:
        """The voice embedding before normalisation: the head on the voice stream."""
        return self.voice_head(self.backbone_voice(voices))

    def embed_face(self, faces: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encode_face(faces).float(), dim=1)

    def embed_voice(self, voices: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encode_voice(voices).float(), dim=1)


class SpeakerPretrainModel(TwoStreamModel):
    """Two streams trained jointly in stage ``main``, optionally after stage
    ``speaker_pretrain`` (:data:`SPEAKER_STAGE`), listed first (dje, biq_mwrn).

    Stage ``speaker_pretrain``: the voice stream + a linear speaker classifier (with bias) on
    its output, cross-entropy over the *training identities* (the trainer's only labels: the
    validation and test speakers are never heard). Only those two get gradients; the face
    stream and the method's heads are frozen and not run (their weights and batch-norm
    statistics are untouched). The stage keeps its last epoch (``select_last``): the joint
    embedding is untrained, so its validation AUC chooses nothing. Stage ``main`` starts from
    those weights (the trainer loads the stage's checkpoint) and fine-tunes the voice stream
    with everything else; the speaker classifier is frozen and unused from then on.

    A subclass builds its modules, calls :meth:`init_speaker_pretrain` last (the classifier is
    drawn after every other module, so their initialisation is the same with or without the
    stage) and starts its ``loss`` with ``if self.in_speaker_stage: return self.speaker_loss(...)``.
    """

    select_last = (SPEAKER_STAGE,)

    def init_speaker_pretrain(self) -> None:
        names = list(self.hp["stages"])
        if names not in (["main"], [SPEAKER_STAGE, "main"]):
            raise ValueError(f"{self.name}: stages must be [main] or [{SPEAKER_STAGE}, main] (got {names})")
        self.speaker_classifier = nn.Linear(self.voice_net.dim, self.n_classes) if len(names) == 2 else None
        self.set_stage(0)

    @property
    def in_speaker_stage(self) -> bool:
        return self.stage_name == SPEAKER_STAGE

    def set_stage(self, index: int) -> None:
        super().set_stage(index)
        clf = self.speaker_classifier
        clf_ids = {id(p) for p in clf.parameters()} if clf is not None else set()
        speaker_ids = clf_ids | {id(p) for p in self.voice_net.parameters()}
        speaker = self.in_speaker_stage
        for p in self.parameters():
            p.requires_grad_(id(p) in speaker_ids if speaker else id(p) not in clf_ids)

    def speaker_loss(self, voices: torch.Tensor, labels: torch.Tensor):
        """Cross-entropy of the speaker classifier on the voice stream's output, with its accuracy."""
        logits = self.speaker_classifier(self.voice_net(voices).float())
        ce = F.cross_entropy(logits, labels)
        acc = (logits.argmax(1) == labels).float().mean()
        return ce, {"speaker_id": ce.detach(), "speaker_acc": acc.detach()}
