"""``facevoice generate``'s argument parser.

It lives here, free of torch, so that ``facevoice generate --help`` answers at once: the
dispatcher (``facevoice.cli``) parses with it before it imports ``facevoice.evaluation.generate``,
and that module's ``main`` parses with the same parser.
"""

from __future__ import annotations

import argparse

DEVICES = ["auto", "cpu", "cuda"]
AMP = ["auto", "bf16", "fp16", "off"]


def generate_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="facevoice generate",
        description="Faces generated from voices: a picture and the evaluation of a news article on Wen et al. 2019.")
    ap.add_argument("--checkpoint", required=True, help="a training checkpoint of a generative method (voice2face)")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--shards-root", required=True, help="the shards folder (manifest paths are relative to it)")
    ap.add_argument("--split", default="test", help="the speakers whose voices generate faces (default: test)")
    ap.add_argument("--train-split", default="train", help="real faces the gender classifier is fitted on")
    ap.add_argument("--out-dir", required=True, help="where grid.png and report.json go")
    ap.add_argument("--n-speakers", type=int, default=8, help="rows of the grid")
    ap.add_argument("--grid-voices", type=int, default=3, help="generated faces per speaker in the grid")
    ap.add_argument("--grid-faces", type=int, default=2, help="real faces per speaker in the grid")
    ap.add_argument("--n-trials", type=int, default=1000, help="1:2 trials per stratum")
    ap.add_argument("--voices-per-speaker", type=int, default=None, help="cap on voices per speaker (default: all)")
    ap.add_argument("--faces-per-identity", type=int, default=None, help="cap on real faces per speaker (default: all)")
    ap.add_argument("--train-faces-per-identity", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=DEVICES)
    ap.add_argument("--amp", default="auto", choices=AMP)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap
