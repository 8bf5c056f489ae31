"""Shards stage: pack per-clip faces and voice features into Parquet shards, plus a manifest.

Clips are assigned to shards per split and modality, in sorted clip order,
``shards.clips_per_shard`` clips per shard (see ``workflow/rules/common.smk``). A shard is
written one clip at a time (one Parquet row group per clip), so a writer's memory never
grows with the corpus. Rejected clips are left out of the shards; the data report lists them.

Face shard ``shards/<split>/face-NNNNN.parquet``, one row per aligned face:
    item (``<clip>/face/<frame_index:04d>``), clip, identity, frame_index, time_s, prob,
    box, landmarks, image (PNG bytes).
Voice shard ``shards/<split>/voice-NNNNN.parquet``, one row per clip:
    item (``<clip>/voice``), clip, identity, and for each feature kind K: ``K`` (float32
    values, row-major bins x frames), ``K_bins``, ``K_frames``.
Manifest ``shards/manifest.parquet``, one row per item:
    item, clip, identity, name, split, modality, gender, nationality, age, shard (path
    relative to the shards folder), row (row number inside the shard).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from facevoice.io import atomic_path, read_parquet, read_parquet_meta, write_parquet

FACE_FIELDS = ["frame_index", "time_s", "prob", "box", "landmarks", "image"]
MANIFEST_SCHEMA = pa.schema([
    ("item", pa.string()), ("clip", pa.string()), ("identity", pa.string()), ("name", pa.string()),
    ("split", pa.string()), ("modality", pa.string()), ("gender", pa.string()),
    ("nationality", pa.string()), ("age", pa.float64()), ("shard", pa.string()), ("row", pa.int64()),
])


def face_schema() -> pa.Schema:
    from facevoice.faces import SCHEMA

    base = [pa.field("item", pa.string()), pa.field("clip", pa.string()), pa.field("identity", pa.string())]
    return pa.schema(base + [SCHEMA.field(n) for n in FACE_FIELDS])


def voice_schema(kinds: list[str]) -> pa.Schema:
    fields = [pa.field("item", pa.string()), pa.field("clip", pa.string()), pa.field("identity", pa.string())]
    for k in kinds:
        fields += [pa.field(k, pa.list_(pa.float32())), pa.field(f"{k}_bins", pa.int32()),
                   pa.field(f"{k}_frames", pa.int32())]
    return pa.schema(fields)


def _face_rows(path: str, clip: dict[str, Any]) -> pa.Table | None:
    table, meta = read_parquet(path)
    if meta.get("status") != "ok" or table.num_rows == 0:
        return None
    n = table.num_rows
    items = [f"{clip['clip']}/face/{i:04d}" for i in table.column("frame_index").to_pylist()]
    cols = {"item": items, "clip": [clip["clip"]] * n, "identity": [clip["identity"]] * n}
    for name in FACE_FIELDS:
        cols[name] = table.column(name)
    return pa.table(cols, schema=face_schema())


def _voice_rows(path: str, clip: dict[str, Any], kinds: list[str]) -> pa.Table | None:
    table, meta = read_parquet(path)
    if meta.get("status") != "ok" or table.num_rows == 0:
        return None
    by_kind = {r["kind"]: r for r in table.to_pylist()}
    missing = [k for k in kinds if k not in by_kind]
    if missing:
        raise ValueError(f"{path} has no feature(s) {missing}; re-run the features stage")
    cols: dict[str, list] = {"item": [f"{clip['clip']}/voice"], "clip": [clip["clip"]], "identity": [clip["identity"]]}
    for k in kinds:
        cols[k] = [by_kind[k]["values"]]
        cols[f"{k}_bins"] = [by_kind[k]["n_bins"]]
        cols[f"{k}_frames"] = [by_kind[k]["n_frames"]]
    return pa.table(cols, schema=voice_schema(kinds))


def write_shard(
    inputs: list[str], clips: list[dict[str, Any]], output: str, modality: str, split: str,
    kinds: list[str] | None = None, compression: str = "zstd",
) -> dict[str, Any]:
    """Stream the per-clip files ``inputs`` (same order as ``clips``) into one shard."""
    if len(inputs) != len(clips):
        raise ValueError(f"{len(inputs)} inputs but {len(clips)} clip records")
    schema = face_schema() if modality == "face" else voice_schema(list(kinds or []))
    meta = {"stage": "shards", "modality": modality, "split": split, "clips": clips, "kinds": kinds}
    schema = schema.with_metadata({b"facevoice": json.dumps(meta, sort_keys=True, default=str).encode()})
    n_rows = 0
    with atomic_path(output) as tmp:
        with pq.ParquetWriter(tmp, schema, compression=None if compression == "none" else compression) as writer:
            for path, clip in zip(inputs, clips):
                t = _face_rows(path, clip) if modality == "face" else _voice_rows(path, clip, list(kinds or []))
                if t is not None:
                    writer.write_table(t.cast(schema))
                    n_rows += t.num_rows
    return {**meta, "n_rows": n_rows}


def write_manifest(shards: Iterable[str], shards_root: str, output: str) -> int:
    """Index every item of every shard; return the number of items."""
    root = Path(shards_root)
    cols: dict[str, list] = {n: [] for n in MANIFEST_SCHEMA.names}
    for shard in tqdm(sorted(shards), desc="manifest", unit="shard", disable=None):
        meta = read_parquet_meta(shard)
        attrs = {c["clip"]: c for c in meta["clips"]}
        t = pq.read_table(shard, columns=["item", "clip", "identity"])
        rel = Path(shard).resolve().relative_to(root.resolve()).as_posix()
        for row, (item, clip, ident) in enumerate(zip(*(t.column(c).to_pylist() for c in ("item", "clip", "identity")))):
            a = attrs[clip]
            cols["item"].append(item)
            cols["clip"].append(clip)
            cols["identity"].append(ident)
            cols["name"].append(a.get("name"))
            cols["split"].append(meta["split"])
            cols["modality"].append(meta["modality"])
            cols["gender"].append(a.get("gender"))
            cols["nationality"].append(a.get("nationality"))
            cols["age"].append(a.get("age"))
            cols["shard"].append(rel)
            cols["row"].append(row)
    table = pa.table(cols, schema=MANIFEST_SCHEMA)
    dup = table.group_by("item").aggregate([("item", "count")]).filter(pa.compute.field("item_count") > 1)
    if dup.num_rows:
        raise ValueError(f"items appear in several shards: {dup.column('item').to_pylist()[:5]}")
    write_parquet(table, output, {"stage": "manifest", "n_items": table.num_rows})
    return table.num_rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facevoice shards", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write one shard")
    w.add_argument("--modality", choices=["face", "voice"], required=True)
    w.add_argument("--split", required=True)
    w.add_argument("--clips", required=True, help="JSON list of clip records, or @file.json")
    w.add_argument("--kinds", default="", help="comma-separated feature kinds (voice shards)")
    w.add_argument("--compression", default="zstd")
    w.add_argument("--output", required=True)
    w.add_argument("inputs", nargs="*")
    m = sub.add_parser("manifest", help="index the shards")
    m.add_argument("--root", required=True, help="the shards folder (paths in the manifest are relative to it)")
    m.add_argument("--output", required=True)
    m.add_argument("shards", nargs="*")
    args = ap.parse_args(argv)
    if args.cmd == "write":
        text = args.clips
        clips = json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
        kinds = [k for k in args.kinds.split(",") if k]
        meta = write_shard(args.inputs, clips, args.output, args.modality, args.split, kinds, args.compression)
        print(f"[shards] {args.output}: {meta['n_rows']} rows from {len(clips)} clips", file=sys.stderr)
    else:
        n = write_manifest(args.shards, args.root, args.output)
        print(f"[shards] {args.output}: {n} items", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
