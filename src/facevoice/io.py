"""Atomic file writing and Parquet tables that carry their own metadata.

Every file the pipeline produces is written to a temporary name in the target folder and
renamed into place, so a killed job never leaves a half-written output that a later run
could mistake for a finished one.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

META_KEY = b"facevoice"


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
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


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
        existing[META_KEY] = json.dumps(meta, sort_keys=True, default=str).encode()
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
