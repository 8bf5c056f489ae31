"""The trainer's batches: each epoch's plan of P identities x K faces x K voices, the face and
voice augmentation, the dataset that decodes a planned batch from the shards, and the fixed
validation subset (see :mod:`facevoice.training.train`, "Data" and "Seeds")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image

from facevoice.data.manifest import SplitItems
from facevoice.data.shard_reader import ShardReader
from facevoice.training.inference import resize_face, tile_to


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
