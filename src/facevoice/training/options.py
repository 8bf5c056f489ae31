"""The training commands' argument parsers (``facevoice train``, ``facevoice embed``).

They live here, free of torch, so that ``facevoice train --help`` answers at once: the
dispatcher (``facevoice.cli``) parses with them before it imports the command's module, and
the module's ``main`` parses with the same parser.
"""

from __future__ import annotations

import argparse

PROFILE_NAMES = ("demo", "paper", "debug")  # every method's hyperparameter profiles
DEVICES = ["auto", "cpu", "cuda"]
AMP = ["auto", "bf16", "fp16", "off"]


def train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="facevoice train",
                                 description="Train one method on the shards: the trainer every method shares.")
    ap.add_argument("--list", action="store_true", help="list the methods and their ablation variants")
    ap.add_argument("--method", help="method or method-variant (see --list)")
    ap.add_argument("--manifest", help="results/<dataset>/shards/manifest.parquet")
    ap.add_argument("--shards-root", help="the shards folder (manifest paths are relative to it)")
    ap.add_argument("--out", help="output folder, e.g. results/<dataset>/train/<method>")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--config", help="a config.yaml: its train: section")
    src.add_argument("--params", help="the train: section as JSON (or @file.json)")
    ap.add_argument("--profile", choices=PROFILE_NAMES, default=None, help="default: train.profile, else demo")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="override a hyperparameter (dotted key; YAML value); repeatable")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--device", choices=DEVICES)
    ap.add_argument("--amp", choices=AMP)
    ap.add_argument("--face-weights", help="facenet-pytorch VGGFace2 state dict (a local file)")
    ap.add_argument("--num-workers", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--language", default=None,
                    help="train and select on the train/val items in this language only (FAME: fame.train_language)")
    return ap


def embed_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="facevoice embed",
        description="Embed a split's faces and voices with a trained model; read items from the shards.")
    ap.add_argument("--checkpoint", required=True, help="a training checkpoint (train/<method>/model.pt)")
    ap.add_argument("--method", default=None, help="check that the checkpoint is this method's")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--shards-root", required=True, help="the shards folder (manifest paths are relative to it)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto", choices=DEVICES)
    ap.add_argument("--amp", default="auto", choices=AMP)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    return ap
