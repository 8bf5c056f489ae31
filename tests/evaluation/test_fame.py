"""The FAME protocol: languages in config, trial lists per test language, heard / unheard tables,
reference rows, and the challenge's score files."""

import zipfile

import numpy as np
import pandas as pd
import pytest

from facevoice.common.config import defaults
from facevoice.common.config import section as complete_section
from facevoice.data import mavceleb
from facevoice.data.inputs import InputError
from facevoice.evaluation import evaluate as E
from facevoice.evaluation import fame, metrics, trials
from facevoice.testing import synthetic_embeddings, synthetic_manifest
from helpers import Cells

DCF = defaults("evaluation.dcf")  # minDCF's settings (config evaluation.dcf)

SMALL = {"matching": {"n_trials": 20, "n_max": 3}}


def small(**over):
    """The evaluation section of these tests: SMALL and ``over`` over the schema's defaults."""
    return complete_section("evaluation", {**SMALL, **over})


def language_manifest(seed=0):
    """A synthetic manifest whose identities speak English in video 0 and Urdu in video 1,
    except that the first test identity has no Urdu video."""
    m = synthetic_manifest({"train": 6, "val": 2, "test": 8}, videos=2, clips=2, frames=2, seed=seed)
    video = m["clip"].str.split("/").str[1]
    m["language"] = np.where(video == "vid00", "English", "Urdu")
    first_test = sorted(m.loc[m["split"] == "test", "identity"].unique())[0]
    return m[~((m["identity"] == first_test) & (m["language"] == "Urdu"))].reset_index(drop=True), first_test


# --------------------------------------------------------------------------- config


def test_fame_languages_are_checked_against_the_clips():
    clips, _ = language_manifest()
    cfg = {"input": {"layout": "mavceleb"}, "fame": {"train_language": "Urdu", "version": "v1"}}
    assert mavceleb.fame_languages(clips, cfg) == (["Urdu"], ["English", "Urdu"])
    cfg["fame"]["test_languages"] = ["English"]
    assert mavceleb.fame_languages(clips, cfg) == (["Urdu"], ["English"])
    # both training languages in one run: a list (a single string above still works)
    cfg["fame"]["train_language"] = ["English", "Urdu"]
    assert mavceleb.fame_languages(clips, cfg) == (["English", "Urdu"], ["English"])
    assert mavceleb.fame_languages(clips, {"input": {"layout": "mavceleb"}, "fame": {}}) is None
    for section, match in [({"train_language": "Hindi", "version": "v2"},
                            r"fame.train_language.*'Hindi'.*\['English', 'Urdu'\]"),
                           ({"train_language": "Urdu", "version": "v1", "test_languages": ["German"]},
                            r"fame.test_languages.*\['German'\]"),
                           # the score files are named after the version: required, never guessed
                           ({"train_language": "Urdu"}, r"'fame.version' is None.*required.*v1 \(English-Urdu\)"),
                           ({"train_language": "Urdu", "version": "v4"}, r"'fame.version' is 'v4'"),
                           ({"train_language": "Urdu", "version": "v2"},
                            r"\['Urdu'\] is not a language of MAV-Celeb v2 \(English-Hindi\)")]:
        with pytest.raises(InputError, match=match):
            mavceleb.fame_languages(clips, {"input": {"layout": "mavceleb"}, "fame": section})
    with pytest.raises(InputError, match=r"only input.layout 'mavceleb' gives clips a language"):
        mavceleb.fame_languages(clips, {"input": {"layout": "videos"}, "fame": {"train_language": "Urdu"}})


def test_schema_takes_the_fame_section():
    import yaml
    from helpers import REPO

    from facevoice.common.config import ConfigError, validate

    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["input"] = {"layout": "mavceleb", "voices": "voices", "faces": "faces", "splits": "identity_splits.txt"}
    cfg["fame"] = {"train_language": "English", "version": "v1", "test_languages": ["English", "Urdu"]}
    validate(cfg)
    with pytest.raises(ConfigError, match=r"fame.version"):
        validate({**cfg, "fame": {**cfg["fame"], "version": "v9"}})
    cfg["fame"]["heard"] = "English"
    with pytest.raises(ConfigError, match=r"unknown config key 'fame.heard'"):
        validate(cfg)


# --------------------------------------------------------------------------- trial lists per language


def test_trial_lists_per_test_language():
    m, first_test = language_manifest()
    lists = {lang: trials.generate(m, "test", seed=3, config=small(verification={"n_trials": 40, "strata": ["U"]}),
                                   language=lang) for lang in ("English", "Urdu")}
    lang_of = dict(zip(m["item"], m["language"]))
    for lang, ls in lists.items():
        v, meta = ls["verification"]
        assert meta["language"] == lang
        assert {lang_of[i] for i in v["face"]} | {lang_of[i] for i in v["voice"]} == {lang}
        assert set(v["face_identity"]) | set(v["voice_identity"]) <= set(m.loc[m["split"] == "test", "identity"])
        assert (v["label"] == (v["face_identity"] == v["voice_identity"])).all()
        assert v["label"].sum() == len(v) - v["label"].sum() > 0  # half positive
        assert {lang_of[i] for i in ls["retrieval"][0]["item"]} == {lang}
    # the identity without Urdu items is in the English lists only
    urdu, english = lists["Urdu"]["verification"][0], lists["English"]["verification"][0]
    assert first_test not in set(urdu["face_identity"]) and first_test in set(english["face_identity"])
    # without a language: the lists of before, and no language in the metadata
    plain = trials.generate(m, "test", seed=3, config=small(verification={"n_trials": 40, "strata": ["U"]}))
    assert "language" not in plain["verification"][1]
    with pytest.raises(ValueError, match=r"no item in language 'Hindi'.*\['English', 'Urdu'\]"):
        trials.generate(m, "test", seed=3, config=small(), language="Hindi")
    with pytest.raises(ValueError, match=r"only the mavceleb layout gives one"):
        trials.generate(m.drop(columns="language"), "test", seed=3, config=small(), language="English")


def test_trials_command_takes_a_language(tmp_path):
    m, _ = language_manifest()
    m.to_parquet(tmp_path / "manifest.parquet")
    args = ["--manifest", str(tmp_path / "manifest.parquet"), "--split", "test", "--seed", "1",
            "--params", '{"verification": {"n_trials": 20, "strata": ["U"]}, "matching": {"n_max": 2}}']
    assert trials.main(args + ["--out", str(tmp_path / "urdu"), "--language", "Urdu"]) == 0
    v = pd.read_parquet(tmp_path / "urdu" / "verification.parquet")
    assert set(m.set_index("item").loc[v["voice"], "language"]) == {"Urdu"}
    assert trials.main(args + ["--out", str(tmp_path / "x"), "--language", "Hindi"]) == 2
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- tables


def test_results_table_labels_heard_and_unheard():
    from facevoice.evaluation.results import VerificationResult

    def res(eer, auc):
        return VerificationResult(available=True, eer=eer, auc=auc, min_dcf=0.9, min_cllr=0.8, n_trials=100)

    results = {("dje", "English", "English"): res(0.30, 0.75), ("dje", "English", "Urdu"): res(0.40, 0.65),
               ("fop", "English", "Urdu"): VerificationResult.unavailable("no trials"),
               ("fop", "English", "English"): None}
    t = fame.results_table(results)
    assert t.columns.tolist() == fame.TABLE_COLUMNS
    row = t.set_index(["method", "test_language"]).loc[("dje", "Urdu")]
    assert row["condition"] == "unheard" and row["eer"] == pytest.approx(40.0) and row["auc"] == pytest.approx(65.0)
    assert row["min_dcf"] == pytest.approx(0.9) and row["min_cllr"] == pytest.approx(0.8)  # costs, never percent
    assert t.set_index(["method", "test_language"]).loc[("dje", "English"), "condition"] == "heard"
    o = fame.overall(t).set_index("method")
    assert o.loc["dje", "overall_eer"] == pytest.approx(35.0) and o.loc["dje", "n_cells"] == 2
    assert not o.loc["dje", "challenge"]  # two cells are not the challenge's score
    assert "fop" not in o.index  # an unavailable cell is no score
    assert t.set_index(["method", "test_language"]).loc[("fop", "English"), ["eer", "auc"]].isna().all()
    # the four cells (two training languages x heard / unheard): their mean is the challenge's score
    results.update({("dje", "Urdu", "English"): res(0.50, 0.6), ("dje", "Urdu", "Urdu"): res(0.20, 0.8)})
    o = fame.overall(fame.results_table(results)).set_index("method")
    assert o.loc["dje", "overall_eer"] == pytest.approx(35.0) and o.loc["dje", "n_cells"] == 4
    assert o.loc["dje", "challenge"]


def test_reference_rows_match_the_published_overall_scores():
    ref = fame.reference_rows()
    assert len(ref) == 12 and set(ref["condition"]) == {"heard", "unheard"}
    for corpus, overall in fame.BASELINE_OVERALL.items():
        rows = ref[ref["corpus"] == corpus]
        # the four cells give the published mean (within the rounding of five printed figures)
        assert abs(rows["eer"].mean() - overall) <= 0.1, corpus
        assert rows["source"].str.contains("mavceleb/mavceleb_baseline README, commit").all()
        assert rows["editions"].str.match(r"FAME 20(24|26)").all()
    cell = ref.set_index(["corpus", "train_language", "test_language"])
    # heard: trained and tested on the same language (the README's table is train x test language)
    assert cell.loc[("MAV-Celeb v1", "Urdu", "Urdu"), "eer"] == 25.8
    assert cell.loc[("MAV-Celeb v1", "Urdu", "Urdu"), "condition"] == "heard"
    assert cell.loc[("MAV-Celeb v1", "Urdu", "English"), "eer"] == 40.4
    assert cell.loc[("MAV-Celeb v3", "German", "German"), "eer"] == 37.9


# --------------------------------------------------------------------------- score files


def handmade(tmp_path):
    lst = tmp_path / "English_test.txt"
    lst.write_text("ysuvkz41 voices/English/00000.wav faces/English/00000.jpg\n"
                   "tog3zj45 voices/English/00001.wav faces/English/00001.jpg\n"
                   "\n"
                   "ky5xfj1d voices/English/00001.wav faces/English/00000.jpg\n")
    emb = pd.DataFrame({
        "id": ["voices/English/00000.wav", "voices/English/00001.wav",
               "faces/English/00000.jpg", "faces/English/00001.jpg"],
        "modality": ["voice", "voice", "face", "face"],
        "embedding": [[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [1.0, 1.0]]})
    return lst, emb


def test_score_file_from_a_handmade_list(tmp_path):
    lst, emb = handmade(tmp_path)
    listed = fame.read_test_list(lst)
    assert listed["key"].tolist() == ["ysuvkz41", "tog3zj45", "ky5xfj1d"]
    assert fame.list_language(lst) == "English"
    scores = fame.submission_scores(listed, emb, E.CosineScorer())
    # cosine 1, cos 45 degrees, 0 -> distances 1 - cos: the same person's pair scores lowest
    assert scores["score"].tolist() == pytest.approx([0.0, 1 - np.sqrt(0.5), 1.0])
    heard = fame.write_submission(scores, tmp_path / "sub", "v1", "English", "English")
    unheard = fame.write_submission(scores, tmp_path / "sub", "v1", "Urdu", "English")
    # computeScore.py's names: version, then the training language, for both files
    assert heard.name == "sub_score_v1_English_heard.txt" and unheard.name == "sub_score_v1_Urdu_unheard.txt"
    assert heard.read_text() == "ysuvkz41 0.000000\ntog3zj45 0.292893\nky5xfj1d 1.000000\n"
    back = fame.read_submission(heard)
    assert back["key"].tolist() == listed["key"].tolist()
    z = fame.zip_submission([unheard, heard], tmp_path / "submission.zip")
    with zipfile.ZipFile(z) as f:
        assert f.namelist() == ["sub_score_v1_English_heard.txt", "sub_score_v1_Urdu_unheard.txt"]  # flat
        assert f.read("sub_score_v1_English_heard.txt") == heard.read_bytes()
    first = z.read_bytes()
    assert fame.zip_submission([heard, unheard], tmp_path / "submission.zip").read_bytes() == first  # reproducible


def test_score_file_refuses_what_it_cannot_score(tmp_path):
    lst, emb = handmade(tmp_path)
    with pytest.raises(KeyError, match=r"1 face paths of the test list have no embedding.*faces/English/00001.jpg"):
        fame.submission_scores(fame.read_test_list(lst), emb[emb["id"] != "faces/English/00001.jpg"],
                               E.CosineScorer())
    bad = tmp_path / "Urdu_test.txt"
    bad.write_text("k1 voices/Urdu/00000.wav faces/Urdu/00000.jpg\nk1 voices/Urdu/00001.wav faces/Urdu/00001.jpg\n")
    with pytest.raises(ValueError, match=r"Urdu_test.txt:2: key 'k1' appears twice"):
        fame.read_test_list(bad)
    bad.write_text("k1 voices/Urdu/00000.wav\n")
    with pytest.raises(ValueError, match=r"Urdu_test.txt:1: expected 'key voice_path face_path'"):
        fame.read_test_list(bad)
    with pytest.raises(ValueError, match=r"named <Language>_test.txt"):
        fame.list_language(tmp_path / "test.txt")


def test_the_challenges_way_gives_the_pipelines_eer(tmp_path):
    """Our own test list written in the challenge's format, scored through the score file (distances,
    lower = same), gives the EER and AUC that `facevoice evaluate` gives on the same trials."""
    m, _ = language_manifest()
    lists = trials.generate(m, "test", seed=5, config=small(verification={"n_trials": 200, "strata": ["U"]}),
                            language="English")
    emb_df = synthetic_embeddings(m, "test", dim=16, signal=0.6, seed=2)
    res, _ = E.evaluate(E.embeddings_from_table(emb_df), {"verification": lists["verification"]}, n_boot=0, dcf=DCF)
    listed, labels = fame.challenge_list(lists["verification"][0], "English")
    assert listed["key"].str.fullmatch(r"[0-9a-z]{8}").all() and listed["key"].is_unique
    path = fame.write_test_list(listed, tmp_path / "English_test.txt")
    assert fame.read_test_list(path).equals(listed)
    sub = fame.write_submission(fame.submission_scores(listed, emb_df, E.CosineScorer()), tmp_path, "v1", "Urdu", "English")
    got = fame.score_submission(fame.read_submission(sub), labels, DCF)
    want = res["verification"]["U"]
    assert 0.05 < want["eer"] < 0.45  # a real signal, not chance or perfection: the sign matters
    assert got["eer"] == pytest.approx(want["eer"], abs=1e-5) and got["auc"] == pytest.approx(want["auc"], abs=1e-5)
    with pytest.raises(ValueError, match="labelled keys have no score"):
        fame.score_submission(fame.read_submission(sub).iloc[1:], labels, DCF)


def test_training_manifest_keeps_the_heard_language_for_training_and_selection():
    m, first_test = language_manifest()
    t = mavceleb.training_manifest(m, "English")
    learn = t["split"].isin(["train", "val"])
    assert set(t.loc[learn, "language"]) == {"English"}
    assert t[~learn].reset_index(drop=True).equals(m[~m["split"].isin(["train", "val"])].reset_index(drop=True))
    with pytest.raises(ValueError, match="no language column"):
        mavceleb.training_manifest(m.drop(columns="language"), "English")


def read_upload(zip_path, lists_dir, labels_dir=None):
    """An uploaded zip read as the challenge's scorer would (our own reading of its rules, not its
    code): each member named ``sub_score_<version>_<TrainLanguage>_<heard|unheard>.txt`` at the top
    level, one ``key score`` line per key of the test list in the list's order (the unheard list:
    the version's other language), the score a distance ranked negated; the EER against the
    ``<Language>_labels.csv`` in ``labels_dir`` (default: beside the lists). Returns {(version,
    train, condition): keys, eer}."""
    import re

    out = {}
    with zipfile.ZipFile(zip_path) as z:
        for name in z.namelist():
            m = re.fullmatch(r"sub_score_(v[123])_([A-Za-z]+)_(heard|unheard)\.txt", name)
            assert m, f"{name}: not a score file name of the challenge (or not at the zip's top level)"
            version, train, cond = m.groups()
            pair = mavceleb.FAME_VERSIONS[version]
            language = train if cond == "heard" else next(x for x in pair if x != train)
            rows = [ln.split(" ") for ln in z.read(name).decode("ascii").split("\n") if ln]
            listed = [ln.split(" ")[0] for ln in (lists_dir / f"{language}_test.txt").read_text().splitlines()]
            assert [r[0] for r in rows] == listed and all(len(r) == 2 for r in rows)
            labels = pd.read_csv((labels_dir or lists_dir) / f"{language}_labels.csv", dtype={"key": str})
            labels = labels.set_index("key")["label"]
            scores = np.array([float(r[1]) for r in rows])
            out[(version, train, cond)] = {"keys": listed, "eer": metrics.verification_metrics(
                labels.loc[listed].to_numpy(), -scores, DCF)["eer"]}
    return out


def test_official_lists_are_scored_line_by_line(tmp_path):
    """`facevoice fame submit --official`: each line of an official list is scored on its clip's
    items (<Language>/test/<key>/voice and its first face); a line without an embedding (no
    speech kept, no face found) gets the median of the others, counted in the summary."""
    import json

    lists = tmp_path / "lists"
    lists.mkdir()
    keys = {"English": ["e1", "e2", "e3"], "Urdu": ["u1", "u2"]}
    rows = []
    for lang, ks in keys.items():
        (lists / f"{lang}_test.txt").write_text(
            "".join(f"{k} voices/{lang}/{n:05d}.wav faces/{lang}/{n:05d}.jpg\n" for n, k in enumerate(ks)))
        for n, k in enumerate(ks):
            rows.append((mavceleb.official_item(lang, k, "voice"), "voice", [1.0, float(n)]))
            if (lang, k) != ("English", "e3"):  # e3's image gave no face
                rows += [(mavceleb.official_item(lang, k, "face") + "0000", "face", [1.0, 0.0]),
                         (mavceleb.official_item(lang, k, "face") + "0001", "face", [0.0, 1.0])]
    emb = tmp_path / "emb.parquet"
    E.write_embeddings(emb, [r[0] for r in rows], [r[0].split("/")[0] for r in rows], [r[1] for r in rows],
                       np.array([r[2] for r in rows], dtype=np.float32))
    args = ["submit", "--official", "--version", "v1", "--model", "English", str(emb), "--out", str(tmp_path / "sub"),
            "--zip", str(tmp_path / "sub.zip"), "--summary", str(tmp_path / "sub.json"),
            "--list", str(lists / "English_test.txt"), "--list", str(lists / "Urdu_test.txt")]
    assert fame.main(args) == 0
    with zipfile.ZipFile(tmp_path / "sub.zip") as z:
        assert z.namelist() == ["sub_score_v1_English_heard.txt", "sub_score_v1_English_unheard.txt"]
        heard = [ln.split(" ") for ln in z.read("sub_score_v1_English_heard.txt").decode().splitlines()]
    # the first face (frame 0000, [1, 0]) against voices [1, 0], [1, 1]: cosine distances 0 and 1 - 1/sqrt(2)
    d = [0.0, 1 - 1 / np.sqrt(2)]
    assert [k for k, _ in heard] == keys["English"]
    assert [float(v) for _, v in heard] == pytest.approx(d + [np.median(d)], abs=1e-6)
    summary = json.loads((tmp_path / "sub.json").read_text())["files"]
    assert summary["sub_score_v1_English_heard.txt"]["n_imputed"] == 1
    assert summary["sub_score_v1_English_unheard.txt"] == {**summary["sub_score_v1_English_unheard.txt"],
                                                           "n_keys": 2, "n_imputed": 0}
    # without --official the lists' paths are looked up as ids: none is one
    assert fame.main([a for a in args if a != "--official"]) == 2


def test_fame_commands_write_the_table_lists_and_score_files(tmp_path):
    """`facevoice fame table / lists / submit` on trial lists per language and a method's embeddings,
    as the rules run them: the table's rows, a list per language, a zip of one line per key."""
    import json

    m, _ = language_manifest()
    m.to_parquet(tmp_path / "m.parquet")
    emb = tmp_path / "test.parquet"
    df = synthetic_embeddings(m, "test", dim=16, signal=0.6, seed=2)
    E.write_embeddings(emb, df["id"], df["identity"], df["modality"], np.stack(df["embedding"]))
    results = []
    for lang in ("English", "Urdu"):
        assert trials.main(["--manifest", str(tmp_path / "m.parquet"), "--split", "test", "--seed", "1", "--language",
                            lang, "--out", str(tmp_path / "trials" / lang), "--params",
                            '{"verification": {"n_trials": 60, "strata": ["U"]}, "matching": {"n_max": 2}}']) == 0
        E.run(str(emb), str(tmp_path / "trials" / lang), str(tmp_path / f"{lang}.json"), n_boot=0, verbose=False, dcf=DCF)
        results += ["--result", "m1", "Urdu", lang, str(tmp_path / f"{lang}.json")]
        assert fame.main(["lists", "--trials", str(tmp_path / "trials" / lang), "--language", lang,
                          "--out", str(tmp_path / "lists")]) == 0
    assert fame.main(["table", "--dataset", "syn", *results,
                      "--md", str(tmp_path / "t.md"), "--csv", str(tmp_path / "t.csv"),
                      "--html", str(tmp_path / "t.html")]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    ours = table[table["source"] == "this run"].set_index("test_language")
    assert ours["condition"].to_dict() == {"English": "unheard", "Urdu": "heard"} and set(ours["corpus"]) == {"syn"}
    want = json.loads((tmp_path / "English.json").read_text())["verification"]["U"]["eer"]
    assert ours.loc["English", "eer"] == pytest.approx(100 * want)
    assert len(table) == 2 + 12 and "| m1 | Urdu | English | unheard |" in (tmp_path / "t.md").read_text()
    got = json.loads((tmp_path / "English.json").read_text())["verification"]["U"]
    assert ours.loc["English", "min_dcf"] == pytest.approx(got["min_dcf"])  # a cost, as evaluate wrote it
    assert ours.loc["English", "min_cllr"] == pytest.approx(got["min_cllr"])
    md = (tmp_path / "t.md").read_text()
    assert "| minDCF (P_target=0.05) | min Cllr |" in md and "minDCF %" not in md
    assert f"| {got['min_dcf']:.3f} | {got['min_cllr']:.3f} |" in md
    # the report's page: the same three tables, their cells as the markdown prints them
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in md.splitlines() if ln.startswith("| ")]
    page = Cells((tmp_path / "t.html").read_text())
    assert page.rows == rows and len(rows) == 3 + 2 + 13  # three tables with their headings
    assert "FAME: heard / unheard (syn)" in (tmp_path / "t.html").read_text()
    assert any(n.startswith("Published overall: MAV-Celeb v1 33.4") for n in page.notes)
    lists = [str(tmp_path / "lists" / f"{lang}_test.txt") for lang in ("English", "Urdu")]
    args = ["submit", "--version", "v1", "--model", "Urdu", str(emb), "--out", str(tmp_path / "sub"),
            "--zip", str(tmp_path / "sub.zip"), "--summary", str(tmp_path / "sub.json")]
    assert fame.main(args + [x for p in lists for x in ("--list", p)]) == 0
    summary = json.loads((tmp_path / "sub.json").read_text())
    with zipfile.ZipFile(tmp_path / "sub.zip") as z:
        assert z.namelist() == ["sub_score_v1_Urdu_heard.txt", "sub_score_v1_Urdu_unheard.txt"]
    # read back as the challenge's scorer reads an upload: the zip's files by name, lines in list order
    back = read_upload(tmp_path / "sub.zip", tmp_path / "lists")
    assert set(back) == {("v1", "Urdu", "heard"), ("v1", "Urdu", "unheard")}
    assert back[("v1", "Urdu", "unheard")]["keys"] == fame.read_test_list(lists[0])["key"].tolist()
    assert back[("v1", "Urdu", "unheard")]["eer"] == pytest.approx(want, abs=1e-6)
    assert summary["files"]["sub_score_v1_Urdu_unheard.txt"]["eer"] == pytest.approx(want, abs=1e-6)
    # two unheard languages would share a file name: refused, nothing zipped
    hindi = tmp_path / "lists" / "Hindi_test.txt"
    hindi.write_text((tmp_path / "lists" / "English_test.txt").read_text())
    assert fame.main(args[:-2] + ["--zip", str(tmp_path / "x.zip"), "--list", lists[0], "--list", str(hindi)]) == 2
    assert not (tmp_path / "x.zip").exists()


def test_the_trainer_reads_the_training_language_alone(corpus, tmp_path):
    """`facevoice train --language L`: the train and val items in L only (counted in run.json),
    L in run.json and in the checkpoint's fingerprint; without it, every item as before."""
    import json

    from facevoice.training import train as tr

    manifest, root = corpus
    m = pd.read_parquet(manifest)
    m["language"] = np.where(m["clip"].str.split("/").str[1] == "v00", "English", "Urdu")
    path = tmp_path / "manifest.parquet"
    m.to_parquet(path)
    args = ["--method", "dje", "--manifest", str(path), "--shards-root", str(root), "--profile", "debug",
            "--set", "epochs=1", "--set", "batches_per_epoch=1", "--threads", "1", "--seed", "0", "--no-progress"]
    assert tr.main(args + ["--out", str(tmp_path / "en"), "--language", "English"]) == 0
    assert tr.main(args + ["--out", str(tmp_path / "all")]) == 0
    en, every = (json.loads((tmp_path / d / "run.json").read_text()) for d in ("en", "all"))
    train_faces = m[(m["split"] == "train") & (m["modality"] == "face")]
    assert en["data"]["train_faces"] == int((train_faces["language"] == "English").sum()) < len(train_faces)
    assert every["data"]["train_faces"] == len(train_faces)
    assert en["language"] == en["run"]["language"] == "English" and "language" not in every
    assert "language" not in every["run"]
    fingerprints = [tr.torch.load(tmp_path / d / "state" / "last.pt", weights_only=False)["fingerprint"]
                    for d in ("en", "all")]
    assert fingerprints[0] != fingerprints[1]
    with pytest.raises(SystemExit, match=r"--language Hindi.*no identities|identities with both a face and a voice "
                                         r"in language Hindi"):
        tr.main(args + ["--out", str(tmp_path / "hi"), "--language", "Hindi"])
    m.drop(columns="language").to_parquet(path)
    with pytest.raises(SystemExit, match=r"--language English: the manifest has no language column"):
        tr.main(args + ["--out", str(tmp_path / "none"), "--language", "English"])


# --------------------------------------------------------------------------- the workflow


def plan(tmp_path, train_language, methods=("chance",)):
    """`snakemake -n -p` of the MAV-Celeb test tree (mavceleb_trees.TREE) with fame.train_language."""
    from mavceleb_trees import config_for, make_tree, snakemake_on

    make_tree(tmp_path)
    cfg = config_for(tmp_path)
    cfg.update(dataset="mav", results="results")
    cfg["train"]["methods"], cfg["generate"]["methods"] = list(methods), []
    cfg["fame"] = {"train_language": train_language, "version": "v1"}
    res = snakemake_on(tmp_path, cfg, "-n", "-p")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    counts = dict(ln.split()[:2] for ln in res.stdout.splitlines() if ln.split()[:1] and
                  ln.split()[0].startswith(("fame_", "train")))
    commands = [ln for ln in res.stdout.splitlines() if "facevoice.training.train" in ln]
    return counts, commands


def test_the_workflow_plans_the_fame_rules(tmp_path):
    counts, commands = plan(tmp_path / "fame", "English", methods=("chance", "dje"))
    assert counts == {"train": "2", "fame_train": "2", "fame_embed": "2", "fame_trials": "2", "fame_evaluate": "4",
                      "fame_lists": "2", "fame_table": "1", "fame_submission": "2"}
    # the regular models train on every language at their usual paths; the FAME ones on English
    fame_cmds = [c for c in commands if "/fame/train/English/" in c]
    assert len(commands) == 4 and len(fame_cmds) == 2
    assert all(c.rstrip().endswith("--language English 2> " + c.split("2> ")[-1]) for c in fame_cmds)
    assert all("--language" not in c for c in commands if c not in fame_cmds)
    # both training languages in one run: a model per method and language, the four cells
    counts, commands = plan(tmp_path / "both", ["English", "Urdu"], methods=("chance", "dje"))
    assert counts == {"train": "2", "fame_train": "4", "fame_embed": "4", "fame_trials": "2", "fame_evaluate": "8",
                      "fame_lists": "2", "fame_table": "1", "fame_submission": "2"}
    assert sum("--language Urdu" in c for c in commands) == 2
    counts, commands = plan(tmp_path / "plain", None)
    assert not any(k.startswith("fame_") for k in counts) and counts["train"] == "1"
    assert "--language" not in commands[0]


def test_lint_is_clean_with_the_fame_rules(tmp_path):
    """`snakemake --lint` with fame.train_language set (the rules exist only then)."""
    import yaml
    from helpers import REPO, snakemake
    from mavceleb_trees import config_for, make_tree

    make_tree(tmp_path)
    cfg = config_for(tmp_path)
    cfg.update(dataset="mav", results="results")
    cfg["train"]["methods"], cfg["generate"]["methods"] = ["chance", "dje"], []
    cfg["fame"] = {"train_language": "English", "version": "v1"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                    "--lint")
    assert "fame: training on English" in res.stdout + res.stderr  # the FAME rules were read
    assert res.returncode == 0, f"snakemake --lint found problems:\n{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
@pytest.mark.slow
def test_fame_through_snakemake(demo_corpus, tmp_path):
    """A miniature two-language release of demo media (not MAV-Celeb) with fame.train_language
    (both languages) and the flat official test set (fame.official): the layout's preprocessing
    keeps every utterance and its video's faces with their language, the train jobs read their
    language's items alone, the table has each method's four cells and overall score beside the
    baseline's rows, each method's zip of our own lists holds the four score files, one line per
    key of the written lists, whose EER is the evaluation's, and each method's official zip holds
    the four score files of the official lists, read back as the challenge's scorer reads them."""
    import json

    from mavceleb_trees import config_for, snakemake_on

    from facevoice.data.inputs import list_clips, read_splits
    from facevoice.data.inputs import read_meta as read_vox1_meta
    from facevoice.testing import fame_official_tree, mavceleb_tree

    meta, splits = read_vox1_meta(demo_corpus / "vox1_meta.csv"), read_splits(demo_corpus / "identity_splits.txt")
    ids = [i for s in ("train", "val", "test") for i in [i for i in sorted(meta) if splits[meta[i].name] == s][:2]]
    root = mavceleb_tree(demo_corpus, tmp_path / "mav", identities=ids)
    cfg = config_for(root, str(root / "v2_meta.csv"))
    cfg.update(dataset="mav", results="results")
    cfg["frames"]["max_per_clip"] = 2
    cfg["shards"]["buckets"] = 1  # one shard per split and modality: the fewest jobs
    cfg["train"].update(methods=["chance", "dje"], profile="debug", threads=1)
    cfg["generate"]["methods"] = []
    cfg["evaluation"]["bootstrap"]["n"] = 20
    official = fame_official_tree(root, tmp_path / "official", per_language=1)
    cfg["fame"] = {"train_language": ["English", "Urdu"], "version": "v1", "test_languages": [],
                   "official": {"root": str(official), "lists": str(official / "lists")}}
    methods, out = cfg["train"]["methods"], tmp_path / "results" / "mav"
    targets = [f"results/mav/fame/{f}" for f in ["table.md", "table.csv", "table.html"] + [f"submission/{m}.zip" for m in methods]
               + [f"official/submission/{m}.zip" for m in methods]]
    res = snakemake_on(tmp_path, cfg, "--cores", "2", *targets)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]

    # preprocessing of the MAV-Celeb layout: every utterance a voice item, its video's faces its
    # face items, each with its language (nothing of this demo media is rejected)
    m = pd.read_parquet(out / "shards" / "manifest.parquet")
    clips = list_clips(cfg)
    for modality in ("voice", "face"):
        assert set(m.loc[m["modality"] == modality, "clip"]) == set(clips["clip"]), modality
    assert m.groupby("split")["language"].agg(lambda s: sorted(set(s))).to_dict() == {
        "train": ["English", "Urdu"], "val": ["English", "Urdu"], "test": ["English", "Urdu"]}
    assert (m["language"] == m["clip"].map(dict(zip(clips["clip"], clips["language"])))).all()
    assert set(m["gender"]) <= {"m", "f"}
    train_voices = m[(m["split"] == "train") & (m["modality"] == "voice")]
    for method in methods:  # each FAME train job saw its language's train items alone
        for lang in ("English", "Urdu"):
            run = json.loads((out / "fame" / "train" / lang / method / "run.json").read_text())
            assert run["language"] == lang
            assert run["data"]["train_voices"] == int((train_voices["language"] == lang).sum()) < len(train_voices)

    table = pd.read_csv(out / "fame" / "table.csv")
    ours = table[table["source"] == "this run"]
    assert sorted(ours["method"].unique()) == sorted(methods)
    for method in methods:
        rows = ours[(ours["method"] == method) & (ours["train_language"] == "English")].set_index("test_language")
        assert rows["condition"].to_dict() == {"English": "heard", "Urdu": "unheard"}
        assert len(ours[ours["method"] == method]) == 4  # the challenge's four cells
        assert rows["eer"].between(0, 100).all() and (rows["n_trials"] > 0).all()
    assert (table["method"] == "FOP (baseline)").sum() == 12
    assert "| dje | English | Urdu | unheard |" in (out / "fame" / "table.md").read_text()
    assert "| dje | Urdu | English | unheard |" in (out / "fame" / "table.md").read_text()
    md = (out / "fame" / "table.md").read_text()  # the report's page: the same tables
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in md.splitlines() if ln.startswith("| ")]
    assert Cells((out / "fame" / "table.html").read_text()).rows == rows

    for method in methods:
        summary = json.loads((out / "fame" / "submission" / f"{method}.json").read_text())
        with zipfile.ZipFile(out / "fame" / "submission" / f"{method}.zip") as z:
            assert z.namelist() == ["sub_score_v1_English_heard.txt", "sub_score_v1_English_unheard.txt",
                                    "sub_score_v1_Urdu_heard.txt", "sub_score_v1_Urdu_unheard.txt"]
            for name, train, language in [("sub_score_v1_English_heard.txt", "English", "English"),
                                          ("sub_score_v1_English_unheard.txt", "English", "Urdu"),
                                          ("sub_score_v1_Urdu_heard.txt", "Urdu", "Urdu"),
                                          ("sub_score_v1_Urdu_unheard.txt", "Urdu", "English")]:
                keys = fame.read_test_list(out / "fame" / "lists" / f"{language}_test.txt")["key"].tolist()
                lines = [ln.split() for ln in z.read(name).decode().splitlines()]
                assert [ln[0] for ln in lines] == keys and all(len(ln) == 2 for ln in lines)
                assert np.isfinite([float(ln[1]) for ln in lines]).all()
                # scored back against the lists' labels: the EER of facevoice evaluate on the same trials
                evaluated = json.loads((out / "fame" / "evaluation" / train / language / f"{method}.json").read_text())
                assert summary["files"][name]["eer"] == pytest.approx(evaluated["verification"]["U"]["eer"], abs=1e-6)

    check_official_uploads(out, official, methods)


def check_official_uploads(out, official, methods):
    """Each method's upload of the official test set, read back as the challenge's scorer reads it."""
    import json

    n_lines = {lang: len((official / "lists" / f"{lang}_test.txt").read_text().splitlines())
               for lang in ("English", "Urdu")}
    assert all(n > 0 for n in n_lines.values())
    for method in methods:
        upload = out / "fame" / "official" / "submission" / f"{method}.zip"
        with zipfile.ZipFile(upload) as z:
            assert z.namelist() == ["sub_score_v1_English_heard.txt", "sub_score_v1_English_unheard.txt",
                                    "sub_score_v1_Urdu_heard.txt", "sub_score_v1_Urdu_unheard.txt"]
        back = read_upload(upload, official / "lists", official / "hidden")
        assert set(back) == {("v1", t, c) for t in ("English", "Urdu") for c in ("heard", "unheard")}
        for train in ("English", "Urdu"):
            assert len(back[("v1", train, "heard")]["keys"]) == n_lines[train]
        summary = json.loads((out / "fame" / "official" / "submission" / f"{method}.json").read_text())
        assert summary["version"] == "v1" and all(e["n_imputed"] <= e["n_keys"] for e in summary["files"].values())
    # each list line went through the batch stages as a clip <Language>/test/<key>
    official_manifest = pd.read_parquet(out / "fame" / "official" / "shards" / "manifest.parquet")
    assert set(official_manifest["clip"].str.split("/").str[1]) == {"test"}
