"""voice2face (seed 004): networks, the GAN's losses and updates, frozen parts, learning.

The learning test needs a corpus where gender is a property of the person that both the
face and the voice carry. ``facevoice.training.train.synthetic_shards`` gives every identity a
latent shared by its faces and voices, but its gender column ("mf"[k % 2]) is unrelated
to that latent. :func:`gendered_corpus` therefore writes the synthetic corpus and then
rewrites its shards so that gender shows in both modalities: every face of a woman gets
``+GENDER_FACE`` x a fixed top-to-bottom ramp, every face of a man the same ramp negated
(a horizontal flip leaves it unchanged); every voice frame of a woman gets
``+GENDER_VOICE`` x a fixed random profile over the mel bins, a man's the profile negated.
The manifest (items, rows, gender) is unchanged.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from facevoice.testing import synthetic_shards
from facevoice.training import train as tr
from facevoice.training.methods import get_method, resolve, run_names
from facevoice.training.methods import voice2face as v2f

RUN = tr.run_settings({"seed": 0, "threads": 1}, progress=False)
GENDER_FACE = 0.25
GENDER_VOICE = 1.0


# --------------------------------------------------------------------------- corpus


def gendered_corpus(root, identities=None, seed=0, **kw):
    """``synthetic_shards`` with gender written into faces and voices (module docstring)."""
    manifest = synthetic_shards(root, identities=identities, seed=seed, **kw)
    shards_root = manifest.parent
    m = pd.read_parquet(manifest)
    sign = {i: (1.0 if g == "f" else -1.0) for i, g in m.drop_duplicates("identity")[["identity", "gender"]]
            .itertuples(index=False)}
    rng = np.random.default_rng([seed, 99])
    profiles: dict[int, np.ndarray] = {}
    for shard in sorted(m["shard"].unique()):
        path = shards_root / shard
        pf = pq.ParquetFile(path)
        groups = []
        for g in range(pf.metadata.num_row_groups):
            t = pf.read_row_group(g)
            s = np.array([sign[i] for i in t.column("identity").to_pylist()])
            if "image" in t.column_names:
                out = []
                for data, si in zip(t.column("image").to_pylist(), s):
                    x = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
                    ramp = np.linspace(-1.0, 1.0, x.shape[0], dtype=np.float32)[:, None, None]
                    x = np.clip(x + si * GENDER_FACE * ramp, 0, 1)
                    buf = io.BytesIO()
                    Image.fromarray((x * 255).round().astype(np.uint8)).save(buf, format="PNG")
                    out.append(buf.getvalue())
                t = t.set_column(t.column_names.index("image"), "image", pa.array(out, pa.binary()))
            else:
                for kind in [c for c in t.column_names if f"{c}_bins" in t.column_names]:
                    vals = []
                    for v, b, f, si in zip(t.column(kind).to_pylist(), t.column(f"{kind}_bins").to_pylist(),
                                           t.column(f"{kind}_frames").to_pylist(), s):
                        if b not in profiles:
                            profiles[b] = rng.normal(size=b).astype(np.float32)
                        x = np.asarray(v, np.float32).reshape(b, f) + si * GENDER_VOICE * profiles[b][:, None]
                        vals.append(x.ravel())
                    field = t.schema.field(kind)
                    t = t.set_column(t.column_names.index(kind), field, pa.array(vals, field.type))
            groups.append(t)
        schema = groups[0].schema.with_metadata(pf.schema_arrow.metadata)
        with pq.ParquetWriter(path, schema) as w:
            for t in groups:
                w.write_table(t.cast(schema))
    return manifest


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2f")
    manifest = gendered_corpus(root, identities={"train": 24, "val": 8, "test": 32}, clips=2, faces_per_clip=4,
                               image_size=32, frames=(60, 100), kinds=("logmel",), seed=0)
    return manifest, manifest.parent


def n_bins_batch(P=4, K=2, size=32, frames=40, n_bins=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    faces = torch.rand(P * K, 3, size, size, generator=g)
    voices = torch.randn(P * K, n_bins, frames, generator=g)
    labels = torch.arange(P).repeat_interleave(K)
    return faces, voices, labels


def build(profile="debug", n_classes=4, name="voice2face", seed=0, **sets):
    hp = resolve(name, profile, sets=sets or None)
    torch.manual_seed(seed)
    return get_method(name).build(hp, n_classes, 64), hp


def state_of(*modules):
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def same_state(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("profile", ["debug", "demo", "paper"])
def test_profiles_build_the_papers_networks(profile):
    model, hp = build(profile)
    side = hp["face_size"]
    assert model.generator.side == model.trunk.side == side
    assert model.voice_net.dim == (64 if profile != "debug" else 16)
    convs = [m for m in model.voice_net.modules() if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 5 and all(c.kernel_size == (3,) and c.stride == (2,) and c.padding == (1,) for c in convs)
    deconvs = [m for m in model.generator.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    trunk = [m for m in model.trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(deconvs) == len(trunk) == len(hp["generator"]["channels"]) + 1
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in model.trunk.modules())
    if profile == "paper":  # 64 -> 1024 (4x4) -> 512 -> 256 -> 128 -> 64 -> 3; 6 trunk layers; Adam 2e-4 (0.5, 0.999)
        assert [d.out_channels for d in deconvs] == [1024, 512, 256, 128, 64, 3] and deconvs[0].in_channels == 64
        assert len(trunk) == 6 and side == 64
        opt = hp["stages"]["gan"]["optimizer"]
        assert opt["name"] == "adam" and opt["lr"] == 2e-4 and opt["betas"] == [0.5, 0.999]
    model.set_stage(1)
    model.eval()
    with torch.no_grad():
        img = model.generate_faces(torch.randn(2, 64, int(hp["crop_frames"][0])))
    assert img.shape == (2, 3, side, side) and img.min() >= 0 and img.max() <= 1
    assert {"voice2face-no_classifier", "voice2face-no_adversarial", "voice2face-no_noise", "voice2face-uncentred",
            "voice2face-no_average"} <= set(run_names())


def test_face_size_must_fit_the_generator():
    with pytest.raises(ValueError, match="face_size 48"):
        build("debug", face_size=48)
    with pytest.raises(ValueError, match="not both 0"):
        build("debug", adversarial_weight=0.0, classifier_weight=0.0)
    with pytest.raises(ValueError, match="gan.epochs must be at least 1"):
        build("debug", **{"stages.gan.epochs": 0})


def test_pretrain_trains_the_voice_network_and_the_judge_only():
    model, hp = build("debug")
    model.train()
    f, v, y = n_bins_batch(frames=int(hp["crop_frames"][0]))
    loss, terms = model.loss(f, v, y)
    assert torch.isfinite(loss) and {"voice_id", "face_id", "voice_acc", "face_acc"} <= set(terms)
    loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    prefixes = ("voice_net.", "voice_classifier.", "judge.", "judge_classifier.")
    assert trainable and all(n.startswith(prefixes) for n in trainable)
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().max() > 0, n
        else:
            assert p.grad is None, n
    # no cross-modal score before the generator is trained: the trainer sees NaN, not noise
    model.eval()
    assert torch.isnan(model.embed_voice(v[:1])).all()
    assert torch.allclose(model.embed_face(f).norm(dim=1), torch.ones(len(f)), atol=1e-5)


@pytest.mark.parametrize("variant", [None, "no_classifier", "no_adversarial"])
def test_gan_step_trains_g_d_c_and_leaves_the_frozen_networks_unchanged(variant):
    name = "voice2face" + (f"-{variant}" if variant else "")
    model, hp = build("debug", name=name)
    model.set_stage(1)
    model.train()
    assert not model.voice_net.training and not model.judge.training  # frozen batch norms stay in eval
    frozen = [model.voice_net, model.voice_classifier, model.judge, model.judge_classifier]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    before_frozen = state_of(*frozen)
    gan = {"generator": model.generator, "trunk": model.trunk, "discriminator": model.discriminator,
           "classifier": model.classifier}
    before_gan = {k: state_of(m) for k, m in gan.items()}
    opts = model.stage_optimizers(hp["stages"]["gan"]["optimizer"])
    assert set(opts) == {"g", "d"}
    assert opts["g"].defaults["betas"] == (0.5, 0.999)
    f, v, y = n_bins_batch(frames=int(hp["crop_frames"][0]))
    terms = model.train_step(f, v, y, opts, contextlib.nullcontext())
    assert torch.isfinite(terms["loss"])
    expect = {"g_adv", "d_real", "d_fake"} if variant != "no_adversarial" else set()
    expect |= {"g_id", "c_real"} if variant != "no_classifier" else set()
    assert expect <= set(terms) and not ({"g_adv", "g_id", "d_real", "d_fake", "c_real"} - expect) & set(terms)
    trained = {"generator", "trunk"} | ({"discriminator"} if variant != "no_adversarial" else set()) \
        | ({"classifier"} if variant != "no_classifier" else set())
    for k, m in gan.items():
        for n, p in m.named_parameters():
            if k in trained:  # D and C keep the gradients of their own update, G of its own
                assert p.grad is not None and p.grad.abs().max() > 0, f"{k}.{n}"
            else:
                assert p.grad is None, f"{k}.{n}"
        assert same_state(before_gan[k], state_of(m)) == (k not in trained), k
    for m in frozen:
        assert all(p.grad is None for p in m.parameters())
    assert same_state(before_frozen, state_of(*frozen))  # weights and batch-norm statistics


def test_losses_against_values_worked_by_hand():
    ln = np.log
    d_real = torch.tensor([0.0, ln(3.0)])        # sigmoid: 1/2, 3/4
    d_fake = torch.tensor([[ln(3.0)], [0.0]])    # sigmoid: 3/4, 1/2
    c = torch.tensor([[0.0, ln(3.0)], [ln(2.0), 0.0]])  # softmax rows: (1/4, 3/4), (2/3, 1/3)
    y = torch.tensor([1, 0])
    real = (ln(2) + ln(4 / 3)) / 2               # -log 1/2, -log 3/4 (target real)
    fake = (ln(4) + ln(2)) / 2                   # -log(1 - 3/4), -log(1 - 1/2) (target fake)
    ce = (ln(4 / 3) + ln(3 / 2)) / 2             # -log 3/4, -log 2/3
    total, terms = v2f.discriminator_loss(d_real, d_fake, c, y)
    assert terms["d_real"].item() == pytest.approx(real, rel=1e-6)
    assert terms["d_fake"].item() == pytest.approx(fake, rel=1e-6)
    assert terms["c_real"].item() == pytest.approx(ce, rel=1e-6)
    assert total.item() == pytest.approx(real + fake + ce, rel=1e-6)
    total, _ = v2f.discriminator_loss(d_real, d_fake, c, y, adversarial_weight=0.5, classifier_weight=2.0)
    assert total.item() == pytest.approx(0.5 * (real + fake) + 2 * ce, rel=1e-6)
    # the generator wants its fakes called real, and classified as the speaker
    g_adv = (ln(4 / 3) + ln(2)) / 2
    total, terms = v2f.generator_loss(d_fake, c, y)
    assert terms["g_adv"].item() == pytest.approx(g_adv, rel=1e-6)
    assert terms["g_id"].item() == pytest.approx(ce, rel=1e-6)
    assert total.item() == pytest.approx(g_adv + ce, rel=1e-6)
    total, terms = v2f.generator_loss(None, c, y, adversarial_weight=0.0)
    assert set(terms) == {"g_id"} and total.item() == pytest.approx(ce, rel=1e-6)
    total, terms = v2f.discriminator_loss(d_real, d_fake, None, y, classifier_weight=0.0)
    assert set(terms) == {"d_real", "d_fake"} and total.item() == pytest.approx(real + fake, rel=1e-6)


def test_different_voices_give_different_faces():
    model, hp = build("debug")
    model.set_stage(1)
    model.eval()
    frames = int(hp["crop_frames"][0])
    g = torch.Generator().manual_seed(1)
    profile = 2.0 * torch.randn(1, 64, 1, generator=g)  # two voices with opposite spectral profiles
    a = torch.randn(1, 64, frames, generator=g) + profile
    b = torch.randn(1, 64, frames, generator=g) - profile
    with torch.no_grad():
        fa, fa2, fb = model.generate_faces(a), model.generate_faces(a), model.generate_faces(b)
    assert torch.equal(fa, fa2)  # no noise outside training
    # untrained, the generator's output depends little on its input, but it does depend on it
    # (the trained model's faces are compared in the learning test)
    assert (fa - fb).abs().max() > 1e-4
    e = model.embed_voice(a)
    assert torch.allclose(e.norm(dim=1), torch.ones(1), atol=1e-5)
    assert torch.allclose(e, model.embed_face(fa), atol=1e-6)  # a voice's embedding: the judge's, of its face


def test_scored_faces_come_from_the_average_of_g_and_the_embeddings_are_centred():
    model, hp = build("debug")
    assert hp["generator_average"] == 0.995 and hp["centre_embeddings"] and v2f.PAPER["generator_average"] == 0.0
    model.set_stage(1)
    model.train()
    opts = model.stage_optimizers(hp["stages"]["gan"]["optimizer"])
    g0 = state_of(model.generator)[0]
    f, v, y = n_bins_batch(frames=int(hp["crop_frames"][0]))
    model.train_step(f, v, y, opts, contextlib.nullcontext())
    g1, avg = state_of(model.generator)[0], state_of(model.generator_avg)[0]
    assert not same_state([g0], [g1])
    for k in g0:  # one step of the moving average: 0.995 old + 0.005 new
        assert torch.allclose(avg[k], 0.995 * g0[k] + 0.005 * g1[k], atol=1e-6), k
    assert not any(p.requires_grad for p in model.generator_avg.parameters())
    assert not any(p is q for q in model.generator_avg.parameters() for o in opts.values()
                   for grp in o.param_groups for p in grp["params"])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.generate(v), model.generator_avg(model.voice_embedding(v)))
        # the first update sets each running mean to its batch's mean: the batch's centred embeddings sum to 0
        zf = torch.nn.functional.normalize(model._judge(f), dim=1) - model.real_centre
        zv = torch.nn.functional.normalize(model._judge(model.generate_faces(v)), dim=1) - model.fake_centre
        assert zf.sum(0).abs().max() < 1e-4 and zv.sum(0).abs().max() < 1e-4
        assert torch.allclose(model.embed_face(f), torch.nn.functional.normalize(zf, dim=1), atol=1e-5)
        assert torch.allclose(model.embed_voice(v), torch.nn.functional.normalize(zv, dim=1), atol=1e-5)
    assert int(model.centre_updates) == 1
    plain, _ = build("debug", generator_average=0.0, centre_embeddings=False)
    assert plain.generator_avg is None and plain.scored_generator() is plain.generator
    with pytest.raises(ValueError, match="generator_average must be in"):
        build("debug", generator_average=1.0)


# --------------------------------------------------------------------------- learning


def test_voice2face_learns_gender_on_the_synthetic_task(corpus, tmp_path):
    """Debug profile, seed 0, trainer + generate: the generated faces carry the speaker's gender."""
    from facevoice.evaluation import generate as gen

    manifest, root = corpus
    out = tmp_path / "run"
    summary = tr.train("voice2face", manifest, root, out, resolve("voice2face", "debug"), RUN)
    log = pd.read_csv(out / "log.csv")
    table = log[["epoch", "stage", "loss", "voice_acc", "face_acc", "g_id", "val_auc"]].to_string()
    pre = log[log["stage"] == "pretrain"]
    assert pre["val_auc"].isna().all() and pre["best"].iloc[-1]  # no score yet: the last epoch carries on
    # the trainer does not validate the pre-training (no generator) and says why, not "diverged"
    undefined = json.loads((out / "run.json").read_text())["val_auc_undefined"]
    assert {int(k) for k in undefined} == set(pre["epoch"]), undefined
    assert all("makes no cross-modal score yet" in why for why in undefined.values()), undefined
    assert pre["voice_acc"].iloc[-1] > 0.3 and pre["face_acc"].iloc[-1] > 0.8, table
    assert {"d_real", "d_fake", "c_real", "g_adv", "g_id"} <= set(log.columns)
    assert summary["best"]["stage"] == "gan" and summary["best"]["val_auc"] > 0.6, table
    # the frozen networks leave the GAN stage as the pre-training left them
    a = torch.load(out / "state" / "best-pretrain.pt", weights_only=False)["model"]
    b = torch.load(out / "model.pt", weights_only=False)["model"]
    frozen = [k for k in a if k.startswith(("voice_net.", "voice_classifier.", "judge.", "judge_classifier."))]
    assert frozen and all(torch.equal(a[k], b[k]) for k in frozen)
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("generator."))

    rep = gen.generate(out / "model.pt", manifest, root, tmp_path / "gen", seed=0, threads=1, progress=False)
    g = rep["gender"]
    msg = json.dumps({"gender": g, "1:2": rep["matching_1v2"]}, indent=1) + "\n" + table
    assert g["available"] and g["chance_rate"] == 0.5 and g["n_voices"] == 32 * 2, msg
    assert g["real_face_accuracy"] > 0.9, msg           # the gender is there to be found in real faces
    assert g["agreement_rate"] >= g["chance_rate"] + 0.15, msg
    assert rep["matching_1v2"]["U"]["accuracy"] > 0.55, msg

    # different speakers' voices give different faces (no collapse onto one face)
    from facevoice.data.shard_reader import ShardReader
    from facevoice.training.inference import eval_voice, load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(out / "model.pt"))
    m = pd.read_parquet(manifest)
    v = m[(m["split"] == "test") & (m["modality"] == "voice")].drop_duplicates("identity")
    reader = ShardReader(root)
    hp = model.hp
    with torch.no_grad():
        imgs = torch.cat([model.generate_faces(torch.from_numpy(np.array(eval_voice(
            reader.voice(r.shard, int(r.row), "logmel"), hp)))[None]) for r in v.itertuples()])
    diffs = (imgs[:, None] - imgs[None]).abs().flatten(2).mean(2)
    off = diffs[~torch.eye(len(imgs), dtype=torch.bool)]
    assert off.min() > 0.005, off.min()


class Kill(tr.StopTraining):
    pass


def test_a_killed_gan_stage_resumes_to_the_same_weights(corpus, tmp_path):
    manifest, root = corpus
    hp = resolve("voice2face", "debug", sets={"stages.pretrain.epochs": 1, "stages.gan.epochs": 2,
                                              "batches_per_epoch": 3})
    tr.train("voice2face", manifest, root, tmp_path / "full", hp, RUN)

    def kill(event, info):
        if event == "step" and info["epoch"] == 3 and info["step"] == 2:
            raise Kill()

    with pytest.raises(Kill):
        tr.train("voice2face", manifest, root, tmp_path / "killed", hp, RUN, callbacks=[kill])
    tr.train("voice2face", manifest, root, tmp_path / "killed", hp, RUN)
    a = torch.load(tmp_path / "full" / "state" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "state" / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert set(a["optimizer"]) == {"g", "d"}
