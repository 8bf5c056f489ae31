"""The trainer and the methods: gradients, MWRN's scale, learning, resume, outputs, CLI."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from helpers import grads_of, n_bins_of
from helpers import random_batch as batch

from facevoice.data import paths
from facevoice.data.manifest import split_items
from facevoice.data.shard_reader import ShardReader
from facevoice.training import embed as embed_mod
from facevoice.training import train as tr
from facevoice.training.methods import MethodError, get_method, method_names, resolve, run_names
from facevoice.training.nets import InceptionResnetEncoder

METHODS = ["ssnet_fop", "dje", "biq_mwrn"]
RUN = tr.run_settings({"seed": 0, "threads": 1}, progress=False)  # tiny networks: one thread is fastest


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("profile", ["debug", "demo"])
@pytest.mark.parametrize("method", METHODS)
def test_gradients_reach_every_trainable_parameter(method, profile):
    hp = resolve(method, profile)
    torch.manual_seed(0)
    model = get_method(method).build(hp, 4, n_bins_of(hp))
    size = hp["face_size"]
    for s, st in enumerate(model.stages()):
        model.set_stage(s)
        model.train()
        f, v, y = batch(n_bins_of(hp), size=size, frames=int(hp["crop_frames"][0]))
        loss, terms = model.loss(f, v, y)
        assert torch.isfinite(loss) and all(torch.isfinite(torch.as_tensor(t)) for t in terms.values())
        grads = grads_of(model, loss)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable == {n for n, _ in model.named_parameters() if n in trainable} and trainable
        zero_at_start = {n for n in grads if n.startswith("top.w")} if method == "biq_mwrn" else set()
        for n, g in grads.items():
            assert g is not None, f"{method} stage {st.name}: no gradient reaches {n}"
            assert torch.isfinite(g).all(), n
            if n in zero_at_start:
                assert g.abs().max() == 0, f"{n} gets a gradient although eta = 0"
            else:
                assert g.abs().max() > 0, f"{method} stage {st.name}: zero gradient at {n}"
        if method == "biq_mwrn" and st.name == "main":  # once eta has moved, W1 and W2 learn too
            with torch.no_grad():
                model.top.eta.fill_(0.1)
            grads = grads_of(model, model.loss(f, v, y)[0])
            assert all(grads[n].abs().max() > 0 for n in zero_at_start)
        if st.cache:  # the cached path: heads on frozen features
            with torch.no_grad():
                ff, fv = model.backbone_face(f), model.backbone_voice(v)
            grads = grads_of(model, model.loss_from_features(ff, fv, y)[0])
            assert all(g is not None and g.abs().max() > 0 for g in grads.values())
        if s > 0 and method == "ssnet_fop":  # stage 2 trains the heads only
            assert not any(p.requires_grad for p in model.encoder.parameters())


@pytest.mark.parametrize("method", METHODS)
def test_paper_networks_get_gradients_everywhere(method):
    hp = resolve(method, "paper")
    hp["face_size"] = 96  # smaller than the paper's inputs, same networks
    hp["crop_frames"] = [48, 48]
    torch.manual_seed(0)
    model = get_method(method).build(hp, 3, n_bins_of(hp))
    model.train()
    if method == "biq_mwrn":
        with torch.no_grad():
            model.top.eta.fill_(0.1)
    f, v, y = batch(n_bins_of(hp), P=3, K=2, size=96, frames=48)
    for s in range(len(model.stages())):
        model.set_stage(s)
        model.train()
        grads = grads_of(model, model.loss(f, v, y)[0])
        missing = [n for n, g in grads.items() if g is None or g.abs().max() == 0]
        assert not missing, f"{method} stage {s}: no gradient at {missing[:5]}"


def test_mwrn_scale_starts_at_zero_and_moves():
    hp = resolve("biq_mwrn", "debug")
    torch.manual_seed(0)
    model = get_method("biq_mwrn").build(hp, 4, 64)
    model.set_stage(list(hp["stages"]).index("main"))  # after the (here empty) speaker pre-training
    assert model.top.eta.item() == 0.0
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(3):
        f, v, y = batch(64, seed=step)
        loss, terms = model.loss(f, v, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.top.eta.item() != 0.0
    assert terms["eta"].item() == pytest.approx(model.top.eta.item(), abs=0.1)


# --------------------------------------------------------------------------- data


def test_batches_are_identity_balanced_and_reproducible(corpus):
    manifest, _ = corpus
    items = split_items(pd.read_parquet(manifest), "train")
    plan = tr.plan_epoch(items, P=8, K=3, n_batches=10, seed=5, epoch=2)
    again = tr.plan_epoch(items, P=8, K=3, n_batches=10, seed=5, epoch=2)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(plan, again) for k in a)
    seen = np.zeros(len(items.identities), int)
    for b in plan:
        ids = b["labels"].reshape(8, 3)
        assert len(set(ids[:, 0])) == 8 and (ids == ids[:, :1]).all()  # P distinct identities x K
        faces = items.items.iloc[b["faces"]]
        voices = items.items.iloc[b["voices"]]
        assert (faces["modality"] == "face").all() and (voices["modality"] == "voice").all()
        labels = np.array([items.identities.index(i) for i in faces["identity"]])
        assert (labels == b["labels"]).all()
        assert (np.array([items.identities.index(i) for i in voices["identity"]]) == b["labels"]).all()
        seen[ids[:, 0]] += 1
    assert seen.max() - seen.min() <= 1  # identities cycled evenly: 80 draws over 32 identities
    other = tr.plan_epoch(items, P=8, K=3, n_batches=10, seed=5, epoch=3)
    assert not all(np.array_equal(a["faces"], b["faces"]) for a, b in zip(plan, other))


def test_reader_streams_row_groups_and_returns_the_manifest_items(corpus):
    manifest, root = corpus
    m = pd.read_parquet(manifest)
    reader = ShardReader(root, cache_groups=2)
    for rec in m.sample(12, random_state=0).to_dict("records"):
        if rec["modality"] == "face":
            img = reader.face(rec["shard"], rec["row"])
            assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        else:
            x = reader.voice(rec["shard"], rec["row"], "logmel")
            assert x.shape[0] == 64 and 60 <= x.shape[1] <= 120
        # the row the reader decodes is the manifest's item
        table, i = reader._row(rec["shard"], rec["row"], ("item",))
        assert table.column("item")[i].as_py() == rec["item"]
    assert len(reader._groups) <= 2
    with pytest.raises(KeyError, match="features.kinds"):
        reader.n_bins(m[m["modality"] == "voice"]["shard"].iloc[0], "mfcc")


def test_wait_timer_adds_up_the_time_spent_waiting_for_batches():
    """What ``data_s`` measures: the time inside the batch iterator, not the time between batches
    (sleep guarantees a lower bound on any machine; no upper bound on wall time is asserted)."""
    import time

    def slow():
        for i in range(3):
            time.sleep(0.1)
            yield i

    timer = tr.WaitTimer(slow())
    assert timer.waited == 0.0
    assert list(timer) == [0, 1, 2]
    assert timer.waited >= 0.3
    idle = tr.WaitTimer(range(3))
    for _ in idle:
        time.sleep(0.1)  # the consumer's own work is not a wait for data
    assert idle.waited < timer.waited


# --------------------------------------------------------------------------- learning


@pytest.mark.parametrize("method", METHODS)
def test_each_method_learns_a_shared_identity_signal(method, corpus, tmp_path):
    manifest, root = corpus
    out = tmp_path / method
    summary = tr.train(method, manifest, root, out, resolve(method, "debug"), RUN)
    log = pd.read_csv(out / "log.csv")
    assert summary["best"]["val_auc"] >= 0.75, log[["epoch", "stage", "loss", "val_auc"]].to_string()
    # outputs: checkpoint, log with every loss term, curve, run record
    assert {"epoch", "stage", "loss", "val_auc", "lr", "seconds", "data_s"} <= set(log.columns)
    # the wait for data is recorded and lies within its epoch (its size is a benchmark's business)
    assert log["data_s"].notna().all() and ((log["data_s"] >= 0) & (log["data_s"] <= log["seconds"] + 1e-3)).all()
    term = {"ssnet_fop": ["ce", "center", "opl"], "dje": ["rank", "id", "center"], "biq_mwrn": ["cth_fv", "mth_v", "id"]}
    assert set(term[method]) <= set(log.columns)
    assert len(log) == sum(s["epochs"] for s in resolve(method, "debug")["stages"].values())
    assert (out / "curve.png").stat().st_size > 1000
    assert {p.name for p in out.iterdir() if p.is_file()} == {p.rsplit("/", 1)[1] for p in paths.train_files(out).values()}
    info = json.loads((out / "run.json").read_text())
    assert info["seed"] == 0 and info["face_weights"] == "scratch" and info["device"] == "cpu"
    assert info["best"]["val_auc"] == pytest.approx(log["val_auc"][log["best"]].iloc[-1])
    # the best checkpoint is the best validation epoch of the last stage (test never read)
    last_stage = log[log["stage"] == log["stage"].iloc[-1]]
    assert info["best"]["epoch"] == int(last_stage.loc[last_stage["val_auc"].idxmax(), "epoch"])
    # embeddings of the test split in the evaluation's schema
    emb = tmp_path / "test.parquet"
    meta = embed_mod.embed(str(out / "model.pt"), str(manifest), str(root), "test", str(emb), threads=2)
    t = pq.read_table(emb)
    assert t.column_names == ["id", "identity", "modality", "embedding"]
    m = pd.read_parquet(manifest)
    assert t.num_rows == (m["split"] == "test").sum() and meta["method"] == method
    # the model's note for the comparison tables travels in the embeddings' metadata
    assert (meta["note"] is not None) == (method == "ssnet_fop") and "raw features" in (meta["note"] or "raw features")
    vec = np.stack(t.column("embedding").to_pylist())
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-4)


# --------------------------------------------------------------------------- resume


class Kill(tr.StopTraining):
    pass


@pytest.mark.parametrize("method,kill_epoch", [("ssnet_fop", 2), ("ssnet_fop", 4), ("dje", 2), ("biq_mwrn", 2)])
def test_a_killed_run_resumes_to_the_same_weights(method, kill_epoch, corpus, tmp_path):
    manifest, root = corpus
    hp = resolve(method, "debug", {"batches_per_epoch": 4, "epochs": 2} if method == "ssnet_fop"
                 else {"batches_per_epoch": 4, "epochs": 3})
    full = tr.train(method, manifest, root, tmp_path / "full", hp, RUN)

    def kill(event, info):  # dies in the middle of an epoch, after the previous epoch's checkpoint
        if event == "step" and info["epoch"] == kill_epoch and info["step"] == 2:
            raise Kill()

    with pytest.raises(Kill):
        tr.train(method, manifest, root, tmp_path / "killed", hp, RUN, callbacks=[kill])
    ck = torch.load(tmp_path / "killed" / "state" / "last.pt", weights_only=False)
    assert ck["epoch"] == kill_epoch - 1
    resumed = tr.train(method, manifest, root, tmp_path / "killed", hp, RUN)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)
    assert a["epoch"] == b["epoch"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    la = torch.load(tmp_path / "full" / "state" / "last.pt", weights_only=False)
    lb = torch.load(tmp_path / "killed" / "state" / "last.pt", weights_only=False)
    for k in la["model"]:
        assert torch.equal(la["model"][k], lb["model"][k]), k
    ha, hb = pd.read_csv(tmp_path / "full" / "log.csv"), pd.read_csv(tmp_path / "killed" / "log.csv")
    assert ha.drop(columns=["seconds", "data_s"]).equals(hb.drop(columns=["seconds", "data_s"]))
    assert full["best"] == resumed["best"]
    # the same weights, the same bytes (the archive inside is not named after a temporary file)
    assert (tmp_path / "full" / "model.pt").read_bytes() == (tmp_path / "killed" / "model.pt").read_bytes()


def strict_json(path):
    def refuse(name):
        raise ValueError(f"{path} holds a bare {name}: not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_diverged_epoch_never_becomes_the_best(corpus, tmp_path):
    manifest, root = corpus
    hp = resolve("dje", "debug", {"epochs": 3, "batches_per_epoch": 2})

    def diverge(event, info):  # after epoch 1, every weight is NaN: epochs 2 and 3 cannot be scored
        if event == "epoch" and info["epoch"] == 1:
            with torch.no_grad():
                for p in info["model"].parameters():
                    p.fill_(float("nan"))

    s = tr.train("dje", manifest, root, tmp_path, hp, RUN, callbacks=[diverge])
    assert s["best"]["epoch"] == 1 and np.isfinite(s["best"]["val_auc"])
    best = torch.load(tmp_path / "model.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())
    info = strict_json(tmp_path / "run.json")
    assert set(info["val_auc_undefined"]) == {"2", "3"}
    assert "not finite" in info["val_auc_undefined"]["2"]
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["val_auc"].isna().tolist() == [False, True, True] and log["best"].tolist() == [True, False, False]


def test_one_validation_identity_says_why_the_auc_is_undefined(corpus, tmp_path):
    manifest, root = corpus
    m = pd.read_parquet(manifest)
    one = sorted(m.loc[m["split"] == "val", "identity"].unique())[0]
    small = tmp_path / "manifest.parquet"
    m[(m["split"] != "val") | (m["identity"] == one)].to_parquet(small)
    hp = resolve("dje", "debug", {"epochs": 2, "batches_per_epoch": 2})
    s = tr.train("dje", small, root, tmp_path / "run", hp, RUN)
    info = strict_json(tmp_path / "run" / "run.json")
    assert info["best"]["val_auc"] is None and info["best"]["epoch"] == 2  # the last of the undefined epochs
    assert info["val_auc_undefined"] == {e: "the 'val' split has 1 identity; an AUC needs 2 or more" for e in "12"}
    assert s["best"]["epoch"] == 2


def test_better_epoch():
    nan = float("nan")
    assert tr.better_epoch(0.6, None) and tr.better_epoch(nan, None)
    assert tr.better_epoch(0.7, 0.6) and not tr.better_epoch(0.6, 0.6) and not tr.better_epoch(0.5, 0.6)
    assert not tr.better_epoch(nan, 0.6) and tr.better_epoch(0.1, nan) and tr.better_epoch(nan, nan)


def test_the_same_run_gives_the_same_bytes(corpus, tmp_path, monkeypatch):
    """Same inputs and seed: byte-identical model.pt and embeddings on the CPU."""
    manifest, root = corpus
    hp = resolve("dje", "debug", {"epochs": 2, "batches_per_epoch": 2})
    for run in ("a", "b"):
        tr.train("dje", manifest, root, tmp_path / run, hp, RUN)
        monkeypatch.chdir(tmp_path / run)  # the embeddings record the checkpoint's path, as given
        embed_mod.embed("model.pt", str(manifest), str(root), "test", "test.parquet", device="cpu")
    for name in ("model.pt", "test.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_changed_settings_start_afresh(corpus, tmp_path):
    manifest, root = corpus
    hp = resolve("dje", "debug", {"epochs": 1, "batches_per_epoch": 2})
    tr.train("dje", manifest, root, tmp_path, hp, RUN)
    hp2 = resolve("dje", "debug", {"epochs": 1, "batches_per_epoch": 2, "alpha1": 0.3})
    s = tr.train("dje", manifest, root, tmp_path, hp2, RUN)
    assert s["hp"]["alpha1"] == 0.3 and len(pd.read_csv(tmp_path / "log.csv")) == 1
    # the same settings again: nothing left to train, outputs rewritten from the checkpoint
    s2 = tr.train("dje", manifest, root, tmp_path, hp2, RUN)
    assert s2["best"] == s["best"]


# --------------------------------------------------------------------------- config, CLI, weights


def test_settings_from_the_config_section():
    section = {"profile": "paper", "seed": 7, "epochs": 3, "batch": {"P": 6, "K": 2}, "face_weights": None,
               "overrides": {"ssnet_fop": {"stages": {"fop": {"epochs": 9}}, "fop_dim": 64},
                             "dje-rank_only": {"embedding_dim": 128}}}
    hp, run = tr.settings("ssnet_fop", section)
    assert hp["stages"]["center"]["epochs"] == 3 and hp["stages"]["fop"]["epochs"] == 9
    assert hp["stages"]["fop"]["P"] == 6 and hp["fop_dim"] == 64 and run["seed"] == 7
    hp, _ = tr.settings("dje-rank_only", section, sets={"alpha1": 0.5})
    assert hp["lambda1"] == 0 and hp["lambda2"] == 0 and hp["embedding_dim"] == 128 and hp["alpha1"] == 0.5
    with pytest.raises(MethodError, match="unknown hyperparameter 'stages.main.epoch'"):
        tr.settings("dje", {"overrides": {"dje": {"stages": {"main": {"epoch": 3}}}}})
    with pytest.raises(MethodError, match="no variant"):
        resolve("dje-nope")
    with pytest.raises(MethodError, match="unknown method"):
        get_method("svhf")
    assert "biq_mwrn-margin_0.2" in run_names() and "ssnet_fop-fusion_cos" in run_names()


def test_run_settings_take_the_schemas_defaults_and_train_requires_every_config_key(tmp_path):
    """The train: keys' defaults live in the schema only: settings() completes a section from it,
    and train() refuses a run that leaves a config key out (naming it) rather than filling it in."""
    from facevoice.common.config import defaults

    schema = defaults("train")
    _, run = tr.settings("dje", {})
    assert run["seed"] == schema["seed"] and run["threads"] == schema["threads"]
    assert run["val_split"] == schema["val"]["split"] and run["val_items_per_identity"] == schema["val"]["items_per_identity"]
    assert tr.run_settings({"seed": 5, "val": {"items_per_identity": 3}}, progress=False) == {
        **{k: run[k] for k in tr.RUN_KEYS}, "seed": 5, "val_items_per_identity": 3, **tr.EXECUTION_DEFAULTS,
        "progress": False}
    with pytest.raises(MethodError, match="run setting.*seed.*missing"):
        tr.train("dje", tmp_path / "none.parquet", tmp_path, tmp_path / "out", run={k: v for k, v in RUN.items()
                                                                                  if k != "seed"})
    with pytest.raises(MethodError, match="unknown execution option"):
        tr.run_settings({}, seed=3)
    assert not hasattr(tr, "RUN_DEFAULTS")


def test_cli_trains_and_embeds(corpus, tmp_path, capsys):
    manifest, root = corpus
    out = tmp_path / "biq"
    assert tr.main(["--list"]) == 0
    assert "dje-rank_only" in capsys.readouterr().out
    args = ["--method", "biq_mwrn-sfc", "--manifest", str(manifest), "--shards-root", str(root), "--out", str(out),
            "--profile", "debug", "--set", "epochs=1", "--set", "batches_per_epoch=3", "--seed", "3",
            "--threads", "2", "--no-progress", "--params", json.dumps({"val": {"items_per_identity": 2}})]
    assert tr.main(args) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["hp"]["top"] == "sfc" and info["seed"] == 3 and info["data"]["val_items"] == 8 * 2 * 2
    emb = tmp_path / "val.parquet"
    assert embed_mod.main(["--checkpoint", str(out / "model.pt"), "--method", "biq_mwrn-sfc", "--manifest",
                           str(manifest), "--shards-root", str(root), "--split", "val", "--out", str(emb)]) == 0
    meta = json.loads(pq.read_schema(emb).metadata[b"facevoice"])
    assert meta["split"] == "val" and meta["n_voice"] == 16 and meta["n_face"] == 64


def test_face_weights_load_from_a_local_file_only(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(1)
    ref = InceptionResnetV1(pretrained=None, classify=True, num_classes=10)  # a file with a classifier
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(ref.state_dict(), path)
    enc = InceptionResnetEncoder(dim=512, weights=str(path))
    assert enc.weights_source == f"vggface2:{path}"
    assert torch.equal(enc.net.conv2d_1a.conv.weight, ref.conv2d_1a.conv.weight)
    assert InceptionResnetEncoder(dim=512).weights_source == "scratch"
    with pytest.raises(FileNotFoundError, match="train.face_weights"):
        InceptionResnetEncoder(weights=str(tmp_path / "missing.pt"))


def test_training_never_reads_the_test_split(corpus, tmp_path, monkeypatch):
    manifest, root = corpus
    opened = []
    real = ShardReader._file

    def spy(self, shard):
        opened.append(shard)
        return real(self, shard)

    monkeypatch.setattr(ShardReader, "_file", spy)
    tr.train("dje", manifest, root, tmp_path, resolve("dje", "debug", {"epochs": 1, "batches_per_epoch": 2}), RUN)
    splits = {s.split("/")[0] for s in opened}
    assert splits == {"train", "val"}


def test_dataloader_workers_give_the_same_run(corpus, tmp_path):
    manifest, root = corpus
    hp = resolve("dje", "debug", {"epochs": 1, "batches_per_epoch": 3})
    tr.train("dje", manifest, root, tmp_path / "w0", hp, {**RUN, "num_workers": 0})
    tr.train("dje", manifest, root, tmp_path / "w2", hp, {**RUN, "num_workers": 2})
    a = torch.load(tmp_path / "w0" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "w2" / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_ssnet_center_loss_does_not_swamp_the_cross_entropy(profile):
    """Stage 1 at initialisation: lambda/2 x center loss against the cross-entropy."""
    hp = resolve("ssnet_fop", profile)
    n_bins = n_bins_of(hp)
    ratios = {}
    for normalize in (True, False):
        torch.manual_seed(0)
        model = get_method("ssnet_fop").build({**hp, "center_normalize": normalize}, 24, n_bins)
        model.set_stage(0)
        model.train()
        f, v, y = batch(n_bins, P=4, K=2, size=hp["face_size"], frames=hp["crop_frames"][0])
        _, terms = model.loss(f, v, y)
        ratios[normalize] = hp["lambda_center"] / 2 * float(terms["center"]) / float(terms["ce"])
    assert ratios[True] < 0.5 < 10 < ratios[False], ratios  # on raw features it outweighs CE many times


def test_ssnet_center_loss_is_the_papers_on_raw_features_and_its_normalised_form_a_variant():
    """Seed 000 eq. 1-2 (Wen et al.'s center loss, lambda = 1) on the network's raw features in
    every profile; the L2-normalised form only as the variant center_l2, which says so."""
    from facevoice.training.losses import batch_center_loss

    for profile in ("paper", "demo", "debug"):
        hp = resolve("ssnet_fop", profile)
        assert hp["center_normalize"] is False and hp["lambda_center"] == 1.0
        assert resolve("ssnet_fop-center_l2", profile)["center_normalize"] is True
    notes = {}
    for name in ("ssnet_fop", "ssnet_fop-center_l2"):
        hp = resolve(name, "debug")
        torch.manual_seed(0)
        model = get_method("ssnet_fop").build(hp, 4, n_bins_of(hp))
        model.set_stage(0)
        model.eval()  # batch norm on running statistics: two passes give the same features
        f, v, y = batch(n_bins_of(hp), P=2, K=2, size=hp["face_size"], frames=hp["crop_frames"][0])
        _, terms = model.loss(f, v, y)
        with torch.no_grad():
            feats = torch.cat(model._encode_mixed(f, v)).float()
        if hp["center_normalize"]:
            feats = torch.nn.functional.normalize(feats, dim=1)
        assert float(terms["center"]) == pytest.approx(float(batch_center_loss(feats, torch.cat([y, y]))), rel=1e-5)
        notes[name] = model.note()
    assert "raw features" in notes["ssnet_fop"] and "center_l2" in notes["ssnet_fop-center_l2"]


# --------------------------------------------------------------------------- speaker pre-training

PRETRAINED = ["dje", "biq_mwrn"]


def with_pretrain(method, epochs=4, main_epochs=1, batches=8):
    """The debug profile with stage speaker_pretrain turned on (it is off in demo and debug)."""
    return resolve(method, "debug", sets={"stages.speaker_pretrain.epochs": epochs, "stages.main.epochs": main_epochs,
                                          "batches_per_epoch": batches})


@pytest.mark.parametrize("method", PRETRAINED)
def test_the_paper_profile_pretrains_the_voice_stream_first(method):
    from facevoice.training.methods import SPEAKER_STAGE

    stages = resolve(method, "paper")["stages"]
    assert list(stages) == [SPEAKER_STAGE, "main"] and stages[SPEAKER_STAGE]["epochs"] > 0
    assert SPEAKER_STAGE in get_method(method).build(resolve(method, "debug"), 4, 64).select_last
    # off in demo and debug (their main stages as before), and in the no_pretrain variant; a global
    # epoch count does not turn an off stage on, only its own key does
    for name, profile in ((method, "demo"), (method, "debug"), (f"{method}-no_pretrain", "paper")):
        st = resolve(name, profile, {"epochs": 3})["stages"]
        assert st[SPEAKER_STAGE]["epochs"] == 0 and st["main"]["epochs"] == 3, (name, profile)
    assert resolve(method, "demo")["stages"]["main"]["epochs"] == 30
    assert resolve(f"{method}-no_pretrain", "paper")["stages"]["main"] == stages["main"]


@pytest.mark.parametrize("method", PRETRAINED)
def test_speaker_pretraining_trains_only_the_voice_stream_and_its_classifier(method):
    hp = with_pretrain(method)
    torch.manual_seed(0)
    model = get_method(method).build(hp, 4, n_bins_of(hp))
    model.set_stage(0)
    model.train()
    f, v, y = batch(n_bins_of(hp), size=hp["face_size"], frames=int(hp["crop_frames"][0]))
    loss, terms = model.loss(f, v, y)
    assert set(terms) == {"speaker_id", "speaker_acc"} and float(loss.detach()) == pytest.approx(float(terms["speaker_id"]))
    grads = grads_of(model, loss)
    assert set(grads) == {n for n, _ in model.named_parameters() if n.startswith(("voice_net.", "speaker_classifier."))}
    assert all(g is not None and g.abs().max() > 0 for g in grads.values())
    assert all(p.grad is None for n, p in model.named_parameters() if n not in grads)  # face stream, heads: nothing
    model.set_stage(1)  # main: everything but the speaker classifier, the voice stream included (fine-tuned)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if not n.startswith("speaker_classifier.")}


@pytest.mark.parametrize("method", PRETRAINED)
def test_speaker_pretraining_learns_and_the_main_stage_starts_from_it(method, corpus, tmp_path, monkeypatch):
    manifest, root = corpus
    cls = type(get_method(method).build(resolve(method, "debug"), 4, 64))
    at_start = {}
    orig = cls.stage_optimizers

    def spy(self, cfg):  # the weights each stage starts from (after the trainer loaded them)
        at_start[self.stage_name] = {k: t.clone() for k, t in self.state_dict().items()}
        return orig(self, cfg)

    monkeypatch.setattr(cls, "stage_optimizers", spy)
    tr.train(method, manifest, root, tmp_path, with_pretrain(method), RUN)
    log = pd.read_csv(tmp_path / "log.csv")
    pre = log[log["stage"] == "speaker_pretrain"]
    assert len(pre) == 4 and pre["best"].tolist() == [False, False, False, True]  # keeps its last epoch
    loss = pre["speaker_id"].to_numpy()  # starts at chance, ln 32 = 3.47
    assert (np.diff(loss) < 0).all() and loss[-1] < 0.9 * loss[0], pre.to_string()
    assert pre["speaker_acc"].iloc[-1] > pre["speaker_acc"].iloc[0]
    pretrained = torch.load(tmp_path / "state" / "best-speaker_pretrain.pt", weights_only=False)["model"]
    init, main = at_start["speaker_pretrain"], at_start["main"]
    voice = [k for k in init if k.startswith("voice_net.")]
    assert all(torch.equal(main[k], pretrained[k]) for k in voice)
    assert not all(torch.equal(main[k], init[k]) for k in voice)  # the voice stream was trained
    untouched = [k for k in init if not k.startswith(("voice_net.", "speaker_classifier."))]
    assert all(torch.equal(main[k], init[k]) for k in untouched)  # face stream, heads (and their buffers)


@pytest.mark.parametrize("method", method_names())
def test_a_stage_without_a_score_keeps_its_last_epoch(method):
    # the trainer validates nothing in an unscored stage, so nothing there could choose an epoch
    model = get_method(method).build(resolve(method, "debug"), 4, 64)
    names = [s.name for s in model.stages()]
    assert set(model.unscored_stages) <= set(model.select_last) & set(names)
    assert names[-1] not in model.unscored_stages  # the model is scored after its last stage
