"""Atomic file writing and Parquet tables that carry their own metadata.

Every file the pipeline produces is written to a temporary name in the target folder and
renamed into place, so a killed job never leaves a half-written output that a later run
could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"facevoice"


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask, read without changing it (Linux /proc), else set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def working_in(directory: str | os.PathLike | None) -> Iterator[None]:
    """Run in ``directory`` (as ``snakemake -d`` does: relative config paths are relative to it);
    ``None``: stay. (``contextlib.chdir`` is Python 3.11's; the project supports 3.10.)"""
    before = os.getcwd()
    if directory:
        os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` defaults to the target's own suffix so writers that infer the format from
    the file name (soundfile, PIL) keep working.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A job killed mid-write leaves its temporary file; the job that redoes it sweeps it up.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + (path.suffix if suffix is None else suffix),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600; the output gets the mode any other tool gives a new file (0644 under umask 022)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def strict(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, infinity) as None: JSON has no NaN."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def strict_json(obj: Any, **kwargs: Any) -> str:
    """``obj`` as strict JSON: NaN and infinity as null, keys sorted (every JSON the pipeline writes)."""
    return json.dumps(strict(obj), sort_keys=True, default=str, allow_nan=False, **kwargs)


def meta_bytes(meta: dict[str, Any]) -> bytes:
    """A Parquet footer's ``facevoice`` metadata value: strict JSON, UTF-8."""
    return strict_json(meta).encode()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Strict JSON (NaN and infinity written as null), keys sorted, atomically."""
    write_text(path, strict_json(obj, indent=2) + "\n")


def write_parquet(
    table: pa.Table | Any,
    path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """Write a pyarrow Table (or pandas DataFrame) atomically, with JSON ``meta``.

    ``meta`` is stored in the Parquet schema metadata under the key ``facevoice`` and read
    back by :func:`read_parquet_meta`.
    """
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    if meta is not None:
        existing = dict(table.schema.metadata or {})
        existing[META_KEY] = meta_bytes(meta)
        table = table.replace_schema_metadata(existing)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def read_parquet_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Return the ``facevoice`` metadata of a Parquet file ({} when it has none)."""
    md = pq.read_schema(path).metadata or {}
    raw = md.get(META_KEY)
    return json.loads(raw) if raw else {}


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> tuple[pa.Table, dict]:
    """Read a Parquet file and its ``facevoice`` metadata."""
    table = pq.read_table(path, columns=columns)
    raw = (table.schema.metadata or {}).get(META_KEY)
    return table, (json.loads(raw) if raw else {})


# --------------------------------------------------------------------------- Arrow
# pyarrow 26 imports pandas (about 0.3-0.5 s) on the first ``pa.array(...)``,
# ``Array.to_numpy()``, ``pa.scalar`` or ``Schema.empty_table()`` call.  The light stages
# (frames, speech, features, batch files) build and read their Arrow arrays from numpy
# buffers directly, so that a job pays for no import it does not use.

_NP_TYPES = {pa.float32(): np.float32, pa.float64(): np.float64, pa.int32(): np.int32}


def arrow_array(values: Any, type_: pa.DataType) -> pa.Array:
    """A null-free numeric Arrow array (float32, float64 or int32) from numpy data."""
    a = np.ascontiguousarray(values, dtype=_NP_TYPES[type_]).reshape(-1)
    return pa.Array.from_buffers(type_, len(a), [None, pa.py_buffer(a)])


def arrow_list(values: list[np.ndarray], type_: pa.DataType = pa.float32()) -> pa.Array:
    """A list<type_> Arrow array, one list per numpy array of ``values``."""
    sizes = [int(np.size(v)) for v in values]
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    if offsets[-1] >= 2**31:
        raise ValueError("more than 2**31 values in one list column")
    flat = (np.concatenate([np.asarray(v).reshape(-1) for v in values]) if values
            else np.zeros(0))
    return pa.ListArray.from_arrays(arrow_array(offsets, pa.int32()), arrow_array(flat, type_))


def arrow_strings(strings: list[str]) -> pa.Array:
    """A string Arrow array."""
    data = [x.encode("utf-8") for x in strings]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in data], dtype=np.int64)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(data), pa.py_buffer(offsets), pa.py_buffer(b"".join(data)))


def numpy_values(arr: pa.Array) -> np.ndarray:
    """A null-free numeric Arrow array as a read-only numpy view."""
    if arr.null_count:
        raise ValueError(f"unexpected nulls in a {arr.type} array")
    dtype = np.dtype(_NP_TYPES[arr.type])
    if len(arr) == 0:
        return np.zeros(0, dtype)
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr),
                         offset=arr.offset * dtype.itemsize)
