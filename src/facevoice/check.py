"""The one check of a run: everything the config and the input listing decide, before any job.

:func:`check_run` is called by the workflow when Snakemake plans a run
(``workflow/rules/common.smk``) and by ``facevoice check-config``, so both give the same verdict
with the same message. It raises :class:`~facevoice.common.config.ConfigError` and checks, in order:

1. the config against the schema, completed with its defaults, and what the config alone
   decides: the keys ``input.layout`` needs, ``fame`` only on a layout with languages, the
   names of methods (:func:`facevoice.data.layouts.validate`; the layouts are declared in
   :mod:`facevoice.data.layouts`);
2. that the input paths exist (:func:`facevoice.data.layouts.path_problems`);
3. each training method's variant and hyperparameter overrides (:func:`check_methods`; only
   with ``methods=True``, see below);
4. the official lists folder, ``evaluation.pins.dir`` (:func:`facevoice.data.inputs.check_pins`);
5. the clip listing and its metadata (:func:`facevoice.data.inputs.list_clips`: an identity
   without a metadata row or a split, in two splits, ...), FAME's languages
   (:func:`facevoice.data.mavceleb.fame_languages`), the FAME challenge's official test lists
   when ``fame.official`` is set (:func:`facevoice.data.layouts.official_table`: every line's
   paths, the lists' languages) and a seen-heard ``generate.split`` with nothing held out.

This module sits above the layers (like :mod:`facevoice.cli`): it reads the method plug-ins
(``training/``) besides the config and the data. PyTorch is imported only by step 3, and only
for a method with a variant or with ``train.overrides`` (a method as its profile defines it has
nothing else to check). The workflow skips step 3 (``methods=False``): planning imports nothing
heavy, so that a driver environment of Snakemake, pandas and pyarrow plans a run
(``envs/driver.yaml``); each train job resolves its method's settings first thing and stops
with the same message (:func:`facevoice.training.train.settings`).

Command line: ``facevoice check-config [FILE] [--print] [--directory DIR]`` checks FILE
(default: ``config.yaml`` of DIR, what a run without ``--configfile`` reads); relative paths are
relative to DIR (``snakemake -d``); ``--print`` prints the complete config a run would use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from facevoice.common.config import ConfigError, load_yaml, ordered, schema
from facevoice.common.io import working_in
from facevoice.data.inputs import NOTHING_HELD_OUT, SEENHEARD, InputError, check_pins, list_clips
from facevoice.data.layouts import official_table, path_problems, validate
from facevoice.data.mavceleb import fame_languages
from facevoice.evaluation.protocols import selected as selected_protocols


def _fail(lines: list[str]) -> None:
    if lines:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))


def method_section(train: dict[str, Any], name: str) -> dict[str, Any]:
    """The part of a (complete) ``train:`` section that run ``name`` (``method`` or
    ``method-variant``) reads: every key but ``methods`` and ``runtime`` (a job's time limit, not
    a setting of the training), and the overrides of its method and of its variant. A train job
    is given it (its ``--params``)."""
    base = name.split("-", 1)[0]
    section = {k: v for k, v in train.items() if k not in ("methods", "overrides", "runtime")}
    section["overrides"] = {k: train["overrides"][k] for k in (base, name) if k in train["overrides"]}
    return section


def check_methods(config: dict[str, Any]) -> None:
    """Resolve the hyperparameters of every method of ``train.methods`` that has a variant or
    overrides (the variant must exist, an override key must be one of the method's)."""
    train = config["train"]
    # a method as its profile defines it has nothing more to check (train.epochs and train.batch
    # were checked by the schema)
    names = [n for n in train["methods"] if "-" in n or method_section(train, n)["overrides"]]
    if not names:
        return
    try:
        from facevoice.training.methods import MethodError
        from facevoice.training.train import settings
    except ModuleNotFoundError as exc:  # a driver environment (envs/driver.yaml): no PyTorch
        print(f"train: {', '.join(names)}: variant and overrides not checked ({exc.name} is not installed "
              f"here); each train job checks them as it starts", file=sys.stderr)
        return
    for name in names:
        try:
            settings(name, method_section(train, name))
        except MethodError as exc:
            _fail([f"train: {name}: {exc}"])


def check_generate(config: dict[str, Any], clips: pd.DataFrame) -> None:
    """``generate.split`` needs items (when a method generates faces): the held-out split needs
    held-out videos (:func:`facevoice.data.inputs.heldout_videos`)."""
    split = config["generate"]["split"]
    if any(m in config["train"]["methods"] for m in config["generate"]["methods"]):
        if not (clips["split"] == split).any():
            why = NOTHING_HELD_OUT if split == SEENHEARD else "no identity of the split has a clip"
            others = sorted(set(clips["split"]) - {"train"})
            raise InputError(f"generate.split is {split}, but {why}: set generate.split to one of {', '.join(others)}")


def check_run(config: dict[str, Any], directory: str | Path | None = None,
              schema_path: str | Path | None = None, methods: bool = True) -> pd.DataFrame:
    """Complete ``config`` in place and check everything a run decides before its first job;
    return the clip table (:func:`facevoice.data.inputs.list_clips`). Relative paths are
    relative to ``directory`` (default: the current folder). ``methods``: also resolve the
    methods' variants and overrides (:func:`check_methods`, which imports PyTorch for them).
    Raises ConfigError."""
    schema_path = Path(schema_path).resolve() if schema_path else None
    validate(config, schema_path)
    _fail(path_problems(config, directory))
    if methods:
        check_methods(config)
    try:
        selected_protocols(config["evaluation"])  # evaluation.protocols and evaluation.declare
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with working_in(directory):
        try:
            check_pins(config)
            clips = list_clips(config)
            fame_languages(clips, config)
            official_table(config)  # the official test lists, their paths and languages
            check_generate(config, clips)
        except InputError as exc:
            raise ConfigError(str(exc)) from None
    return clips


def release_memory() -> None:
    """Hand back to the system the memory that listing the clips used and freed: pyarrow's pool
    (mimalloc) and the C heap (glibc's malloc_trim) keep freed memory for later allocations,
    which planning's Python objects do not reuse; for a VoxCeleb1-sized tree about 90 MB of a
    planning process's peak. The workflow calls it once its clip tables are built."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="facevoice check-config", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=None,
                    help="the config file, as given to --configfile (default: config.yaml of --directory, "
                         "what a run without --configfile reads)")
    ap.add_argument("--print", dest="show", action="store_true",
                    help="print the complete config a run would use (YAML, the schema's defaults filled in)")
    ap.add_argument("-d", "--directory", default=None,
                    help="the folder the run works in (snakemake -d); relative input paths are relative to it")
    ap.add_argument("--schema", default=None)
    args = ap.parse_args(argv)
    path = args.config or str(Path(args.directory or ".") / "config.yaml")
    try:
        cfg = load_yaml(path)
        check_run(cfg, args.directory, args.schema)
    except ConfigError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    if args.show:
        sys.stdout.write(yaml.safe_dump(ordered(cfg, schema(args.schema)), sort_keys=False,
                                        default_flow_style=None, width=120))
    print(f"{path}: valid", file=sys.stderr if args.show else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
