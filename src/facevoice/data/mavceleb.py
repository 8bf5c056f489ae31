"""The MAV-Celeb release (the FAME challenge's corpus): faces and voices per identity per language.

Layout ``mavceleb`` (config ``input.layout``)::

    <input.voices>/<id>/<Language>/<video>/<NNNNN>.wav        one utterance per file
    <input.faces>/<id>/<Language>/<video>/<NNNNNNNNN>.jpg      frames of the video

``id`` like ``id0001``; ``Language`` a folder name such as ``English``, ``Urdu`` (v1),
``Hindi`` (v2), ``German`` (v3); ``video`` a YouTube id. The face frames belong to a video,
not to an utterance: **one clip is one voice utterance, paired with the face frames of its
video**, so every utterance of a video gets the same frames (as a VoxCeleb1 utterance gets
its face track, :mod:`facevoice.data.inputs`). A video with no face folder is not an error:
the frames stage rejects its clips with the reason, as it does a VoxCeleb1 utterance without
a face track.

Clip keys are ``<id>/<Language>.<video>/<NNNNN>`` (:func:`video_key`): the pipeline's keys
have three parts (identity, video, clip), and a video is named with its language so that
the same YouTube id filed under two languages stays two videos. The clip table's
``language`` column holds the language (the other layouts leave it empty).

Metadata (``input.meta``) is optional: without it gender is missing for every identity
(strata that need it are reported unavailable, never guessed). With it, the release's
``v2_meta.csv``: comma-separated, header ``ids,name,gender`` (gender ``Male`` / ``Female``,
or ``m`` / ``f``; empty is missing). The release has no nationality or age.

Splits (``input.splits``) are a file, as for the other layouts: ``identity_splits.txt`` of
``id set`` lines (1 train, 2 val, 3 seen-heard test, 4 unseen-unheard test), keyed by the
identity's folder name (the release names people only in v2's metadata). Every identity of
the voices tree must be in exactly one split. :func:`draw_splits` draws one with a seed.

A tree of another shape stops the run with the path and the expected shape: the challenge's
flat test tree (``voices/<Language>/<NNNNN>.wav``, identities hidden) is not an identity tree,
nor is a tree with a level missing.

The flat test tree is read as config ``fame.official`` (:func:`official_records`,
:func:`official_clips`): its ``<Language>_test.txt`` lists (:func:`read_test_list`) of ``key
voice_path face_path`` lines, a clip ``<Language>/test/<key>`` per line.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from facevoice.data.inputs import Identity, InputError, _dirs, _require, read_splits

#: what a language folder and a video folder may be called (a key's ``.`` joins them)
NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
SHAPE = "<voices>/<id>/<Language>/<video>/<NNNNN>.wav and <faces>/<id>/<Language>/<video>/<frame>.jpg"
META_HEADER = "ids,name,gender"
GENDERS = {"male": "m", "female": "f", "m": "m", "f": "f"}


def video_key(language: str, video: str) -> str:
    """The video part of a clip key: ``<Language>.<video>``."""
    return f"{language}.{video}"


def language_of(video: str) -> str:
    """The language of a video key (:func:`video_key`)."""
    return video.split(".", 1)[0]


def release_path(clip: str) -> str:
    """A clip key as the release's lists name it: ``id0001/English/<video>/00000``."""
    ident, video, clip_name = clip.split("/")
    language, yt = video.split(".", 1)
    return f"{ident}/{language}/{yt}/{clip_name}"


def _check_name(path: str, what: str) -> str:
    name = os.path.basename(path)
    if not NAME_RE.match(name):
        raise InputError(f"input.voices: {what} folder '{path}' has a name outside [A-Za-z0-9_-]; "
                         f"expected {SHAPE}")
    return name


def _stray_files(folder: str, level: str) -> None:
    """Raise when a level that should hold only folders holds .wav files (a level is missing)."""
    wavs = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(".wav"))
    if wavs:
        hint = (" (this looks like the challenge's flat test tree, voices/<Language>/<NNNNN>.wav: it is "
                "not an identity tree)" if level != "video" else "")
        raise InputError(f"input.voices: '{os.path.join(folder, wavs[0])}' is a .wav where a {level} folder "
                         f"was expected{hint}; expected {SHAPE}")


def identity_clips(source: dict[str, Any], identity: str) -> list[tuple[str, str, str]]:
    """(clip key, frames source, speech source) of one identity's utterances, sorted by key.

    ``source`` holds config ``input:``'s ``voices`` and ``faces``; the frames source is the
    folder of the utterance's video in the faces tree (it may not exist).
    """
    voices, faces = Path(source["voices"]), Path(source["faces"])
    root = voices / identity
    rows = []
    if not root.is_dir():
        return rows
    _stray_files(str(root), "language")
    for lang in _dirs(root):
        language = _check_name(lang.path, "language")
        _stray_files(lang.path, "video")
        for video in _dirs(lang.path):
            yt = _check_name(video.path, "video")
            for f in sorted(os.scandir(video.path), key=lambda e: e.name):
                stem, ext = os.path.splitext(f.name)
                if f.is_file() and ext.lower() == ".wav" and not f.name.startswith("."):
                    key = f"{identity}/{video_key(language, yt)}/{stem}"
                    rows.append((key, str(faces / identity / language / yt), f.path))
    return sorted(rows)


def read_meta(path: str | Path) -> dict[str, Identity]:
    """Parse the release's ``v2_meta.csv`` (``ids,name,gender``); raise on a malformed file."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several types for malformed files
        raise InputError(f"cannot read metadata {path} (input.meta): {exc}") from exc
    df.columns = [c.strip().lower() for c in df.columns]
    if "ids" not in df.columns:
        raise InputError(f"metadata {path} (input.meta) has columns {list(df.columns)}; expected the "
                         f"MAV-Celeb header '{META_HEADER}' (comma-separated)")
    df = df.apply(lambda col: col.str.strip())
    dup = df["ids"][df["ids"].duplicated()].unique().tolist()
    if dup:
        raise InputError(f"metadata {path}: duplicated identity {dup[:5]}: each identity must have one row")
    out: dict[str, Identity] = {}
    for row in df.to_dict("records"):
        raw = row.get("gender") or ""
        if raw and raw.lower() not in GENDERS:
            raise InputError(f"metadata {path}: identity {row['ids']} has gender {raw!r}; use Male, Female "
                             f"(or m, f), or leave it empty")
        out[row["ids"]] = Identity(identity=row["ids"], name=row.get("name") or row["ids"],
                                   gender=GENDERS.get(raw.lower()), nationality=None, age=None)
    return out


def _check_faces(faces: Path, idents: list[str]) -> None:
    """Raise when no identity of the voices tree has a folder in the faces tree."""
    if not any((faces / i).is_dir() for i in idents):
        raise InputError(f"input.faces '{faces}' holds none of the {len(idents)} identities of input.voices "
                         f"(e.g. {idents[0]}): is it the faces tree of the same release? expected {SHAPE}")


def clip_records(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The clip table's rows (without ``part``) of a MAV-Celeb tree, after checking its metadata."""
    inp = config["input"]
    voices = _require(inp.get("voices"), "input.voices", "the MAV-Celeb voices tree")
    faces = _require(inp.get("faces"), "input.faces", "the MAV-Celeb faces tree")
    splits = read_splits(_require(inp.get("splits"), "input.splits", "the identity splits file"))
    meta = read_meta(_require(inp["meta"], "input.meta", "the metadata file (v2_meta.csv)")) if inp.get("meta") else {}
    idents = [e.name for e in _dirs(voices)]
    rows = [(i, *r) for i in idents for r in identity_clips({"voices": voices, "faces": faces}, i)]
    if not rows:
        raise InputError(f"no utterances found under '{voices}' (input.voices, layout 'mavceleb'); expected {SHAPE}")
    idents = sorted({r[0] for r in rows})
    _check_faces(Path(faces), idents)
    if meta:
        no_meta = [i for i in idents if i not in meta]
        if no_meta:
            raise InputError(f"{len(no_meta)} identities have utterances but no row in {inp['meta']} (input.meta): "
                             f"{no_meta[:10]}; add their rows ({META_HEADER}) or remove their folders")
    no_split = [i for i in idents if i not in splits]
    if no_split:
        raise InputError(f"{len(no_split)} identities are in no split of {inp['splits']} (input.splits): "
                         f"{no_split[:10]}; add an 'id set' line for each (ids as the folders name them)")
    records = []
    for ident, key, frames_src, speech_src in rows:
        m = meta.get(ident)
        _, video, clip = key.split("/")
        records.append({
            "clip": key, "identity": ident, "video": video, "clip_name": clip,
            "name": m.name if m else ident, "split": splits[ident], "gender": m.gender if m else None,
            "nationality": None, "age": None, "language": language_of(video),
            "frames_source": frames_src, "speech_source": speech_src,
        })
    return records


def draw_splits(identities: list[str], val: int, test: int, seed: int = 0) -> dict[str, str]:
    """identity -> split code ("1" train, "2" val, "4" test): the first ``test`` identities,
    then ``val``, in the order of a seeded hash of their ids; the rest train."""
    order = sorted(identities, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    if val + test >= len(order):
        raise ValueError(f"{len(order)} identities cannot give {val} val and {test} test and keep one for training")
    codes = {i: "1" for i in order}
    codes.update({i: "4" for i in order[:test]})
    codes.update({i: "2" for i in order[test:test + val]})
    return dict(sorted(codes.items()))


def write_splits(codes: dict[str, str], path: str | Path) -> Path:
    """Write ``identity_splits.txt`` (``id set`` lines) from :func:`draw_splits`."""
    path = Path(path)
    path.write_text("".join(f"{i} {c}\n" for i, c in sorted(codes.items())), encoding="utf-8")
    return path


def languages(clips: pd.DataFrame, split: str | None = None) -> list[str]:
    """The languages of the clip table (or manifest), of one split when given, sorted."""
    rows = clips if split is None else clips[clips["split"] == split]
    if "language" not in rows.columns:
        return []
    return sorted(str(x) for x in rows["language"].dropna().unique())


#: The challenge's corpus versions and their two languages, as the baseline's ``computeScore.py``
#: (github.com/mavceleb/mavceleb_baseline, commit 080889c) checks its ``ver`` and heard language:
#: a score file is named after the version (config ``fame.version``) and the training language.
FAME_VERSIONS = {"v1": ("English", "Urdu"), "v2": ("English", "Hindi"), "v3": ("English", "German")}


def fame_version(config: dict[str, Any], train_languages: list[str]) -> str:
    """Config ``fame.version``, required with ``fame.train_language`` (the score files' prefix),
    each training language one of that version's two."""
    version = (config.get("fame") or {}).get("version")
    choices = ", ".join(f"{v} ({'-'.join(langs)})" for v, langs in FAME_VERSIONS.items())
    if version not in FAME_VERSIONS:
        raise InputError(f"config key 'fame.version' is {version!r}: with fame.train_language set it is "
                         f"required (the challenge's score files are named after it); set one of {choices}")
    wrong = [x for x in train_languages if x not in FAME_VERSIONS[version]]
    if wrong:
        raise InputError(f"config key 'fame.train_language': {wrong} is not a language of MAV-Celeb "
                         f"{version} ({'-'.join(FAME_VERSIONS[version])}); set fame.version to the "
                         f"release's version, one of {choices}")
    return version


def train_languages(config: dict[str, Any]) -> list[str]:
    """Config ``fame.train_language`` as a list: one language (a string) or several (a list, e.g.
    both of the version's, for the challenge's four cells in one run); [] when unset."""
    train = (config.get("fame") or {}).get("train_language")
    if not train:
        return []
    return [train] if isinstance(train, str) else list(train)


def fame_languages(clips: pd.DataFrame, config: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """(training languages, test languages) of config ``fame:``, checked against the clip table;
    None when ``fame.train_language`` is not set (no FAME protocol).

    Each training language must be spoken by training identities and be one of ``fame.version``'s
    two, and each test language by test identities (``fame.test_languages``; empty: every
    language of the test split).
    """
    trains = train_languages(config)
    if not trains:
        return None
    from facevoice.data.layouts import fame_message, layout_of

    if not layout_of(config).languages:
        raise InputError(fame_message(trains[0] if len(trains) == 1 else trains, layout_of(config)))
    fame_version(config, trains)
    spoken = languages(clips, "train")
    for train in trains:
        if train not in spoken:
            raise InputError(f"config key 'fame.train_language': no training identity speaks {train!r}; "
                             f"languages of the training split: {spoken}")
    tested = languages(clips, "test")
    if not tested:
        raise InputError("config key 'fame.train_language' is set, but the test split has no identity "
                         "(input.splits: set 4) to verify on")
    wanted = list((config.get("fame") or {}).get("test_languages") or tested)
    missing = [x for x in wanted if x not in tested]
    if missing:
        raise InputError(f"config key 'fame.test_languages': no test identity speaks {missing}; "
                         f"languages of the test split: {tested}")
    return trains, wanted


def training_manifest(manifest: pd.DataFrame, train_language: str) -> pd.DataFrame:
    """The manifest a method trained on ``train_language`` should read: the train and val rows
    in that language only (model selection stays within the heard language), every other
    split whole. Not wired into the trainer yet (README: MAV-Celeb / FAME)."""
    if "language" not in manifest.columns:
        raise ValueError("the manifest has no language column: only the mavceleb layout gives one")
    learn = manifest["split"].isin(["train", "val"])
    return manifest[~learn | (manifest["language"] == train_language)].reset_index(drop=True)


# --------------------------------------------------------------------------- the challenge's official test set

#: The official test set as the challenge ships it (config ``fame.official``, the layout
#: ``fame_official`` of :mod:`facevoice.data.layouts`): per language a flat folder of voices and
#: one of faces under the release root, and a list per language in ``fame.official.lists``.
OFFICIAL_SHAPE = ("<lists>/<Language>_test.txt of 'key voice_path face_path' lines, the paths relative to "
                  "<root> (voices/<Language>/NNNNN.wav, faces/<Language>/NNNNN.jpg)")
#: the video part of an official item's clip key: ``<Language>/test/<key>``
OFFICIAL_VIDEO = "test"


def read_test_list(path: str | Path) -> pd.DataFrame:
    """A challenge test list (``key voice_path face_path`` per line) as key, voice, face."""
    rows, seen = [], set()
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise ValueError(f"{path}:{lineno}: expected 'key voice_path face_path', found {line!r}")
        if parts[0] in seen:
            raise ValueError(f"{path}:{lineno}: key {parts[0]!r} appears twice")
        seen.add(parts[0])
        rows.append(parts)
    if not rows:
        raise ValueError(f"{path}: no trial in the list")
    return pd.DataFrame(rows, columns=["key", "voice", "face"])


def list_language(path: str | Path) -> str:
    """The test language of a list named ``<Language>_test.txt``."""
    name = Path(path).name
    if not name.endswith("_test.txt") or name == "_test.txt":
        raise ValueError(f"{path}: a challenge test list is named <Language>_test.txt")
    return name[: -len("_test.txt")]


def official_lists(section: dict[str, Any]) -> dict[str, Path]:
    """Language -> its ``<Language>_test.txt`` in ``fame.official.lists`` (sorted by language)."""
    folder = _require(section.get("lists"), "fame.official.lists", "the folder of the official test lists")
    found = {list_language(p): p for p in sorted(folder.glob("*_test.txt")) if p.name != "_test.txt"}
    if not found:
        raise InputError(f"fame.official.lists '{folder}' holds no <Language>_test.txt; expected {OFFICIAL_SHAPE}")
    for language in found:
        if not NAME_RE.match(language):
            raise InputError(f"fame.official.lists: {found[language]} names language {language!r}, outside "
                             f"[A-Za-z0-9_-]; expected {OFFICIAL_SHAPE}")
    return found


def _official_rows(root: Path, language: str, path: Path) -> list[tuple[str, str, str]]:
    """(clip key, face file, voice file) of one official list, each path checked."""
    try:
        listed = read_test_list(path)
    except ValueError as exc:
        raise InputError(f"fame.official.lists: {exc}; expected {OFFICIAL_SHAPE}") from None
    rows = []
    for lineno, (key, voice, face) in enumerate(listed.itertuples(index=False), 1):
        if not NAME_RE.match(key):
            raise InputError(f"{path}:{lineno}: key {key!r} has characters outside [A-Za-z0-9_-]")
        for what, rel in (("voice", voice), ("face", face)):
            if not (root / rel).is_file():
                raise InputError(f"{path}:{lineno}: the {what} '{rel}' is not a file under fame.official.root "
                                 f"'{root}'; expected {OFFICIAL_SHAPE}")
        rows.append((f"{language}/{OFFICIAL_VIDEO}/{key}", str(root / face), str(root / voice)))
    return rows


def official_clips(source: dict[str, Any], language: str) -> list[tuple[str, str, str]]:
    """(clip key, frames source, speech source) of one language's official list, sorted by key:
    a clip per line (``<Language>/test/<key>``), its face the line's image, its voice the line's wav.
    ``source`` holds config ``fame.official``'s ``root`` and ``lists``."""
    root = _require(source.get("root"), "fame.official.root", "the release root of the official test set")
    path = official_lists(source).get(language)
    return [] if path is None else sorted(_official_rows(root, language, path))


def official_records(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The official test set as clip table rows (without ``part``): a clip per list line, its
    "identity" the list's language (the identities are hidden), split test."""
    section = config["fame"]["official"]
    records = []
    for language in official_lists(section):
        for key, frames_src, speech_src in official_clips(section, language):
            records.append({"clip": key, "identity": language, "video": OFFICIAL_VIDEO,
                            "clip_name": key.rsplit("/", 1)[1], "name": language, "split": "test",
                            "gender": None, "nationality": None, "age": None, "language": language,
                            "frames_source": frames_src, "speech_source": speech_src})
    return records


def official_item(language: str, key: str, modality: str) -> str:
    """The manifest item (an embedding's id) of a list line's voice, or the prefix of its face
    items (``<clip>/face/``; one per detected face, ``0000`` for the given image)."""
    clip = f"{language}/{OFFICIAL_VIDEO}/{key}"
    return f"{clip}/voice" if modality == "voice" else f"{clip}/face/"
