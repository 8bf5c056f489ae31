"""The baselines (fop, dimnet, pins, chance): gradients, losses by hand, learning, the chance floor,
and the figures the seeds report for them."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from helpers import grads_of, n_bins_of
from helpers import random_batch as batch

from facevoice.common.config import defaults
from facevoice.evaluation import compare as C
from facevoice.training import embed as embed_mod
from facevoice.training import train as tr
from facevoice.training.losses import orthogonal_projection_loss
from facevoice.training.methods import get_method, resolve, run_names
from facevoice.training.methods.pins import contrastive_loss, curriculum_tau, mine_negatives

LEARNERS = ["fop", "dimnet", "pins"]
RUN = tr.run_settings({"seed": 0, "threads": 1}, progress=False)
SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"  # the seeds' lines these tests check


def test_the_baselines_are_listed():
    names = run_names()
    assert {"fop", "fop-ce_only", "fop-no_fusion", "dimnet", "dimnet-separate_classifiers", "pins",
            "pins-no_hard_mining", "chance"} <= set(names)
    listing = tr._list()
    assert "pins-no_hard_mining" in listing and "\nchance  (profiles: paper, demo, debug)" in listing


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("profile", ["debug", "demo"])
@pytest.mark.parametrize("name", ["fop", "fop-no_fusion", "fop-ce_only", "dimnet", "dimnet-separate_classifiers",
                                  "pins", "pins-no_hard_mining"])
def test_gradients_reach_every_trainable_parameter(name, profile):
    hp = resolve(name, profile)
    torch.manual_seed(0)
    model = get_method(name).build(hp, 4, n_bins_of(hp))
    assert len(model.stages()) == 1
    model.train()
    f, v, y = batch(n_bins_of(hp), size=hp["face_size"], frames=int(hp["crop_frames"][0]))
    loss, terms = model.loss(f, v, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(torch.as_tensor(t)).all() for t in terms.values())
    grads = grads_of(model, loss)
    params = dict(model.named_parameters())
    assert grads and set(grads) == set(params), "every parameter of a one-stage baseline is trainable"
    for n, g in grads.items():
        assert g is not None, f"{name}: no gradient reaches {n}"
        assert torch.isfinite(g).all() and g.abs().max() > 0, f"{name}: zero gradient at {n}"
    # embeddings: one unit-norm space for both modalities
    model.eval()
    with torch.no_grad():
        ef, ev = model.embed_face(f), model.embed_voice(v[:1, :, : int(hp["eval_max_frames"])])
    assert ef.shape[1] == ev.shape[1] and torch.allclose(ef.norm(dim=1), torch.ones(len(ef)), atol=1e-5)


@pytest.mark.parametrize("name", LEARNERS)
def test_paper_networks_get_gradients_everywhere(name):
    hp = resolve(name, "paper")
    hp["face_size"] = 96  # smaller than the paper's inputs, same networks
    hp["crop_frames"] = [48, 48]
    torch.manual_seed(0)
    model = get_method(name).build(hp, 3, n_bins_of(hp))
    model.train()
    f, v, y = batch(n_bins_of(hp), P=3, K=2, size=96, frames=48)
    grads = grads_of(model, model.loss(f, v, y)[0])
    missing = [n for n, g in grads.items() if g is None or g.abs().max() == 0]
    assert not missing, f"{name}: no gradient at {missing[:5]}"


# --------------------------------------------------------------------------- fop


def test_fop_is_ssnet_fops_fusion_and_loss_on_two_encoders():
    from facevoice.training.methods.ssnet_fop import SSNetFOP

    cls = type(get_method("fop").build(resolve("fop", "debug"), 4, 64))
    assert cls.loss_from_features is SSNetFOP.loss_from_features and cls.project is SSNetFOP.project
    hp = resolve("fop", "debug")
    torch.manual_seed(1)
    m = get_method("fop").build(hp, 4, 64)
    assert m.face_net is not m.voice_net
    m.eval()  # batch norms fixed, so the two computations see the same features
    f, v, y = batch(64)
    loss, terms = m.loss(f, v, y)
    # by hand from the parts: u, v, the gate on [e, b], fusion, CE + L_OC
    b = m.face_net((f * 255 - 127.5) / 128)
    e = m.voice_net(v)
    u = F.normalize(torch.tanh(m.proj_face(b)), dim=1)
    w = F.normalize(torch.tanh(m.proj_voice(e)), dim=1)
    k = torch.sigmoid(m.gate(torch.cat([e, b], 1)))
    fused = k * u + (1 - k) * w
    ce = F.cross_entropy(m.fop_classifier(fused), y)
    opl, _ = orthogonal_projection_loss(fused, y, 1.0)
    assert loss.item() == pytest.approx((ce + opl).item(), rel=1e-5)
    assert torch.allclose(m.embed_face(f), u, atol=1e-6) and torch.allclose(m.embed_voice(v), w, atol=1e-6)
    # ce_only: no L_OC; no_fusion: no gate at all
    assert resolve("fop-ce_only", "debug")["opl_weight"] == 0
    assert "gate" in terms
    nf = get_method("fop").build(resolve("fop-no_fusion", "debug"), 4, 64)
    assert nf.gate is None and "gate" not in nf.loss(f, v, y)[1]


# --------------------------------------------------------------------------- two streams


@pytest.mark.parametrize("method", ["dje", "biq_mwrn", "dimnet", "pins", "fop"])
def test_two_stream_methods_share_one_base(method):
    """The encoders, face weights, backbones and (fop aside) embeddings are the base's, not copies;
    the encoders are built first, so a method's heads are drawn after them."""
    from facevoice.training.methods import TwoStreamModel

    hp = resolve(method, "debug")
    torch.manual_seed(0)
    m = get_method(method).build(hp, 4, 64)
    assert isinstance(m, TwoStreamModel)
    shared = ["weights_source", "backbone_face", "backbone_voice", "encode_face", "encode_voice"]
    shared += [] if method == "fop" else ["embed_face", "embed_voice"]  # fop scores its projections
    for attr in shared:
        assert getattr(type(m), attr) is getattr(TwoStreamModel, attr), f"{method} has its own {attr}"
    assert [n for n, _ in m.named_children()][:2] == ["face_net", "voice_net"]
    m.eval()
    f, v, _ = batch(64)
    with torch.no_grad():
        assert torch.equal(m.backbone_face(f), m.face_net((f * 255 - 127.5) / 128))
        assert torch.allclose(m.embed_voice(v).norm(dim=1), torch.ones(len(v)), atol=1e-6)
    if method in ("biq_mwrn", "dimnet", "pins"):  # one space for both streams: equal widths
        with pytest.raises(ValueError, match=rf"{method}: .* needs face_net.dim == voice_net.dim"):
            get_method(method).build({**hp, "voice_net": {**hp["voice_net"], "dim": 8}}, 4, 64)


# --------------------------------------------------------------------------- dimnet


def test_dimnet_classifies_both_modalities_with_one_classifier():
    hp = resolve("dimnet", "debug")
    torch.manual_seed(2)
    m = get_method("dimnet").build(hp, 4, 64)
    m.eval()
    f, v, y = batch(64)
    loss, terms = m.loss(f, v, y)
    ef = m.face_net((f * 255 - 127.5) / 128)
    ev = m.voice_net(v)
    by_hand = F.cross_entropy(m.classifier(ef), y) + F.cross_entropy(m.classifier(ev), y)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert m.voice_classifier is None  # shared: the voices are classified by the faces' classifier
    assert torch.allclose(m.embed_face(f), F.normalize(ef, dim=1), atol=1e-6)  # the vector before the classifier
    sep = get_method("dimnet").build(resolve("dimnet-separate_classifiers", "debug"), 4, 64)
    assert sep.voice_classifier is not None
    with pytest.raises(ValueError, match="gender"):
        get_method("dimnet").build({**hp, "covariates": {"identity": 1.0, "gender": 1.0}}, 4, 64)


# --------------------------------------------------------------------------- pins


def test_pins_contrastive_loss_by_hand():
    # three identities; unit vectors in 2-D
    face = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    voice = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, -1.0]])
    labels = torch.tensor([0, 1, 2])
    # positives d(f_i, v_i): 0, sqrt(0.4), sqrt(2) -> mean of squares (0 + 0.4 + 2) / 3 = 0.8
    # hardest negatives (tau = 1), face anchors: f0 -> v1 sqrt(0.8); f1 -> v0 sqrt(2); f2 -> v1 sqrt(3.2)
    #                                 voice anchors: v0 -> f1 sqrt(2); v1 -> f0 sqrt(0.8); v2 -> f0 sqrt(2)
    a, b, c = math.sqrt(0.8), math.sqrt(2.0), math.sqrt(3.2)
    m = 1.5
    neg = (2 * (m - a) ** 2 + 3 * (m - b) ** 2 + 0.0 * max(0.0, m - c) ** 2) / 6
    loss, terms = contrastive_loss(face, voice, labels, margin=m, tau=1.0)
    assert terms["pos"].item() == pytest.approx(0.8, abs=1e-6)
    assert terms["neg"].item() == pytest.approx(neg, abs=1e-6)
    assert loss.item() == pytest.approx(0.5 * 0.8 + 0.5 * neg, abs=1e-6)
    assert terms["neg_dist"].item() == pytest.approx((2 * a + 3 * b + c) / 6, abs=1e-6)
    # margin 1: only the two pairs at sqrt(0.8) are inside it
    loss1, _ = contrastive_loss(face, voice, labels, margin=1.0, tau=1.0)
    assert loss1.item() == pytest.approx(0.4 + 0.5 * 2 * (1 - a) ** 2 / 6, abs=1e-6)
    # inputs are normalised inside: scaling them changes nothing
    assert contrastive_loss(3 * face, 0.5 * voice, labels, m, 1.0)[0].item() == pytest.approx(loss.item(), abs=1e-6)
    # gradient: the positive term pulls f1 towards v1
    f = face.clone().requires_grad_(True)
    contrastive_loss(f, voice, labels, margin=0.0, tau=1.0)[0].backward()
    step = -f.grad[1]
    assert torch.dot(step, voice[1] - face[1]) > 0


def test_pins_negatives_follow_the_curriculum():
    # one anchor, four candidates at distances 0.1, 0.5, 0.3, 0.9 and one excluded (same identity)
    dist = torch.tensor([[0.1, 0.5, 0.3, 0.9, 0.0]])
    valid = torch.tensor([[True, True, True, True, False]])
    g = torch.Generator().manual_seed(0)

    def draws(tau, n=400):
        return {int(mine_negatives(dist, valid, tau, g)[0]) for _ in range(n)}

    assert draws(1.0) == {0}                 # the hardest
    assert draws(0.5) == {0, 2}              # ceil(0.5 * 4) = 2 hardest
    assert draws(0.3) == {0, 2, 1}           # ceil(0.7 * 4) = 3 hardest
    assert draws(0.0) == {0, 1, 2, 3}        # any negative; never the excluded column
    # negatives in a P x K batch never share the anchor's identity
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    other = labels[:, None] != labels[None, :]
    for tau in (0.0, 0.5, 1.0):
        j, ok = mine_negatives(torch.rand(6, 6, generator=g), other, tau, g)
        assert ok.all() and (labels[j] != labels).all()
    # the schedule: 0.3, + 0.1 every 500 steps, at most 0.8
    assert [curriculum_tau(s, 0.3, 0.1, 500, 0.8) for s in (0, 499, 500, 1500, 10 ** 6)] == \
        pytest.approx([0.3, 0.3, 0.4, 0.6, 0.8])


def test_pins_curriculum_clock_is_a_buffer_that_counts_training_steps():
    hp = resolve("pins", "debug")
    m = get_method("pins").build(hp, 4, n_bins_of(hp))
    f, v, y = batch(n_bins_of(hp))
    m.train()
    for _ in range(hp["tau_every"]):
        _, terms = m.loss(f, v, y)
    assert terms["tau"].item() == pytest.approx(hp["tau_start"])
    assert int(m.steps) == hp["tau_every"] and "steps" in m.state_dict()
    assert m.tau() == pytest.approx(hp["tau_start"] + hp["tau_step"])
    m.eval()
    m.loss(f, v, y)
    assert int(m.steps) == hp["tau_every"]  # evaluation does not advance the curriculum
    assert resolve("pins-no_hard_mining", "debug")["tau_max"] == 0.0


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("method", LEARNERS)
def test_each_baseline_learns_a_shared_identity_signal(method, corpus, tmp_path):
    manifest, root = corpus
    out = tmp_path / method
    summary = tr.train(method, manifest, root, out, resolve(method, "debug"), RUN)
    log = pd.read_csv(out / "log.csv")
    assert summary["best"]["val_auc"] >= 0.75, log[["epoch", "stage", "loss", "val_auc"]].to_string()
    term = {"fop": ["ce", "opl", "gate"], "dimnet": ["id_face", "id_voice"], "pins": ["pos", "neg", "tau"]}
    assert set(term[method]) <= set(log.columns)
    assert len(log) == sum(s["epochs"] for s in resolve(method, "debug")["stages"].values())
    info = json.loads((out / "run.json").read_text())
    assert info["method"] == method and info["face_weights"] == "scratch"
    emb = tmp_path / "test.parquet"
    meta = embed_mod.embed(str(out / "model.pt"), str(manifest), str(root), "test", str(emb), threads=2)
    t = pq.read_table(emb).to_pandas()
    assert meta["method"] == method and len(t) == (pd.read_parquet(manifest)["split"] == "test").sum()
    vec = np.stack(t["embedding"])
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-4)
    # the unseen test identities: well above chance too
    auc = tr.verification_auc(vec, t.rename(columns={"id": "item"}))
    assert auc >= 0.75, auc


# --------------------------------------------------------------------------- chance


def test_chance_embeddings_are_a_function_of_the_input_bytes_only():
    hp = resolve("chance", "debug")
    m = get_method("chance").build(hp, 4, 64)
    assert not list(m.parameters()) and m.stage_optimizers(hp["stages"]["main"]["optimizer"]) == {}
    f, v, _ = batch(64, P=3, K=2)
    ef = m.embed_face(f)
    assert ef.shape == (6, 16) and torch.allclose(ef.norm(dim=1), torch.ones(6), atol=1e-6)
    assert torch.equal(ef, m.embed_face(f.clone()))             # same input, same vector
    assert torch.equal(ef[3:4], m.embed_face(f[3:4]))           # whatever the batch
    assert torch.equal(m.embed_face(f.flip(0)), ef.flip(0))
    nudged = f.clone()
    nudged[0, 0, 0, 0] += 1e-3
    assert (m.embed_face(nudged)[0] @ ef[0]).abs() < 0.99        # any change: an unrelated vector
    ev = m.embed_voice(v)
    assert torch.equal(ev, m.embed_voice(v.clone())) and ev.shape == (6, 16)
    assert torch.equal(get_method("chance").build(resolve("chance", "debug"), 9, 64).embed_voice(v), ev)
    with pytest.raises(RuntimeError, match="nothing to train"):
        m.loss(f, v, torch.zeros(6, dtype=torch.long))


def test_chance_scores_stay_at_chance_where_the_inputs_carry_identity():
    from sklearn.metrics import roc_auc_score

    # 200 identities x 4 items; each face and voice is its identity's pattern plus a little
    # noise, so the raw inputs tell identities apart almost perfectly; the chance scorer must not
    g = torch.Generator().manual_seed(3)
    ids, per = 200, 4
    fp, vp = torch.rand(ids, 3, 8, 8, generator=g), torch.randn(ids, 64, 10, generator=g)
    y = torch.arange(ids).repeat_interleave(per)
    faces = (fp[y] + 0.01 * torch.randn(len(y), 3, 8, 8, generator=g)).clamp(0, 1)
    voices = vp[y] + 0.01 * torch.randn(len(y), 64, 10, generator=g)
    m = get_method("chance").build(resolve("chance", "paper"), ids, 64)
    ef, ev = m.embed_face(faces), m.embed_voice(voices)
    perm = torch.randperm(len(y), generator=g)
    other = y != y[perm]
    mate = torch.arange(len(y)) ^ 1  # another item of the same identity

    def auc(pos, neg):
        return roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos.numpy(), neg.numpy()])

    # face i with voice i (same identity) against face i with another identity's voice
    cross = auc((ef * ev).sum(1), (ef * ev[perm]).sum(1)[other])
    assert abs(cross - 0.5) < 0.05, cross  # sd about 0.015 with 800 + ~800 trials
    # face against face of the same identity: the raw pixels separate them, the chance scorer does not
    rf = faces.flatten(1) - faces.flatten(1).mean(0)
    assert auc(F.cosine_similarity(rf, rf[mate]), F.cosine_similarity(rf, rf[perm])[other]) > 0.95
    same = auc((ef * ef[mate]).sum(1), (ef * ef[perm]).sum(1)[other])
    assert abs(same - 0.5) < 0.05, same


def test_chance_trains_without_updates_and_embeds(corpus, tmp_path):
    manifest, root = corpus
    out = tmp_path / "chance"
    summary = tr.train("chance", manifest, root, out, resolve("chance", "debug"), RUN)
    for name in ("model.pt", "log.csv", "curve.png", "run.json"):
        assert (out / name).stat().st_size > 0, name
    log = pd.read_csv(out / "log.csv")
    assert len(log) == 1 and log["steps"].iloc[0] == 0 and log["samples"].iloc[0] == 0
    assert abs(summary["best"]["val_auc"] - 0.5) < 0.15
    ckpt = torch.load(out / "model.pt", weights_only=False)
    assert ckpt["method"] == "chance" and ckpt["model"] == {}
    emb = tmp_path / "test.parquet"
    embed_mod.embed(str(out / "model.pt"), str(manifest), str(root), "test", str(emb), threads=2)
    t = pd.read_parquet(emb)
    vec = np.stack(t["embedding"])
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    auc = tr.verification_auc(vec, t.rename(columns={"id": "item"}))
    assert abs(auc - 0.5) < 0.15, auc
    again = tmp_path / "again.parquet"
    embed_mod.embed(str(out / "model.pt"), str(manifest), str(root), "test", str(again), threads=2)
    assert np.array_equal(np.stack(pd.read_parquet(again)["embedding"]), vec)  # deterministic


# --------------------------------------------------------------------------- reported figures


def test_comparison_tables_show_the_baselines_reported_figures(tmp_path):
    assert {p["key"] for p in C.load_reference()} == {"ssnet_fop", "dje", "biq_mwrn", "voice2face"}  # the seeds' own
    keys = [p["key"] for p in C.load_reference(baselines=True)]
    assert {"dimnet", "dimnet_ig", "pins", "svhf", "dimnet_s000", "pins_s000", "svhf_s000"} <= set(keys)
    C.compare([], tmp_path, defaults("evaluation.compare"))
    ver = (tmp_path / "verification.md").read_text()
    assert "| *DIMNet-I, Wen et al. 2019, in Wang et al. 2020 (Table 2)* | reported | 82.50 | 71.00 |" in ver
    assert "| *Learnable PINs, Nagrani et al. 2018, in Zhong et al. 2025 (Table 2)* | reported | 78.50 |" in ver
    assert "29.60" in ver
    rows = {r["method"]: r for r in C.build_rows([], C.load_reference(baselines=True), "matching_1vN",
                                                   defaults("evaluation.compare"))}
    assert rows["SVHF, Nagrani et al. 2018, in Zhong et al. 2025 (Table 4)"]["cells"]["V-F_N10"].value == 36
    assert rows["DIMNet, Wen et al. 2019, in Zhong et al. 2025 (Table 4)"]["cells"]["V-F_N4"].value == 65


# which line of a seed holds a baseline's row (seed 000's Table 4 has the methods as columns)
ROW = {"dimnet": r"^\| DIMNet-I \[", "dimnet_ig": r"^\| DIMNet-IG \[", "pins": r"^\| PINs \[",
       "svhf": r"^\| SVHF \[", "dimnet_s000": r"^(DIM Net|DIMNet) \^", "pins_s000": r"^Learnable Pins \^"}
COLUMN_000_T4 = {"svhf_s000": 0, "pins_s000": 1, "dimnet_s000": 3}


def _numbers(line):
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", line)]


def test_reported_baseline_figures_are_the_seeds():
    files = {p.name[:3]: p.read_text(encoding="utf-8") for p in SEEDS.glob("0*.txt")}
    for p in C.load_reference(baselines=True)[len(C.load_reference()):]:
        lines = files[p["seed"]].splitlines()
        for f in p["figures"]:
            if p["key"] in COLUMN_000_T4 and f["table"] == "Table 4":
                text = files["000"]
                block = text.split("Table 4 Results of cross-modal 1: N")[1].split("图 6")[0].splitlines()
                for n, value in f["n"].items():
                    line = next(ln for ln in block if re.match(rf"^{n}\t", ln))
                    assert _numbers(line)[1:][COLUMN_000_T4[p["key"]]] == float(value), (p["key"], n)
                continue
            values = {float(f[k]) for k in ("auc", "eer", "map") if f.get(k) is not None}
            values |= {float(v) for v in (f.get("n") or {}).values()}
            candidates = [ln for ln in lines if re.search(ROW[p["key"]], ln.strip())]
            assert any(values <= set(_numbers(ln)) for ln in candidates), (p["key"], f)
