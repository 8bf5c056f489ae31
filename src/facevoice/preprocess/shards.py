"""Shards stage: pack the faces and voice features of whole identities into Parquet shards.

An identity's shard is fixed by its id alone: ``bucket = sha256(identity) mod
shards.buckets`` (:func:`facevoice.data.inputs.bucket_of`), per split and modality. Adding an
identity therefore rewrites the one shard it joins and no other. A shard is written one
clip at a time from the identities' batch files (one Parquet row group per clip), so a
writer's memory never grows with the corpus. Rejected clips are left out of the shards;
the data report lists them. The held-out videos of training identities (the seen-heard
protocol, :func:`facevoice.data.inputs.heldout_videos`) go to their own split's shards and never
into a training shard: the shard job is told which of its identities' videos they are.

Face shard ``shards/<split>/face-NNNNN.parquet`` (NNNNN the bucket), one row per aligned face:
    item (``<clip>/face/<frame_index:04d>``), clip, identity, frame_index, time_s, prob,
    box, landmarks, image (PNG bytes).
Voice shard ``shards/<split>/voice-NNNNN.parquet``, one row per clip:
    item (``<clip>/voice``), clip, identity, and for each feature kind K: ``K`` (float32
    values, row-major bins x frames), ``K_bins``, ``K_frames``.
Manifest ``shards/manifest.parquet``, one row per item:
    item, clip, identity, name, split, modality, gender, nationality, age (from the clip
    table), language (the clip's, from the clip table: the MAV-Celeb layout's; null for the
    other layouts), shard (path relative to the shards folder), row (row number inside the shard).

The shards folder holds exactly the planned shards. Only non-empty buckets are planned, so
when a bucket empties (its identities removed, its held-out videos no longer held out, a
split gone, ``shards.buckets`` changed) its old shards are no longer any job's output. The
manifest job, which runs whenever the plan changes (its inputs are every planned shard and
the clip table), then removes every ``<split>/{face,voice}-NNNNN.parquet`` that is not among
its inputs, and any split folder left empty, naming each in its log: reading
``shards/<split>/`` directly returns what the manifest indexes, no deleted data. (Empty
shards for empty buckets would not do: a split that disappears has no bucket to plan.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from facevoice.common.io import META_KEY, atomic_path, meta_bytes, write_parquet
from facevoice.data.batch import BatchReader
from facevoice.data.clean import remove, stale_shards
from facevoice.data.inputs import SEENHEARD
from facevoice.data.records import FACES

FACE_FIELDS = ["frame_index", "time_s", "prob", "box", "landmarks", "image"]
MANIFEST_SCHEMA = pa.schema([
    ("item", pa.string()), ("clip", pa.string()), ("identity", pa.string()), ("name", pa.string()),
    ("split", pa.string()), ("modality", pa.string()), ("gender", pa.string()),
    ("nationality", pa.string()), ("age", pa.float64()), ("language", pa.string()), ("shard", pa.string()),
    ("row", pa.int64()),
])
ATTRIBUTES = ("name", "gender", "nationality", "age")


def face_schema() -> pa.Schema:
    base = [pa.field("item", pa.string()), pa.field("clip", pa.string()), pa.field("identity", pa.string())]
    return pa.schema(base + [FACES.field(n) for n in FACE_FIELDS])


def voice_schema(kinds: list[str]) -> pa.Schema:
    fields = [pa.field("item", pa.string()), pa.field("clip", pa.string()), pa.field("identity", pa.string())]
    for k in kinds:
        fields += [pa.field(k, pa.list_(pa.float32())), pa.field(f"{k}_bins", pa.int32()),
                   pa.field(f"{k}_frames", pa.int32())]
    return pa.schema(fields)


def _face_rows(clip: str, table: pa.Table) -> pa.Table:
    n = table.num_rows
    items = [f"{clip}/face/{i:04d}" for i in table.column("frame_index").to_pylist()]
    cols = {"item": items, "clip": [clip] * n, "identity": [clip.split("/", 1)[0]] * n}
    for name in FACE_FIELDS:
        cols[name] = table.column(name)
    return pa.table(cols, schema=face_schema())


def _voice_rows(clip: str, table: pa.Table, kinds: list[str], source: Path) -> pa.Table:
    by_kind = {r["kind"]: r for r in table.to_pylist()}
    missing = [k for k in kinds if k not in by_kind]
    if missing:
        raise ValueError(f"{source}: clip {clip} has no feature(s) {missing}; re-run the features stage")
    cols: dict[str, list] = {"item": [f"{clip}/voice"], "clip": [clip], "identity": [clip.split("/", 1)[0]]}
    for k in kinds:
        cols[k] = [by_kind[k]["values"]]
        cols[f"{k}_bins"] = [by_kind[k]["n_bins"]]
        cols[f"{k}_frames"] = [by_kind[k]["n_frames"]]
    return pa.table(cols, schema=voice_schema(kinds))


def _clips(readers: list[BatchReader], heldout: set[str], split: str) -> Iterator[tuple[BatchReader, dict]]:
    """Every usable clip of the batch files that belongs to ``split``, in clip order.

    ``heldout`` holds the held-out videos (``identity/video``) of the batches' identities:
    a seen-heard shard takes only their clips, any other shard only the rest.
    """
    want = split == SEENHEARD
    recs = [(r, rec) for r in readers for rec in r.records if rec["status"] == "ok" and rec.get("rows")
            and (rec["clip"].rsplit("/", 1)[0] in heldout) == want]
    yield from sorted(recs, key=lambda x: x[1]["clip"])


def write_shard(inputs: list[str], output: str, modality: str, split: str, kinds: list[str] | None = None,
                compression: str = "zstd", heldout: Iterable[str] = ()) -> dict[str, Any]:
    """Stream the usable clips of the batch files ``inputs`` (faces or features) into one shard.

    ``heldout``: the held-out videos of the inputs' identities (see :func:`_clips`).
    """
    kinds = list(kinds or [])
    readers = [BatchReader(p) for p in sorted(inputs)]
    try:
        clips = list(_clips(readers, set(heldout), split))
        schema = face_schema() if modality == "face" else voice_schema(kinds)
        meta = {"stage": "shards", "modality": modality, "split": split, "kinds": kinds or None,
                "clips": [{"clip": rec["clip"], "identity": rec["clip"].split("/", 1)[0]} for _, rec in clips]}
        schema = schema.with_metadata({META_KEY: meta_bytes(meta)})
        n_rows = 0
        with atomic_path(output) as tmp:
            with pq.ParquetWriter(tmp, schema, compression=None if compression == "none" else compression) as w:
                for reader, rec in clips:
                    rows = reader.rows(rec)
                    t = (_face_rows(rec["clip"], rows) if modality == "face"
                         else _voice_rows(rec["clip"], rows, kinds, reader.path))
                    w.write_table(t.cast(schema))
                    n_rows += t.num_rows
    finally:
        for r in readers:
            r.close()
    return {**meta, "n_rows": n_rows}


def write_manifest(shards: Iterable[str], shards_root: str, output: str, attributes: dict[str, dict],
                   languages: dict[str, str | None] | None = None) -> int:
    """Index every item of every shard, with each identity's ``attributes`` and each clip's
    language (``languages``: clip -> language; a clip not in it has none); return the item count."""
    languages = languages or {}
    root = Path(shards_root).resolve()
    cols: dict[str, list] = {n: [] for n in MANIFEST_SCHEMA.names}
    for shard in tqdm(sorted(shards), desc="manifest", unit="shard", disable=None):
        meta = json.loads((pq.read_schema(shard).metadata or {})[b"facevoice"])
        t = pq.read_table(shard, columns=["item", "clip", "identity"])
        rel = Path(shard).resolve().relative_to(root).as_posix()
        for row, (item, clip, ident) in enumerate(zip(*(t.column(c).to_pylist() for c in ("item", "clip", "identity")))):
            if ident not in attributes:
                raise ValueError(f"{shard}: identity {ident} is not in the clip table (a stale shard?)")
            a = attributes[ident]
            for key, value in (("item", item), ("clip", clip), ("identity", ident), ("split", meta["split"]),
                               ("modality", meta["modality"]), ("shard", rel), ("row", row)):
                cols[key].append(value)
            for key in ATTRIBUTES:
                cols[key].append(a.get(key))
            cols["language"].append(languages.get(clip))
    table = pa.table(cols, schema=MANIFEST_SCHEMA)
    dup = table.group_by("item").aggregate([("item", "count")]).filter(pa.compute.field("item_count") > 1)
    if dup.num_rows:
        raise ValueError(f"items appear in several shards: {dup.column('item').to_pylist()[:5]}")
    write_parquet(table, output, {"stage": "manifest", "n_items": table.num_rows})
    return table.num_rows


def manifest_from_clips(clips_path: str, shards_root: str, buckets: int, output: str) -> int:
    """The manifest of the shards that the clip table's identities fill (``shards.buckets``);
    then every other shard file in ``shards_root`` is removed (stale: see the module doc)."""
    import pandas as pd

    from facevoice.data.inputs import identity_attributes, shard_files

    clips = pd.read_parquet(clips_path)
    files = [str(Path(shards_root) / rel) for rel in shard_files(clips, buckets)]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} shard(s) missing, e.g. {missing[0]}: run the shard jobs first")
    languages = {}
    if "language" in clips.columns:
        languages = {c: (None if pd.isna(lang) else str(lang)) for c, lang in zip(clips["clip"], clips["language"])}
    n = write_manifest(files, shards_root, output, identity_attributes(clips), languages)
    stale = stale_shards(shards_root, shard_files(clips, buckets))
    for f in stale:
        print(f"[shards] removing {f}: a shard this plan does not have (its bucket is empty)", file=sys.stderr)
    remove(stale, shards_root)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facevoice shards", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write one shard from batch files")
    w.add_argument("--modality", choices=["face", "voice"], required=True)
    w.add_argument("--split", required=True)
    w.add_argument("--kinds", default="", help="comma-separated feature kinds (voice shards)")
    w.add_argument("--compression", required=True, help="config shards.compression")
    w.add_argument("--heldout", default="[]",
                   help="JSON list of the held-out videos (identity/video) of these identities (seen-heard)")
    w.add_argument("--output", required=True)
    w.add_argument("inputs", nargs="+", help="the faces (face shard) or features (voice shard) batch files")
    m = sub.add_parser("manifest", help="index the shards")
    m.add_argument("--clips", required=True, help="the clip table (clips.parquet): identities and their attributes")
    m.add_argument("--root", required=True, help="the shards folder (paths in the manifest are relative to it)")
    m.add_argument("--buckets", type=int, required=True, help="config shards.buckets")
    m.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "write":
        kinds = [k for k in args.kinds.split(",") if k]
        meta = write_shard(args.inputs, args.output, args.modality, args.split, kinds, args.compression,
                           json.loads(args.heldout))
        print(f"[shards] {args.output}: {meta['n_rows']} rows from {len(meta['clips'])} clips "
              f"of {len(args.inputs)} batch file(s)", file=sys.stderr)
    else:
        n = manifest_from_clips(args.clips, args.root, args.buckets, args.output)
        print(f"[shards] {args.output}: {n} items", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
