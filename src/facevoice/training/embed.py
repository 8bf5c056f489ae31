"""Embed a split's faces and voices with a trained model; read items from the shards.

``facevoice embed --checkpoint model.pt --manifest M --shards-root DIR --split test --out E.parquet``

Output Parquet (the evaluation's input): one row per manifest item of the split, in
manifest order: ``id`` (the manifest ``item``), ``identity``, ``modality`` (``face`` |
``voice``), ``embedding`` (list<float32>, L2-normalised, one length for both modalities).
The ``facevoice`` metadata names the method, checkpoint (sha256, epoch, validation AUC),
split, device and the face weights the run started from, and ``note``: the model's line for
the comparison tables (which form of the method it trained; null for most).

Items are read from the shards a Parquet row group at a time (one clip per row group, see
:mod:`facevoice.preprocess.shards`) through a small LRU cache (:class:`ShardReader`): shards are
streamed, never loaded whole. Faces are resized to the method's ``face_size``; voices are
whole utterances centre-cropped to ``eval_max_frames`` (tiled up to ``crop_frames[0]``
when shorter).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from facevoice.common.io import write_parquet
from facevoice.common.version import file_sha256
from facevoice.data.shard_reader import ShardReader
from facevoice.training.inference import choose_device, embed_items, load_checkpoint, model_from_checkpoint
from facevoice.training.methods import get_method
from facevoice.training.options import embed_parser

EMBED_FORMAT = "facevoice-embeddings/1"


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
            "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint), "epoch": ckpt["epoch"],
                           "stage": ckpt["stage"], "val_auc": ckpt.get("val_auc")},
            "face_weights": ckpt.get("face_weights"), "device": str(dev), "dim": int(vectors.shape[1]),
            "score": getattr(get_method(ckpt["method"]), "SCORE", "cosine"),
            "score_threshold": getattr(get_method(ckpt["method"]), "SCORE_THRESHOLD", None),
            "n_face": int((items["modality"] == "face").sum()), "n_voice": int((items["modality"] == "voice").sum()),
            "note": model.note()}
    write_embeddings(out, items, vectors, meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    a = embed_parser().parse_args(argv)
    if a.method:
        got = load_checkpoint(a.checkpoint)["method"]
        if got != a.method:
            raise SystemExit(f"{a.checkpoint} is a {got!r} checkpoint, not {a.method!r}")
    meta = embed(a.checkpoint, a.manifest, a.shards_root, a.split, a.out, a.device, a.batch_size, a.amp, a.threads)
    print(f"[embed] {a.out}: {meta['n_face']} faces, {meta['n_voice']} voices, dim {meta['dim']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
