"""Miniature MAV-Celeb trees of empty files, and Snakemake on them: shared by the tests of the
layout (tests/data/test_mavceleb.py) and of the FAME protocol (tests/evaluation/test_fame.py), and
the challenge's flat official test set of empty files (make_official)."""

import yaml
from helpers import HANG_S, REPO, snakemake

from facevoice.common.config import section

# identity -> language -> video -> utterances
TREE = {
    "id0001": {"English": {"vidA": 2, "vidB": 1}, "Urdu": {"vidC": 2}},
    "id0002": {"English": {"vidD": 1}, "Urdu": {"vidE": 1, "vidF": 1}},
    "id0003": {"Urdu": {"vidG": 2}},
}
SPLITS = {"id0001": 1, "id0002": 4, "id0003": 2}


def make_tree(root, tree=TREE, faces=True):
    for ident, langs in tree.items():
        for lang, videos in langs.items():
            for video, n in videos.items():
                d = root / "voices" / ident / lang / video
                d.mkdir(parents=True, exist_ok=True)
                for k in range(n):
                    (d / f"{k:05d}.wav").write_bytes(b"")  # the listing only looks at names
                if faces:
                    f = root / "faces" / ident / lang / video
                    f.mkdir(parents=True, exist_ok=True)
                    (f / "000000025.jpg").write_bytes(b"")
    (root / "faces").mkdir(exist_ok=True)
    (root / "identity_splits.txt").write_text("".join(f"{i} {s}\n" for i, s in SPLITS.items()))


# the official test set: language -> its items' (key, voice number, face number)
OFFICIAL = {"English": [("k0000001", 0, 0), ("k0000002", 0, 1)], "Urdu": [("k0000003", 0, 0)]}


def make_official(root, official=OFFICIAL):
    """The challenge's flat official test set of empty files under root/official, its lists in
    root/official/lists; returns fame.official's section."""
    base = root / "official"
    for lang, items in official.items():
        lines = []
        for key, v, f in items:
            voice, face = f"voices/{lang}/{v:05d}.wav", f"faces/{lang}/{f:05d}.jpg"
            for rel in (voice, face):
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                (base / rel).write_bytes(b"")
            lines.append(f"{key} {voice} {face}\n")
        (base / "lists").mkdir(parents=True, exist_ok=True)
        (base / "lists" / f"{lang}_test.txt").write_text("".join(lines))
    return {"root": str(base), "lists": str(base / "lists")}


def config_for(root, meta=None):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["input"] = section("input", {"layout": "mavceleb", "voices": str(root / "voices"),
                                     "faces": str(root / "faces"), "meta": meta,
                                     "splits": str(root / "identity_splits.txt")})
    cfg["seenheard"] = {"videos": 0}
    cfg["results"] = str(root / "results")
    return cfg


def snakemake_on(root, cfg, *args, timeout=HANG_S):
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    return snakemake("-s", str(REPO / "Snakefile"), "-d", str(root), "--configfile", str(root / "config.yaml"),
                     *args, timeout=timeout)
