"""The input layouts (config ``input.layout``): one declaration each, and their registry :data:`LAYOUTS`.

A :class:`Layout` says everything the rest of the package knows about a layout:

- the keys of config ``input:`` it reads, required and optional, each with what it is and
  whether it is a folder or a file (:class:`Key`): :func:`validate` names the required keys
  left unset, :func:`path_problems` the paths that do not exist;
- how its clips are listed: the whole clip table's rows (``records``) and one identity's clips
  (``clips``, what a batch job re-lists), the functions of :mod:`facevoice.data.inputs` and
  :mod:`facevoice.data.mavceleb`;
- whether a clip's face frames may be missing (the workflow's ``batch_sources`` then keeps only
  the frames sources that exist, and the frames stage rejects the other clips with the reason);
- whether it gives clips a language (config ``fame`` needs one).

:data:`FAME_OFFICIAL` declares the FAME challenge's official test set the same way (its keys in
config ``fame.official``, its clips a list line each): :func:`official_problems`,
:func:`path_problems` and :func:`official_table` check it.

``facevoice check-config`` and the workflow read the same declarations (both through
:func:`facevoice.check.check_run`). Adding a layout is one declaration in :data:`LAYOUTS`, its
name in the schema's ``input.layout`` enum and its keys in the schema's ``input:`` section (where
the defaults live), and its row in README's table of layouts: tests check all three against the
declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from facevoice.common import config as config_mod
from facevoice.data import inputs, mavceleb
from facevoice.data.inputs import InputError

#: A clip of a listing: (clip key, frames source, speech source).
Clip = tuple[str, str, str]


@dataclass(frozen=True)
class Key:
    """One key of config ``input:`` a layout reads."""

    name: str
    #: what the key gives, as error messages name it
    what: str
    #: "folder", "file", or None (not a path)
    kind: str | None = None
    #: read by a batch job's listing (the ``--source`` of the batch jobs); meta and splits are not
    media: bool = True


@dataclass(frozen=True)
class Layout:
    """One input layout: its name (config ``input.layout``), keys, listing and properties."""

    name: str
    required: tuple[Key, ...]
    optional: tuple[Key, ...]
    #: the clip table's rows (without ``part``) of a config: config -> records
    records: Callable[[dict[str, Any]], list[dict[str, Any]]]
    #: one identity's clips, sorted by key: (source, identity, VGGFace1 name) -> clips
    clips: Callable[[dict[str, Any], str, str], list[Clip]]
    #: a clip's frames source may not exist (VoxCeleb1: an utterance without a face track)
    frames_may_be_missing: bool = False
    #: the clip table's ``language`` column is filled (config ``fame`` needs it)
    languages: bool = False
    #: the config section holding the keys (``input``, or ``fame.official`` for the official test set)
    section: str = "input"

    @property
    def keys(self) -> tuple[Key, ...]:
        return self.required + self.optional

    def key(self, name: str) -> Key:
        for k in self.keys:
            if k.name == name:
                return k
        raise KeyError(f"layout {self.name!r} declares no key input.{name}")

    @property
    def source(self) -> tuple[str, ...]:
        """The keys of ``input:`` a batch job lists its clips with (besides ``layout``)."""
        return tuple(k.name for k in self.keys if k.media)

    def paths(self) -> dict[str, str]:
        """``<section>.<key>`` -> "folder" or "file", for every path key (checked when set)."""
        return {f"{self.section}.{k.name}": k.kind for k in self.keys if k.kind}

    def unset(self, inp: dict[str, Any]) -> list[str]:
        """The required keys that ``inp`` (the config's section of the keys) leaves unset."""
        return [k.name for k in self.required if not inp.get(k.name)]


SPLITS = Key("splits", "the identity splits file", "file", media=False)
VOX_META = Key("meta", "the metadata file (vox1_meta.csv)", "file", media=False)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in [
    Layout("videos",
           required=(Key("videos", "the videos folder", "folder"), VOX_META, SPLITS),
           optional=(Key("video_extensions", "the file extensions of clips"),),
           records=inputs.clip_records, clips=inputs.video_clips),
    Layout("voxceleb1",
           required=(Key("wav", "the VoxCeleb1 wav folder", "folder"),
                     Key("face_frames", "the VoxCeleb1 face frames folder", "folder"), VOX_META, SPLITS),
           optional=(), records=inputs.clip_records, clips=inputs.voxceleb1_clips,
           frames_may_be_missing=True),
    Layout("mavceleb",
           required=(Key("voices", "the MAV-Celeb voices tree", "folder"),
                     Key("faces", "the MAV-Celeb faces tree", "folder"), SPLITS),
           optional=(Key("meta", "the metadata file (v2_meta.csv)", "file", media=False),),
           records=mavceleb.clip_records, clips=lambda source, identity, name: mavceleb.identity_clips(source, identity),
           frames_may_be_missing=True, languages=True),
]}

#: The FAME challenge's official test set (config ``fame.official``), not an ``input.layout``: per
#: language a flat folder of voices and one of faces, and ``<Language>_test.txt`` lists of ``key
#: voice_path face_path`` lines (:mod:`facevoice.data.mavceleb`). Its clips (a clip per list line)
#: go through the same batch stages as the run's clips (workflow/rules/fame.smk).
FAME_OFFICIAL = Layout(
    "fame_official",
    required=(Key("root", "the release root the official lists' paths are relative to", "folder"),
              Key("lists", "the folder of the official <Language>_test.txt lists", "folder")),
    optional=(), records=mavceleb.official_records,
    clips=lambda source, identity, name: mavceleb.official_clips(source, identity),
    languages=True, section="fame.official")

#: The keys of config ``input:`` that say where a batch's media are (every layout's; the JSON a
#: batch job is given holds them all, so it does not change with the layout).
SOURCE_KEYS = ("layout", *dict.fromkeys(k for layout in LAYOUTS.values() for k in layout.source))


def named(name: Any) -> Layout:
    """The layout called ``name``; an unknown name raises InputError listing the known ones."""
    if name not in LAYOUTS:
        raise InputError(f"unknown input.layout {name!r}; known layouts: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def batch_layout(name: Any) -> Layout:
    """The layout a batch job lists its clips with: an ``input.layout``, or :data:`FAME_OFFICIAL`."""
    return FAME_OFFICIAL if name == FAME_OFFICIAL.name else named(name)


def layout_of(config: dict[str, Any]) -> Layout:
    """The layout of a config (its ``input.layout``)."""
    return named(config["input"]["layout"])


def problems(config: dict[str, Any]) -> list[str]:
    """What a complete config's ``input:`` lacks for its layout, and ``fame`` on a layout without languages."""
    layout, lines = layout_of(config), []
    missing = layout.unset(config["input"])
    if missing:
        keys = ", ".join(f"'input.{k}'" for k in missing)
        lines.append(f"input.layout is {layout.name!r}, so {keys} must be set")
    train = config["fame"]["train_language"]
    if train and not layout.languages:
        lines.append(f"{fame_message(train, layout)}: set fame.train_language to null")
    return lines + official_problems(config)


def official_problems(config: dict[str, Any]) -> list[str]:
    """What config ``fame.official`` lacks when it is set (:data:`FAME_OFFICIAL`'s keys, and
    ``fame.train_language``: the official items are scored by the FAME models)."""
    section = config["fame"]["official"]
    if not any(section.values()):
        return []
    lines = []
    missing = FAME_OFFICIAL.unset(section)
    if missing:
        keys = ", ".join(f"'fame.official.{k}'" for k in missing)
        lines.append(f"fame.official is set (the challenge's official test set), so {keys} must be set")
    if not config["fame"]["train_language"]:
        lines.append("fame.official is set, but fame.train_language is not: the official test items are scored "
                     "by the methods trained on a language; set fame.train_language (and fame.version)")
    return lines


def official_table(config: dict[str, Any]) -> pd.DataFrame | None:
    """The official test set's clip table (:data:`FAME_OFFICIAL`, a clip per list line, ``part``
    filled as for the run's clips), each list's languages one of ``fame.version``'s; None when
    ``fame.official`` is not set."""
    section = config["fame"]["official"]
    if not section.get("root"):
        return None
    table = inputs.list_clips(config, FAME_OFFICIAL)
    version = config["fame"]["version"]
    wrong = sorted(set(table["language"]) - set(mavceleb.FAME_VERSIONS.get(version, ())))
    if wrong:
        raise InputError(f"fame.official.lists: {wrong} is not a language of MAV-Celeb {version} "
                         f"({'-'.join(mavceleb.FAME_VERSIONS.get(version, ()))}, config fame.version): the score "
                         f"files hold one heard and one unheard language of the version")
    return table


def fame_message(train: str, layout: Layout) -> str:
    spoken = ", ".join(repr(n) for n, lay in LAYOUTS.items() if lay.languages)
    return (f"config key 'fame.train_language' is {train!r}, but only input.layout {spoken} "
            f"gives clips a language (layout {layout.name!r})")


def validate(config: dict[str, Any], schema_path: str | Path | None = None) -> dict[str, Any]:
    """:func:`facevoice.common.config.validate` with the layout's keys checked (:func:`problems`)."""
    return config_mod.validate(config, schema_path, checks=(problems,))


def load(path: str | Path, schema_path: str | Path | None = None) -> dict[str, Any]:
    """Load a config file, complete it and check it, its layout's keys included."""
    return validate(config_mod.load_yaml(path), schema_path)


def path_problems(config: dict[str, Any], directory: str | Path | None = None) -> list[str]:
    """The input paths of a validated config that do not exist (its layout's, and the other
    paths of the config: :func:`facevoice.common.config.check_paths`)."""
    return config_mod.check_paths(config, {**layout_of(config).paths(), **FAME_OFFICIAL.paths()}, directory)
