"""Files under <results>/<dataset>/ that no current batch or shard of a config uses.

Command line: ``facevoice clean [--config FILE] [-d DIR] [--delete]`` lists them (a dry run)
or removes them (``--delete``), printing each path and a total (files, bytes; a file
hard-linked twice is counted once).

Unused files are:

- batch files ``<stage>/<identity>/<part>.parquet`` (stage frames, faces, speech, features)
  and cache entries ``cache/<stage>/<identity>/<part>.parquet`` (with their checksum files
  ``<part>.parquet.sha256``) whose batch (identity, part)
  is not one of the config's (:func:`facevoice.data.inputs.list_clips`): an identity removed
  from the corpus, or an identity that now has fewer parts;
- shard files ``shards/<split>/{face,voice}-NNNNN.parquet`` that the config does not plan
  (:func:`facevoice.data.inputs.shard_files`): a bucket or a split emptied, or
  ``shards.buckets`` changed. The manifest job removes these itself (:func:`remove`).

Nothing else is ever looked at: the clip table, the manifest, logs, reports, models,
embeddings, evaluations and any file not named as above stay. Identity and split folders
left empty are removed. Only regular files count (a symbolic link is left alone).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator

from facevoice.common.io import working_in
from facevoice.data.batch import checksum_path

#: the batch stages: their batch files and their cache entries
STAGES = ("frames", "faces", "speech", "features")
PART_FILE = re.compile(r"\d{3}\.parquet")
SHARD_FILE = re.compile(r"(face|voice)-\d{5}\.parquet")


def _entries(folder: Path, folders: bool) -> Iterator[os.DirEntry]:
    """The sub-folders (or the regular files) of ``folder``, sorted; none when it is missing.

    Symbolic links are neither: a link is never followed nor removed."""
    if not folder.is_dir():
        return
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if folders and e.is_dir(follow_symlinks=False):
            yield e
        elif not folders and e.is_file(follow_symlinks=False):
            yield e


def stale_shards(root: str | Path, planned: Iterable[str]) -> list[Path]:
    """The shard files in the shards folder ``root`` that are not among ``planned`` (paths
    relative to ``root``, :func:`facevoice.data.inputs.shard_files`)."""
    root = Path(root)
    keep = set(planned)
    return [Path(f.path) for split in _entries(root, True) for f in _entries(Path(split.path), False)
            if SHARD_FILE.fullmatch(f.name) and f"{split.name}/{f.name}" not in keep]


def stale_batches(out: str | Path, batches: set[tuple[str, str]]) -> list[Path]:
    """The batch files and cache entries under ``out`` (``<results>/<dataset>``) whose
    (identity, part) is not in ``batches``."""
    out = Path(out)
    stale = []
    for stage in STAGES:
        for folder in (out / stage, out / "cache" / stage):
            for ident in _entries(folder, True):
                stale += [Path(f.path) for f in _entries(Path(ident.path), False)
                          if PART_FILE.fullmatch(f.name) and (ident.name, f.name[:3]) not in batches]
    # a cache entry's checksum goes with it (facevoice.data.batch.checksum_path)
    return stale + [s for p in stale if (s := checksum_path(p)).is_file()]


def size(paths: Iterable[Path]) -> int:
    """The bytes of ``paths``, each file (inode) once."""
    seen = {}
    for p in paths:
        st = p.stat(follow_symlinks=False)
        seen[st.st_dev, st.st_ino] = st.st_size
    return sum(seen.values())


def remove(paths: Iterable[Path], root: str | Path) -> None:
    """Remove ``paths`` (files under ``root``), then their folders left empty, up to ``root``
    (never ``root`` itself nor a folder above it)."""
    root = Path(os.path.abspath(root))
    parents = set()
    for p in paths:
        p = Path(os.path.abspath(p))
        if root not in p.parents:
            raise ValueError(f"{p} is not under {root}: not removed")
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
        parents.add(p.parent)
    for folder in sorted(parents, key=lambda f: len(f.parts), reverse=True):
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
            folder = folder.parent


def unused_files(config: dict) -> tuple[Path, list[Path]]:
    """``<results>/<dataset>`` (absolute) of a validated config and its files that no current batch
    or shard uses (batch files and cache entries first, then shard files)."""
    from facevoice.data.inputs import InputError, list_clips, shard_files

    out = Path(config["results"]).absolute() / config["dataset"]
    clips = list_clips(config)
    if clips.empty:
        raise InputError("the config lists no clips: nothing would be left, so nothing is cleaned "
                         "(check the input: paths)")
    batches = set(zip(clips["identity"], clips["part"]))
    shards = out / "shards"
    return out, stale_batches(out, batches) + stale_shards(shards, shard_files(clips, config["shards"]["buckets"]))


def main(argv: list[str] | None = None) -> int:
    from facevoice.common.config import ConfigError
    from facevoice.data.inputs import InputError
    from facevoice.data.layouts import load, path_problems

    ap = argparse.ArgumentParser(prog="facevoice clean", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None,
                    help="the config file, as given to --configfile (default: config.yaml of --directory)")
    ap.add_argument("-d", "--directory", default=None,
                    help="the folder the run works in (snakemake -d); relative paths are relative to it")
    ap.add_argument("--delete", action="store_true", help="remove the files (default: only list them)")
    args = ap.parse_args(argv)
    path = Path(args.config or Path(args.directory or ".") / "config.yaml").absolute()
    if args.directory and not Path(args.directory).is_dir():
        print(f"facevoice clean: -d {args.directory}: no such folder", file=sys.stderr)
        return 1
    with working_in(args.directory):
        try:
            cfg = load(path)
            problems = path_problems(cfg)
            if problems:
                raise ConfigError("\n  - ".join(["input paths not found (nothing cleaned):"] + problems))
            out, files = unused_files(cfg)
        except (ConfigError, InputError, FileNotFoundError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        for f in files:
            print(f)
        total = size(files)
        if args.delete:
            remove(files, out)
        verb = "removed" if args.delete else "unused (a dry run: --delete removes them)"
        print(f"{len(files)} file(s), {total} bytes {verb} under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
