"""Train one method on the shards: the trainer every method shares.

``facevoice train --method NAME --manifest M --shards-root DIR --out DIR
[--config config.yaml | --params JSON] [--profile demo|paper] [--set key=value ...]``

``NAME`` is a method (``ssnet_fop``, ``dje``, ``biq_mwrn``) or one of its ablations
(``dje-rank_only``; ``facevoice train --list`` lists them). Hyperparameters: the method's
profile, then the config's ``train:`` section (``epochs``, ``batch``, ``overrides``), then
``--set`` pairs (dotted keys into the hyperparameters, e.g. ``--set epochs=3
--set stages.fop.epochs=10 --set face_net.type=debug``; values are YAML).

Data
    The training identities are the manifest's ``train`` split (those with at least one face
    and one voice); their labels are their sorted order. With ``--language L`` (the FAME
    protocol, config ``fame.train_language``; the MAV-Celeb layout's ``language`` column) the
    train and validation items are those in language L only
    (:func:`facevoice.data.mavceleb.training_manifest`), so model selection stays within the
    training language; ``run.json`` and the checkpoint fingerprint record L. Each batch holds
    P identities x K faces x K voices (face i and voice i of the same identity form a pair), identities
    drawn without repetition inside a batch and cycled through evenly across batches; an
    epoch is ``batches_per_epoch`` batches (default ceil(train faces / (P K))). Faces get a
    random square crop, a horizontal flip and brightness/contrast jitter; every voice of a
    batch is cropped to one random length in ``crop_frames``. Items are read from the
    shards one row group (clip) at a time through an LRU cache: shards are streamed, never
    loaded whole; ``num_workers`` DataLoader processes decode batches in parallel.
Device
    CUDA when present (``device: auto``), with mixed precision (bf16 where supported, else
    fp16 with loss scaling); the CPU runs in float32.
Seeds
    ``seed`` fixes the model's initialisation; every epoch's batch plan and every batch's
    augmentation come from ``numpy.random.default_rng([seed, epoch, batch])`` and torch's
    generator is re-seeded at every epoch, so a resumed run repeats an uninterrupted one.
Checkpoints and resume
    ``<out>/state/last.pt`` is written (atomically) after every epoch; a new run with the same
    method, hyperparameters, seed and data resumes from it (another one starts afresh).
    After every epoch the validation identities' verification AUC (cosine scores of every
    face against every voice of a fixed subset: ``val_items_per_identity`` faces and
    voices per identity) decides the best epoch of each stage (``state/best-<stage>.pt``);
    the test split is never read. Stages a method lists in ``select_last`` (pre-training
    stages whose cross-modal AUC means nothing yet) keep their last epoch. A later stage starts from the best weights of the stage
    before it. ``<out>/model.pt`` is the best checkpoint of the last stage.
Outputs (``<out>/``)
    ``model.pt``; ``log.csv`` (one row per epoch: stage, every loss term, val_auc, lr,
    seconds, ...); ``curve.png`` (panels of losses, accuracies, adversarial terms and validation
    AUC, :mod:`facevoice.training.curve`; redrawn at the end of each stage and at most once a
    minute); ``run.json`` (method,
    hyperparameters, seed, device, precision, face weights: ``scratch`` or
    ``vggface2:<path>``, data counts, best epoch with its mean training loss terms, e.g.
    avgatn's identity accuracy ``id_acc``, code version); ``state/``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm import tqdm

from facevoice.common.config import section as config_section
from facevoice.common.io import atomic_path, write_json, write_text
from facevoice.common.version import code_version
from facevoice.data import paths
from facevoice.data.manifest import SplitItems, split_items
from facevoice.data.mavceleb import training_manifest
from facevoice.data.shard_reader import ShardReader
from facevoice.training.batches import BatchDataset, plan_epoch, val_subset
from facevoice.training.curve import plot_curve
from facevoice.training.inference import autocast_dtype, choose_device, embed_items
from facevoice.training.methods import (  # noqa: F401
    FaceVoiceModel,
    MethodError,
    Stage,
    get_method,
    make_optimizer,
    resolve,
    run_names,
    split_name,
)
from facevoice.training.options import train_parser

CHECKPOINT_FORMAT = "facevoice-checkpoint/1"
VAL_SPLITS = ("val", "train")  # the splits that may choose the best epoch (never a test split)
PLOT_EVERY_S = 60.0  # the curve is redrawn at the end of each stage, and at most once a minute between

#: The run settings that are config keys of ``train:`` (defaults in the schema only), each with
#: its path there; :func:`train` requires every one. threads None: torch's; face_weights None: from scratch.
RUN_KEYS = {"seed": "seed", "device": "device", "amp": "amp", "num_workers": "num_workers", "threads": "threads",
            "face_weights": "face_weights", "val_split": "val.split", "val_items_per_identity": "val.items_per_identity"}
#: A run's execution options, not config keys: how it runs, not what it computes.
EXECUTION_DEFAULTS: dict[str, Any] = {
    "embed_batch_size": 64,
    "cache_groups": 256,         # row groups (clips) kept decoded per reader
    "progress": None,            # tqdm bars: None = when stderr is a terminal
}


class StopTraining(Exception):
    """Raised by a callback to stop a run (tests use it to simulate a kill)."""


# --------------------------------------------------------------------------- settings


def train_section(config: dict | None) -> dict:
    return dict((config or {}).get("train") or {})


def run_settings(section: dict | None = None, **execution: Any) -> dict:
    """The ``run`` of :func:`train`: the config keys (:data:`RUN_KEYS`) of a ``train:`` section
    completed from the schema, then the execution options (``execution`` over :data:`EXECUTION_DEFAULTS`)."""
    _check_val_split(((section or {}).get("val") or {}).get("split"))
    section = config_section("train", section)
    run = {key: functools.reduce(dict.__getitem__, path.split("."), section) for key, path in RUN_KEYS.items()}
    unknown = sorted(set(execution) - set(EXECUTION_DEFAULTS))
    if unknown:
        raise MethodError(f"unknown execution option(s) {', '.join(unknown)}; known: {', '.join(EXECUTION_DEFAULTS)}")
    return {**run, **EXECUTION_DEFAULTS, **execution}


def _check_val_split(split: Any) -> None:
    if split is not None and split not in VAL_SPLITS:
        raise MethodError(f"train.val.split is {split!r}; it must be one of {', '.join(VAL_SPLITS)}: "
                          f"model selection is never on a test split")


def _complete_run(run: dict | None) -> dict:
    """``run`` over the execution options' defaults; every config key (:data:`RUN_KEYS`) must be in it."""
    missing = [k for k in RUN_KEYS if k not in (run or {})]
    if missing:
        raise MethodError(f"train: run setting(s) {', '.join(missing)} missing: a run takes every config key of "
                          f"its train: section (settings() and run_settings() complete them from the schema)")
    _check_val_split(run["val_split"])
    return {**EXECUTION_DEFAULTS, **run}


def settings(name: str, section: dict | None = None, profile: str | None = None,
             sets: dict[str, Any] | None = None, run: dict | None = None) -> tuple[dict, dict]:
    """(hyperparameters, run settings) of run ``name`` from a config ``train:`` section, completed
    from the schema's defaults; ``run``'s values that are not None over the section's."""
    r = run_settings(section)
    section = config_section("train", section)
    profile = profile or section["profile"]
    over: dict[str, Any] = {}
    batch = section["batch"]
    for key, value in (("epochs", section["epochs"]), ("P", batch["P"]), ("K", batch["K"]),
                       ("batches_per_epoch", batch["batches_per_epoch"])):
        if value is not None:  # null: the profile's or the method's
            over[key] = value
    per = section["overrides"]
    base, _ = split_name(name)
    for key in (base, name) if name != base else (base,):  # the method's, then the variant's
        over = _deep_merge(over, per.get(key) or {})
    hp = resolve(name, profile, over, sets)
    r.update({k: v for k, v in (run or {}).items() if v is not None})
    _check_val_split(r["val_split"])
    r["profile"] = profile
    return hp, r


def _deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def parse_sets(pairs: Iterable[str]) -> dict[str, Any]:
    out = {}
    for p in pairs or ():
        if "=" not in p:
            raise SystemExit(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


# --------------------------------------------------------------------------- validation


def undefined_auc_reason(emb: np.ndarray | None, items: pd.DataFrame, split: str) -> str:
    """Why the verification AUC of ``items`` could not be computed."""
    if emb is None or not len(items):
        return f"the {split!r} split has no identity with both a face and a voice"
    if items["identity"].nunique() < 2:
        return f"the {split!r} split has {items['identity'].nunique()} identity; an AUC needs 2 or more"
    if not np.isfinite(emb).all():
        return "the embeddings are not finite (the model diverged)"
    return "the scores hold no positive or no negative pair"


def better_epoch(auc: float, best: float | None) -> bool:
    """Whether an epoch's validation AUC beats the stage's best so far.

    A higher AUC wins (a tie keeps the earlier epoch); an undefined (NaN) AUC never wins over
    a number, and wins over another NaN (the later epoch)."""
    if best is None:
        return True
    if math.isfinite(auc):
        return not math.isfinite(best) or auc > best
    return not math.isfinite(best)


def verification_auc(emb: np.ndarray, items: pd.DataFrame, score: str = "cosine") -> float:
    """ROC AUC over every face-voice pair of ``items`` (same identity = positive), scored with
    the method's own ``score``: ``cosine``, or ``abs_cosine`` (|cos|, avgatn)."""
    from sklearn.metrics import roc_auc_score

    mod = items["modality"].to_numpy()
    ident = items["identity"].to_numpy()
    f, v = emb[mod == "face"], emb[mod == "voice"]
    if len(f) == 0 or len(v) == 0:
        return float("nan")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    scores = (f @ v.T).ravel()
    if score == "abs_cosine":
        scores = np.abs(scores)
    elif score != "cosine":
        raise ValueError(f"unknown score {score!r}: cosine or abs_cosine")
    labels = (ident[mod == "face"][:, None] == ident[mod == "voice"][None, :]).ravel()
    if labels.all() or not labels.any() or not np.isfinite(scores).all():
        return float("nan")
    return float(roc_auc_score(labels, scores))


# --------------------------------------------------------------------------- training


def _fingerprint(name: str, hp: dict, run: dict, train: SplitItems, val: pd.DataFrame) -> str:
    h = hashlib.sha256()
    key = {"name": name, "hp": hp, "seed": run["seed"], "face_weights": run["face_weights"],
           "val_split": run["val_split"], "val_items": run["val_items_per_identity"]}
    if run.get("language"):  # only when set: a run without a language keeps its fingerprint of before
        key["language"] = run["language"]
    h.update(json.dumps(key, sort_keys=True, default=str).encode())
    for df in (train.items, val):
        h.update("\n".join(df["item"].astype(str) + "|" + df["shard"].astype(str) + "|" +
                           df["row"].astype(str)).encode())
    return h.hexdigest()


def _lr(opt_cfg: dict, epoch_in_stage: int, stage_epochs: int) -> float:
    lr = float(opt_cfg["lr"])
    sched = opt_cfg["schedule"]
    if sched == "exp":
        return lr * float(opt_cfg["gamma"]) ** epoch_in_stage
    if sched == "log":
        end = float(opt_cfg["lr_end"] if opt_cfg.get("lr_end") is not None else lr)
        if stage_epochs <= 1:
            return lr
        return float(math.exp(math.log(lr) + (math.log(end) - math.log(lr)) * epoch_in_stage / (stage_epochs - 1)))
    return lr


def _autocast(dtype: torch.dtype | None):
    """CUDA autocast at ``dtype``, or nothing (CPU, float32)."""
    import contextlib

    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _save(obj: dict, path: Path) -> None:
    """``torch.save`` through a file object: the archive inside is named "archive", not after
    the temporary file, so the same weights give the same bytes."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def _num_workers(run: dict, device: torch.device) -> int:
    nw = run["num_workers"]
    if nw == "auto":
        return 0 if device.type != "cuda" else min(8, int(run["threads"] or os.cpu_count() or 1))
    return int(nw)


def write_log(history: list[dict], out: Path) -> None:
    df = pd.DataFrame(history)
    fixed = ["epoch", "stage", "steps", "samples", "loss"]
    tail = ["val_auc", "best", "lr", "seconds", "data_s", "skipped"]
    terms = [c for c in df.columns if c not in fixed + tail]
    df = df.reindex(columns=[c for c in fixed + terms + tail if c in df.columns])
    write_text(paths.train_files(out)["log"], df.to_csv(index=False))


class WaitTimer:
    """An iterator over batches that adds up the seconds spent waiting for the next one.

    A step ends by reading its loss (a device sync), so the wait is the time the model sat
    idle for data: ``data_s`` in log.csv, beside the epoch's ``seconds``.
    """

    def __init__(self, batches: Iterable):
        self.it = iter(batches)
        self.waited = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.waited += time.perf_counter() - t


def _to_float(v) -> float:
    return float(v.detach().float().cpu()) if torch.is_tensor(v) else float(v)


@dataclass
class _Data:
    """The training identities, the fixed validation subset and the shards they are read from."""

    train: SplitItems
    val: SplitItems
    val_items: pd.DataFrame
    reader: ShardReader
    n_bins: int


@dataclass
class _Run:
    """One training run: its settings, data and model, and what the epochs so far left behind."""

    name: str
    hp: dict
    run: dict
    out: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    data: _Data
    mod: Any  # the method's plug-in module
    model: FaceVoiceModel
    stages: list[Stage]
    starts: np.ndarray  # the epoch each stage starts after (cumulative epochs), and the total last
    fingerprint: str
    ckpt_base: dict = field(default_factory=dict)
    run_info: dict = field(default_factory=dict)
    resumed: dict | None = None  # the state/last.pt resumed from
    history: list[dict] = field(default_factory=list)
    stage_best: dict[str, dict] = field(default_factory=dict)
    undefined: dict[int, str] = field(default_factory=dict)  # epoch -> why its validation AUC is undefined
    done: int = 0  # epochs already trained
    last_plot: float = field(default_factory=time.time)

    @property
    def seed(self) -> int:
        return int(self.run["seed"])

    @property
    def work(self) -> Path:
        return self.out / "state"

    @property
    def total(self) -> int:
        return int(self.starts[-1])

    def stage_at(self, epoch: int) -> int:
        return int(np.searchsorted(self.starts, epoch, side="left") - 1)

    def log(self, msg: str) -> None:
        _say(self.name, msg)


def _say(name: str, msg: str) -> None:
    print(f"[train {name}] {msg}", file=sys.stderr, flush=True)


@dataclass
class _StageRun:
    """The stage being trained: its optimizers, loss scaler and cached encoder features."""

    index: int
    spec: Stage
    opts: dict[str, torch.optim.Optimizer]
    custom: bool  # the model makes its own updates (train_step)
    scaler: torch.amp.GradScaler
    cache: torch.Tensor | None


def _load_data(manifest: str | Path, shards_root: str | Path, hp: dict, run: dict,
               log: Callable[[str], None]) -> _Data:
    manifest_df = pd.read_parquet(manifest)
    language = run.get("language")
    if language:
        try:
            manifest_df = training_manifest(manifest_df, language)
        except ValueError as exc:
            raise SystemExit(f"{manifest}: --language {language}: {exc}") from None
        log(f"language {language}: train and validation items in {language} only")
    tr = split_items(manifest_df, "train")
    if len(tr.identities) < 2:
        within = f" in language {language}" if language else ""
        raise SystemExit(f"{manifest}: the train split has {len(tr.identities)} identities with both a face and "
                         f"a voice{within}; training needs at least 2")
    va = split_items(manifest_df, run["val_split"])
    val_items = val_subset(va, int(run["val_items_per_identity"]), int(run["seed"]))
    if va.dropped or tr.dropped:
        log(f"identities without a face or a voice left out: train {tr.dropped[:5]}, val {va.dropped[:5]}")
    reader = ShardReader(shards_root, cache_groups=int(run["cache_groups"]))
    first_voice = tr.items.loc[tr.items["modality"] == "voice", "shard"].iloc[0]
    return _Data(tr, va, val_items, reader, reader.n_bins(first_voice, hp["voice_feature"]))


def _run_info(r: _Run, manifest: str | Path) -> dict:
    """run.json's description of the run (the summary adds the results)."""
    d, run, device, amp_dtype = r.data, r.run, r.device, r.amp_dtype
    tr, va = d.train, d.val
    return {"method": r.name, "profile": run.get("profile"), "hp": r.hp,
            "run": {k: v for k, v in run.items() if k != "progress"},
            "seed": r.seed, "device": str(device), "device_name": (torch.cuda.get_device_name(device)
                                                                   if device.type == "cuda" else "cpu"),
            "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
            "face_weights": r.model.weights_source(), "torch": torch.__version__, "code_version": code_version(),
            "data": {"manifest": str(manifest), "train_identities": len(tr.identities),
                     "train_faces": tr.n_faces, "train_voices": int(sum(len(v) for v in tr.voices)),
                     "val_split": run["val_split"], "val_identities": len(va.identities),
                     "val_items": len(d.val_items), "dropped_identities": {"train": tr.dropped, "val": va.dropped},
                     "voice_feature": r.hp["voice_feature"], "voice_bins": d.n_bins},
            "stages": [{"name": s.name, "epochs": s.epochs, "P": s.P, "K": s.K} for s in r.stages],
            **({"language": run["language"]} if run.get("language") else {})}


def _prepare(name: str, manifest: str | Path, shards_root: str | Path, out: str | Path, hp: dict,
             run: dict) -> _Run:
    """The data, the model (initialised from the seed), its fingerprint and checkpoint header."""
    out = Path(out)
    (out / "state").mkdir(parents=True, exist_ok=True)
    if run["threads"]:
        torch.set_num_threads(int(run["threads"]))
    device = choose_device(run["device"])
    amp_dtype = autocast_dtype(device, run["amp"])
    seed = int(run["seed"])
    data = _load_data(manifest, shards_root, hp, run, functools.partial(_say, name))
    mod = get_method(name)
    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    model = mod.build(hp, len(data.train.identities), data.n_bins, face_weights=run["face_weights"]).to(device)
    stages = model.stages()
    r = _Run(name, hp, run, out, device, amp_dtype, data, mod, model, stages,
             np.cumsum([0] + [s.epochs for s in stages]), _fingerprint(name, hp, run, data.train, data.val_items))
    r.ckpt_base = {"format": CHECKPOINT_FORMAT, "method": name, "hp": hp, "n_classes": len(data.train.identities),
                   "n_bins": data.n_bins, "classes": data.train.identities, "face_weights": model.weights_source(),
                   "seed": seed}
    r.run_info = _run_info(r, manifest)
    return r


def _resume(r: _Run) -> None:
    """Continue from ``state/last.pt`` when it is this run's (same fingerprint); else start afresh."""
    last = r.work / "last.pt"
    if not last.exists():
        return
    state = None
    try:
        state = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as exc:  # a checkpoint that cannot be read is not resumed from
        r.log(f"cannot read {last} ({exc}); starting afresh")
    if state is not None and state.get("fingerprint") != r.fingerprint:
        r.log(f"{last} belongs to other settings or data; starting afresh")
        state = None
    if state is None:
        for p in r.work.glob("*.pt"):
            p.unlink()
        return
    r.model.set_stage(int(state["stage_index"]))
    r.model.load_state_dict(state["model"])
    r.resumed = state
    r.history = state["history"]
    r.stage_best = state["stage_best"]
    r.undefined = {int(k): v for k, v in (state.get("undefined") or {}).items()}
    r.done = int(state["epoch"])
    r.log(f"resuming after epoch {r.done} of {r.total} from {last}")


def _enter_stage(r: _Run, s: int, epoch: int) -> _StageRun:
    """Set up stage ``s`` at ``epoch``: from the previous stage's best weights when the stage
    starts, with the resumed optimizer state when a resumed run starts inside it."""
    spec, model = r.stages[s], r.model
    first = epoch == r.starts[s] + 1
    if first:
        prev = [r.stages[i].name for i in range(s) if r.stages[i].name in r.stage_best]
        if prev:
            best_path = r.work / f"best-{prev[-1]}.pt"
            model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["model"])
            r.log(f"stage {spec.name}: starting from the best epoch of stage {prev[-1]} "
                  f"({r.stage_best[prev[-1]]['epoch']}, val AUC {r.stage_best[prev[-1]]['val_auc']:.4f})")
    model.set_stage(s)
    opts = model.stage_optimizers(spec.optimizer)
    custom = spec.name in model.custom_steps
    scaler = torch.amp.GradScaler("cuda", enabled=r.amp_dtype == torch.float16 and not custom)
    if not first and r.resumed is not None:
        saved = r.resumed["optimizer"]
        for key, o in opts.items():
            o.load_state_dict(saved[key])
        if r.resumed.get("scaler"):
            scaler.load_state_dict(r.resumed["scaler"])
    return _StageRun(s, spec, opts, custom, scaler, _cache_features(r, spec) if spec.cache else None)


def _cache_features(r: _Run, spec: Stage) -> torch.Tensor:
    """The encoders' features of every training item, for a stage that trains heads on them."""
    t0 = time.time()
    feats = embed_items(r.model, r.data.reader, r.data.train.items, r.hp, r.device, int(r.run["embed_batch_size"]),
                        r.run["amp"], r.run["progress"], desc=f"{spec.name}: cache features",
                        face_fn=r.model.backbone_face, voice_fn=r.model.backbone_voice)
    r.log(f"stage {spec.name}: encoder features of {len(feats)} train items cached ({time.time() - t0:.1f} s)")
    return torch.from_numpy(feats).to(r.device)


def _batches(r: _Run, st: _StageRun, plan: list[dict], epoch: int) -> Iterable:
    """The epoch's batches: cached features, or faces and voices decoded by DataLoader workers."""
    if st.cache is not None:
        return ((st.cache[torch.from_numpy(b["faces"]).to(r.device)],
                 st.cache[torch.from_numpy(b["voices"]).to(r.device)],
                 torch.from_numpy(b["labels"].astype(np.int64))) for b in plan)
    ds = BatchDataset(plan, r.data.train.items, r.data.reader, r.hp, r.seed, epoch)
    nw = _num_workers(r.run, r.device)
    return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=nw,
                                       pin_memory=r.device.type == "cuda", prefetch_factor=2 if nw else None)


def _step(r: _Run, st: _StageRun, f: torch.Tensor, v: torch.Tensor, y: torch.Tensor):
    """One batch's update: (loss, terms), or None when the loss is not finite (the batch is skipped)."""
    model, opts = r.model, st.opts
    if st.custom:  # the model makes its own updates (adversarial stages)
        terms = model.train_step(f, v, y, opts, _autocast(r.amp_dtype))
        loss = terms.pop("loss")
        return (loss, terms) if torch.isfinite(loss.detach()) else None
    with _autocast(r.amp_dtype):
        loss, terms = (model.loss_from_features(f, v, y) if st.cache is not None else model.loss(f, v, y))
    for o in opts.values():
        o.zero_grad(set_to_none=True)
    if not torch.isfinite(loss.detach()):
        return None
    st.scaler.scale(loss).backward()
    for o in opts.values():
        st.scaler.step(o)
    st.scaler.update()
    return loss, terms


def _run_epoch(r: _Run, st: _StageRun, epoch: int, callbacks) -> tuple[dict, float]:
    """Train one epoch of the stage: its row of log.csv (counts, mean loss terms, lr; the
    validation AUC and the seconds still to fill in) and the time it started."""
    spec, tr = st.spec, r.data.train
    lr = _lr(spec.optimizer, epoch - int(r.starts[st.index]) - 1, spec.epochs)
    for o in st.opts.values():
        for g in o.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
    torch.manual_seed(r.seed * 1_000_003 + epoch)
    n_batches = int(spec.batches_per_epoch or max(1, math.ceil(tr.n_faces / (min(spec.P, len(tr.identities))
                                                                            * spec.K))))
    # a stage with nothing to train (the chance scorer) only evaluates
    plan = plan_epoch(tr, spec.P, spec.K, n_batches, r.seed, epoch) if st.opts else []
    t0 = time.time()
    r.model.train()
    sums: dict[str, float] = {}
    steps = samples = skipped = 0
    progress = r.run["progress"]
    bar = tqdm(_batches(r, st, plan, epoch), total=len(plan), desc=f"{r.name} epoch {epoch}/{r.total} "
               f"({spec.name})", unit="batch", disable=None if progress is None else not progress, leave=False)
    fed = WaitTimer(bar)
    for f, v, y in fed:
        f, v, y = (x.to(r.device, non_blocking=True) for x in (f, v, y))
        stepped = _step(r, st, f, v, y)
        if stepped is None:
            skipped += 1
            continue
        loss, terms = stepped
        steps += 1
        samples += len(f) + len(v)
        sums["loss"] = sums.get("loss", 0.0) + _to_float(loss)
        for k, val in terms.items():
            sums[k] = sums.get(k, 0.0) + _to_float(val)
        bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}")
        for cb in callbacks:
            cb("step", {"epoch": epoch, "step": steps, "model": r.model})
    bar.close()
    if skipped:
        r.log(f"epoch {epoch}: {skipped} batch(es) with a non-finite loss skipped")
    row = {"epoch": epoch, "stage": spec.name, "steps": steps, "samples": samples,
           **{k: (v / steps if steps else float("nan")) for k, v in sums.items()},
           "val_auc": float("nan"), "lr": lr, "seconds": None, "data_s": round(fed.waited, 3), "skipped": skipped,
           "best": False}
    return row, t0


def _validate(r: _Run, epoch: int) -> float:
    """The validation identities' verification AUC (model selection; never a test split)."""
    d = r.data
    stage_name = r.model.stage_name
    if stage_name in r.model.unscored_stages:
        reason = f"stage {stage_name!r} makes no cross-modal score yet (the method's design)"
        if r.undefined.get(epoch - 1) != reason:
            r.log(f"epoch {epoch}: no validation in stage {stage_name!r}: it makes no cross-modal score yet")
        r.undefined[epoch] = reason
        return float("nan")
    emb = embed_items(r.model, d.reader, d.val_items, r.hp, r.device, int(r.run["embed_batch_size"]), r.run["amp"],
                      r.run["progress"], desc="val") if len(d.val_items) else None
    auc = verification_auc(emb, d.val_items, getattr(r.mod, "SCORE", "cosine")) if emb is not None else float("nan")
    if not math.isfinite(auc):
        r.undefined[epoch] = undefined_auc_reason(emb, d.val_items, r.run["val_split"])
        r.log(f"epoch {epoch}: validation AUC undefined: {r.undefined[epoch]}")
    return auc


def _keep_if_best(r: _Run, st: _StageRun, row: dict) -> None:
    """Mark ``row`` the stage's best and write ``state/best-<stage>.pt`` when its AUC is the
    stage's best so far (or the stage keeps its last epoch)."""
    name, auc = st.spec.name, row["val_auc"]
    prev_best = r.stage_best.get(name)
    if better_epoch(auc, prev_best and prev_best["val_auc"]) or name in r.model.select_last:
        row["best"] = True
        r.stage_best[name] = {"epoch": row["epoch"], "val_auc": auc}
        for h in r.history:
            if h["stage"] == name:
                h["best"] = False
        _save({**r.ckpt_base, "model": r.model.state_dict(), "epoch": row["epoch"], "stage": name,
               "stage_index": st.index, "val_auc": auc}, r.work / f"best-{name}.pt")


def _checkpoint(r: _Run, st: _StageRun, epoch: int, auc: float) -> None:
    """``state/last.pt``: everything a resumed run needs to repeat an uninterrupted one."""
    _save({**r.ckpt_base, "fingerprint": r.fingerprint, "model": r.model.state_dict(),
           "optimizer": {k: o.state_dict() for k, o in st.opts.items()}, "scaler": st.scaler.state_dict(),
           "epoch": epoch, "stage": st.spec.name, "stage_index": st.index, "history": r.history,
           "stage_best": r.stage_best, "undefined": r.undefined, "val_auc": auc}, r.work / "last.pt")


def _epoch(r: _Run, st: _StageRun, epoch: int, callbacks) -> None:
    """Train, validate, select, checkpoint and report one epoch."""
    row, t0 = _run_epoch(r, st, epoch, callbacks)
    auc = row["val_auc"] = _validate(r, epoch)
    row["seconds"] = round(time.time() - t0, 3)
    _keep_if_best(r, st, row)
    r.history.append(row)
    _checkpoint(r, st, epoch, auc)
    write_log(r.history, r.out)
    if epoch == int(r.starts[st.index + 1]) or time.time() - r.last_plot > PLOT_EVERY_S:  # a stage's end, or a while
        _plot(r)
        r.last_plot = time.time()
    r.log(f"epoch {epoch}/{r.total} [{st.spec.name}] loss {row.get('loss', float('nan')):.4f} val AUC {auc:.4f} "
          f"lr {row['lr']:.2e} {row['seconds']:.1f} s" + (" *" if row["best"] else ""))
    for cb in callbacks:
        cb("epoch", {"epoch": epoch, "row": row, "model": r.model})


def _plot(r: _Run) -> None:
    """``curve.png``: the log so far, with the method's stages that select and its adversarial ones."""
    plot_curve(r.history, paths.train_files(r.out)["curve"], f"{r.name} ({r.run.get('profile')})", r.model.select_last,
               r.model.adversarial_stages)


def _finish(r: _Run) -> dict[str, Any]:
    """``model.pt`` (the last stage's best checkpoint), the final log and curve, ``run.json``."""
    final = [s.name for s in r.stages if s.name in r.stage_best]
    if not final:
        raise SystemExit(f"{r.name}: no epoch was trained (every stage has 0 epochs)")
    best = torch.load(r.work / f"best-{final[-1]}.pt", map_location="cpu", weights_only=False)
    files = paths.train_files(r.out)
    _save(best, files["model"])
    write_log(r.history, r.out)
    _plot(r)
    best_row = next((h for h in r.history if h["epoch"] == best["epoch"]), {})
    terms = {k: v for k, v in best_row.items() if k not in ("epoch", "stage", "best", "lr", "seconds", "data_s")}
    summary = {**r.run_info, "best": {"stage": best["stage"], "epoch": best["epoch"], "val_auc": best["val_auc"],
                                      "train_terms": terms},
               "stage_best": r.stage_best, "epochs": r.total,
               "val_auc_undefined": {str(k): v for k, v in sorted(r.undefined.items())},
               "seconds": round(float(sum(h["seconds"] for h in r.history)), 2)}
    write_json(files["run"], summary)
    r.log(f"done: best epoch {best['epoch']} ({best['stage']}), val AUC {best['val_auc']:.4f} -> {files['model']}")
    return summary


def train(name: str, manifest: str | Path, shards_root: str | Path, out: str | Path, hp: dict | None = None,
          run: dict | None = None, *, profile: str = "demo", overrides: dict | None = None,
          sets: dict | None = None, callbacks: Iterable[Callable[[str, dict], None]] = ()) -> dict[str, Any]:
    """Train run ``name``; resume from ``<out>/state/last.pt`` when it matches. Returns the summary.

    ``run``: every config key of :data:`RUN_KEYS` (a missing one is an error naming it;
    :func:`run_settings` completes a partial ``train:`` section), and any execution option."""
    hp = copy.deepcopy(hp) if hp is not None else resolve(name, profile, overrides, sets)
    r = _prepare(name, manifest, shards_root, out, hp, _complete_run(run))
    _resume(r)
    tr, va = r.data.train, r.data.val
    r.log(f"device {r.device} ({r.run_info['precision']}), face weights: {r.run_info['face_weights']}, seed {r.seed}, "
          f"{len(tr.identities)} train identities ({tr.n_faces} faces), {len(va.identities)} val identities")
    st: _StageRun | None = None
    for epoch in range(r.done + 1, r.total + 1):
        s = r.stage_at(epoch)
        if st is None or st.index != s:
            st = _enter_stage(r, s, epoch)
        _epoch(r, st, epoch, callbacks)
    return _finish(r)


# --------------------------------------------------------------------------- CLI


def _list() -> str:
    lines = []
    for n in run_names(include_variants=False):
        mod = get_method(n)
        lines.append(f"{n}  (profiles: {', '.join(mod.PROFILES)})")
        for v, spec in mod.VARIANTS.items():
            lines.append(f"  {n + '-' + v:<24} {spec['description']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = train_parser()
    a = ap.parse_args(argv)
    if a.list:
        print(_list())
        return 0
    missing = [o for o in ("method", "manifest", "shards_root", "out") if not getattr(a, o)]
    if missing:
        ap.error("required: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    section: dict = {}
    if a.config:
        with open(a.config, encoding="utf-8") as fh:
            section = train_section(yaml.safe_load(fh))
    elif a.params:
        text = Path(a.params[1:]).read_text() if a.params.startswith("@") else a.params
        section = json.loads(text) or {}
    run = {"seed": a.seed, "device": a.device, "amp": a.amp, "face_weights": a.face_weights,
           "num_workers": a.num_workers, "threads": a.threads, "progress": False if a.no_progress else None,
           "language": a.language}
    try:  # the workflow's planning leaves variants and overrides to this check (facevoice.check)
        hp, run = settings(a.method, section, a.profile, parse_sets(a.sets), run)
    except MethodError as exc:
        print(f"train: {a.method}: {exc}", file=sys.stderr)
        return 2
    train(a.method, a.manifest, a.shards_root, a.out, hp, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
