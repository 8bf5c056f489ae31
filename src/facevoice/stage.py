"""What every per-clip stage shares: its command line, its params, and rejected outputs.

A stage never raises on bad media. It writes its output with ``status: rejected`` and a
``reason`` in the Parquet metadata (and no rows), so the run goes on, downstream stages pass
the rejection along, and the data report lists it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from facevoice.io import read_parquet_meta, write_parquet

log = logging.getLogger("facevoice")


def load_params(text: str) -> dict[str, Any]:
    """Parse a ``--params`` value: a JSON object, or ``@file.json``."""
    if text.startswith("@"):
        text = Path(text[1:]).read_text(encoding="utf-8")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--params must be a JSON object")
    return value


def stage_main(
    name: str, run: Callable[[str, str, dict], dict], argv: list[str] | None, doc: str | None,
    announce: bool = True,
) -> int:
    """The CLI of a per-clip stage: ``--input PATH --output OUT.parquet --params JSON``."""
    ap = argparse.ArgumentParser(prog=f"facevoice {name}", description=(doc or "").splitlines()[0])
    ap.add_argument("--input", required=True, help="the clip's input (media file, folder or upstream Parquet)")
    ap.add_argument("--output", required=True, help="the Parquet file to write")
    ap.add_argument("--params", default="{}", help="JSON object (or @file.json): the stage's config section")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    try:
        meta = run(args.input, args.output, load_params(args.params))
    except (ValueError, FileNotFoundError) as exc:  # bad usage; bad media is a reject, not this
        print(f"facevoice {name}: error: {exc}", file=sys.stderr)
        return 2
    status = meta.get("status")
    if announce:  # stages that print their own one-line summary pass False
        log.info("%s: %s%s", args.output, status, f" ({meta.get('reason')})" if meta.get("reason") else "")
    return 0


def upstream_rejection(path: str | Path) -> str | None:
    """The reason an upstream per-clip output was rejected, or None when it is usable."""
    meta = read_parquet_meta(path)
    if meta.get("status") == "rejected":
        return f"{meta.get('stage', 'upstream')}: {meta.get('reason')}"
    return None


def write_rejected(
    schema: pa.Schema, output: str | Path, stage: str, reason: str, params: dict, **extra: Any
) -> dict[str, Any]:
    """Write an empty table with ``status: rejected``; return its metadata."""
    meta = {"stage": stage, "status": "rejected", "reason": reason, "params": params, **extra}
    write_parquet(schema.empty_table(), output, meta)
    log.info("rejected: %s", reason)
    return meta
