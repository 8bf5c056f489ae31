"""``facevoice evaluate`` on small embeddings files: JSON shape and independent checks."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from facevoice.common.config import defaults, section
from facevoice.common.io import read_parquet
from facevoice.evaluation import evaluate as E
from facevoice.evaluation import metrics as M
from facevoice.evaluation import protocol
from facevoice.evaluation import results as R
from facevoice.evaluation import trials as T
from facevoice.testing import synthetic_embeddings, synthetic_manifest

DCF = defaults("evaluation.dcf")  # minDCF's settings (config evaluation.dcf)

SIZES = section("evaluation", {"verification": {"n_trials": 200}, "matching": {"n_trials": 60}})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """8 test identities, no age; trial lists on disk; a hand-written embeddings file."""
    d = tmp_path_factory.mktemp("eval")
    man = synthetic_manifest({"train": 2, "test": 8}, videos=1, clips=2, frames=2, seed=2)
    protocol.write_trials(T.generate(man, "test", 3, SIZES), d / "trials")
    test = man[man["split"] == "test"].reset_index(drop=True)
    idents = sorted(test["identity"].unique())
    # hand-written: each identity owns one axis; items differ slightly along a ninth axis
    rows = []
    for k, r in test.iterrows():
        v = [0.0] * 9
        v[idents.index(r["identity"])] = 1.0
        v[8] = 0.01 * (k % 5)
        rows.append((r["item"], r["identity"], r["modality"], v))
    table = pa.table({"id": [r[0] for r in rows], "identity": [r[1] for r in rows],
                      "modality": [r[2] for r in rows],
                      "embedding": pa.array([r[3] for r in rows], pa.list_(pa.float64()))})
    pq.write_table(table, d / "perfect.parquet")
    return d, man


def test_json_shape_and_perfect_scores(setup, tmp_path, capsys):
    d, _ = setup
    out = tmp_path / "perfect.json"
    # --no-progress: the switch's one name across commands (train, generate, the batch stages)
    assert E.main(["--embeddings", str(d / "perfect.parquet"), "--trials", str(d / "trials"),
                   "--out", str(out), "--roc-out", str(tmp_path / "roc.parquet"),
                   "--bootstrap", "50", "--no-progress"]) == 0
    assert "[evaluate]" not in capsys.readouterr().err
    res = json.loads(out.read_text())
    assert set(res) == {"verification", "matching", "retrieval", "meta"}
    assert res["meta"]["dcf"] == {"p_target": 0.05, "c_miss": 1.0, "c_fa": 1.0}  # VoxSRC's, the schema's default
    v = res["verification"]
    assert set(v) == {"U", "G", "N", "A", "GNA"}
    for s in ("U", "G", "N"):
        e = v[s]
        assert {"auc", "eer", "eer_threshold", "n_trials", "ci95", "reason"} <= set(e)
        assert e["auc"] == 1.0 and e["eer"] == 0.0 and e["min_dcf"] == 0.0 and e["min_cllr"] == 0.0 and e["reason"] is None
        assert e["n_trials"] > 0 and set(e["ci95"]) == {"auc", "eer", "min_dcf", "min_cllr"}
        assert e["ci95"]["auc"] == pytest.approx([1.0, 1.0])
    for s in ("A", "GNA"):  # no age on this manifest
        assert all(v[s][k] is None for k in ("auc", "eer", "min_dcf", "min_cllr")) and v[s]["n_trials"] == 0
        assert "age" in v[s]["reason"]
    m = res["matching"]
    assert set(m) == {"F-V", "V-F"}
    for dname in ("F-V", "V-F"):
        assert set(m[dname]) == {"U", "G", "N", "GN"}
        u = m[dname]["U"]
        assert {str(n) for n in range(2, 11)} <= set(u)
        assert all(u[str(n)] == 1.0 for n in range(2, 9))
        assert u["9"] is None and u["10"] is None and "9" in u["reason"]
        assert set(u["ci95"]) == {str(n) for n in range(2, 11)}
        for s in ("G", "N", "GN"):
            assert set(k for k in m[dname][s] if k.isdigit()) == {"2"}
        r = res["retrieval"][dname]
        assert {"map", "chance"} <= set(r)
        assert r["map"] == 1.0 and 0 < r["chance"] < 1
    # availability is explicit, and the document is what facevoice.evaluation.results reads back
    assert [v[s]["available"] for s in ("U", "G", "N", "A", "GNA")] == [True, True, True, False, False]
    assert m["F-V"]["U"]["available"] == {str(n): n <= 8 for n in range(2, 11)}
    assert res["retrieval"]["V-F"]["available"] is True and res["retrieval"]["V-F"]["reason"] is None
    assert res["meta"]["format"] == R.RESULTS_FORMAT
    assert res["meta"]["trials"]["verification"]["strata"] == ["A", "G", "GNA", "N", "U"]
    back = R.load(out)
    assert back.name == "perfect" and back.verification_at("U").auc == 1.0 and back.matching_at("V-F", "U").accuracy[9] is None
    assert json.loads(json.dumps(back.to_json())) == res
    meta = res["meta"]
    assert meta["method"] == "perfect" and meta["scorer"] == "cosine"
    assert meta["bootstrap"]["n"] == 50 and meta["trials"]["verification"]["seed"] == 3
    roc, rmeta = read_parquet(tmp_path / "roc.parquet")
    roc = roc.to_pandas()
    assert set(roc["stratum"]) == {"U", "G", "N"} and rmeta["method"] == "perfect"
    assert ((roc["fpr"] >= 0) & (roc["fpr"] <= 1)).all()


@pytest.fixture(scope="module")
def noisy(setup):
    d, man = setup
    df = synthetic_embeddings(man, "test", dim=6, signal=0.6, seed=9)
    emb = E.embeddings_from_table(df)
    return emb, protocol.read_trials(d / "trials")


def test_against_brute_force(noisy):
    emb, lists = noisy
    res, roc = E.evaluate(emb, lists, n_boot=0, block_size=3, dcf=DCF)
    face = {k: emb.face[i] / np.linalg.norm(emb.face[i]) for i, k in enumerate(emb.face_ids)}
    voice = {k: emb.voice[i] / np.linalg.norm(emb.voice[i]) for i, k in enumerate(emb.voice_ids)}
    cos = lambda f, v: float(face[f] @ voice[v])  # noqa: E731
    v = lists["verification"][0]
    u = v[v["stratum"] == "U"]
    s = [cos(f, vv) for f, vv in zip(u["face"], u["voice"])]
    assert res["verification"]["U"]["auc"] == pytest.approx(roc_auc_score(u["label"], s))
    m = lists["matching"][0]
    for direction in ("F-V", "V-F"):
        sub = m[(m["direction"] == direction) & (m["stratum"] == "U") & (m["n_candidates"] == 4)]
        ok = 0
        for _, r in sub.iterrows():
            sc = [cos(r["probe"], c) if direction == "F-V" else cos(c, r["probe"]) for c in r["candidates"]]
            ok += all(sc[r["target"]] > x for j, x in enumerate(sc) if j != r["target"])
        assert res["matching"][direction]["U"]["4"] == pytest.approx(ok / len(sub))
    ret = lists["retrieval"][0]
    faces, voices = ret[ret["modality"] == "face"], ret[ret["modality"] == "voice"]
    aps = []
    for f, fid in zip(faces["item"], faces["identity"]):
        sc = [cos(f, x) for x in voices["item"]]
        aps.append(average_precision_score(voices["identity"] == fid, sc))
    assert res["retrieval"]["F-V"]["map"] == pytest.approx(np.mean(aps))
    assert res["retrieval"]["F-V"]["ci95"] is None


def test_custom_scorer_and_bootstrap(noisy):
    emb, lists = noisy
    base, _ = E.evaluate(emb, lists, n_boot=200, boot_seed=1, dcf=DCF)
    again, _ = E.evaluate(emb, lists, n_boot=200, boot_seed=1, dcf=DCF)
    assert base == again
    ci = base["verification"]["U"]["ci95"]["auc"]
    assert ci[0] < base["verification"]["U"]["auc"] < ci[1]
    neg = lambda f, v: -np.sum(f * v, axis=1)  # noqa: E731  (raw, unnormalised dot product)
    res, _ = E.evaluate(emb, lists, scorer=neg, n_boot=0, dcf=DCF)
    dot = E.evaluate(emb, lists, scorer=lambda f, v: np.sum(f * v, axis=1), n_boot=0, dcf=DCF)[0]
    assert res["verification"]["U"]["auc"] == pytest.approx(1 - dot["verification"]["U"]["auc"])
    # the broadcast matrix of a pairwise scorer agrees with its pairs
    sc = E.as_scorer(neg)
    F, V = emb.face[:5], emb.voice[:4]
    assert np.allclose(sc.matrix(F, V), -(F @ V.T))


def test_verification_intervals_resample_faces_and_voices(noisy):
    """Each verification trial weighs (its face identity's draws) x (its voice identity's draws)."""
    emb, lists = noisy
    res, _ = E.evaluate(emb, lists, n_boot=100, boot_seed=5, dcf=DCF)
    v = lists["verification"][0]
    u = v[v["stratum"] == "U"]
    code = {k: i for i, k in enumerate(E.bootstrap_identities(lists))}
    f = emb.rows("face", u["face"])
    vv = emb.rows("voice", u["voice"])
    scores = E.CosineScorer().pairs(E.prepare(E.CosineScorer(), "face", emb.face)[f],
                                    E.prepare(E.CosineScorer(), "voice", emb.voice)[vv])
    owners = tuple(np.array([code[i] for i in u[c]]) for c in ("face_identity", "voice_identity"))
    reps = M.bootstrap_verification(u["label"].to_numpy(), scores, owners,
                                    M.crossed_bootstrap_weights(len(code), 100, 5), dcf=DCF)
    for k in ("auc", "eer", "min_dcf", "min_cllr"):
        assert res["verification"]["U"]["ci95"][k] == pytest.approx(M.percentile_ci(reps[k]), abs=1e-12)
    assert res["verification"]["U"]["min_cllr"] == pytest.approx(M.min_cllr(u["label"].to_numpy(), scores))


def test_missing_and_mismatched_embeddings(setup, noisy):
    d, man = setup
    emb, lists = noisy
    df = synthetic_embeddings(man, "test", dim=4, seed=1)
    with pytest.raises(KeyError, match="no embedding"):
        E.evaluate(E.embeddings_from_table(df.iloc[1:]), lists, n_boot=0, dcf=DCF)
    wrong = df.copy()
    wrong.loc[0, "identity"] = "id19999"
    with pytest.raises(ValueError, match="identity"):
        E.evaluate(E.embeddings_from_table(wrong), lists, n_boot=0, dcf=DCF)


def test_the_dcf_settings_come_whole_from_the_caller(noisy):
    """minDCF's settings are the evaluation.dcf section, complete: a key left out is named, never filled in."""
    from facevoice.common.config import ConfigError

    emb, lists = noisy
    with pytest.raises(ConfigError, match="evaluation.dcf.c_fa"):
        E.evaluate(emb, lists, n_boot=0, dcf={"p_target": 0.01, "c_miss": 1})
    with pytest.raises(TypeError, match="dcf"):
        E.evaluate(emb, lists, n_boot=0)


def test_write_and_load_embeddings_roundtrip(tmp_path):
    ids = ["a/v/1/face/0000", "a/v/1/voice"]
    E.write_embeddings(tmp_path / "e.parquet", ids, ["a", "a"], ["face", "voice"],
                       np.array([[1.0, 2.0], [3.0, 4.0]]))
    emb = E.load_embeddings(tmp_path / "e.parquet")
    assert emb.face.tolist() == [[1.0, 2.0]] and emb.voice.tolist() == [[3.0, 4.0]]
    assert list(emb.face_ids) == ids[:1]


def test_a_method_is_scored_with_its_own_score(setup, tmp_path):
    """Faces anti-aligned with their voices: |cos| (avgatn's score) ranks them first, cosine last."""
    from facevoice.common.io import write_parquet
    from facevoice.training.train import verification_auc

    d, _ = setup
    t = pq.read_table(d / "perfect.parquet").to_pandas()
    sign = np.where(t["modality"] == "voice", -1.0, 1.0)
    flipped = t.assign(embedding=[list(np.asarray(e) * s) for e, s in zip(t["embedding"], sign)])
    table = pa.Table.from_pandas(flipped, preserve_index=False)
    aucs = {}
    for score in ("cosine", "abs_cosine"):
        path = tmp_path / f"{score}.parquet"
        write_parquet(table, path, {"score": score, "score_threshold": 0.5})
        res = E.run(str(path), str(d / "trials"), str(tmp_path / f"{score}.json"), n_boot=0, verbose=False, dcf=DCF)
        aucs[score] = res["verification"]["U"]["auc"]
        assert res["meta"]["scorer"] == score
        # the decision rule applies to the same score: |cos| > 0.5 is right on every trial
        if score == "abs_cosine":
            assert res["verification"]["U"]["accuracy_at_threshold"]["accuracy"] == 1.0
    assert aucs == {"cosine": 0.0, "abs_cosine": 1.0}
    # model selection scores the same way
    emb = np.stack(flipped["embedding"].to_numpy())
    items = flipped.rename(columns={"id": "item"})
    assert verification_auc(emb, items, "abs_cosine") == 1.0 and verification_auc(emb, items) == 0.0
    with pytest.raises(ValueError, match="names the score 'manhattan'"):
        write_parquet(table, tmp_path / "bad.parquet", {"score": "manhattan"})
        E.run(str(tmp_path / "bad.parquet"), str(d / "trials"), str(tmp_path / "bad.json"), n_boot=0, verbose=False, dcf=DCF)


def test_a_document_that_breaks_the_results_format_is_never_written(setup, tmp_path, monkeypatch):
    d, _ = setup
    real = E.evaluate

    def renamed(*args, **kwargs):
        res, roc = real(*args, **kwargs)
        res["retrieval"]["F-V"]["mean_ap"] = res["retrieval"]["F-V"].pop("map")
        return res, roc

    monkeypatch.setattr(E, "evaluate", renamed)
    out = tmp_path / "broken.json"
    with pytest.raises(R.ResultsError, match=r"missing key 'retrieval\.F-V\.map'") as err:
        E.run(str(d / "perfect.parquet"), str(d / "trials"), str(out), n_boot=0, verbose=False, dcf=DCF)
    assert str(out) in str(err.value) and not out.exists()


def test_results_entries_keep_availability_consistent():
    """An unavailable entry has a reason and no figure; an available one figures and no reason."""
    r = R._Reader("test.json")
    ok = R.VerificationResult(True, auc=0.7, eer=0.3, min_dcf=0.9, min_cllr=0.8, n_trials=10, n_positive=5,
                              n_negative=5, n_identities=4).to_json()
    assert R.VerificationResult.from_json(r, ok, "verification.U").auc == 0.7
    for change, message in (({"reason": "why"}, "reason: should be null"),
                            ({"available": False, "reason": "why"}, "auc: should be null"),
                            ({"eer": None}, "eer: is null but the entry is available"),
                            ({"min_cllr": None}, "min_cllr: is null but the entry is available"),
                            ({"n_trials": 2.5}, "n_trials: should be a count"),
                            ({"ci95": {"auc": [0.1, 0.2]}}, "missing key 'verification.U.ci95.eer'")):
        with pytest.raises(R.ResultsError, match=re.escape(message)):
            R.VerificationResult.from_json(r, {**ok, **change}, "verification.U")
    gone = R.VerificationResult.unavailable("no age metadata").to_json()
    assert R.VerificationResult.from_json(r, gone, "verification.A").available is False
    with pytest.raises(R.ResultsError, match="should say why"):
        R.VerificationResult.from_json(r, {**gone, "reason": None}, "verification.A")
    m = R.MatchingResult({2: 0.6, 3: None}, {2: True, 3: False}, {2: 40, 3: 0}, {2: (0.5, 0.7), 3: None},
                         "1:3: fewer than 3 identities").to_json()
    assert R.MatchingResult.from_json(r, m, "matching.F-V.U").ci95 == {2: (0.5, 0.7), 3: None}
    with pytest.raises(R.ResultsError, match="reason: should be null exactly when every N is available"):
        R.MatchingResult.from_json(r, {**m, "reason": None}, "matching.F-V.U")
    with pytest.raises(R.ResultsError, match=re.escape("matching.F-V.U.n_trials.3: should be 0")):
        R.MatchingResult.from_json(r, {**m, "n_trials": {"2": 40, "3": 7}}, "matching.F-V.U")
