"""The positive control (facevoice.demo.control; README, Positive control): its plan, the
attribute planted in faces and voices, that the demo corpus is unchanged by it, and that a control
corpus renders again byte for byte (its run through the pipeline: tests/test_benchmarks.py runs
`benchmarks/bench_control.py --smoke`). Real MTCNN, librosa and ffmpeg; no mocks."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, DEMO_CACHE, REPO

from facevoice.demo import build, control
from facevoice.demo.audio import estimate_f0
from facevoice.demo.export import read_corpus
from facevoice.demo.plan import plan_identities
from facevoice.demo.sources import available_clients, cached_packages, load_catalog

CONTROL = build.schema_defaults()["control"]
#: the identities of `benchmarks/bench_control.py --smoke`'s corpus, which the tests here read too
SMOKE_IDENTITIES = 8


def _plan(n: int = 160, **kw):
    catalog = load_catalog()
    return control.plan_control(catalog, available_clients(), seed=1234, control={**CONTROL, "identities": n},
                                cached_packages=cached_packages(catalog, DEMO_CACHE), **kw)


def test_plan_pools_sources_per_split_and_balances_gender():
    plan = _plan()
    ids = plan.identities
    assert len(ids) == 160 and len({i.id for i in ids}) == 160 and len({i.name for i in ids}) == 160
    assert Counter(i.split_name for i in ids) == {"test": 40, "val": 24, "train": 96}
    for split in ("test", "val", "train"):
        assert Counter(i.gender for i in ids if i.split_name == split) == {"m": plan.count(split) // 2,
                                                                           "f": plan.count(split) // 2}
    # no face or voice source of a test identity is used by a training or validation identity
    for role in ("face", "voice"):
        used = {s: {getattr(i, role) for i in ids if i.split_name == s} for s in ("test", "val", "train")}
        assert not used["test"] & (used["train"] | used["val"]) and not used["val"] & used["train"], role
    catalog = load_catalog()
    genders = {x["key"]: x["gender"] for x in catalog["faces"] + catalog["voices"]}
    assert all(genders[i.face] == genders[i.voice] == i.gender for i in ids)
    # the attribute spans [-1, 1] within each gender: gender does not tell it
    a = {g: np.array([i.attribute for i in ids if i.gender == g]) for g in "mf"}
    assert all(-1 <= x.min() < -0.8 and 0.8 < x.max() <= 1 for x in a.values())
    assert abs(a["m"].mean() - a["f"].mean()) < 0.25
    assert plan.identities == _plan().identities  # the seed fixes it


def test_dropping_a_source_changes_only_the_identities_that_used_it_or_its_pool():
    catalog = load_catalog()
    before = _plan().identities
    face = Counter(i.face for i in before).most_common(1)[0][0]
    after = _plan(rejected_faces={face: "test"}).identities
    assert [i.id for i in before] == [i.id for i in after] and all(a.face != face for a in after)
    gender = next(i.gender for i in before if i.face == face)
    faces = [f for f in catalog["faces"] if f["gender"] == gender]
    pools = [control.source_pools(fs, 1234) for fs in (faces, [f for f in faces if f["key"] != face])]
    moved = {s for s in pools[0] if [f["key"] for f in pools[0][s] if f["key"] != face]
             != [f["key"] for f in pools[1][s]]}  # pools that gained or lost another source
    changed = {b.id for b, a in zip(before, after) if b != a}
    allowed = {b.id for b in before if b.face == face or (b.gender == gender and b.split_name in moved)}
    assert changed and changed <= allowed
    assert len(changed) < len(before) // 4
    assert all(b.attribute == a.attribute and b.voice == a.voice for b, a in zip(before, after))


def test_tint_raises_red_over_blue_with_the_attribute():
    frames = np.full((2, 4, 4, 3), 120, np.uint8)
    ratios = []
    for a in (-1.0, 0.0, 0.5, 1.0):
        out = control.tint_frames(frames.copy(), a, 0.25)
        ratios.append(out[..., 0].mean() / out[..., 2].mean())
        assert (out[..., 1] == 120).all()
    assert ratios[1] == 1.0 and ratios == sorted(ratios)
    assert math.isclose(ratios[-1], math.exp(0.5), rel_tol=0.02)


def test_pitch_shift_moves_f0_by_the_attribute_times_the_semitones():
    sr = 16000
    t = np.arange(2 * sr) / sr
    y = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)).astype(np.float32) * 0.1
    f0, _ = estimate_f0(y, sr)
    for a in (-0.5, 0.75):
        shifted = control.shift_voice(y, sr, a, 4.0)
        assert len(shifted) == len(y)
        assert math.isclose(np.sqrt(np.mean(shifted ** 2)), np.sqrt(np.mean(y ** 2)), rel_tol=0.02)
        got, _ = estimate_f0(shifted, sr)
        assert math.isclose(12 * math.log2(got / f0), 4.0 * a, abs_tol=0.3)


def test_the_demo_is_planned_and_recorded_as_before(demo_corpus):
    """The control's key in the schema changes nothing of the demo corpus: same params in
    corpus.json (its up-to-date check), same plan."""
    info = read_corpus(demo_corpus)
    catalog = load_catalog()
    assert json.loads(json.dumps(build._params(catalog, DEMO))) == info["params"]
    assert "control" not in info["params"]
    dropped = [re.match(r"dropping (face|voice) source (\S+):", line) for line in info["skipped"]]
    rejected = {role: {m.group(2): "dropped" for m in dropped if m and m.group(1) == role} for role in ("face", "voice")}
    plan = plan_identities(catalog, available_clients(), seed=int(DEMO["seed"]),
                           cached_packages=cached_packages(catalog, DEMO_CACHE),
                           rejected_faces=rejected["face"], rejected_voices=rejected["voice"])
    assert [(i.id, i.face, i.voice, i.split) for i in plan.identities] == \
        [(r["id"], r["face"], r["voice"], r["split"]) for r in info["identities"]]


@pytest.fixture(scope="module")
def control_corpus() -> Path:
    """The reduced control that `benchmarks/bench_control.py --smoke` runs (config/control.yaml,
    its SMOKE identities), built once into .cache/facevoice/control-smoke and reused while up to date."""
    settings = build.demo_settings(REPO / "config" / "control.yaml")
    settings["control"]["identities"] = SMOKE_IDENTITIES
    return build.build_demo({**settings, "out": REPO / ".cache" / "facevoice" / "control-smoke"}, progress=False)


def test_control_corpus_records_and_reproduces_its_identities(control_corpus, tmp_path):
    info = read_corpus(control_corpus)
    assert info["params"]["control"]["enabled"] and info["counts"]["identities"] == SMOKE_IDENTITIES
    assert info["params"]["render"]["pitch_semitones"] == CONTROL["pitch_semitones"]
    first = info["identities"][0]
    assert -1 <= first["attribute"] <= 1 and first["split"] == 4
    got = build.reproduce_clips(control_corpus, DEMO_CACHE, tmp_path, [first["id"]])
    want = {c["path"]: c["sha256"] for c in info["clips"] if c["identity"] == first["id"]}
    assert got == want and len(got) == CONTROL["clips_per_identity"]
