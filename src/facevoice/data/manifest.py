"""The manifest: one row per face and voice item of the shards, with identity, split and shard row."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from facevoice.common.io import read_parquet

MANIFEST_COLUMNS = ("item", "clip", "identity", "split", "modality")


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    table, _ = read_parquet(path)
    df = table.to_pandas()
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    return df


@dataclass
class SplitItems:
    """The items of one split: a table and, per identity label, face and voice row numbers."""

    identities: list[str]
    items: pd.DataFrame          # item, identity, modality, shard, row (reset index)
    faces: list[np.ndarray]      # label -> positions in items
    voices: list[np.ndarray]
    dropped: list[str]           # identities with no face or no voice

    @property
    def n_faces(self) -> int:
        return int(sum(len(f) for f in self.faces))


def split_items(manifest: pd.DataFrame, split: str) -> SplitItems:
    rows = manifest[manifest["split"] == split]
    has = rows.groupby("identity")["modality"].agg(lambda s: set(s))
    keep = sorted(i for i, m in has.items() if {"face", "voice"} <= m)
    dropped = sorted(set(has.index) - set(keep))
    rows = rows[rows["identity"].isin(keep)]
    items = rows[["item", "identity", "modality", "shard", "row"]].sort_values("item").reset_index(drop=True)
    label = {ident: k for k, ident in enumerate(keep)}
    lab = items["identity"].map(label).to_numpy()
    mod = items["modality"].to_numpy()
    faces = [np.flatnonzero((lab == k) & (mod == "face")) for k in range(len(keep))]
    voices = [np.flatnonzero((lab == k) & (mod == "voice")) for k in range(len(keep))]
    return SplitItems(keep, items, faces, voices, dropped)
