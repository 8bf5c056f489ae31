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
    and one voice); their labels are their sorted order. Each batch holds P identities x K
    faces x K voices (face i and voice i of the same identity form a pair), identities
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
    seconds, ...); ``curve.png`` (loss terms and validation AUC; redrawn at the end of each
    stage and at most once a minute); ``run.json`` (method,
    hyperparameters, seed, device, precision, face weights: ``scratch`` or
    ``vggface2:<path>``, data counts, best epoch with its mean training loss terms, e.g.
    avgatn's identity accuracy ``id_acc``, code version); ``state/``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image
from tqdm import tqdm

from facevoice.common.io import atomic_path, write_json, write_text
from facevoice.common.version import code_version
from facevoice.data.manifest import SplitItems, split_items
from facevoice.data.shard_reader import ShardReader
from facevoice.training.inference import autocast_dtype, choose_device, embed_items, resize_face, tile_to
from facevoice.training.methods import (  # noqa: F401
    PROFILE_NAMES,
    MethodError,
    get_method,
    make_optimizer,
    resolve,
    run_names,
    split_name,
)

CHECKPOINT_FORMAT = "facevoice-checkpoint/1"
VAL_SPLITS = ("val", "train")  # the splits that may choose the best epoch (never a test split)
PLOT_EVERY_S = 60.0  # the curve is redrawn at the end of each stage, and at most once a minute between

RUN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",            # auto | cpu | cuda
    "amp": "auto",               # auto (bf16/fp16 on CUDA) | bf16 | fp16 | off
    "num_workers": "auto",       # DataLoader workers: auto = 0 on CPU, min(8, cores) on CUDA
    "threads": None,             # torch CPU threads (None: torch's default)
    "face_weights": None,        # facenet-pytorch VGGFace2 state dict path; None = from scratch
    "val_split": "val",
    "val_items_per_identity": 8,
    "embed_batch_size": 64,
    "cache_groups": 256,         # row groups (clips) kept decoded per reader
    "progress": None,            # tqdm bars: None = when stderr is a terminal
}


class StopTraining(Exception):
    """Raised by a callback to stop a run (tests use it to simulate a kill)."""


# --------------------------------------------------------------------------- settings


def train_section(config: dict | None) -> dict:
    return dict((config or {}).get("train") or {})


def settings(name: str, section: dict | None = None, profile: str | None = None,
             sets: dict[str, Any] | None = None, run: dict | None = None) -> tuple[dict, dict]:
    """(hyperparameters, run settings) of run ``name`` from a config ``train:`` section."""
    section = dict(section or {})
    profile = profile or section.get("profile") or "demo"
    over: dict[str, Any] = {}
    batch = section.get("batch") or {}
    for key, value in (("epochs", section.get("epochs")), ("P", batch.get("P")), ("K", batch.get("K")),
                       ("batches_per_epoch", batch.get("batches_per_epoch"))):
        if value is not None:
            over[key] = value
    per = section.get("overrides") or {}
    base, _ = split_name(name)
    for key in (base, name) if name != base else (base,):  # the method's, then the variant's
        over = _deep_merge(over, per.get(key) or {})
    hp = resolve(name, profile, over, sets)
    r = dict(RUN_DEFAULTS)
    val = section.get("val") or {}
    for key in ("seed", "device", "amp", "num_workers", "threads", "face_weights"):
        if section.get(key) is not None:
            r[key] = section[key]
    if val.get("split") is not None:
        r["val_split"] = val["split"]
    if val.get("items_per_identity") is not None:
        r["val_items_per_identity"] = val["items_per_identity"]
    r.update({k: v for k, v in (run or {}).items() if v is not None})
    if r["val_split"] not in VAL_SPLITS:
        raise MethodError(f"train.val.split is {r['val_split']!r}; it must be one of {', '.join(VAL_SPLITS)}: "
                          f"model selection is never on a test split")
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


# --------------------------------------------------------------------------- data


def plan_epoch(index: SplitItems, P: int, K: int, n_batches: int, seed: int, epoch: int) -> list[dict]:
    """The batches of one epoch: P distinct identities, K faces and K voices each.

    Identities are cycled through in fresh random orders, so each is drawn about equally
    often; faces and voices are drawn without replacement when the identity has at least K.
    """
    rng = np.random.default_rng([seed, epoch, 0])
    n_ids = len(index.identities)
    P = min(P, n_ids)
    pool: list[int] = []
    batches = []
    for _ in range(n_batches):
        chosen: list[int] = []
        held: list[int] = []
        while len(chosen) < P:
            if not pool:
                pool = list(rng.permutation(n_ids))
            k = pool.pop()
            (held if k in chosen else chosen).append(k)
        pool.extend(reversed(held))
        f_rows, v_rows, labels = [], [], []
        for k in chosen:
            f = index.faces[k]
            v = index.voices[k]
            f_rows.append(rng.choice(f, K, replace=len(f) < K))
            v_rows.append(rng.choice(v, K, replace=len(v) < K))
            labels.append(np.full(K, k))
        batches.append({"faces": np.concatenate(f_rows), "voices": np.concatenate(v_rows),
                        "labels": np.concatenate(labels)})
    return batches


def augment_face(img: np.ndarray, size: int | None, aug: dict, rng: np.random.Generator) -> np.ndarray:
    """Random square crop (side in [crop_scale, 1] x image), resize, flip, brightness/contrast."""
    h, w = img.shape[:2]
    scale = float(aug.get("crop_scale", 1.0))
    if scale < 1.0:
        side = max(1, int(round(rng.uniform(scale, 1.0) * min(h, w))))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        img = img[y0: y0 + side, x0: x0 + side]
        img = np.asarray(Image.fromarray(img).resize((size or w, size or h), Image.BILINEAR))
    else:
        img = resize_face(img, size)
    x = img.astype(np.float32) / 255.0
    if aug.get("flip") and rng.random() < 0.5:
        x = x[:, ::-1]
    j = float(aug.get("jitter", 0.0))
    if j > 0:
        c = 1.0 + rng.uniform(-j, j)
        b = rng.uniform(-j, j)
        m = x.mean()
        x = np.clip((x - m) * c + m + b, 0.0, 1.0)
    return np.ascontiguousarray(x)


def crop_voice(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    x = tile_to(x, length)
    s = int(rng.integers(0, x.shape[1] - length + 1))
    return x[:, s: s + length]


class BatchDataset(torch.utils.data.Dataset):
    """One epoch's batches, decoded and augmented (deterministic per (seed, epoch, batch))."""

    def __init__(self, plan: list[dict], items: pd.DataFrame, reader: ShardReader, hp: dict, seed: int, epoch: int):
        self.plan = plan
        self.shards = items["shard"].to_numpy()
        self.rows = items["row"].to_numpy()
        self.reader = reader
        self.hp = hp
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, b: int):
        rng = np.random.default_rng([self.seed, self.epoch, b + 1])
        hp = self.hp
        batch = self.plan[b]
        faces = [augment_face(self.reader.face(self.shards[i], int(self.rows[i])), hp["face_size"], hp["face_aug"], rng)
                 for i in batch["faces"]]
        lo, hi = (int(x) for x in hp["crop_frames"])
        length = int(rng.integers(lo, hi + 1))
        kind = hp["voice_feature"]
        voices = [crop_voice(self.reader.voice(self.shards[i], int(self.rows[i]), kind), length, rng)
                  for i in batch["voices"]]
        f = torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).contiguous()
        v = torch.from_numpy(np.stack(voices).astype(np.float32))
        return f, v, torch.from_numpy(batch["labels"].astype(np.int64))


def val_subset(index: SplitItems, per_identity: int, seed: int) -> pd.DataFrame:
    """A fixed subset of a split: up to ``per_identity`` faces and voices per identity."""
    rng = np.random.default_rng([seed, 7])
    pick = []
    for f, v in zip(index.faces, index.voices):
        pick.append(np.sort(rng.choice(f, min(per_identity, len(f)), replace=False)))
        pick.append(np.sort(rng.choice(v, min(per_identity, len(v)), replace=False)))
    if not pick:
        return index.items.iloc[:0]
    return index.items.iloc[np.concatenate(pick)].reset_index(drop=True)


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


# --------------------------------------------------------------------------- synthetic data


# --------------------------------------------------------------------------- training


def _fingerprint(name: str, hp: dict, run: dict, train: SplitItems, val: pd.DataFrame) -> str:
    h = hashlib.sha256()
    key = {"name": name, "hp": hp, "seed": run["seed"], "face_weights": run["face_weights"],
           "val_split": run["val_split"], "val_items": run["val_items_per_identity"]}
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
    write_text(out / "log.csv", df.to_csv(index=False))


def plot_curve(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame(history)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    if len(df):
        skip = {"epoch", "stage", "steps", "samples", "val_auc", "best", "lr", "seconds", "data_s", "skipped"}
        for c in [c for c in df.columns if c not in skip]:
            if df[c].notna().any():
                a1.plot(df["epoch"], df[c], marker=".", label=c, lw=2 if c == "loss" else 1)
        a2.plot(df["epoch"], df["val_auc"], marker="o", color="C0", label="val AUC")
        best = df[df["best"] == True]  # noqa: E712
        if len(best):
            a2.scatter(best["epoch"], best["val_auc"], s=80, facecolors="none", edgecolors="C3", label="stage best")
        starts = df.groupby("stage", sort=False)["epoch"].min().iloc[1:]
        for ax in (a1, a2):
            for s, e in starts.items():
                ax.axvline(e - 0.5, color="0.6", ls="--", lw=1)
                ax.text(e - 0.4, ax.get_ylim()[1], s, va="top", fontsize=8, color="0.4")
    a1.set_xlabel("epoch")
    a1.set_title("training loss terms (epoch means)")
    if a1.get_legend_handles_labels()[0]:  # a method with nothing to train has no loss terms
        a1.legend(fontsize=7)
    a2.axhline(0.5, color="0.7", lw=1)
    a2.set_xlabel("epoch")
    a2.set_title("verification AUC, validation identities")
    a2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


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


def train(name: str, manifest: str | Path, shards_root: str | Path, out: str | Path, hp: dict | None = None,
          run: dict | None = None, *, profile: str = "demo", overrides: dict | None = None,
          sets: dict | None = None, callbacks: Iterable[Callable[[str, dict], None]] = ()) -> dict[str, Any]:
    """Train run ``name``; resume from ``<out>/state/last.pt`` when it matches. Returns the summary."""
    hp = copy.deepcopy(hp) if hp is not None else resolve(name, profile, overrides, sets)
    run = {**RUN_DEFAULTS, **(run or {})}
    out = Path(out)
    work = out / "state"
    work.mkdir(parents=True, exist_ok=True)
    if run["threads"]:
        torch.set_num_threads(int(run["threads"]))
    device = choose_device(run["device"])
    amp_dtype = autocast_dtype(device, run["amp"])
    seed = int(run["seed"])
    progress = run["progress"]
    log = lambda msg: print(f"[train {name}] {msg}", file=sys.stderr, flush=True)  # noqa: E731

    manifest_df = pd.read_parquet(manifest)
    tr = split_items(manifest_df, "train")
    if len(tr.identities) < 2:
        raise SystemExit(f"{manifest}: the train split has {len(tr.identities)} identities with both a face and "
                         f"a voice; training needs at least 2")
    va = split_items(manifest_df, run["val_split"])
    val_items = val_subset(va, int(run["val_items_per_identity"]), seed)
    if va.dropped or tr.dropped:
        log(f"identities without a face or a voice left out: train {tr.dropped[:5]}, val {va.dropped[:5]}")
    reader = ShardReader(shards_root, cache_groups=int(run["cache_groups"]))
    first_voice = tr.items.loc[tr.items["modality"] == "voice", "shard"].iloc[0]
    n_bins = reader.n_bins(first_voice, hp["voice_feature"])
    mod = get_method(name)

    torch.manual_seed(seed)
    np.random.seed(seed % (2 ** 32))
    model = mod.build(hp, len(tr.identities), n_bins, face_weights=run["face_weights"]).to(device)
    weights_source = model.weights_source()
    stages = model.stages()
    starts = np.cumsum([0] + [s.epochs for s in stages])
    total = int(starts[-1])
    fingerprint = _fingerprint(name, hp, run, tr, val_items)

    # --- resume
    state = None
    last = work / "last.pt"
    if last.exists():
        try:
            state = torch.load(last, map_location="cpu", weights_only=False)
        except Exception as exc:  # a checkpoint that cannot be read is not resumed from
            log(f"cannot read {last} ({exc}); starting afresh")
            state = None
        if state is not None and state.get("fingerprint") != fingerprint:
            log(f"{last} belongs to other settings or data; starting afresh")
            state = None
        if state is None:
            for p in work.glob("*.pt"):
                p.unlink()
    history: list[dict] = []
    stage_best: dict[str, dict] = {}
    undefined: dict[int, str] = {}  # epoch -> why its validation AUC is undefined
    done = 0
    if state is not None:
        model.set_stage(int(state["stage_index"]))
        model.load_state_dict(state["model"])
        history = state["history"]
        stage_best = state["stage_best"]
        undefined = {int(k): v for k, v in (state.get("undefined") or {}).items()}
        done = int(state["epoch"])
        log(f"resuming after epoch {done} of {total} from {last}")

    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    ckpt_base = {"format": CHECKPOINT_FORMAT, "method": name, "hp": hp, "n_classes": len(tr.identities),
                 "n_bins": n_bins, "classes": tr.identities, "face_weights": weights_source, "seed": seed}
    run_info = {"method": name, "profile": run.get("profile"), "hp": hp,
                "run": {k: v for k, v in run.items() if k != "progress"},
                "seed": seed, "device": str(device), "device_name": (torch.cuda.get_device_name(device)
                                                                     if device.type == "cuda" else "cpu"),
                "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
                "face_weights": weights_source, "torch": torch.__version__, "code_version": code_version(),
                "data": {"manifest": str(manifest), "train_identities": len(tr.identities),
                         "train_faces": tr.n_faces, "train_voices": int(sum(len(v) for v in tr.voices)),
                         "val_split": run["val_split"], "val_identities": len(va.identities),
                         "val_items": len(val_items), "dropped_identities": {"train": tr.dropped, "val": va.dropped},
                         "voice_feature": hp["voice_feature"], "voice_bins": n_bins},
                "stages": [{"name": s.name, "epochs": s.epochs, "P": s.P, "K": s.K} for s in stages]}
    log(f"device {device} ({run_info['precision']}), face weights: {weights_source}, seed {seed}, "
        f"{len(tr.identities)} train identities ({tr.n_faces} faces), {len(va.identities)} val identities")

    nw = _num_workers(run, device)
    last_plot = time.time()
    opts: dict[str, torch.optim.Optimizer] = {}
    custom = False
    cur = None
    cache = None
    for epoch in range(done + 1, total + 1):
        s = int(np.searchsorted(starts, epoch, side="left") - 1)
        st = stages[s]
        if s != cur:
            first = epoch == starts[s] + 1
            if first:
                prev = [stages[i].name for i in range(s) if stages[i].name in stage_best]
                if prev:
                    best_path = work / f"best-{prev[-1]}.pt"
                    model.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=False)["model"])
                    log(f"stage {st.name}: starting from the best epoch of stage {prev[-1]} "
                        f"({stage_best[prev[-1]]['epoch']}, val AUC {stage_best[prev[-1]]['val_auc']:.4f})")
            model.set_stage(s)
            opts = model.stage_optimizers(st.optimizer)
            custom = st.name in model.custom_steps
            scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and not custom)
            if not first and state is not None:
                saved = state["optimizer"]
                for key, o in opts.items():
                    o.load_state_dict(saved[key])
                if state.get("scaler"):
                    scaler.load_state_dict(state["scaler"])
            cache = None
            if st.cache:
                t0 = time.time()
                feats = embed_items(model, reader, tr.items, hp, device, int(run["embed_batch_size"]), run["amp"],
                                    progress, desc=f"{st.name}: cache features", face_fn=model.backbone_face,
                                    voice_fn=model.backbone_voice)
                cache = torch.from_numpy(feats).to(device)
                log(f"stage {st.name}: encoder features of {len(feats)} train items cached ({time.time() - t0:.1f} s)")
            cur = s
        e_in = epoch - int(starts[s]) - 1
        lr = _lr(st.optimizer, e_in, st.epochs)
        for o in opts.values():
            for g in o.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
        torch.manual_seed(seed * 1_000_003 + epoch)
        n_batches = int(st.batches_per_epoch or max(1, math.ceil(tr.n_faces / (min(st.P, len(tr.identities)) * st.K))))
        # a stage with nothing to train (the chance scorer) only evaluates
        plan = plan_epoch(tr, st.P, st.K, n_batches, seed, epoch) if opts else []
        t0 = time.time()
        model.train()
        sums: dict[str, float] = {}
        steps = samples = skipped = 0
        if cache is not None:
            batches: Iterable = ((cache[torch.from_numpy(b["faces"]).to(device)],
                                  cache[torch.from_numpy(b["voices"]).to(device)],
                                  torch.from_numpy(b["labels"].astype(np.int64))) for b in plan)
        else:
            ds = BatchDataset(plan, tr.items, reader, hp, seed, epoch)
            batches = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=nw,
                                                  pin_memory=device.type == "cuda",
                                                  prefetch_factor=2 if nw else None)
        bar = tqdm(batches, total=len(plan), desc=f"{name} epoch {epoch}/{total} ({st.name})", unit="batch",
                   disable=None if progress is None else not progress, leave=False)
        fed = WaitTimer(bar)
        for f, v, y in fed:
            f = f.to(device, non_blocking=True)
            v = v.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if custom:  # the model makes its own updates (adversarial stages)
                terms = model.train_step(f, v, y, opts, _autocast(amp_dtype))
                loss = terms.pop("loss")
                if not torch.isfinite(loss.detach()):
                    skipped += 1
                    continue
            else:
                with _autocast(amp_dtype):
                    loss, terms = (model.loss_from_features(f, v, y) if cache is not None else model.loss(f, v, y))
                for o in opts.values():
                    o.zero_grad(set_to_none=True)
                if not torch.isfinite(loss.detach()):
                    skipped += 1
                    continue
                scaler.scale(loss).backward()
                for o in opts.values():
                    scaler.step(o)
                scaler.update()
            steps += 1
            samples += len(f) + len(v)
            sums["loss"] = sums.get("loss", 0.0) + _to_float(loss)
            for k, val in terms.items():
                sums[k] = sums.get(k, 0.0) + _to_float(val)
            bar.set_postfix(loss=f"{sums['loss'] / steps:.3f}")
            for cb in callbacks:
                cb("step", {"epoch": epoch, "step": steps, "model": model})
        bar.close()
        if skipped:
            log(f"epoch {epoch}: {skipped} batch(es) with a non-finite loss skipped")
        emb = embed_items(model, reader, val_items, hp, device, int(run["embed_batch_size"]), run["amp"],
                          progress, desc="val") if len(val_items) else None
        auc = verification_auc(emb, val_items, getattr(mod, "SCORE", "cosine")) if emb is not None else float("nan")
        if not math.isfinite(auc):
            undefined[epoch] = undefined_auc_reason(emb, val_items, run["val_split"])
            log(f"epoch {epoch}: validation AUC undefined: {undefined[epoch]}")
        row = {"epoch": epoch, "stage": st.name, "steps": steps, "samples": samples,
               **{k: (v / steps if steps else float("nan")) for k, v in sums.items()},
               "val_auc": auc, "lr": lr, "seconds": round(time.time() - t0, 3), "data_s": round(fed.waited, 3),
               "skipped": skipped, "best": False}
        prev_best = stage_best.get(st.name)
        if better_epoch(auc, prev_best and prev_best["val_auc"]) or st.name in model.select_last:
            row["best"] = True
            stage_best[st.name] = {"epoch": epoch, "val_auc": auc}
            for h in history:
                if h["stage"] == st.name:
                    h["best"] = False
            _save({**ckpt_base, "model": model.state_dict(), "epoch": epoch, "stage": st.name, "stage_index": s,
                   "val_auc": auc}, work / f"best-{st.name}.pt")
        history.append(row)
        _save({**ckpt_base, "fingerprint": fingerprint, "model": model.state_dict(), "optimizer": {k: o.state_dict() for k, o in opts.items()},
               "scaler": scaler.state_dict(), "epoch": epoch, "stage": st.name, "stage_index": s,
               "history": history, "stage_best": stage_best, "undefined": undefined, "val_auc": auc}, last)
        write_log(history, out)
        if epoch == int(starts[s + 1]) or time.time() - last_plot > PLOT_EVERY_S:  # a stage's end, or a while
            plot_curve(history, out / "curve.png", f"{name} ({run.get('profile')})")
            last_plot = time.time()
        log(f"epoch {epoch}/{total} [{st.name}] loss {row.get('loss', float('nan')):.4f} val AUC {auc:.4f} "
            f"lr {lr:.2e} {row['seconds']:.1f} s" + (" *" if row["best"] else ""))
        for cb in callbacks:
            cb("epoch", {"epoch": epoch, "row": row, "model": model})

    # --- final outputs
    final = [s.name for s in stages if s.name in stage_best]
    if not final:
        raise SystemExit(f"{name}: no epoch was trained (every stage has 0 epochs)")
    best = torch.load(work / f"best-{final[-1]}.pt", map_location="cpu", weights_only=False)
    _save(best, out / "model.pt")
    write_log(history, out)
    plot_curve(history, out / "curve.png", f"{name} ({run.get('profile')})")
    best_row = next((h for h in history if h["epoch"] == best["epoch"]), {})
    terms = {k: v for k, v in best_row.items() if k not in ("epoch", "stage", "best", "lr", "seconds", "data_s")}
    summary = {**run_info, "best": {"stage": best["stage"], "epoch": best["epoch"], "val_auc": best["val_auc"],
                                    "train_terms": terms},
               "stage_best": stage_best, "epochs": total,
               "val_auc_undefined": {str(k): v for k, v in sorted(undefined.items())},
               "seconds": round(float(sum(h["seconds"] for h in history)), 2)}
    write_json(out / "run.json", summary)
    log(f"done: best epoch {best['epoch']} ({best['stage']}), val AUC {best['val_auc']:.4f} -> {out / 'model.pt'}")
    return summary


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
    ap = argparse.ArgumentParser(prog="facevoice train", description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="list the methods and their ablation variants")
    ap.add_argument("--method", help="method or method-variant (see --list)")
    ap.add_argument("--manifest", help="results/<dataset>/shards/manifest.parquet")
    ap.add_argument("--shards-root", help="the shards folder (manifest paths are relative to it)")
    ap.add_argument("--out", help="output folder, e.g. results/<dataset>/train/<method>")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", help="a config.yaml: its train: section")
    src.add_argument("--params", help="the train: section as JSON (or @file.json)")
    ap.add_argument("--profile", choices=PROFILE_NAMES, default=None, help="default: train.profile, else demo")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a hyperparameter (dotted key; YAML value); repeatable")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--face-weights", help="facenet-pytorch VGGFace2 state dict (a local file)")
    ap.add_argument("--num-workers", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-progress", action="store_true")
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
           "num_workers": a.num_workers, "threads": a.threads, "progress": False if a.no_progress else None}
    hp, run = settings(a.method, section, a.profile, parse_sets(a.sets), run)
    train(a.method, a.manifest, a.shards_root, a.out, hp, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
