"""avgatn (seed 001): its losses by hand, the update schedule, what each stage trains, learning, resume."""

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from helpers import random_batch

from facevoice.common.config import defaults
from facevoice.evaluation import evaluate as ev
from facevoice.evaluation import protocol
from facevoice.training import embed as embed_mod
from facevoice.training import train as tr
from facevoice.training.methods import MethodError, avgatn, resolve

DCF = defaults("evaluation.dcf")  # minDCF's settings (config evaluation.dcf)

RUN = tr.run_settings({"seed": 0, "threads": 1}, progress=False)
N_BINS = 64


def batch(**kw):
    return random_batch(N_BINS, **kw)


def model_at(stage_name, hp=None, n_classes=4):
    hp = hp or resolve("avgatn", "debug")
    torch.manual_seed(0)
    model = avgatn.build(hp, n_classes, N_BINS)
    model.set_stage([s.name for s in model.stages()].index(stage_name))
    model.train()
    return model


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


# --------------------------------------------------------------------------- losses by hand


def test_discriminator_and_generator_losses_by_hand():
    # logits 0 -> D = 0.5; logit ln 3 -> D = 0.75
    other_f = torch.tensor([0.0, math.log(3.0)])
    own_f = torch.tensor([math.log(3.0), 0.0])
    other_a = torch.tensor([0.0])
    own_a = torch.tensor([0.0])
    l_f, l_a = avgatn.discriminator_losses(other_f, own_f, other_a, own_a)
    # eq. 6: -mean[log D(own) + log(1 - D(other))] = -((ln .75 + ln .5) + (ln .5 + ln .25)) / 2
    assert l_f.item() == pytest.approx(-((math.log(0.75) + math.log(0.5)) + (math.log(0.5) + math.log(0.25))) / 2)
    assert l_a.item() == pytest.approx(-(math.log(0.5) + math.log(0.5)))
    g_f, g_a = avgatn.generator_losses(other_f, other_a)
    # eq. 8-9: mean[log(1 - D(other-modality pair))] = (ln .5 + ln .25) / 2 and ln .5
    assert g_f.item() == pytest.approx((math.log(0.5) + math.log(0.25)) / 2)
    assert g_a.item() == pytest.approx(math.log(0.5))


def test_the_losses_signs_at_a_perfect_and_a_fooled_discriminator():
    """A discriminator's loss is a cross-entropy: >= 0, its limit 0 when it tells every own
    pair (D -> 1) from every other-modality pair (D -> 0), large when it has them backwards.
    The generators' minimax loss is 0 against a perfect discriminator and falls as they fool it."""
    sure, n = 30.0, 4
    own, other = torch.full((n,), sure), torch.full((n,), -sure)
    perfect = avgatn.discriminator_losses(other, own, other, own)
    assert all(0.0 <= float(x) < 1e-6 for x in perfect)
    backwards = avgatn.discriminator_losses(own, other, own, other)
    assert all(float(x) == pytest.approx(2 * sure, rel=1e-3) for x in backwards)
    # any discriminator: never below 0 (the printed form of eq. 6-7 would be, without bound)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        logits = [torch.randn(n, generator=g) * 10 for _ in range(4)]
        assert all(float(x) >= 0 for x in avgatn.discriminator_losses(*logits))
    assert all(abs(float(x)) < 1e-6 for x in avgatn.generator_losses(other, other))
    assert all(float(x) == pytest.approx(-sure, rel=1e-3) for x in avgatn.generator_losses(own, own))


def test_triplet_loss_on_absolute_cosine_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0]])     # |cos| = 0.7071, 0
    n = torch.tensor([[-1.0, 0.0], [1.0, 1.0]])    # |cos| = 1 (a negative cosine counts as close), 0.7071
    loss = avgatn.abs_cos_triplet_loss(a, p, n, 0.2)
    r = 1 / math.sqrt(2)
    assert loss.item() == pytest.approx((max(1 - r + 0.2, 0) + max(r - 0 + 0.2, 0)) / 2)
    # well separated triplets cost nothing
    assert avgatn.abs_cos_triplet_loss(a, a, torch.tensor([[0.0, 1.0]] * 2), 0.2).item() == 0.0


def test_negatives_are_other_identities():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        neg = avgatn.random_negatives(labels, g)
        assert (labels[neg] != labels).all()
    with pytest.raises(ValueError):
        avgatn.random_negatives(torch.tensor([3, 3]))


# --------------------------------------------------------------------------- schedule and freezing


def test_five_generator_updates_per_discriminator_update():
    model = model_at("gan")
    opts = model.stage_optimizers(resolve("avgatn", "debug")["stages"]["gan"]["optimizer"])
    assert set(opts) == {"d", "g"}
    calls = []
    for name, o in opts.items():
        o.step = (lambda orig, n: (lambda *a, **k: (calls.append(n), orig(*a, **k))[1]))(o.step, name)
    import contextlib

    for b in range(3):
        f, v, y = batch(seed=b)
        terms = model.train_step(f, v, y, opts, contextlib.nullcontext())
        assert {"loss", "d", "g"} <= set(terms) and torch.isfinite(terms["loss"])
    assert calls == (["d"] + ["g"] * 5) * 3
    assert int(model.d_updates) == 3 and int(model.g_updates) == 15
    assert "d_updates" in model.state_dict()  # the counts travel with checkpoints


def test_each_stage_trains_its_parts_and_nothing_else():
    import contextlib

    hp = resolve("avgatn", "debug")
    f, v, y = batch()
    # stage 1: the face CNN and its classifier
    model = model_at("face_features", hp)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"face_net", "face_classifier"}
    loss, _ = model.loss(f, v, y)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.face_net.parameters())
    # stage 2: generators, common layer, discriminators; the face CNN stays as it is
    model = model_at("gan", hp)
    opts = model.stage_optimizers(hp["stages"]["gan"]["optimizer"])
    before = {m: snapshot(getattr(model, m)) for m in ("face_net", "gen_f", "gen_a", "common", "disc_f", "disc_a",
                                                     "matcher", "identity")}
    model.train_step(f, v, y, opts, contextlib.nullcontext())
    for m in ("gen_f", "gen_a", "common", "disc_f", "disc_a"):
        assert changed(before[m], getattr(model, m)), f"{m} did not train in the gan stage"
    for m in ("face_net", "matcher", "identity"):  # weights and batch-norm statistics unchanged
        assert not changed(before[m], getattr(model, m)), f"{m} changed in the gan stage"
    # stage 3: matching and identity networks; the GAN is frozen
    model = model_at("match", hp)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"matcher", "identity"}
    opt = model.stage_optimizers(hp["stages"]["match"]["optimizer"])["main"]
    before = {m: snapshot(getattr(model, m)) for m in ("face_net", "gen_f", "gen_a", "common", "matcher", "identity")}
    loss, terms = model.loss(f, v, y)
    assert {"triplet", "id", "id_acc"} <= set(terms)
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.matcher.parameters())
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in model.identity.parameters())
    opt.step()
    for m in ("matcher", "identity"):
        assert changed(before[m], getattr(model, m))
    for m in ("face_net", "gen_f", "gen_a", "common"):
        assert not changed(before[m], getattr(model, m)), f"{m} changed in the match stage"


@pytest.mark.parametrize("variant", ["no_common", "no_matching"])
def test_ablations(variant):
    hp = resolve(f"avgatn-{variant}", "debug")
    model = model_at("match", hp)
    f, v, y = batch()
    loss, terms = model.loss(f, v, y)
    loss.backward()
    assert torch.isfinite(loss)
    if variant == "no_common":
        assert model.common.fc_a is not model.common.fc_f
    else:
        assert model.common.fc_a is model.common.fc_f
    if variant == "no_matching":  # scores are the common features' cosine; no triplet term
        assert "triplet" not in terms and not any(p.requires_grad for p in model.matcher.parameters())
        model.eval()
        _, s = model.face_hs(model.face_features(f))
        assert torch.allclose(model.embed_face(f), torch.nn.functional.normalize(s, dim=1))
    else:
        assert "triplet" in terms
    assert model.identity[0][0].in_features == 2 * hp["common_dim"]  # [s_f, s_a], as the paper


def test_the_identity_input_ablations_are_gone():
    # they changed nothing the evaluation scores (test_every_ablation_changes_what_the_evaluation_scores)
    with pytest.raises(MethodError, match="no variant 'id_face'"):
        resolve("avgatn-id_face", "debug")


def test_paper_networks_get_gradients_in_every_stage():
    hp = resolve("avgatn", "paper")
    hp["face_size"] = 96
    f, _, y = batch(P=3, size=96, frames=49)
    v = torch.randn(6, 13, 49)  # MFCC, 13 coefficients
    model = avgatn.build(hp, 3, 13)
    for s, st in enumerate(model.stages()):
        model.set_stage(s)
        model.train()
        if st.name == "gan":
            import contextlib

            opts = model.stage_optimizers(hp["stages"]["gan"]["optimizer"])
            before = snapshot(model.gen_a)
            model.train_step(f, v, y, opts, contextlib.nullcontext())
            assert changed(before, model.gen_a)
            continue
        model.zero_grad(set_to_none=True)
        model.loss(f, v, y)[0].backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or
                                                                                    p.grad.abs().max() == 0)]
        assert not missing, f"stage {st.name}: no gradient at {missing[:5]}"


def test_the_face_generator_takes_the_face_features_as_channels_of_one_time_step():
    # the paper's face sample is features x frames (53 x 49), convolved along time as MFCC x
    # frames; with one frame the features are the channels of a one-step sequence (the version
    # before ran the convolutions along the feature vector as a 1-channel sequence)
    model = model_at("gan")
    model.eval()
    assert model.gen_f.conv[0].in_channels == model.face_net.dim
    seen = []
    hook = model.gen_f.conv.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].shape, out.shape)))
    h, s = model.face_hs(torch.randn(8, model.face_net.dim))
    hook.remove()
    (inp, out), = seen
    assert tuple(inp) == (8, model.face_net.dim, 1) and out[2] == 1
    assert h.shape == (8, model.hp["hidden_dim"]) and s.shape == (8, model.hp["common_dim"])


# --------------------------------------------------------------------------- learning, resume, evaluation


def test_avgatn_learns_a_shared_identity_signal(corpus, tmp_path):
    manifest, root = corpus
    out = tmp_path / "avgatn"
    summary = tr.train("avgatn", manifest, root, out, resolve("avgatn", "debug"), RUN)
    log = pd.read_csv(out / "log.csv")
    assert summary["best"]["val_auc"] >= 0.75, log.to_string()
    assert list(log["stage"].unique()) == ["face_features", "gan", "match"]
    assert {"d", "g", "triplet", "id", "id_acc", "face_acc"} <= set(log.columns)
    # the face CNN learns its training identities in the first stage (32 classes: chance 0.03)
    assert log.loc[log["stage"] == "face_features", "face_acc"].iloc[-1] > 0.1
    info = json.loads((out / "run.json").read_text())
    assert 0 <= info["best"]["train_terms"]["id_acc"] <= 1
    # the gan stage keeps its last epoch (a fixed schedule, no selection on validation AUC); the
    # match stage starts from it, and only it selects on the validation AUC
    gan = log[log["stage"] == "gan"]
    assert info["stage_best"]["gan"]["epoch"] == int(gan["epoch"].max()) and gan["best"].tolist()[-1]
    assert "gan" in avgatn.build(resolve("avgatn", "debug"), 4, N_BINS).select_last
    match = log[log["stage"] == "match"]
    assert info["best"]["epoch"] == int(match.loc[match["val_auc"].idxmax(), "epoch"])
    # the checkpoint keeps the update counts of the whole gan stage: 16 batches an epoch
    ck = torch.load(out / "model.pt", weights_only=False)
    best_gan = info["stage_best"]["gan"]["epoch"]
    n_gan = int(log.loc[(log["stage"] == "gan") & (log["epoch"] <= best_gan), "steps"].sum())
    assert int(ck["model"]["d_updates"]) == n_gan and int(ck["model"]["g_updates"]) == 5 * n_gan
    # test embeddings, then the evaluation reports the paper's threshold accuracy beside AUC
    emb = tmp_path / "test.parquet"
    meta = embed_mod.embed(str(out / "model.pt"), str(manifest), str(root), "test", str(emb), threads=1)
    assert meta["score_threshold"] == 0.5 and meta["score"] == "abs_cosine"
    t = pq.read_table(emb)
    vec = np.stack(t.column("embedding").to_pylist())
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-4)
    from facevoice.evaluation import trials as trials_mod

    lists_dir = tmp_path / "trials"
    assert trials_mod.main(["--manifest", str(manifest), "--split", "test", "--out", str(lists_dir),
                            "--seed", "0"]) == 0
    res = ev.run(str(emb), str(lists_dir), str(tmp_path / "eval.json"), n_boot=0, verbose=False, dcf=DCF)
    u = res["verification"]["U"]
    acc = u["accuracy_at_threshold"]
    assert acc["threshold"] == 0.5 and 0 <= acc["accuracy"] <= 1
    # the accuracy is the fraction of trials on the right side of 0.5
    emb_t = ev.load_embeddings(emb)
    lists = protocol.read_trials(lists_dir)
    df = lists["verification"][0]
    df = df[df["stratum"] == "U"]
    fi = emb_t.rows("face", df["face"], df["face_identity"])
    vi = emb_t.rows("voice", df["voice"], df["voice_identity"])
    scores = np.abs(np.sum(emb_t.face[fi] * emb_t.voice[vi], axis=1))  # avgatn's own score: |cos|
    assert res["meta"]["scorer"] == "abs_cosine"
    assert acc["accuracy"] == pytest.approx(np.mean((scores > 0.5) == (df["label"].to_numpy() == 1)), abs=1e-6)


def test_a_killed_gan_stage_resumes_to_the_same_weights(corpus, tmp_path):
    manifest, root = corpus
    hp = resolve("avgatn", "debug", {"batches_per_epoch": 3, "epochs": 2})
    full = tr.train("avgatn", manifest, root, tmp_path / "full", hp, RUN)

    class Kill(tr.StopTraining):
        pass

    def kill(event, info):  # epoch 4 is the second epoch of the gan stage
        if event == "step" and info["epoch"] == 4 and info["step"] == 2:
            raise Kill()

    with pytest.raises(Kill):
        tr.train("avgatn", manifest, root, tmp_path / "killed", hp, RUN, callbacks=[kill])
    resumed = tr.train("avgatn", manifest, root, tmp_path / "killed", hp, RUN)
    a = torch.load(tmp_path / "full" / "state" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "state" / "last.pt", weights_only=False)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert full["best"] == resumed["best"]


# --------------------------------------------------------------------------- batch norm: training as evaluation


def _batch_norms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_the_matcher_embeds_with_the_statistics_it_trained_with():
    # momentum 1: the running statistics are those of the last training batch; embedding that
    # same batch must then give (up to the unbiased variance) what training computed
    hp = resolve("avgatn", "debug")
    model = model_at("match", hp, n_classes=8)
    for bn in _batch_norms(model.matcher):
        bn.momentum = 1.0
    window = int(hp["voice_window"])
    f, v, y = batch(P=8, K=4, frames=window)
    outs = []
    hook = model.matcher.register_forward_hook(lambda m, i, o: outs.append(o.detach()))
    with torch.no_grad():
        model.loss(f, v, y)
    hook.remove()
    trained = torch.nn.functional.normalize(torch.cat(outs), dim=1)  # the faces' t, then the voices'
    model.eval()
    with torch.no_grad():
        embedded = torch.cat([model.embed_face(f), model.embed_voice(v)])
    assert trained.shape == embedded.shape
    err = (trained - embedded).norm(dim=1).max().item()
    assert err < 0.05


def test_generator_steps_leave_the_discriminators_statistics_alone():
    import contextlib

    hp = resolve("avgatn", "debug")
    model = model_at("gan", hp)
    opts = model.stage_optimizers(hp["stages"]["gan"]["optimizer"])
    after_d = {}
    d_step = opts["d"].step

    def step(*a, **k):  # the discriminators' statistics right after their own update
        out = d_step(*a, **k)
        after_d.update({m: snapshot(getattr(model, m)) for m in ("disc_f", "disc_a")})
        return out

    opts["d"].step = step
    for b in range(2):
        f, v, y = batch(seed=b)
        model.train_step(f, v, y, opts, contextlib.nullcontext())
        for m in ("disc_f", "disc_a"):
            assert not changed(after_d[m], getattr(model, m)), f"the generator steps changed {m}"
    for m in ("disc_f", "disc_a"):
        assert all(int(bn.num_batches_tracked) == 2 for bn in _batch_norms(getattr(model, m)))


def test_long_voices_reach_the_pooled_batch_norm_with_its_training_spread():
    # the batch norm after time pooling learns the spread of features pooled over training
    # crops; pooled over a whole utterance (eval_max_frames) noise averages out, and the spread
    # the running variance expects would shrink by about crop / utterance
    hp = resolve("avgatn", "debug")
    model = model_at("gan", hp)
    window = int(hp["voice_window"])
    bn = model.gen_a.fc[1]
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(60):
            model.voice_hs(torch.randn(32, N_BINS, window, generator=g))
    seen = []
    hook = bn.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    model.eval()
    with torch.no_grad():
        emb = model.embed_voice(torch.randn(16, N_BINS, 10 * window, generator=g))
    hook.remove()
    assert emb.shape[0] == 16 and torch.allclose(emb.norm(dim=1), torch.ones(16), atol=1e-5)
    ratio = (torch.cat(seen).var(dim=0) / bn.running_var).mean().item()
    assert 0.5 < ratio < 2, ratio


def test_a_voice_embeds_as_the_mean_of_its_windows():
    hp = resolve("avgatn", "debug")
    model = model_at("match", hp)
    model.eval()
    w = int(hp["voice_window"])
    v = torch.randn(2, N_BINS, 3 * w + 5, generator=torch.Generator().manual_seed(2))
    starts = [0, w, 2 * w, 2 * w + 5]  # whole windows, the last one ending at the utterance's end
    with torch.no_grad():
        parts = torch.stack([model.embed_voice(v[:, :, s: s + w]) for s in starts])
        assert torch.allclose(model.embed_voice(v), torch.nn.functional.normalize(parts.mean(0), dim=1), atol=1e-5)
        short = v[:, :, : w // 2]  # shorter than a window: tiled, as training crops are
        tiled = torch.cat([short, short, short], 2)[:, :, :w]
        assert torch.allclose(model.embed_voice(short), model.embed_voice(tiled), atol=1e-5)


# --------------------------------------------------------------------------- ablations measure something


def _scored_embeddings(name):
    """Test embeddings (faces, then voices) after one match-stage update: what the tables score."""
    hp = resolve(name, "debug")
    model = model_at("match", hp)
    opt = model.stage_optimizers(hp["stages"]["match"]["optimizer"])["main"]
    f, v, y = batch(P=4, K=2, frames=int(hp["voice_window"]))
    torch.manual_seed(1)
    loss, _ = model.loss(f, v, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([model.embed_face(f), model.embed_voice(v)])


@pytest.mark.parametrize("variant", list(avgatn.VARIANTS))
def test_every_ablation_changes_what_the_evaluation_scores(variant):
    assert not torch.equal(_scored_embeddings("avgatn"), _scored_embeddings(f"avgatn-{variant}"))
