"""Applying a trained model: device and precision, input shaping of faces and voices, batched embedding, checkpoints.

Shared by the trainer (model selection), the embedding stage and the generation check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from facevoice.data.shard_reader import ShardReader
from facevoice.training.methods import get_method


def resize_face(img: np.ndarray, size: int | None) -> np.ndarray:
    if size is None or (img.shape[0] == size and img.shape[1] == size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def face_tensor(imgs: list[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (B, 3, H, W) in [0, 1]."""
    arr = np.stack(imgs).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def tile_to(x: np.ndarray, length: int) -> np.ndarray:
    """Repeat (bins, T) along time to at least ``length`` frames."""
    t = x.shape[1]
    if t >= length:
        return x
    if t == 0:
        raise ValueError("a voice item with zero frames")
    return np.tile(x, (1, -(-length // t)))[:, :length]


def eval_voice(x: np.ndarray, hp: dict) -> np.ndarray:
    x = tile_to(x, int(hp["crop_frames"][0]))
    m = int(hp["eval_max_frames"])
    if x.shape[1] > m:
        s = (x.shape[1] - m) // 2
        x = x[:, s: s + m]
    return x


def choose_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for but CUDA is not available")
    return torch.device(device)


def autocast_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; None (no autocast) on CPU or amp 'off'."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@torch.no_grad()
def embed_items(model, reader: ShardReader, items: pd.DataFrame, hp: dict, device: torch.device,
                batch_size: int = 64, amp: str = "auto", progress: bool | None = None,
                desc: str = "embed", face_fn=None, voice_fn=None) -> np.ndarray:
    """Embeddings (n, d) of manifest rows ``items`` (columns modality, shard, row), in order.

    Faces go in batches of ``batch_size``; voices one utterance at a time (whole, up to
    ``eval_max_frames``). ``face_fn`` / ``voice_fn`` default to the model's
    ``embed_face`` / ``embed_voice`` (the trainer passes the backbones to cache features).
    The model is put in eval mode and left so.
    """
    face_fn = face_fn or model.embed_face
    voice_fn = voice_fn or model.embed_voice
    model.eval()
    dtype = autocast_dtype(device, amp)
    out: list[np.ndarray | None] = [None] * len(items)
    mods = items["modality"].to_numpy()
    shards = items["shard"].to_numpy()
    rows = items["row"].to_numpy()
    face_idx = np.flatnonzero(mods == "face")
    voice_idx = np.flatnonzero(mods == "voice")
    kind = hp["voice_feature"]
    size = hp.get("face_size")

    def run(fn, x):
        if dtype is not None:
            with torch.autocast("cuda", dtype=dtype):
                return fn(x.to(device, non_blocking=True)).float().cpu().numpy()
        return fn(x.to(device)).float().cpu().numpy()

    bar = tqdm(total=len(items), desc=desc, unit="item", disable=None if progress is None else not progress,
               leave=False)
    for s in range(0, len(face_idx), batch_size):
        idx = face_idx[s: s + batch_size]
        x = face_tensor([resize_face(reader.face(shards[i], int(rows[i])), size) for i in idx])
        emb = run(face_fn, x)
        for j, i in enumerate(idx):
            out[i] = emb[j]
        bar.update(len(idx))
    for i in voice_idx:
        x = torch.from_numpy(np.array(eval_voice(reader.voice(shards[i], int(rows[i]), kind), hp)))[None]
        out[i] = run(voice_fn, x)[0]
        bar.update(1)
    bar.close()
    if not len(items):
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(out).astype(np.float32)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "facevoice-checkpoint/1":
        raise ValueError(f"{path} is not a facevoice training checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], device: torch.device | str = "cpu"):
    """Rebuild the model of a checkpoint (its stage, its weights); weights never re-downloaded."""
    mod = get_method(ckpt["method"])
    model = mod.build(ckpt["hp"], ckpt["n_classes"], ckpt["n_bins"], face_weights=None)
    model.set_stage(int(ckpt["stage_index"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval()
