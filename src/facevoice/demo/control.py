"""The positive control: a demo corpus whose identities share a planted attribute across
people, so that a method that learns across people must score above chance on unseen ones.

Each control identity draws an attribute ``a`` uniformly in [-1, 1] (from the seed and its
id, independent of its gender) and pairs, at random, a face source and a voice source of one
gender from its split's pool. The attribute is planted in both:

* every frame of its clips gets a colour balance: red x ``exp(face_shift * a)``, blue x
  ``exp(-face_shift * a)`` (:func:`tint_frames`);
* every clip's speech is pitch-shifted by ``a * pitch_semitones`` semitones (librosa's
  phase-vocoder shift, length kept; :func:`shift_voice`).

The face and voice sources are split into train, validation and test pools (per gender, in
an order drawn from the seed), so a test identity's face and voice come from sources no
training identity used: nothing learned about a source or a pairing can carry over, only the
attribute (and gender, in stratum U). Several identities of a split may share a source, each
with its own attribute, clip looks and speech. Which source an identity takes is rendezvous
hashing of (seed, identity, source): dropping a source that fails changes only the
identities that had taken it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from facevoice.demo.base import DemoError, seed_int, seeded_rng
from facevoice.demo.plan import SPLIT_CODES, Plan, PlannedIdentity, _check_enough, _usable_packages

#: shares of the sources (per gender) and of the identities in the val and test splits
FRACTIONS = {"test": 0.25, "val": 0.15}
#: the first control identity's VoxCeleb-style number (the demo's ids are id9xxxx)
FIRST_ID = 80001


@dataclass(frozen=True)
class ControlIdentity(PlannedIdentity):
    """A control identity: a face and a voice source and the attribute planted in both."""

    attribute: float = 0.0


def _hash(*parts: Any) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def _counts(n: int) -> dict[str, int]:
    test, val = math.ceil(FRACTIONS["test"] * n), math.ceil(FRACTIONS["val"] * n)
    return {"test": test, "val": val, "train": n - test - val}


def source_pools(items: list[dict], seed: int) -> dict[str, list[dict]]:
    """Split sources of one gender into train / val / test pools, in an order drawn from ``seed``."""
    order = sorted(items, key=lambda x: _hash(seed, "pool", x["key"]))
    n = _counts(len(order))
    return {"test": order[:n["test"]], "val": order[n["test"]:n["test"] + n["val"]],
            "train": order[n["test"] + n["val"]:]}


def plan_control(catalog: Mapping[str, Any], available_clients: Iterable[str], *, seed: int, control: Mapping[str, Any],
                 cached_packages: Iterable[str] = (), rejected_faces: Mapping[str, str] | None = None,
                 rejected_voices: Mapping[str, str] | None = None) -> Plan:
    """The control's identities, as :func:`facevoice.demo.plan.plan_identities` plans the demo's
    (same arguments, plus the ``demo.control`` section); no I/O."""
    rejected_faces, rejected_voices = dict(rejected_faces or {}), dict(rejected_voices or {})
    usable, skipped, missing_for = _usable_packages(catalog["packages"], set(available_clients), set(cached_packages))
    faces = [f for f in catalog["faces"] if f["package"] in usable and f["key"] not in rejected_faces]
    voices = [v for v in catalog["voices"] if v["package"] in usable and v["key"] not in rejected_voices]
    pools = {g: (source_pools([f for f in faces if f["gender"] == g], seed),
                 source_pools([v for v in voices if v["gender"] == g], seed)) for g in ("m", "f")}
    identities: list[PlannedIdentity] = []
    number = FIRST_ID
    for split, n in _counts(int(control["identities"])).items():
        for k in range(n):
            gender = "mf"[k % 2]
            ident_id = f"id{number}"
            number += 1
            face_pool, voice_pool = (p[split] for p in pools[gender])
            if not face_pool or not voice_pool:
                raise DemoError(f"the control has no {gender} {'face' if not face_pool else 'voice'} source left "
                                f"for its {split} split: lower demo.control.identities or restore sources")
            face = min(face_pool, key=lambda x: _hash(seed, ident_id, x["key"]))
            voice = min(voice_pool, key=lambda x: _hash(seed, ident_id, x["key"]))
            a = float(seeded_rng(seed, "attribute", ident_id).uniform(-1.0, 1.0))
            identities.append(ControlIdentity(
                id=ident_id, name=f"Control_{ident_id}_{voice['name']}_{face['name']}", gender=gender,
                nationality="", nationality_source="", face=face["key"], voice=voice["key"],
                split=SPLIT_CODES[split], attribute=round(a, 6)))
    dropped = ([f"dropping face source {k}: {why}" for k, why in rejected_faces.items()]
               + [f"dropping voice source {k}: {why}" for k, why in rejected_voices.items()])
    plan = Plan(identities=identities, usable_packages=usable, skipped=skipped + dropped)
    # the control plans exactly the identities asked for (sources are shared): the demo's limits
    # (catalog limits) do not apply; an empty source pool stopped the plan above
    counts = _counts(int(control["identities"]))
    _check_enough(plan, {"min_identities": sum(counts.values()), "min_test": counts["test"]}, missing_for, dropped)
    return plan


def identity_seed(seed: int, ident: PlannedIdentity) -> int:
    """The seed of a control identity's clip looks and speech: its own, though it shares sources."""
    return seed_int(seed, "control", ident.id) % 2**31


def tint_frames(frames: np.ndarray, attribute: float, face_shift: float) -> np.ndarray:
    """Red x exp(face_shift * a), blue x exp(-face_shift * a); uint8 frames (n, h, w, 3), in place."""
    v = np.arange(256, dtype=np.float64)
    for channel, sign in ((0, 1.0), (2, -1.0)):
        lut = np.clip(np.round(v * math.exp(sign * face_shift * attribute)), 0, 255).astype(np.uint8)
        frames[..., channel] = lut[frames[..., channel]]
    return frames


def shift_voice(samples: np.ndarray, sample_rate: int, attribute: float, pitch_semitones: float) -> np.ndarray:
    """Pitch-shift by ``attribute * pitch_semitones`` semitones (length kept), level as before."""
    import librosa

    y = librosa.effects.pitch_shift(samples.astype(np.float32), sr=sample_rate,
                                    n_steps=float(attribute * pitch_semitones), res_type="soxr_hq")
    rms_in = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    rms_out = float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) or 1.0
    y = y * (rms_in / rms_out)
    peak = float(np.max(np.abs(y))) or 1.0
    if peak > 0.95:
        y = y * (0.95 / peak)
    return y.astype(np.float32)
