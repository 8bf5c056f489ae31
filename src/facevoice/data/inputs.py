"""Find the clips of a dataset and check its metadata before any job runs.

Three input layouts are understood (config ``input.layout``; each is declared, with the keys
it reads and how its clips are listed, in :mod:`facevoice.data.layouts`):

``videos``
    ``<input.videos>/<identity>/<video>/<clip>.mp4``: a tree of talking-face clips (the
    demo corpus has this shape). Frames and speech both come from the clip file.

``voxceleb1``
    The VoxCeleb1 release: speech in ``<input.wav>/idXXXXX/<video>/NNNNN.wav`` and face
    frames in ``<input.face_frames>/<Name>/1.6/<video>/<N>/NNNN.jpg`` (``N`` is the clip
    number without leading zeros). ``Name`` comes from the metadata's ``VGGFace1 ID``.

``mavceleb``
    The MAV-Celeb release of the FAME challenge: ``<input.voices>/<id>/<Language>/<video>/NNNNN.wav``
    and the video's face frames in ``<input.faces>/<id>/<Language>/<video>/``; the clip table's
    ``language`` column says each utterance's language (:mod:`facevoice.data.mavceleb`, which
    also reads its metadata and splits). The other layouts leave ``language`` empty.

The first two use VoxCeleb1's ``vox1_meta.csv`` (tab-separated ``VoxCeleb1 ID, VGGFace1 ID, Gender,
Nationality, Set``; an optional ``Age`` column is read when present) and an
``identity_splits.txt`` of ``Name set`` lines (1 train, 2 val, 4 unseen-unheard test). Set 3
(seen-heard test in the Learnable PINs format) stops the run at the line that has it: here
the seen-heard test is held-out videos of training identities, never identities of their
own, and whether such an identity should be trained on is the researcher's call (set 1:
trained on, and tested seen-heard on its held-out videos; set 4: tested unseen-unheard).

Clips are processed in **batches**: the clips of one identity (sorted), cut into parts of
at most ``batches.max_clips`` (:func:`batch_parts`); a batch job re-lists its own clips
with :func:`batch_clips`, the same listing the planner used. Shards hold whole identities:
an identity's shard is a stable hash of its name modulo ``shards.buckets``
(:func:`bucket_of`), so adding an identity changes no other identity's shard.

The seen-heard protocol holds videos of training identities out of training
(:func:`heldout_videos`: ``seenheard.videos`` per identity drawn with ``seenheard.seed``, or
exactly the videos the official seen-heard lists name): their clips get the split
``seenheard`` in the clip table, whole videos at a time, and an identity keeps a video for
training. An identity the official lists name with *every* video it has would keep none: it
would be unseen in truth, and its trials would be counted as seen-heard. Such identities
are left out of seen-heard (:func:`drop_unseen`): they keep all their videos for training,
the lists' trials naming them are dropped at import (counted there), and the clip table's
``attrs[SEENHEARD_DROPPED]`` (kept in ``clips.parquet``) lists them for the run's log and
the data report (:func:`heldout_summary`).

Problems that make a run meaningless stop it here, naming what to fix: a missing input
path, an identity without a metadata row or without a split, an identity listed twice, an
identity in two splits. Problems with single clips (corrupt media, no face, no speech) are
not errors: the stages reject those clips with a reason and the run goes on.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SPLIT_CODES = {"1": "train", "2": "val", "4": "test"}
#: The split of the held-out videos of training identities (the seen-heard protocol).
SEENHEARD = "seenheard"
#: The clip table's ``attrs`` key listing the identities left out of seen-heard (:func:`drop_unseen`).
SEENHEARD_DROPPED = "seenheard_dropped"
#: Why the held-out split is empty, in the config's words.
NOTHING_HELD_OUT = "no video is held out (seenheard.videos is 0, or no training identity has two videos)"
#: The order of the splits in reports (a split not listed comes after them).
SPLIT_ORDER = ("train", SEENHEARD, "val", "test")
#: Official Learnable PINs lists: the list of each verification stratum, and the set of each
#: test split (the seen-heard lists also name the videos held out of training).
PINS_FILES = {"U": "random", "G": "G", "N": "N", "A": "A", "GNA": "GNA"}
PINS_SETS = {"test": "unseenunheard", SEENHEARD: "seenheard"}

CLIP_COLUMNS = [
    "clip", "identity", "video", "clip_name", "name", "split", "gender", "nationality", "age",
    "language", "frames_source", "speech_source", "part",
]


def pins_file(kind: str, pins_set: str) -> str:
    """The file name of one official list: ``kind`` a :data:`PINS_FILES` value (or a glob)."""
    return f"veriflist_test_{kind}_{pins_set}.txt"


class InputError(ValueError):
    """The dataset cannot be used as configured; the message says what to fix."""


@dataclass(frozen=True)
class Identity:
    identity: str
    name: str
    gender: str | None
    nationality: str | None
    age: float | None


def _require(path: str | None, key: str, what: str) -> Path:
    if not path:
        raise InputError(f"config key '{key}' is not set: give the path of {what}")
    p = Path(path)
    if not p.exists():
        hint = " (build the demo corpus first: `facevoice demo`)" if "demo" in str(p) else ""
        raise InputError(f"{what} not found: '{p}' (config key '{key}'){hint}")
    return p


def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    s = str(value).strip()
    return s or None


def read_meta(path: str | Path) -> dict[str, Identity]:
    """Parse vox1_meta.csv; raise on duplicated identities or names."""
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several types for malformed files
        raise InputError(f"cannot read metadata {path}: {exc}") from exc
    df.columns = [c.strip() for c in df.columns]
    needed = ["VoxCeleb1 ID", "VGGFace1 ID", "Gender"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(
            f"metadata {path} lacks column(s) {missing}; expected a tab-separated VoxCeleb1 "
            f"vox1_meta.csv with header 'VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set'"
        )
    df = df.apply(lambda col: col.str.strip())
    for col, what in [("VoxCeleb1 ID", "identity"), ("VGGFace1 ID", "name")]:
        dup = df[col][df[col].duplicated()].unique().tolist()
        if dup:
            raise InputError(f"metadata {path}: duplicated {what} {dup[:5]}: each identity must have one row")
    out: dict[str, Identity] = {}
    for row in df.to_dict("records"):
        gender = _clean(row.get("Gender"))
        gender = gender.lower() if gender else None
        if gender not in (None, "m", "f"):
            raise InputError(f"metadata {path}: identity {row['VoxCeleb1 ID']} has gender {gender!r}; use m, f or leave empty")
        age = _clean(row.get("Age"))
        try:
            age_val = float(age) if age is not None else None
        except ValueError as exc:
            raise InputError(f"metadata {path}: identity {row['VoxCeleb1 ID']} has age {age!r}, not a number") from exc
        out[row["VoxCeleb1 ID"]] = Identity(
            identity=row["VoxCeleb1 ID"],
            name=row["VGGFace1 ID"],
            gender=gender,
            nationality=_clean(row.get("Nationality")),
            age=age_val,
        )
    return out


def read_splits(path: str | Path) -> dict[str, str]:
    """Parse identity_splits.txt (``Name set``); raise on an identity listed twice."""
    path = Path(path)
    splits: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) == 2 and parts[1] == "3":
            raise InputError(
                f"{path}:{lineno}: identity {parts[0]} has set 3 (seen-heard test), which this pipeline has no "
                f"use for: its seen-heard test holds out videos of training identities (config seenheard.videos, "
                f"or the videos the official lists in evaluation.pins.dir name). Give it set 1 to train on it and "
                f"test it seen-heard on its held-out videos, or 4 to test it unseen-unheard"
            )
        if len(parts) != 2 or parts[1] not in SPLIT_CODES:
            raise InputError(
                f"{path}:{lineno}: expected 'Name set' with set in 1 (train), 2 (val), "
                f"4 (unseen-unheard test); found {line!r}"
            )
        name, code = parts
        split = SPLIT_CODES[code]
        if name in splits:
            if splits[name] != split:
                raise InputError(
                    f"{path}:{lineno}: identity {name} is in two splits ({splits[name]} and {split}): "
                    f"splits must be identity-disjoint"
                )
            raise InputError(f"{path}:{lineno}: identity {name} is listed twice")
        splits[name] = split
    return splits


def _dirs(root: str | Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


def _scan_identity(folder: str | Path, extensions: list[str]) -> list[tuple[str, str, str]]:
    """(video, clip, path) of the media files of one identity's folder."""
    found = []
    if not os.path.isdir(folder):
        return found
    for video in _dirs(folder):
        for f in sorted(os.scandir(video.path), key=lambda e: e.name):
            stem, ext = os.path.splitext(f.name)
            if f.is_file() and ext.lower() in extensions and not f.name.startswith("."):
                found.append((video.name, stem, f.path))
    return found


def identity_clips(source: dict[str, Any], identity: str, name: str) -> list[tuple[str, str, str]]:
    """(clip key, frames source, speech source) of one identity's clips, sorted by clip key.

    ``source`` holds config ``input:``'s ``layout`` and the keys that layout lists its media
    with (:attr:`facevoice.data.layouts.Layout.source`); ``name`` is the identity's VGGFace1
    name (the VoxCeleb1 face frames are filed under it).
    """
    from facevoice.data.layouts import batch_layout

    layout = batch_layout(source.get("layout"))
    missing = [k for k in ("layout", *layout.source) if k not in source]
    if missing:
        raise InputError(f"the source lacks config key(s) {', '.join(f'{layout.section}.{k}' for k in missing)}")
    return layout.clips(source, identity, name)


def video_clips(source: dict[str, Any], identity: str, name: str) -> list[tuple[str, str, str]]:
    """:func:`identity_clips` of layout videos: each clip file is both sources."""
    rows = []
    exts = [e.lower() for e in source["video_extensions"]]
    for video, clip, path in _scan_identity(Path(source["videos"]) / identity, exts):
        rows.append((f"{identity}/{video}/{clip}", path, path))
    return sorted(rows)


def voxceleb1_clips(source: dict[str, Any], identity: str, name: str) -> list[tuple[str, str, str]]:
    """:func:`identity_clips` of layout voxceleb1: a wav, and its face track filed under ``name``."""
    rows = []
    faces_root = Path(source["face_frames"])
    for video, clip, path in _scan_identity(Path(source["wav"]) / identity, [".wav"]):
        try:
            track = str(int(clip))
        except ValueError:
            track = clip
        rows.append((f"{identity}/{video}/{clip}", str(faces_root / name / "1.6" / video / track), path))
    return sorted(rows)


def batch_parts(keys: list[str], max_clips: int) -> list[list[str]]:
    """An identity's clip keys, sorted, cut into parts of at most ``max_clips``."""
    keys = sorted(keys)
    return [keys[i:i + max_clips] for i in range(0, len(keys), max(1, int(max_clips)))]


def part_name(index: int) -> str:
    return f"{index:03d}"


def batch_clips(source: dict[str, Any], identity: str, name: str, part: str, max_clips: int) -> list[tuple[str, str, str]]:
    """The clips of one batch: :func:`identity_clips` of the part :func:`batch_parts` gives it."""
    rows = identity_clips(source, identity, name)
    parts = batch_parts([r[0] for r in rows], max_clips)
    index = int(part)
    if index >= len(parts):
        return []
    wanted = set(parts[index])
    return [r for r in rows if r[0] in wanted]


def clips_digest(keys: list[str]) -> str:
    """A short hash of a batch's clip keys (the planner's and the job's listings must agree)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def bucket_of(identity: str, buckets: int) -> int:
    """The shard bucket of an identity: a stable hash of its id (not Python's salted hash())."""
    h = hashlib.sha256(identity.encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") % int(buckets)


def shard_plan(clips: pd.DataFrame, buckets: int) -> dict[tuple[str, int], list[str]]:
    """(split, bucket) -> the identities (sorted) of that shard, for every non-empty bucket."""
    plan: dict[tuple[str, int], list[str]] = {}
    for ident, split in sorted(set(zip(clips["identity"], clips["split"]))):
        plan.setdefault((split, bucket_of(ident, buckets)), []).append(ident)
    return dict(sorted(plan.items()))


def shard_relpath(split: str, modality: str, bucket: int) -> str:
    """A shard's path inside the shards folder."""
    return f"{split}/{modality}-{bucket:05d}.parquet"


def shard_files(clips: pd.DataFrame, buckets: int) -> list[str]:
    """Every shard (relative path) that the clip table's identities fill."""
    return [shard_relpath(split, modality, b) for split, b in shard_plan(clips, buckets)
            for modality in ("face", "voice")]


def list_clips(config: dict[str, Any], layout: Any = None) -> pd.DataFrame:
    """Return one row per clip (columns :data:`CLIP_COLUMNS`), after checking the metadata.

    ``part`` is the clip's batch within its identity (config ``batches.max_clips``); ``layout``
    (default: the config's ``input.layout``, whose training identities' videos may be held out
    for seen-heard) lists the clips.
    """
    from facevoice.data.layouts import layout_of

    records = (layout or layout_of(config)).records(config)
    df = pd.DataFrame.from_records(records, columns=CLIP_COLUMNS[:-1])
    max_clips = int(config["batches"]["max_clips"])
    df = df.sort_values("clip", kind="stable").reset_index(drop=True)
    df["part"] = [part_name(i // max_clips) for i in df.groupby("identity").cumcount()]
    _check_disjoint(df)
    held, dropped = drop_unseen(df, heldout_videos(df, config)) if layout is None else (set(), [])
    if held:
        video_key = df["identity"] + "/" + df["video"]
        df.loc[video_key.isin(held), "split"] = SEENHEARD
    if dropped:
        df.attrs[SEENHEARD_DROPPED] = dropped
    return df


def clip_records(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The clip table's rows (without ``part``) of the layouts with a VoxCeleb1 metadata file
    (videos, voxceleb1): the identities are the folders of the layout's first required key."""
    from facevoice.data.layouts import layout_of

    inp, layout = config["input"], layout_of(config)
    meta = read_meta(_require(inp.get("meta"), "input.meta", layout.key("meta").what))
    splits = read_splits(_require(inp.get("splits"), "input.splits", layout.key("splits").what))
    folders = [k for k in layout.required if k.kind == "folder"]
    root, *_ = [_require(inp.get(k.name), f"input.{k.name}", k.what) for k in folders]
    source = {k: inp[k] for k in ("layout", *layout.source)}
    rows = []
    for ident in _dirs(root):
        name = meta[ident.name].name if ident.name in meta else ident.name
        for key, frames_src, speech_src in identity_clips(source, ident.name, name):
            _, video, clip = key.split("/")
            rows.append((ident.name, video, clip, frames_src, speech_src))
    if not rows:
        raise InputError(f"no clips found under '{root}' (layout {layout.name!r})")

    idents = sorted({r[0] for r in rows})
    no_meta = [i for i in idents if i not in meta]
    if no_meta:
        raise InputError(
            f"{len(no_meta)} identit{'y has' if len(no_meta) == 1 else 'ies have'} clips but no row in "
            f"{inp['meta']}: {no_meta[:10]}; add their rows (VoxCeleb1 ID, VGGFace1 ID, Gender, "
            f"Nationality, Set) or remove their folders"
        )
    no_split = [meta[i].name for i in idents if meta[i].name not in splits]
    if no_split:
        raise InputError(
            f"{len(no_split)} identit{'y is' if len(no_split) == 1 else 'ies are'} in no split of "
            f"{inp['splits']}: {no_split[:10]}; add a 'Name set' line for each"
        )

    records = []
    for ident, video, clip, frames_src, speech_src in rows:
        m = meta[ident]
        records.append({
            "clip": f"{ident}/{video}/{clip}", "identity": ident, "video": video, "clip_name": clip,
            "name": m.name, "split": splits[m.name], "gender": m.gender,
            "nationality": m.nationality, "age": m.age, "language": None,
            "frames_source": frames_src, "speech_source": speech_src,
        })
    return records


def _check_disjoint(df: pd.DataFrame) -> None:
    per = df.groupby("identity")["split"].nunique()
    bad = per[per > 1].index.tolist()
    if bad:
        raise InputError(f"identities in more than one split: {bad[:10]}; splits must be identity-disjoint")


def heldout_videos(df: pd.DataFrame, config: dict[str, Any]) -> set[str]:
    """The videos (``identity/video``) of training identities held out for the seen-heard test.

    With official seen-heard lists (``evaluation.pins.dir`` holding
    ``veriflist_test_*_seenheard.txt`` and ``seenheard`` in ``evaluation.pins.sets``), exactly
    the training identities' videos those lists name; otherwise ``seenheard.videos`` per
    training identity (a count, or a share of its videos), drawn with ``seenheard.seed``.
    An identity always keeps one video for training. ``config`` is validated (a whole number
    of videos, or a share below 1: the schema's check).
    """
    pins = config["evaluation"]["pins"]
    if pins["dir"] and "seenheard" in pins["sets"]:
        return _listed_videos(df, pins["dir"])
    n = float(config["seenheard"]["videos"])
    if n <= 0:
        return set()
    seed = int(config["seenheard"]["seed"])
    train = df[df["split"] == "train"]
    held: set[str] = set()
    for ident, videos in train.groupby("identity")["video"]:
        vids = sorted(set(videos))
        k = int(n) if n >= 1 else max(1, int(n * len(vids) + 0.5))
        k = min(k, len(vids) - 1)
        order = sorted(vids, key=lambda v: hashlib.sha256(f"{seed}:{ident}/{v}".encode()).hexdigest())
        held.update(f"{ident}/{v}" for v in order[:k])
    return held


def drop_unseen(df: pd.DataFrame, held: set[str]) -> tuple[set[str], list[str]]:
    """(``held`` without the videos of the training identities it would leave with none,
    those identities sorted): they stay wholly in training and out of seen-heard."""
    train = df[df["split"] == "train"]
    videos = (train["identity"] + "/" + train["video"]).groupby(train["identity"]).agg(set)
    dropped = sorted(ident for ident, vids in videos.items() if vids <= held)
    keep = held - set().union(*videos[dropped]) if dropped else held
    if dropped and not keep:
        raise InputError(f"the seen-heard lists name every video of each of the {len(dropped)} training identities "
                         f"they name ({dropped[:5]}): holding them out leaves these identities unseen, so no "
                         f"seen-heard test remains; give the folder holding their other videos too, or leave "
                         f"'seenheard' out of evaluation.pins.sets")
    return keep, dropped


def heldout_summary(df: pd.DataFrame) -> str | None:
    """One line on what the seen-heard hold-out took out of training and which identities it
    left out (:func:`drop_unseen`, from ``df.attrs``); None: nothing held out or left out."""
    held = df[df["split"] == SEENHEARD]
    dropped = df.attrs.get(SEENHEARD_DROPPED) or []
    if held.empty and not dropped:
        return None
    line = (f"seen-heard: {len(held)} clips of {held.groupby(['identity', 'video']).ngroups} videos of "
            f"{held['identity'].nunique()} training identities held out of training")
    if dropped:
        line += (f"; {len(dropped)} training identities left out of seen-heard, the official lists naming every "
                 f"video they have (held out, they would be unseen in truth): they train on all their videos "
                 f"and their trials are dropped at import: {dropped[:5]}")
    return line


def pins_voice_path(path: str) -> tuple[str, str, str]:
    """(name, video, clip) of a Learnable PINs voice path ``Name/videoID_000000N.wav``."""
    name, rest = path.strip().split("/", 1)
    video, clip = rest.rsplit(".", 1)[0].rsplit("_", 1)
    return name, video, clip


def pins_face_path(path: str) -> tuple[str, str]:
    """(name, video) of a Learnable PINs face path ``Name/videoID/0007400.jpg``."""
    parts = path.strip().split("/")
    return parts[0], parts[-2]


def pins_list_videos(path: str | Path) -> set[tuple[str, str]]:
    """(name, video) of every voice and face path of one Learnable PINs list."""
    src = pd.read_csv(path, dtype=str, skipinitialspace=True)
    src.columns = [c.strip() for c in src.columns]
    missing = [c for c in ("voice-path", "face-path") if c not in src.columns]
    if missing:
        raise InputError(f"{path}: no column(s) {missing}; expected the Learnable PINs header "
                         f"'id,voice-speaker-id,face-speaker-id,label,voice-path,face-path'")
    return ({pins_voice_path(v)[:2] for v in src["voice-path"]}
            | {pins_face_path(f) for f in src["face-path"]})


def check_pins(config: dict[str, Any]) -> None:
    """Raise unless ``evaluation.pins.dir`` (when set) holds the list of every stratum of
    ``evaluation.verification.strata`` for every set of ``evaluation.pins.sets``: the trials
    jobs import exactly those (:data:`PINS_SETS`), so a missing one stops the run at planning,
    not after all preprocessing."""
    ev = config["evaluation"]
    pins_dir = ev["pins"]["dir"]
    if not pins_dir:
        return
    if not Path(pins_dir).is_dir():
        raise InputError(f"config key 'evaluation.pins.dir': folder not found: {pins_dir}")
    missing = [pins_file(PINS_FILES[stratum], pins_set) for pins_set in ev["pins"]["sets"]
               for stratum in ev["verification"]["strata"]
               if not (Path(pins_dir) / pins_file(PINS_FILES[stratum], pins_set)).is_file()]
    if missing:
        raise InputError(f"evaluation.pins.dir '{pins_dir}' lacks {', '.join(missing)}: the trials import the list "
                         f"of each stratum of evaluation.verification.strata for each set of evaluation.pins.sets; "
                         f"add the lists, or leave those strata (or sets) out")


def _listed_videos(df: pd.DataFrame, pins_dir: str) -> set[str]:
    """The training identities' videos named by the official seen-heard lists in ``pins_dir``."""
    files = sorted(Path(pins_dir).glob(pins_file("*", "seenheard")))
    if not files:
        raise InputError(f"evaluation.pins.dir '{pins_dir}' holds no {pins_file('*', 'seenheard')}: "
                         f"give the folder of the official lists, or leave 'seenheard' out of evaluation.pins.sets")
    listed = set().union(*(pins_list_videos(f) for f in files))
    train = df[df["split"] == "train"]
    keys = set(zip(train["name"], train["video"]))
    found = listed & keys
    if not found:
        raise InputError(f"the seen-heard lists in '{pins_dir}' name {len(listed)} videos, none of a training "
                         f"identity's (names as in the metadata's VGGFace1 ID, videos as on disk): nothing to hold out")
    to_id = dict(zip(train["name"], train["identity"]))
    return {f"{to_id[name]}/{video}" for name, video in found}


def identity_attributes(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """identity -> {name, split, gender, nationality, age} (metadata carried into shards)."""
    cols = ["name", "split", "gender", "nationality", "age"]
    first = df.drop_duplicates("identity").set_index("identity")[cols]
    out = {}
    for ident, row in first.iterrows():
        out[ident] = {k: (None if pd.isna(v) else v) for k, v in row.items()}
    return out
