"""Embed a split's faces and voices with a trained model; read items from the shards.

``facevoice embed --checkpoint model.pt --manifest M --shards-root DIR --split test --out E.parquet``

Output Parquet (the evaluation's input): one row per manifest item of the split, in
manifest order: ``id`` (the manifest ``item``), ``identity``, ``modality`` (``face`` |
``voice``), ``embedding`` (list<float32>, L2-normalised, one length for both modalities).
The ``facevoice`` metadata names the method, checkpoint (sha256, epoch, validation AUC),
split, device and the face weights the run started from.

Items are read from the shards a Parquet row group at a time (one clip per row group, see
:mod:`facevoice.shards`) through a small LRU cache (:class:`ShardReader`): shards are
streamed, never loaded whole. Faces are resized to the method's ``face_size``; voices are
whole utterances centre-cropped to ``eval_max_frames`` (tiled up to ``crop_frames[0]``
when shorter).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from tqdm import tqdm

from facevoice.io import write_parquet
from facevoice.methods import get_method

EMBED_FORMAT = "facevoice-embeddings/1"


class ShardReader:
    """Random access to shard rows, one row group (clip) at a time, with LRU caches."""

    def __init__(self, root: str | Path, cache_groups: int = 256, open_files: int = 64):
        self.root = Path(root)
        self.cache_groups = int(cache_groups)
        self.open_files = int(open_files)
        self._files: OrderedDict[str, pq.ParquetFile] = OrderedDict()
        self._offsets: dict[str, np.ndarray] = {}
        self._groups: OrderedDict[tuple, pa.Table] = OrderedDict()

    def __getstate__(self):  # DataLoader workers get an empty reader of their own
        return {"root": self.root, "cache_groups": self.cache_groups, "open_files": self.open_files}

    def __setstate__(self, state):
        self.__init__(state["root"], state["cache_groups"], state["open_files"])

    def _file(self, shard: str) -> pq.ParquetFile:
        f = self._files.get(shard)
        if f is None:
            f = pq.ParquetFile(self.root / shard)
            self._files[shard] = f
            if shard not in self._offsets:
                md = f.metadata
                self._offsets[shard] = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
            while len(self._files) > self.open_files:
                _, old = self._files.popitem(last=False)
                old.close()
        else:
            self._files.move_to_end(shard)
        return f

    def _row(self, shard: str, row: int, columns: tuple[str, ...]) -> tuple[pa.Table, int]:
        f = self._file(shard)
        offsets = self._offsets[shard]
        g = int(np.searchsorted(offsets, row, side="right") - 1)
        if g < 0 or g >= len(offsets) - 1:
            raise IndexError(f"{shard}: row {row} out of range ({offsets[-1]} rows)")
        key = (shard, g, columns)
        table = self._groups.get(key)
        if table is None:
            table = f.read_row_group(g, columns=list(columns))
            self._groups[key] = table
            while len(self._groups) > self.cache_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        return table, row - int(offsets[g])

    def face(self, shard: str, row: int) -> np.ndarray:
        """The aligned face as uint8 (H, W, 3)."""
        table, i = self._row(shard, row, ("image",))
        data = table.column("image")[i].as_py()
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def voice(self, shard: str, row: int, kind: str) -> np.ndarray:
        """One feature kind of a clip as float32 (bins, frames)."""
        table, i = self._row(shard, row, (kind, f"{kind}_bins", f"{kind}_frames"))
        bins = table.column(f"{kind}_bins")[i].as_py()
        frames = table.column(f"{kind}_frames")[i].as_py()
        if bins is None:
            raise KeyError(f"{shard}: no {kind!r} features; add it to features.kinds")
        values = table.column(kind)[i].values.to_numpy(zero_copy_only=False)
        return np.asarray(values, dtype=np.float32).reshape(bins, frames)

    def n_bins(self, shard: str, kind: str) -> int:
        f = self._file(shard)
        if kind not in f.schema_arrow.names:
            raise KeyError(f"voice shard {shard} has no {kind!r} features (has "
                           f"{[n for n in f.schema_arrow.names if not n.endswith(('_bins', '_frames'))]}); "
                           f"add {kind} to features.kinds or change the method's voice_feature")
        return int(f.read_row_group(0, columns=[f"{kind}_bins"]).column(0)[0].as_py())


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


def write_embeddings(path: str | Path, items: pd.DataFrame, vectors: np.ndarray, meta: dict[str, Any]) -> None:
    vectors = np.asarray(vectors, dtype=np.float32)
    d = vectors.shape[1] if vectors.ndim == 2 and len(vectors) else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    emb = pa.ListArray.from_arrays(pa.array(np.arange(len(vectors) + 1, dtype=np.int32) * d), flat)
    table = pa.table({
        "id": pa.array(items["item"].astype(str).tolist(), pa.string()),
        "identity": pa.array(items["identity"].astype(str).tolist(), pa.string()),
        "modality": pa.array(items["modality"].astype(str).tolist(), pa.string()),
        "embedding": emb,
    })
    write_parquet(table, path, meta)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def embed(checkpoint: str, manifest: str, shards_root: str, split: str, out: str, device: str = "auto",
          batch_size: int = 64, amp: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Write the embeddings of every item of ``split``; return the file's metadata."""
    if threads:
        torch.set_num_threads(int(threads))
    dev = choose_device(device)
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, dev)
    m = pd.read_parquet(manifest)
    items = m[m["split"] == split].reset_index(drop=True)
    if items.empty:
        raise SystemExit(f"split {split!r} has no items in {manifest} (splits: {sorted(m['split'].unique())})")
    reader = ShardReader(shards_root)
    vectors = embed_items(model, reader, items, ckpt["hp"], dev, batch_size=batch_size, amp=amp,
                          desc=f"embed {ckpt['method']} {split}")
    meta = {"format": EMBED_FORMAT, "method": ckpt["method"], "split": split,
            "checkpoint": {"path": str(checkpoint), "sha256": _sha256(checkpoint), "epoch": ckpt["epoch"],
                           "stage": ckpt["stage"], "val_auc": ckpt.get("val_auc")},
            "face_weights": ckpt.get("face_weights"), "device": str(dev), "dim": int(vectors.shape[1]),
            "score": getattr(get_method(ckpt["method"]), "SCORE", "cosine"),
            "score_threshold": getattr(get_method(ckpt["method"]), "SCORE_THRESHOLD", None),
            "n_face": int((items["modality"] == "face").sum()), "n_voice": int((items["modality"] == "voice").sum())}
    write_embeddings(out, items, vectors, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facevoice embed", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a training checkpoint (train/<method>/model.pt)")
    ap.add_argument("--method", default=None, help="check that the checkpoint is this method's")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--shards-root", required=True, help="the shards folder (manifest paths are relative to it)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.method:
        got = load_checkpoint(a.checkpoint)["method"]
        if got != a.method:
            raise SystemExit(f"{a.checkpoint} is a {got!r} checkpoint, not {a.method!r}")
    meta = embed(a.checkpoint, a.manifest, a.shards_root, a.split, a.out, a.device, a.batch_size, a.amp, a.threads)
    print(f"[embed] {a.out}: {meta['n_face']} faces, {meta['n_voice']} voices, dim {meta['dim']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
