"""Batched stage jobs: one process runs a stage over a batch of clips, reusing what it can.

A batch is the clips of one identity, or one part of them when the identity has more than
``batches.max_clips`` clips (:func:`facevoice.data.inputs.batch_parts`). A stage job loads its
models once and writes one **batch file**:

- Parquet, one row group per clip that has rows, columns ``clip`` and the stage's own;
- footer metadata (key ``facevoice``): ``stage``, ``params``, ``code`` and ``clips``, one
  record per clip in order: ``clip``, ``key``, ``status`` (``ok`` / ``rejected``),
  ``reason``, ``group`` (its row group, or null), ``rows`` and the stage's extras (the
  speech stage's ``total_s`` and ``kept_s``, the faces stage's dropped frames, ...).

Bad media never fails a job: the clip is recorded as rejected with its reason and the
rest of the batch goes on; a downstream stage passes the rejection along as
``"<stage>: <reason>"``.

**Cache.** Every clip has a ``key``: a hash of its input (the source file's bytes for frames
and speech, the upstream clip's key for faces and features), the stage's parameters and its
code (:func:`code_key`: every module of the package in the stage module's import closure,
read statically with ``ast``, inside functions too, and the versions of the libraries it
calls; a module imported by a computed name is not seen). Snakemake deletes a job's
outputs before running it, so after writing its output a job stores a copy of it as
``<cache>/<identity>/<part>.parquet``, with the sha256 of the copy's bytes in
``<part>.parquet.sha256``. The next job of the same identity reads the clips whose key it
finds there instead of computing them again: editing one clip recomputes that clip, and a
changed features parameter recomputes features, never frames or faces.

What the cache guarantees:

- an entry is reused only when its bytes match its checksum (checked once per job, through
  the open file the rows are read from); an entry that does not, has no checksum (an entry
  of a version before checksums) or cannot be read is a WARNING naming it, its clips are
  computed again, and the job of that part replaces it;
- an entry is a **copy** of the output, not a hard link to it: with a link, an output edited
  in place would edit its entry too (the checksum would catch that, but the entry would be
  lost, and a file that two paths write is not immutable); with a copy nothing done to an
  output reaches the cache, and the checksum catches an edit of the entry itself. The price
  is disk: the cache holds a second copy of every batch file (compressed, made once per
  job); safety wins;
- entries and checksums are whole files put in place by rename (the checksum first), so a
  killed job leaves the old entry, the new one, or a mismatch (a miss), never a part file;
- a cache that cannot be written (its folder cannot be made, or the entry cannot be put in
  place: a read-only file system, a file where a folder should be) is a WARNING: the job
  keeps its output and succeeds, and a later run computes those clips again.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from facevoice.common.io import META_KEY, arrow_strings, atomic_path, meta_bytes, write_text

log = logging.getLogger("facevoice")

CLIP_FIELD = pa.field("clip", pa.string())
HELD_RESULTS = 64  # finished clips held in memory while earlier ones wait to be computed
#: the keys of a clip record that the writer sets; the rest are the stage's extras
RECORD_KEYS = ("clip", "key", "status", "reason", "group", "rows")


# --------------------------------------------------------------------------- keys


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def source_digest(path: str | Path, extensions: Iterable[str] = (".jpg", ".jpeg", ".png")) -> str:
    """The content hash of a source: a file's bytes, or a folder's image files (names and bytes)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        exts = {e.lower() for e in extensions}
        for f in sorted(x for x in p.iterdir() if x.suffix.lower() in exts):
            h.update(f.name.encode() + b"\0")
            h.update(hashlib.sha256(f.read_bytes()).digest())
    elif p.is_file():
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(b"missing")
    return h.hexdigest()[:32]


def _package_root(module_file: Path) -> Path:
    """The top package folder that holds ``module_file`` (the last parent with an ``__init__.py``)."""
    root = module_file.parent
    while (root.parent / "__init__.py").is_file():
        root = root.parent
    return root


def _module_file(root: Path, parts: Sequence[str]) -> Path | None:
    """The source of module ``root.name + parts`` inside the package at ``root``, if any."""
    base = root.joinpath(*parts)
    for f in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if f is not None and f.is_file():
            return f
    return None


def _imported(tree: ast.AST, package: Sequence[str], top: str) -> Iterator[tuple[str, ...]]:
    """Every module of package ``top`` that a module's code imports, anywhere in it (functions too).

    ``package`` is the importing module's package (for relative imports). ``from a import b``
    names both ``a`` and ``a.b``: ``b`` may be a module or a name, :func:`code_closure` keeps
    what is a file.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bases = [tuple(a.name.split(".")) for a in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = list(package[: len(package) - node.level + 1])
                bases = [(*up, *(node.module.split(".") if node.module else ()))]
            else:
                bases = [tuple((node.module or "").split("."))]
            names = [a.name for a in node.names if a.name != "*"]
        else:
            continue
        for base in bases:
            if base and base[0] == top:
                yield base
                yield from ((*base, n) for n in names)


def code_closure(module_file: str | Path) -> list[Path]:
    """The source files of the package modules that ``module_file`` imports, directly or not.

    Static: the imports are read from the sources (``ast``), inside functions too, and
    followed through the package (``facevoice.*`` and relative imports); importing
    ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too, so they are in. Modules
    that code imports by a computed name (``importlib``) are not seen. Sorted by path.
    """
    start = Path(module_file).resolve()
    root = _package_root(start)
    seen: set[Path] = set()
    above = [d / "__init__.py" for d in start.parents if d == root or root in d.parents]
    todo = [start, *(f for f in above if f.is_file())]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        rel = f.relative_to(root).with_suffix("").parts
        module = (root.name, *(rel[:-1] if rel[-1] == "__init__" else rel))
        package = module if rel[-1] == "__init__" else module[:-1]
        for name in _imported(ast.parse(f.read_bytes(), str(f)), package, root.name):
            for i in range(1, len(name) + 1):  # the module and the packages above it
                g = _module_file(root, name[1:i])
                if g is not None and g not in seen:
                    todo.append(g)
    return sorted(seen, key=lambda p: p.relative_to(root).as_posix())


def code_key(module_file: str | Path, packages: Sequence[str] = ()) -> str:
    """The version of a stage's code: every package module it imports (:func:`code_closure`),
    itself included, and the versions of the libraries it calls."""
    from importlib.metadata import PackageNotFoundError, version

    files = code_closure(module_file)
    root = _package_root(files[0])
    h = hashlib.sha256()
    for f in files:  # named relative to the package: moving the checkout keeps the key
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    for name in packages:
        try:
            h.update(f"{name}=={version(name)}".encode())
        except PackageNotFoundError:
            h.update(f"{name}==?".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """What a stage made of one clip: rows (ok) or a reason (rejected), and extras to record."""

    status: str
    reason: str | None = None
    table: pa.Table | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def rejected(cls, reason: str, **extra: Any) -> "Result":
        return cls("rejected", reason, None, extra)


class PerClip:
    """A processor that computes one clip at a time: ``fn(input, params) -> Result``."""

    window = 1

    def __init__(self, fn: Callable[[Any, dict], Result], params: dict[str, Any]):
        self.fn = fn
        self.params = params

    def process(self, inputs: list) -> list[Result]:
        return [self.fn(x, self.params) for x in inputs]


@dataclass
class Item:
    """One clip to process: its key, and how to get its input when it must be computed."""

    clip: str
    key: str
    load: Callable[[], Any]
    upstream_reason: str | None = None  # set: rejected upstream, nothing to compute


# --------------------------------------------------------------------------- reading


def _footer_meta(metadata: pq.FileMetaData, path: str | Path) -> dict[str, Any]:
    raw = (metadata.metadata or {}).get(META_KEY)
    if raw is None:
        raise ValueError(f"{path} is not a facevoice batch file (no '{META_KEY.decode()}' metadata)")
    return json.loads(raw)


def read_batch_meta(path: str | Path) -> dict[str, Any]:
    """The ``facevoice`` footer metadata of a batch file."""
    return _footer_meta(pq.read_metadata(path), path)


class BatchReader:
    """A batch file's clip records and, per clip, its rows."""

    def __init__(self, path: str | Path, source: pa.NativeFile | None = None):
        self.path = Path(path)
        self.file = pq.ParquetFile(self.path if source is None else source)
        self.meta = _footer_meta(self.file.metadata, path)
        self.records: list[dict[str, Any]] = self.meta["clips"]

    def rows(self, record: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
        """The rows of one clip (an empty table when it has none), without the ``clip`` column."""
        if record.get("group") is None:
            schema = self.file.schema_arrow
            table = pa.Table.from_batches([], schema if columns is None else
                                          pa.schema([schema.field(c) for c in columns]))
        else:
            table = self.file.read_row_group(int(record["group"]), columns=columns)
        keep = [n for n in table.column_names if n != "clip"]
        return table.select(keep)

    def close(self) -> None:
        self.file.close()


def upstream_items(path: str | Path, stage: str, params_key: str, code: str) -> tuple[BatchReader, list[Item]]:
    """The clips of an upstream batch file as items of the next stage."""
    reader = BatchReader(path)
    up = reader.meta.get("stage", "upstream")
    items = []
    for rec in reader.records:
        key = digest(stage, rec["key"], params_key, code)
        reason = None if rec["status"] == "ok" else f"{up}: {rec.get('reason')}"
        items.append(Item(rec["clip"], key, (lambda r=rec: reader.rows(r)), reason))
    return reader, items


# --------------------------------------------------------------------------- cache


class CacheEntry:
    """One cache entry, opened once: its batch reader, and its checksum checked before any reuse.

    The checksum is read through the same open file as the rows, so an entry replaced while
    a job reads it cannot mix two files.
    """

    def __init__(self, path: Path):
        self.path = path
        self.source = pa.OSFile(str(path))
        try:
            self.reader = BatchReader(path, self.source)
        except BaseException:
            self.source.close()
            raise
        self.trusted: bool | None = None  # None: not checked yet

    def verify(self) -> bool:
        """Whether the entry's bytes are those stored (checked once; a WARNING when not)."""
        if self.trusted is None:
            self.trusted = self._check()
        return self.trusted

    def _check(self) -> bool:
        again = "ignored, its clips are computed again"
        try:
            expected = checksum_path(self.path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cache entry %s has no readable checksum (%s): %s", self.path, exc, again)
            return False
        try:
            actual = file_sha256(self.source)
        except OSError as exc:
            log.warning("cache entry %s unreadable (%s): %s", self.path, exc, again)
            return False
        if actual != expected:
            log.warning("cache entry %s does not match its checksum %s (changed since it was stored): %s",
                        self.path, checksum_path(self.path).name, again)
            return False
        return True

    def close(self) -> None:
        self.reader.close()
        self.source.close()


def checksum_path(entry: Path) -> Path:
    """The file that holds a cache entry's checksum: ``<part>.parquet.sha256``."""
    return entry.with_name(entry.name + ".sha256")


def file_sha256(source: pa.NativeFile) -> str:
    """The sha256 (hex) of an open file's bytes, read by position (the file's own position stays)."""
    h = hashlib.sha256()
    size, block = source.size(), 1 << 20
    for offset in range(0, size, block):
        h.update(source.read_at(min(block, size - offset), offset))
    return h.hexdigest()


class Cache:
    """Earlier outputs of one identity's batches of one stage (verified copies, see the module doc)."""

    def __init__(self, folder: str | Path | None, identity: str | None):
        self.folder = Path(folder) / identity if folder and identity else None
        self.entries: list[CacheEntry] = []
        self.index: dict[str, list[tuple[CacheEntry, dict[str, Any]]]] = {}
        if self.folder is None or not self.folder.is_dir():
            return
        for f in sorted(self.folder.glob("*.parquet")):
            try:
                entry = CacheEntry(f)
            except Exception as exc:  # an unreadable entry is a miss, never an error
                log.warning("cache entry %s unreadable (%s): ignored", f, exc)
                continue
            self.entries.append(entry)
            for rec in entry.reader.records:
                self.index.setdefault(rec["key"], []).append((entry, rec))

    def get(self, key: str) -> tuple[dict[str, Any], pa.Table | None] | None:
        """The record and rows of a clip from an entry whose checksum holds, or None."""
        for entry, rec in self.index.get(key, ()):
            if not entry.verify():
                continue
            try:
                table = entry.reader.rows(rec) if rec.get("group") is not None else None
            except Exception as exc:
                log.warning("cache entry %s unreadable (%s): recomputing", entry.path, exc)
                continue
            return rec, table
        return None

    def store(self, output: Path, part: str) -> None:
        """Copy a finished output into the cache with its checksum; a cache that cannot be
        written is a WARNING (the output stays, the next run computes its clips again)."""
        if self.folder is None:
            return
        target = self.folder / f"{part}.parquet"
        try:
            self._store(output, target)
        except OSError as exc:
            log.warning("cache entry %s not written (%s): %s is kept, but a later run computes its clips "
                        "again; make the cache folder writable to reuse them", target, exc, output)

    def _store(self, output: Path, target: Path) -> None:
        h = hashlib.sha256()
        # atomic_path: a killed job's temporary file swept, the entry renamed into place with the
        # umask's mode (suffix "": no temporary name ends in .parquet, which the index would read)
        with atomic_path(target, suffix="") as tmp:
            with open(tmp, "wb") as dst, open(output, "rb") as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    dst.write(block)
            # checksum first: a job killed between the two renames leaves a mismatch (a miss)
            write_text(checksum_path(target), h.hexdigest() + "\n")

    def close(self) -> None:
        for entry in self.entries:
            entry.close()


# --------------------------------------------------------------------------- writing


class BatchWriter:
    """Streams clips into a batch file (one row group per clip), records last, renamed at the end."""

    def __init__(self, path: str | Path, schema: pa.Schema, meta: dict[str, Any], compression: str = "zstd"):
        self.schema = pa.schema([CLIP_FIELD, *schema])
        self.meta = dict(meta)
        self.records: list[dict[str, Any]] = []
        self._atomic = atomic_path(path)
        self.tmp = self._atomic.__enter__()
        self.writer = pq.ParquetWriter(self.tmp, self.schema, compression=compression)
        self.groups = 0

    def add(self, clip: str, key: str, result: Result) -> dict[str, Any]:
        rows = 0
        group = None
        if result.status == "ok" and result.table is not None and result.table.num_rows:
            t = result.table
            clip_col = arrow_strings([clip] * t.num_rows)
            t = pa.Table.from_arrays([clip_col, *t.columns], schema=self.schema)
            self.writer.write_table(t, row_group_size=max(1, t.num_rows))
            rows, group = t.num_rows, self.groups
            self.groups += 1
        rec = {**result.extra, "clip": clip, "key": key, "status": result.status, "reason": result.reason,
               "group": group, "rows": rows}
        self.records.append(rec)
        return rec

    def close(self) -> None:
        meta = {**self.meta, "clips": self.records}
        self.writer.add_key_value_metadata({META_KEY: meta_bytes(meta)})
        self.writer.close()
        self._atomic.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        self._atomic.__exit__(type(exc), exc, exc.__traceback__)


@contextlib.contextmanager
def batch_writer(path: str | Path, schema: pa.Schema, meta: dict[str, Any]) -> Iterator[BatchWriter]:
    w = BatchWriter(path, schema, meta)
    try:
        yield w
    except BaseException as exc:
        w.abort(exc)
        raise
    w.close()


# --------------------------------------------------------------------------- the job


def process(items: list[Item], processor: Any, cache: Cache, writer: BatchWriter, progress: bool = True) -> dict:
    """Write every item in order: reused from the cache, passed on as rejected, or computed.

    Clips to compute are handed to the processor ``processor.window`` at a time (read only
    once there is one to compute, so a processor may load its model to answer it).
    """
    from tqdm import tqdm

    counts = {"clips": len(items), "reused": 0, "computed": 0, "rejected": 0}
    bar = tqdm(total=len(items), desc=writer.meta.get("stage", "batch"), unit="clip",
               disable=None if progress else True)
    results: dict[int, Result] = {}
    pending: list[int] = []
    done = 0

    def compute() -> None:
        for i, res in zip(pending, processor.process([items[i].load() for i in pending])):
            results[i] = res
            counts["computed"] += 1
            log.info("%s: %s%s", items[i].clip, res.status, f" ({res.reason})" if res.reason else "")
        pending.clear()

    def flush() -> None:
        nonlocal done
        while done in results:
            rec = writer.add(items[done].clip, items[done].key, results.pop(done))
            counts["rejected"] += rec["status"] != "ok"
            done += 1
            bar.update(1)

    for i, item in enumerate(items):
        hit = None if item.upstream_reason is not None else cache.get(item.key)
        if item.upstream_reason is not None:
            results[i] = Result.rejected(item.upstream_reason)
            log.info("%s: rejected (%s)", item.clip, item.upstream_reason)
        elif hit is not None:
            rec, table = hit
            extra = {k: v for k, v in rec.items() if k not in RECORD_KEYS}
            results[i] = Result(rec["status"], rec.get("reason"), table, extra)
            counts["reused"] += 1
        else:
            pending.append(i)
        # compute a full window, or early when clips wait behind it (memory stays bounded)
        if pending and (len(pending) >= int(processor.window) or len(results) >= HELD_RESULTS):
            compute()
        flush()
    if pending:
        compute()
    flush()
    bar.close()
    return counts


def run_job(stage: str, items: list[Item], processor: Any, schema: pa.Schema, output: str | Path,
            meta: dict[str, Any], cache_dir: str | Path | None = None, identity: str | None = None,
            part: str | None = None, progress: bool = True) -> list[dict]:
    """One stage over one batch: the output batch file, then its cache entry; returns the records.

    ``processor`` has ``window`` (clips per call) and ``process(inputs) -> [Result]``; it is
    cheap to make and loads its models on its first call, so a batch whose clips are all in
    the cache never loads them.
    """
    cache = Cache(cache_dir, identity)
    try:
        with batch_writer(output, schema, {"stage": stage, "identity": identity, "part": part, **meta}) as writer:
            counts = process(items, processor, cache, writer, progress)
    finally:
        cache.close()
    if part is not None:
        cache.store(Path(output), part)
    log.info("%s %s: %d clip(s): %d reused, %d computed, %d rejected", stage, output, counts["clips"],
             counts["reused"], counts["computed"], counts["rejected"])
    return writer.records


# --------------------------------------------------------------------------- command line


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


def parser(stage: str, doc: str | None, source: bool) -> argparse.ArgumentParser:
    """The command line of a batch stage (source stages read media, the others a batch file)."""
    ap = argparse.ArgumentParser(prog=f"facevoice {stage}", description=(doc or "").splitlines()[0])
    if source:
        ap.add_argument("--input", help="one media file (a batch of one clip, named by its file name); "
                        "or give the batch with --source, --identity and --part")
        ap.add_argument("--source", help="JSON: layout, videos, video_extensions, wav, face_frames "
                        "(config input:)")
        ap.add_argument("--identity", help="the batch's identity")
        ap.add_argument("--name", help="the identity's VGGFace1 name (layout voxceleb1)")
        ap.add_argument("--part", default="000", help="the batch's part of the identity's clips")
        ap.add_argument("--max-clips", type=int, default=256, help="config batches.max_clips")
        ap.add_argument("--digest", help="the planner's hash of the batch's clips (checked)")
    else:
        ap.add_argument("--input", required=True, help="the upstream stage's batch file")
    ap.add_argument("--output", required=True, help="the batch file to write")
    ap.add_argument("--params", default="{}", help="JSON object (or @file.json): the stage's config section")
    ap.add_argument("--cache", default=None, help="cache folder of this stage (earlier outputs, by identity)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def source_clips(args: argparse.Namespace, column: int) -> list[tuple[str, str]]:
    """(clip, source path) of a source stage's batch; ``column`` 1 frames, 2 speech."""
    from facevoice.data.inputs import batch_clips, clips_digest

    if args.input:
        return [(Path(args.input).stem, args.input)]
    if not (args.source and args.identity):
        raise ValueError("give --input MEDIA, or the batch: --source JSON --identity ID [--part N]")
    source = json.loads(args.source)
    rows = batch_clips(source, args.identity, args.name or args.identity, args.part, args.max_clips)
    if args.digest and clips_digest([r[0] for r in rows]) != args.digest:
        raise ValueError(f"the clips of {args.identity} (part {args.part}) changed since the run was "
                         f"planned ({len(rows)} found now): run the same command again")
    return [(r[0], r[column]) for r in rows]


def source_items(clips: list[tuple[str, str]], stage: str, params: dict, code: str) -> list[Item]:
    pkey = digest(params)
    return [Item(clip, digest(stage, source_digest(src), pkey, code), (lambda s=src: s)) for clip, src in clips]


class LogFormat(logging.Formatter):
    """``[stage] message``; warnings and errors say so: ``[stage] WARNING: message``."""

    def __init__(self, stage: str):
        super().__init__(f"[{stage}] %(message)s")
        self.loud = logging.Formatter(f"[{stage}] %(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return self.loud.format(record)
        return super().format(record)


def main(stage: str, doc: str | None, argv: list[str] | None, schema: pa.Schema, code: str,
         check: Callable[[dict], dict], make_processor: Callable[[dict], Any], source_column: int = 0) -> int:
    """A batch stage's command line: parse, list the items, run the job; exit 2 on bad usage."""
    ap = parser(stage, doc, source=bool(source_column))
    args = ap.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormat(stage))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    reader = None
    try:
        params = check(load_params(args.params))
        if source_column:
            items = source_items(source_clips(args, source_column), stage, params, code)
        else:
            if not Path(args.input).is_file():
                raise FileNotFoundError(f"{stage}: input file not found: {args.input}")
            reader, items = upstream_items(args.input, stage, digest(params), code)
        run_job(stage, items, make_processor(params), schema, args.output, {"params": params, "code": code},
                args.cache, args.identity if source_column else reader.meta.get("identity"),
                args.part if source_column else reader.meta.get("part"), progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:  # bad usage; bad media is a reject, not this
        print(f"facevoice {stage}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if reader is not None:
            reader.close()
    return 0
