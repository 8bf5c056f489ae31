"""Planning the demo corpus, with no I/O: which face is paired with which voice, the
identities and their splits, and which of an identity's videos each clip goes to."""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from facevoice.demo.base import DemoError
from facevoice.demo.sources import INSTALL_HINTS, missing_clients

SPLIT_CODES = {"train": 1, "val": 2, "test": 4}
SPLIT_NAMES = {v: k for k, v in SPLIT_CODES.items()}


@dataclass(frozen=True)
class PlannedIdentity:
    """One demo identity: a face source and a voice source of the same gender."""

    id: str
    name: str
    gender: str
    nationality: str
    nationality_source: str
    face: str
    voice: str
    split: int  # 1 train, 2 val, 4 test (unseen-unheard)

    @property
    def split_name(self) -> str:
        return SPLIT_NAMES[self.split]


@dataclass
class Plan:
    identities: list[PlannedIdentity]
    usable_packages: list[str]
    skipped: list[str] = field(default_factory=list)

    def count(self, split: str | None = None, gender: str | None = None) -> int:
        return sum(1 for i in self.identities
                   if (split is None or i.split_name == split) and (gender is None or i.gender == gender))


def _match(faces: list[dict], voices: list[dict], preferred: Sequence[Sequence[str]]) -> list[tuple[dict, dict]]:
    """Pair faces with voices of the same gender, greedily and in catalog order.

    Passes: the catalog's preferred pairs; equal nationality; equal language with no
    conflicting nationality; a known nationality with a voice of unknown nationality;
    faces of unknown nationality with the next voice; whatever is left.
    """
    fs, vs = list(faces), list(voices)
    pairs: list[tuple[dict, dict]] = []

    def take(f: dict, v: dict) -> None:
        pairs.append((f, v))
        fs.remove(f)
        vs.remove(v)

    for fk, vk in preferred:
        f = next((x for x in fs if x["key"] == fk), None)
        v = next((x for x in vs if x["key"] == vk), None)
        if f and v:
            take(f, v)
    for f in [f for f in fs if f.get("nationality")]:
        v = next((v for v in vs if v.get("nationality") == f["nationality"]), None)
        if v:
            take(f, v)
    for f in [f for f in fs if f.get("language")]:
        v = next((v for v in vs if v.get("language") == f["language"]
                  and (not v.get("nationality") or not f.get("nationality"))), None)
        if v:
            take(f, v)
    for f in [f for f in fs if f.get("nationality")]:
        v = next((v for v in vs if not v.get("nationality")), None)
        if v:
            take(f, v)
    for f in [f for f in fs if not f.get("nationality")]:
        if vs:
            take(f, vs[0])
    for f in list(fs):  # known and different nationalities: only when nothing else is left
        if vs:
            take(f, vs[0])
    order = {f["key"]: i for i, f in enumerate(faces)}
    return sorted(pairs, key=lambda p: order[p[0]["key"]])


def plan_identities(
    catalog: Mapping[str, Any],
    available_clients: Iterable[str],
    *,
    seed: int,
    cached_packages: Iterable[str] = (),
    rejected_faces: Mapping[str, str] | None = None,
    rejected_voices: Mapping[str, str] | None = None,
) -> Plan:
    """Choose the identities (face + voice pairs) and their splits; no I/O.

    A package is usable when its registry's client is in ``available_clients`` (pip;
    apt-get and dpkg-deb; npm) or, for the download client, when its archive is already in
    ``cached_packages``. Faces and voices of unusable packages, and the ``rejected_*`` ones
    (key -> reason), are skipped with a message in ``Plan.skipped``. Per gender, the first
    faces and voices in catalog order are paired (:func:`_match`) up to the catalog's
    ``max_identities``. Splits are stratified by gender and drawn from ``seed``.

    Raises :class:`DemoError`, naming what to install, when fewer than the catalog's
    ``min_identities`` (or ``min_test`` test identities) remain.
    """
    rejected_faces = dict(rejected_faces or {})
    rejected_voices = dict(rejected_voices or {})
    limits = catalog.get("limits", {})
    usable, skipped, missing_for = _usable_packages(catalog["packages"], set(available_clients),
                                                    set(cached_packages))
    dropped = ([f"dropping face source {key}: {why}" for key, why in rejected_faces.items()]
               + [f"dropping voice source {key}: {why}" for key, why in rejected_voices.items()])
    faces = [f for f in catalog["faces"] if f["package"] in usable and f["key"] not in rejected_faces]
    voices = [v for v in catalog["voices"] if v["package"] in usable and v["key"] not in rejected_voices]
    identities = _assign_splits(_pair_identities(catalog, faces, voices), seed, limits)
    plan = Plan(identities=sorted(identities, key=lambda i: i.id), usable_packages=usable,
                skipped=skipped + dropped)
    _check_enough(plan, limits, missing_for, dropped)
    return plan


def _usable_packages(pkgs: Mapping[str, Mapping[str, Any]], clients: set[str], cached: set[str],
                     ) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """(usable package keys, skip messages, missing client -> packages that need it)."""
    usable: list[str] = []
    skipped: list[str] = []
    missing_for: dict[str, list[str]] = {}
    for key, pkg in pkgs.items():
        missing = missing_clients(pkg, clients, key in cached)
        if missing:
            for c in missing:
                missing_for.setdefault(c, []).append(f"{pkg['name']} {pkg['version']}")
            skipped.append(f"skipping {pkg['registry']} package {pkg['name']}=={pkg['version']}: "
                           f"{' and '.join(missing)} not found")
        else:
            usable.append(key)
    return usable, skipped, missing_for


def _pair_identities(catalog: Mapping[str, Any], faces: list[dict], voices: list[dict]) -> list[PlannedIdentity]:
    """Per gender, the first faces and voices up to ``max_identities`` paired; split not yet drawn."""
    caps = catalog.get("limits", {}).get("max_identities", {"m": 10**6, "f": 10**6})
    preferred = catalog.get("pairs") or []
    identities: list[PlannedIdentity] = []
    for gender in ("m", "f"):
        fg = [f for f in faces if f["gender"] == gender]
        vg = [v for v in voices if v["gender"] == gender]
        k = min(int(caps.get(gender, 10**6)), len(fg), len(vg))
        for face, voice in _match(fg[:k], vg[:k], preferred):
            if face.get("nationality"):
                nat, nat_src = face["nationality"], f"face: {face.get('nationality_source', '')}"
            elif voice.get("nationality"):
                nat, nat_src = voice["nationality"], f"voice: {voice.get('nationality_source', '')}"
            else:
                nat, nat_src = "", ""
            identities.append(PlannedIdentity(
                id=face["id"], name=f"Demo_{voice['name']}_{face['name']}", gender=gender,
                nationality=nat, nationality_source=nat_src, face=face["key"], voice=voice["key"], split=1))
    return identities


def _check_enough(plan: Plan, limits: Mapping[str, Any], missing_for: Mapping[str, list[str]],
                  dropped: list[str]) -> None:
    """Raise :class:`DemoError`, naming what to install, when the plan is too small."""
    need_n = int(limits.get("min_identities", 30))
    need_test = int(limits.get("min_test", 10))
    if len(plan.identities) >= need_n and plan.count("test") >= need_test:
        return
    lines = [f"only {len(plan.identities)} demo identities ({plan.count('test')} test) can be planned; "
             f"the demo needs at least {need_n} ({need_test} test)."]
    if missing_for:
        lines.append("Install the missing package clients and run again:")
        for client, names in sorted(missing_for.items()):
            lines.append(f"  - {INSTALL_HINTS.get(client, client)}: needed for {', '.join(names)}")
    if dropped:
        lines.append("Sources dropped during the build: " + "; ".join(dropped))
    raise DemoError("\n".join(lines))


def _assign_splits(identities: list[PlannedIdentity], seed: int, limits: Mapping[str, Any]) -> list[PlannedIdentity]:
    """Identity-disjoint splits, stratified by gender, from ``seed``."""
    n = len(identities)
    if n == 0:
        return identities
    n_test = max(int(limits.get("min_test", 10)), math.ceil(float(limits.get("test_fraction", 0.25)) * n))
    n_val = max(int(limits.get("min_val", 3)), math.ceil(float(limits.get("val_fraction", 0.15)) * n))
    n_test, n_val = min(n_test, n), min(n_val, max(0, n - n_test))
    by_gender = {g: [i for i in identities if i.gender == g] for g in ("m", "f")}
    # largest-remainder allocation of the test and val counts to the genders
    out: list[PlannedIdentity] = []
    quotas: dict[str, dict[str, int]] = {g: {} for g in by_gender}
    for split, total in (("test", n_test), ("val", n_val)):
        exact = {g: total * len(ids) / n for g, ids in by_gender.items()}
        base = {g: int(math.floor(x)) for g, x in exact.items()}
        rest = total - sum(base.values())
        for g in sorted(exact, key=lambda g: (-(exact[g] - base[g]), g))[:rest]:
            base[g] += 1
        for g in by_gender:
            quotas[g][split] = base[g]
    for g, ids in by_gender.items():
        order = sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i.id}".encode()).hexdigest())
        nt, nv = quotas[g]["test"], quotas[g]["val"]
        for j, ident in enumerate(order):
            split = 4 if j < nt else 2 if j < nt + nv else 1
            out.append(PlannedIdentity(**{**asdict(ident), "split": split}))
    return out


# --------------------------------------------------------------------------------------
# videos and clips


def video_id(face: Mapping[str, Any], voice: Mapping[str, Any], index: int = 0) -> str:
    """An 11-character YouTube-like id from the face file's and the voice's identity (and the
    video's index among the identity's videos, for all but the first)."""
    key = f"{face['sha256']}:{voice['key']}" + (f":{index}" if index else "")
    return base64.b32encode(hashlib.sha256(key.encode()).digest()).decode("ascii")[:11]


def clip_videos(n_clips: int, n_videos: int) -> list[tuple[int, int]]:
    """(video index, clip number within the video, from 1) of each of an identity's clips:
    consecutive clips share a video, the videos as even as can be."""
    out, counts = [], [0] * n_videos
    for k in range(n_clips):
        j = k * n_videos // n_clips
        counts[j] += 1
        out.append((j, counts[j]))
    return out
