"""Random access to the rows of the Parquet shards, a row group (one clip) at a time."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


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
