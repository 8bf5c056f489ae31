"""``facevoice compare`` writes the tables (with reference rows) and the plots."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from helpers import Cells

from facevoice.common.config import defaults, section
from facevoice.evaluation import compare as C
from facevoice.evaluation import evaluate as E
from facevoice.evaluation import protocol
from facevoice.evaluation import trials as T
from facevoice.evaluation.protocols import PROTOCOLS, SEEN_HEARD, UNSEEN_UNHEARD, declared
from facevoice.testing import synthetic_embeddings, synthetic_manifest

DCF = defaults("evaluation.dcf")  # minDCF's settings (config evaluation.dcf)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    man = synthetic_manifest({"test": 12}, videos=1, clips=2, frames=2, seed=4)
    protocol.write_trials(T.generate(man, "test", 1, section("evaluation", {"verification": {"n_trials": 120},
                                                                     "matching": {"n_trials": 40}})), d / "trials")
    out = []
    for name, signal in (("alpha", 0.4), ("beta", 1.0)):
        df = synthetic_embeddings(man, "test", dim=8, signal=signal, seed=len(name))
        E.write_embeddings(d / f"{name}.parquet", df["id"], df["identity"], df["modality"],
                           list(df["embedding"]))
        E.run(str(d / f"{name}.parquet"), str(d / "trials"), str(d / f"{name}.json"),
              str(d / f"{name}_roc.parquet"), n_boot=30, verbose=False, dcf=DCF)
        out.append(name)
    return d, out


def test_writes_every_table_and_plot(results, tmp_path):
    d, names = results
    args = ["--results"] + [str(d / f"{n}.json") for n in names] + \
           ["--roc"] + [str(d / f"{n}_roc.parquet") for n in reversed(names)] + ["--out", str(tmp_path)]
    assert C.main(args) == 0
    for f in C.OUTPUTS:
        p = tmp_path / f
        assert p.exists() and p.stat().st_size > 0, f
        if f.endswith(".png"):
            assert p.read_bytes()[:8] == PNG
    md = (tmp_path / "verification.md").read_text()
    assert "**alpha**" in md and "**beta**" in md and "| *chance level* | expected at chance |" in md
    # the report's HTML page of each table: the Markdown table's cells, its title and numbered notes
    for table in C.TABLES:
        text = (tmp_path / f"{table}.md").read_text()
        rows = [[c.strip().strip("*") for c in ln.strip().strip("|").split("|")]
                for ln in text.splitlines() if ln.startswith("| ")]
        page = Cells((tmp_path / f"{table}.html").read_text())
        assert page.rows == rows
        assert page.notes == [C.FOOTER] + [n for n in text.splitlines() if re.match(r"\d+\. ", n)]
        assert text.splitlines()[0][4:] in (tmp_path / "tables.html").read_text()  # its title, on the page of all
    # the papers' figures, marked as reported, each row named by its method, paper and table
    assert "| *DJE, Wang et al. 2020 (Table 2)* | reported | 85.03 |" in md
    assert "| *SSNet+FOP, Zhong et al. 2025 (Tables 2, 3)* | reported | 82.50 |" in md and "25.60" in md
    # stratum A has no age metadata: a dash and the reason, never a number
    row = next(line for line in md.splitlines() if line.startswith("| **alpha**"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2 + 3] == f"{C.DASH} [1]"  # AUC A, with the number of the note that says why
    # AUC, EER, minDCF and min Cllr: the cells of A and GNA refer to it, no other
    assert [c == f"{C.DASH} [1]" for c in cells[2:]] == [s in ("A", "GNA") for s in protocol.VERIFICATION_STRATA * 4]
    # the reason once for both methods and both strata it empties (A, GNA), numbered
    assert md.count("no age metadata") == 1
    assert "1. every method, A and GNA: unavailable (no age metadata" in md
    assert "\\begin{tabular}" in (tmp_path / "matching_1v2.tex").read_text()
    ret = (tmp_path / "retrieval.md").read_text()
    assert "0.73" in ret and "| *chance level* | expected at chance (exact E[AP], our gallery) |" in ret
    tables = (tmp_path / "tables.md").read_text()
    assert all(f"Unseen-unheard: {C.TITLES[t][0].lower()}{C.TITLES[t][1:]}" in tables for t in C.TABLES)


def test_csv_values_are_the_json_in_percent(results, tmp_path):
    d, names = results
    C.compare([d / f"{n}.json" for n in names], tmp_path, defaults("evaluation.compare"),
              [d / f"{n}_roc.parquet" for n in names])
    res = {n: json.loads((d / f"{n}.json").read_text()) for n in names}
    with open(tmp_path / "verification.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    for n in names:
        v = res[n]["verification"]["U"]
        assert float(rows[n]["auc_U"]) == pytest.approx(100 * v["auc"], rel=1e-5)
        assert float(rows[n]["eer_U_lo"]) == pytest.approx(100 * v["ci95"]["eer"][0], rel=1e-5)
        assert rows[n]["auc_A"] == "" and rows[n]["kind"] == "ours"
        assert float(rows[n]["mindcf_U"]) == pytest.approx(v["min_dcf"], rel=1e-5)  # a cost, not percent
        assert float(rows[n]["mindcf_U_hi"]) == pytest.approx(v["ci95"]["min_dcf"][1], rel=1e-5)
        assert float(rows[n]["mincllr_U"]) == pytest.approx(v["min_cllr"], rel=1e-5)  # a cost too
        assert float(rows[n]["mincllr_U_lo"]) == pytest.approx(v["ci95"]["min_cllr"][0], rel=1e-5)
    chance = rows["chance level"]
    assert chance["auc_U"] == "50" and chance["mindcf_U"] == "1" and chance["mincllr_U"] == "1"
    # minDCF is named with its P_target (the results' meta.dcf: the schema's default, VoxSRC's 0.05)
    md = (tmp_path / "verification.md").read_text()
    assert "| minDCF (P_target=0.05) U |" in md and "| min Cllr U |" in md and "minDCF (%)" not in md
    alpha = next(line for line in md.splitlines() if line.startswith("| **alpha**")).split("|")
    heads = [h.strip() for h in md.splitlines()[2].split("|")]
    assert alpha[heads.index("min Cllr U")].strip().startswith(f"{res['alpha']['verification']['U']['min_cllr']:.3f} [")
    dje = rows["DJE, Wang et al. 2020 (Table 2)"]
    assert dje["auc_GNA"] == "65.07" and dje["kind"] == "reported"
    with open(tmp_path / "matching_1vN.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert float(rows["beta"]["V-F_N6"]) == pytest.approx(100 * res["beta"]["matching"]["V-F"]["U"]["6"], rel=1e-5)
    assert float(rows["chance level"]["F-V_N4"]) == pytest.approx(25.0)
    assert rows["SSNet+FOP, Zhong et al. 2025 (Table 4)"]["V-F_N10"] == "37"


def test_no_reference_and_no_ci(results, tmp_path):
    d, names = results
    C.main(["--results", str(d / "alpha.json"), "--out", str(tmp_path), "--no-reference", "--no-ci"])
    md = (tmp_path / "verification.md").read_text()
    assert "reported" not in md.split("Ours:")[0] and "[" not in md.split("|---")[1].split("Ours:")[0]
    assert (tmp_path / "roc.png").read_bytes()[:8] == PNG  # drawn even without ROC files


def test_without_methods_writes_chance_and_reported_rows(tmp_path):
    assert C.main(["--out", str(tmp_path), "--params", '{"compare": {"decimals": 1}}']) == 0
    assert all((tmp_path / f).exists() for f in C.OUTPUTS)
    md = (tmp_path / "verification.md").read_text()
    assert "| 50.0 |" in md
    assert "85.03" in md  # a reported figure keeps its own digits
    assert not (tmp_path / "seenheard").exists()
    # --protocol seenheard: its tables, and the side-by-side table, exist without any result
    assert C.main(["--out", str(tmp_path / "seenheard"), "--protocol", "seenheard"]) == 0
    assert all((tmp_path / "seenheard" / f).exists() for f in C.OUTPUTS)
    md, csv_path, page = tmp_path / "side.md", tmp_path / "side.csv", tmp_path / "side.html"
    assert C.main(["--table", str(md), str(csv_path), str(page), "--protocol", "unseenunheard", "--results",
                   "--protocol", "seenheard", "--results"]) == 0
    assert "| **" not in md.read_text() and csv_path.exists()  # no method row
    assert len(Cells(page.read_text()).rows) == 1  # the header alone


def test_reference_yaml_matches_methods_md():
    papers = {p["key"]: p for p in C.load_reference()}
    assert set(papers) == {"ssnet_fop", "dje", "biq_mwrn", "voice2face"}
    for p in papers.values():
        for f in p["figures"]:
            # voice2face's figures are in the text of a news article (seed 004), not in a table
            assert f["table"].startswith("Table ") or (p["key"] == "voice2face" and f["table"] == "article text")
            assert f["protocol"] in ("verification", "matching", "retrieval")
    methods = Path(__file__).resolve().parents[1] / "fixtures" / "methods.md"  # its "Paper results" lines
    text = methods.read_text()
    for key, p in papers.items():
        if key == "voice2face":  # methods.md gives no figure for it: checked against the seed below
            continue
        section = text.split(f"### `{key}`")[1].split("###")[0]
        line = next(ln for ln in section.splitlines() if ln.startswith("- Paper results"))
        stated = {float(x) for x in re.findall(r"\d+(?:\.\d+)?", line)}
        ours = set()
        for f in p["figures"]:
            ours |= {float(f[k]) for k in ("auc", "eer", "map") if f.get(k) is not None}
            ours |= {float(v) for v in (f.get("n") or {}).values()}
        assert ours <= stated, (key, sorted(ours - stated))
        assert {float(x) for x in re.findall(r"\d+\.\d+", line)} <= ours, key


def test_seenheard_tables_and_both_protocols_side_by_side(results, tmp_path):
    d, names = results
    uu = [str(d / f"{n}.json") for n in names]
    sh = [str(d / f"{n}.json") for n in reversed(names)]  # any results stand in for the seen-heard ones
    assert C.main(["--results", *uu, "--out", str(tmp_path / "unseenunheard")]) == 0
    assert C.main(["--protocol", "seenheard", "--results", *sh, "--roc", *[str(d / f"{n}_roc.parquet") for n in names],
                   "--out", str(tmp_path / "seenheard")]) == 0
    assert C.main(["--table", str(tmp_path / "protocols.md"), str(tmp_path / "protocols.csv"),
                   str(tmp_path / "protocols.html"), "--protocol", "unseenunheard", "--results", *uu,
                   "--protocol", "seenheard", "--results", *sh]) == 0
    page = Cells((tmp_path / "protocols.html").read_text())
    assert [r[0] for r in page.rows] == ["Method", *names] and "Seen-heard AUC U (%)" in page.rows[0]
    for f in C.OUTPUTS:
        assert (tmp_path / "seenheard" / f).stat().st_size > 0, f
    md = (tmp_path / "seenheard" / "verification.md").read_text()
    assert md.startswith("### Seen-heard: cross-modal verification")
    assert "reported:" not in md  # the papers' figures are unseen-unheard: never under seen-heard
    uu_md = (tmp_path / "unseenunheard" / "verification.md").read_text()
    assert "*DJE, Wang et al. 2020 (Table 2)* | reported" in uu_md
    assert "No seen-heard figure of the source papers or the baselines" in (tmp_path / "seenheard" / "tables.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "protocols.csv")))
    assert [r["method"] for r in rows] == names
    for r in rows:
        res = json.loads((d / f"{r['method']}.json").read_text())
        for proto in ("unseenunheard", "seenheard"):
            assert float(r[f"{proto}_auc_U"]) == pytest.approx(100 * res["verification"]["U"]["auc"])
            assert float(r[f"{proto}_mindcf_U"]) == pytest.approx(res["verification"]["U"]["min_dcf"])
            assert float(r[f"{proto}_mincllr_U"]) == pytest.approx(res["verification"]["U"]["min_cllr"])
            assert float(r[f"{proto}_V-F_U"]) == pytest.approx(100 * res["matching"]["V-F"]["U"]["2"])
    table = (tmp_path / "protocols.md").read_text()
    assert "| Method | Unseen-unheard AUC U (%) |" in table and "Seen-heard 1:2 F-V U (%)" in table
    assert "| Unseen-unheard minDCF (P_target=0.05) U | Unseen-unheard min Cllr U |" in table


# --------------------------------------------------------------------------- voice2face, ablations

SEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "seeds"  # the seeds' lines these tests check


def _figure_values(figures):
    out = []
    for f in figures:
        out += [float(f[k]) for k in ("auc", "eer", "map") if f.get(k) is not None]
        out += [float(v) for v in (f.get("n") or {}).values()]
    return out


def test_ablations_yaml_names_tables_and_real_variants():
    from facevoice.training.methods import run_names

    runs = set(run_names())
    ablations = C.load_ablations()
    assert [(a["method"], a["seed"], a["table"]) for a in ablations] == [
        ("ssnet_fop", "000", "Table 6"), ("dje", "002", "Table 3"), ("biq_mwrn", "003", "Table 4")]
    for a in ablations:
        assert a["short"] and a["caption"] and a["rows"]
        for r in a["rows"]:
            assert r["label"] and r["paper_rows"] and r["figures"]
            v = r["variant"]
            assert v is None or (v in runs and v.split("-")[0] == a["method"]), v
            for f in r["figures"]:
                assert f["table"] == a["table"] and f["protocol"] in ("verification", "matching", "retrieval")
                assert f.get("test_set", "unseenunheard") == "unseenunheard"
        assert sum(r["variant"] == a["method"] for r in a["rows"]) == 1  # one full-model row
    # rows without a project variant say why in their table's note
    assert [r["label"] for a in ablations for r in a["rows"] if r["variant"] is None] == ["VGG-Face + VGG-Vox backbones"]
    assert "VGG-Face + VGG-Vox backbone pair has no variant" in " ".join(ablations[1]["note"].split())


def _cells(line):
    return [c.strip() for c in re.split(r"\t|\|", line)]


def test_transcribed_ablations_and_voice2face_are_the_seeds():
    files = {p.name[:3]: p.read_text(encoding="utf-8") for p in SEEDS.glob("0*.txt")}
    n_rows = 0
    for a in C.load_ablations():
        block = files[a["seed"]].split(a["caption"])[1].splitlines()[:30]
        for r in a["rows"]:
            for label in r["paper_rows"]:
                line = next(ln for ln in block if label in _cells(ln))
                printed = [c for c in _cells(line) if re.fullmatch(r"\d+(?:\.\d+)?", c) and c != label]
                assert sorted(float(x) for x in printed) == sorted(_figure_values(r["figures"])), (a["method"], label)
                n_rows += 1
    assert n_rows == 4 + 13 + 4  # every printed row of the three tables
    v2f = next(p for p in C.load_reference() if p["key"] == "voice2face")
    line = next(ln for ln in files["004"].splitlines() if "76.07%" in ln)
    assert "测试集" in line and "59.69%" in line  # test-set rates: all speakers, then gender-stratified
    by_stratum = {f["stratum"]: f["n"][2] for f in v2f["figures"]}
    assert by_stratum == {"U": 76.07, "G": 59.69}
    assert {f["direction"] for f in v2f["figures"]} == {"V-F"}  # a face generated from the voice vs two real faces


def test_voice2face_and_ablation_rows_in_the_tables(results, tmp_path):
    d, names = results
    res = json.loads((d / "alpha.json").read_text())
    res["meta"]["method"] = "dje-rank_only"  # alpha stands in for a run of the variant
    variant = tmp_path / "dje-rank_only.json"
    variant.write_text(json.dumps(res))
    out = tmp_path / "cmp"
    assert C.main(["--results", str(variant), str(d / "beta.json"), "--out", str(out)]) == 0
    one = (out / "matching_1v2.md").read_text()
    v2f = "voice2face, Wen et al. 2019, in a news article (article text)"
    row = next(ln for ln in one.splitlines() if ln.startswith(f"| *{v2f}* | reported |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:] == [C.DASH] * 4 + ["76.07", "59.69", C.DASH, C.DASH]  # F-V U G N GN, V-F U G N GN
    assert f"{v2f}: The article's protocol, not ours" in one
    lines = (out / "verification.md").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("| **dje-rank_only** | ours |"))
    assert lines[i + 1].startswith("| *DJE, only ranking loss, Wang et al. 2020 (Table 3)* | reported (ablation) "
                                   "| 83.15 |")
    assert lines[i + 2].startswith("| **beta** |")
    ver = "\n".join(lines)
    assert "*DJE, only identity loss, Wang et al. 2020 (Table 3)*" in ver  # the rest of Table 3
    assert "*DJE, VGG-Face + VGG-Vox backbones, Wang et al. 2020 (Table 3)*" in ver  # a row of no variant
    assert "SSNet+FOP, fusion" not in ver and "(ablation)" not in (out / "retrieval.md").read_text()
    with open(out / "verification.csv") as fh:
        rows = {r["method"]: r for r in csv.DictReader(fh)}
    assert rows["DJE, only ranking loss, Wang et al. 2020 (Table 3)"]["auc_U"] == "83.15"
    assert rows["DJE, only ranking loss, Wang et al. 2020 (Table 3)"]["kind"] == "reported"
    # no variant among the results, or the seen-heard protocol: no ablation row
    C.compare([d / f"{n}.json" for n in names], tmp_path / "plain", defaults("evaluation.compare"))
    C.compare([variant], tmp_path / "sh", defaults("evaluation.compare"), protocol="seenheard")
    for folder in ("plain", "sh"):
        assert "(ablation)" not in (tmp_path / folder / "verification.md").read_text(), folder


# --------------------------------------------------------------------------- the results' contract


def _edited(d, tmp_path, edit, name="alpha"):
    """alpha's results with ``edit(doc)`` applied, written to tmp_path."""
    doc = json.loads((d / f"{name}.json").read_text())
    edit(doc)
    path = tmp_path / f"{name}-edited.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_renamed_or_missing_key_fails_naming_the_key_and_the_file(results, tmp_path, capsys):
    from facevoice.evaluation.results import ResultsError

    d, _ = results

    def rename_auc(doc):
        doc["verification"]["G"]["roc_auc"] = doc["verification"]["G"].pop("auc")

    path = _edited(d, tmp_path, rename_auc)
    with pytest.raises(ResultsError, match=r"missing key 'verification\.G\.auc'; unknown key 'verification\.G\.roc_auc'"):
        C.compare([path], tmp_path / "out", defaults("evaluation.compare"))
    assert C.main(["--results", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "verification.G.auc" in err and "Traceback" not in err
    # a stratum, a direction, an N, a protocol taken away: each named
    for edit, key in ((lambda doc: doc["verification"].pop("N"), "verification.N"),
                      (lambda doc: doc["retrieval"].pop("V-F"), "retrieval.V-F"),
                      (lambda doc: doc["matching"]["F-V"]["U"].pop("6"), "matching.F-V.U.6"),
                      (lambda doc: doc["matching"]["V-F"]["G"]["ci95"].pop("2"), "matching.V-F.G.ci95.2"),
                      (lambda doc: doc.pop("matching"), "matching"),
                      (lambda doc: doc["meta"].pop("dcf"), "meta.dcf")):
        with pytest.raises(ResultsError, match=re.escape(key)) as err:
            C.load_results([_edited(d, tmp_path, edit)])
        assert "alpha-edited.json" in str(err.value)


def test_a_dash_only_where_the_results_say_unavailable(results, tmp_path):
    from facevoice.evaluation.results import ResultsError

    d, _ = results
    res = json.loads((d / "alpha.json").read_text())
    assert res["verification"]["A"]["available"] is False and "age" in res["verification"]["A"]["reason"]
    assert res["verification"]["U"]["available"] is True

    def unavailable_g(doc):  # G marked unavailable, as a small split would write it
        g = doc["verification"]["G"]
        g.update({k: None for k in ("auc", "eer", "eer_threshold", "min_dcf", "min_dcf_threshold", "min_cllr", "ci95")})
        g.update({k: 0 for k in ("n_trials", "n_positive", "n_negative", "n_identities")})
        g.update({"available": False, "reason": "fewer than 2 identities of a gender"})

    C.compare([_edited(d, tmp_path, unavailable_g)], tmp_path / "out",
              section("evaluation.compare", {"reference": False}), reference_path=None)
    md = (tmp_path / "out" / "verification.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| **alpha** |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # AUC U; G and A, each with the number of the note that says why
    assert cells[2] != C.DASH and cells[3] == f"{C.DASH} [1]" and cells[5] == f"{C.DASH} [2]"
    assert "1. alpha, G: unavailable (fewer than 2 identities of a gender)" in md

    # a figure that is null while its entry says available is refused, never a dash
    def null_auc(doc):
        doc["verification"]["G"]["auc"] = None

    with pytest.raises(ResultsError, match=r"verification\.G\.auc: is null but the entry is available"):
        C.load_results([_edited(d, tmp_path, null_auc)])

    # a stratum the trial lists never held (not requested) is absent by record: a dash, "not in the results"
    def not_requested(doc):
        doc["verification"].pop("N")
        doc["meta"]["trials"]["verification"]["strata"].remove("N")

    C.compare([_edited(d, tmp_path, not_requested)], tmp_path / "out2",
              section("evaluation.compare", {"reference": False}))
    md = (tmp_path / "out2" / "verification.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| **alpha** |"))
    assert [c.strip() for c in row.strip("|").split("|")][4] == f"{C.DASH} [1]"
    assert "1. alpha, N: not in the results" in md


def test_results_of_another_format_are_refused(results, tmp_path):
    from facevoice.evaluation.results import RESULTS_FORMAT, ResultsError

    d, _ = results

    def old(doc):
        doc["meta"]["format"] = "facevoice-results/1"

    with pytest.raises(ResultsError, match="meta.format.*evaluate the method again"):
        C.load_results([_edited(d, tmp_path, old)])
    assert json.loads((d / "alpha.json").read_text())["meta"]["format"] == RESULTS_FORMAT


def test_compare_takes_the_complete_compare_section(tmp_path):
    """The defaults live in the schema only: a partial section is refused, naming the key left out."""
    from facevoice.common.config import ConfigError

    partial = {k: v for k, v in defaults("evaluation.compare").items() if k != "n_values"}
    with pytest.raises(ConfigError, match="evaluation.compare.n_values"):
        C.compare([], tmp_path / "a", partial)
    with pytest.raises(ConfigError, match="evaluation.compare.decimals"):
        C.protocols_table({"unseenunheard": []}, tmp_path / "p.md", tmp_path / "p.csv",
                          {"show_ci": True, "reference": True, "n_values": [2]})
    assert not hasattr(C, "COMPARE_DEFAULTS")


# --------------------------------------------------------------------------- protocols in titles and rows


def _plot_cfg(protocol):
    """The compare section as compare hands it to the plots, for ``protocol``."""
    return {**defaults("evaluation.compare"), "protocol": protocol}


def _labels(fig):
    return [ln.get_label() for ax in fig.axes for ln in ax.get_lines()]


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_1vN_figure_draws_only_its_protocols_reported_curves(results):
    d, names = results
    res = C.load_results([d / f"{n}.json" for n in names])
    papers = C.load_reference(baselines=True)
    drawn = {}
    for p in PROTOCOLS.values():
        for direction in protocol.DIRECTIONS:
            fig = C.figure_1vN(res, papers, direction, _plot_cfg(p))
            drawn[p.name, direction] = [lb for lb in _labels(fig) if "reported" in lb]
            assert set(names) <= set(_labels(fig)) and "chance level (1/N)" in _labels(fig)  # ours are drawn
            _close(fig)
    # the papers' 1:N curves (unseen-unheard, all of them) beside unseen-unheard results only
    assert "SSNet+FOP (reported, Table 4)" in drawn[UNSEEN_UNHEARD.name, "V-F"]
    assert not drawn[SEEN_HEARD.name, "V-F"] and not drawn[SEEN_HEARD.name, "F-V"]


def test_every_title_and_heading_names_its_protocol(results, tmp_path):
    d, names = results
    files = [str(d / f"{n}.json") for n in names]
    rocs = [str(d / f"{n}_roc.parquet") for n in names]
    for p in PROTOCOLS:
        assert C.main(["--protocol", p, "--results", *files, "--roc", *rocs, "--out", str(tmp_path / p)]) == 0
    res, papers, rocs = C.load_results(files), C.load_reference(baselines=True), C.load_rocs(rocs)
    for p in PROTOCOLS.values():
        folder = tmp_path / p.name
        headings = [ln for f in folder.glob("*.md") for ln in f.read_text().splitlines() if ln.startswith("#")]
        headings += [ln for f in folder.glob("*.tex") for ln in f.read_text().splitlines() if "\\caption" in ln]
        assert len(headings) >= len(C.TABLES) * 3 + 1, p.name  # each table in .md, .tex, tables.md; tables.md's
        for h in headings:
            assert p.title in h, (p.name, h)
        fig = C.figure_roc(res, rocs, p)
        titles = [fig.get_suptitle()]
        _close(fig)
        for direction in protocol.DIRECTIONS:
            fig = C.figure_1vN(res, papers, direction, _plot_cfg(p))
            titles.append(fig.axes[0].get_title())
            _close(fig)
        for t in titles:
            assert p.heading in t, (p.name, t)
    other = {p.name: [q.title for q in PROTOCOLS.values() if q is not p] for p in PROTOCOLS.values()}
    uu = (tmp_path / "unseenunheard" / "verification.md").read_text().splitlines()[0]
    assert not any(t in uu for t in other[UNSEEN_UNHEARD.name])


SH_REFERENCE = """
papers:
  - key: shpaper
    label: SH-Paper
    short: Someone 2024
    citation: A paper with seen-heard figures.
    figures:
      - {table: "Table 9", protocol: verification, stratum: U, auc: 91.75, test_set: seenheard}
      - {table: "Table 9", protocol: matching, direction: V-F, stratum: U, n: {2: 88.5, 4: 70.5}, test_set: seenheard}
      - {table: "Table 8", protocol: verification, stratum: U, auc: 71.25}
"""


def test_a_seenheard_reported_figure_appears_under_seenheard_only(results, tmp_path):
    d, names = results
    ref = tmp_path / "reference.yaml"
    ref.write_text(SH_REFERENCE)
    files = [str(d / f"{n}.json") for n in names]
    uu, sh = tmp_path / "out" / "unseenunheard", tmp_path / "out" / "seenheard"
    for p, folder in ((UNSEEN_UNHEARD, uu), (SEEN_HEARD, sh)):
        assert C.main(["--protocol", p.name, "--results", *files, "--reference", str(ref), "--out", str(folder)]) == 0
    assert "91.75" in (sh / "verification.md").read_text() and "71.25" not in (sh / "verification.md").read_text()
    assert "71.25" in (uu / "verification.md").read_text() and "91.75" not in (uu / "verification.md").read_text()
    assert "88.50" in (sh / "matching_1v2.md").read_text() and "70.50" in (sh / "matching_1vN.md").read_text()
    assert "Table 9" not in "".join(f.read_text() for f in uu.glob("*.*") if f.suffix in (".md", ".csv", ".tex"))
    assert "Table 8" not in "".join(f.read_text() for f in sh.glob("*.*") if f.suffix in (".md", ".csv", ".tex"))
    res, papers = C.load_results(files), C.load_reference(ref, baselines=True)
    for p, want in ((SEEN_HEARD, ["SH-Paper (reported, Table 9)"]), (UNSEEN_UNHEARD, [])):
        fig = C.figure_1vN(res, papers, "V-F", _plot_cfg(p))
        assert [lb for lb in _labels(fig) if "reported" in lb] == want, p.name
        _close(fig)


def test_a_reported_figure_of_no_protocol_is_refused(results, tmp_path, capsys):
    d, names = results
    ref = tmp_path / "reference.yaml"
    ref.write_text(SH_REFERENCE.replace("test_set: seenheard}", "test_set: seen-heard}", 1))
    assert C.main(["--results", str(d / "alpha.json"), "--reference", str(ref), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "test_set 'seen-heard'" in err and "unseenunheard, seenheard" in err and "Table 9" in err


FEMALE = {"name": "female", "title": "Female-only", "split": "test", "description": "female test identities",
          "filter": {"gender": "f"}, "test_set": None}


def test_a_declared_protocol_is_compared_under_its_title_with_no_reported_row_unless_it_names_its_test_set(
        results, tmp_path, capsys):
    d, names = results
    files = [str(d / f"{n}.json") for n in names]
    params = json.dumps({"declare": [FEMALE]})
    assert C.main(["--protocol", "female", "--results", *files, "--params", params, "--out", str(tmp_path / "f")]) == 0
    md = (tmp_path / "f" / "verification.md").read_text()
    assert md.startswith("### Female-only: cross-modal verification") and "reported" not in md.split("Ours:")[0]
    assert "Female-only (female test identities)" in (tmp_path / "f" / "tables.md").read_text()
    # naming a test_set: that protocol's reported figures
    params = json.dumps({"declare": [{**FEMALE, "test_set": "unseenunheard"}]})
    assert C.main(["--protocol", "female", "--results", *files, "--params", params, "--out", str(tmp_path / "g")]) == 0
    assert "*DJE, Wang et al. 2020 (Table 2)* | reported" in (tmp_path / "g" / "verification.md").read_text()
    # the side-by-side table names its columns after the declared protocol
    assert C.main(["--table", str(tmp_path / "t.md"), str(tmp_path / "t.csv"), "--params", params,
                   "--protocol", "unseenunheard", "--results", *files, "--protocol", "female", "--results", *files]) == 0
    assert "Female-only AUC U (%)" in (tmp_path / "t.md").read_text()
    assert "female_auc_U" in (tmp_path / "t.csv").read_text()
    # a protocol no declaration names: the reason and the choices
    assert C.main(["--protocol", "male", "--out", str(tmp_path / "m")]) == 1
    assert "no protocol 'male' (known: unseenunheard, seenheard" in capsys.readouterr().err
    assert set(declared({"declare": [FEMALE]})) == {"unseenunheard", "seenheard", "female"}


def test_a_models_note_in_its_embeddings_is_printed_under_its_row(results, tmp_path):
    """embed writes the model's note (say, which form of ssnet_fop's center loss it trained) into
    the embeddings' metadata; evaluate carries it into meta.embeddings; the tables print it."""
    import pyarrow.parquet as pq

    from facevoice.common.io import write_parquet

    d, _ = results
    emb = tmp_path / "gamma.parquet"
    write_parquet(pq.read_table(d / "alpha.parquet"), emb, {"note": "stage-1 center loss on raw features"})
    E.run(str(emb), str(d / "trials"), str(tmp_path / "gamma.json"), n_boot=0, verbose=False, dcf=DCF)
    assert json.loads((tmp_path / "gamma.json").read_text())["meta"]["embeddings"]["note"] == \
        "stage-1 center loss on raw features"
    out = tmp_path / "cmp"
    C.compare([tmp_path / "gamma.json", d / "beta.json"], out, defaults("evaluation.compare"))
    for table in ("verification", "matching_1v2", "retrieval"):
        md = (out / f"{table}.md").read_text()
        assert ". gamma: stage-1 center loss on raw features" in md
        assert "beta: stage" not in md  # beta has no note


def test_the_imported_lists_negatives_of_different_genders_are_noted(tmp_path):
    """Imported official lists record per list how many negatives pair identities of different
    genders (the official G lists have some); evaluate keeps the count in meta.trials, and the
    verification table's notes give it for the strata that promise one gender (G, GNA)."""
    man = synthetic_manifest({"test": 12}, videos=1, clips=2, frames=2, seed=4)
    lists = T.generate(man, "test", 1, section("evaluation", {"verification": {"n_trials": 120},
                                                               "matching": {"n_trials": 40}}))
    df, meta = lists["verification"]
    counts = {"U": 7, "G": 3, "N": 5, "A": 0, "GNA": 0}
    meta = {**meta, "source": "learnable-pins",
            "pins": {"files": {s: {"cross_gender_negatives": n} for s, n in counts.items()}}}
    protocol.write_trials({**lists, "verification": (df, meta)}, tmp_path / "trials")
    emb = synthetic_embeddings(man, "test", dim=8, signal=1.0, seed=1)
    E.write_embeddings(tmp_path / "delta.parquet", emb["id"], emb["identity"], emb["modality"], list(emb["embedding"]))
    res = E.run(str(tmp_path / "delta.parquet"), str(tmp_path / "trials"), str(tmp_path / "delta.json"), n_boot=0,
                verbose=False, dcf=DCF)
    assert res["meta"]["trials"]["verification"]["cross_gender_negatives"] == counts
    C.compare([tmp_path / "delta.json"], tmp_path / "cmp", defaults("evaluation.compare"))
    md = (tmp_path / "cmp" / "verification.md").read_text()
    assert ". delta, G: the imported official lists' negatives of different genders (metadata): G 3\n" in md


# --------------------------------------------------------------------------- names, notes, LaTeX, ROC panels


def test_every_row_has_its_own_name_beside_the_chance_method(results, tmp_path):
    """The ``chance`` baseline method's results and the figures expected at chance are two rows
    of two names; reported rows name their paper and table, never an internal key or a seed."""
    d, names = results
    res = json.loads((d / "alpha.json").read_text())
    res["meta"]["method"] = "chance"  # the chance baseline's results
    (tmp_path / "chance.json").write_text(json.dumps(res))
    assert C.main(["--results", str(tmp_path / "chance.json"), str(d / "beta.json"), "--out", str(tmp_path / "o")]) == 0
    keys = {p["key"] for p in C.load_reference(baselines=True)}
    for table in C.TABLES:
        with open(tmp_path / "o" / f"{table}.csv") as fh:
            rows = list(csv.DictReader(fh))
        methods = [r["method"] for r in rows]
        assert len(methods) == len(set(methods)), table
        assert {"chance", C.CHANCE_ROW} <= set(methods)
        assert not any(f"[{k}]" in m for m in methods for k in keys), table
    text = "".join((tmp_path / "o" / f).read_text() for f in C.OUTPUTS if not f.endswith(".png"))
    assert "seed" not in text.lower()
    assert "(Tables 2, 4, 5)" not in text and "DIMNet, Wen et al. 2019, in Zhong et al. 2025 (Table 4)" in text


def test_two_rows_of_one_name_are_refused(results, tmp_path):
    d, _ = results
    res = json.loads((d / "alpha.json").read_text())
    res["meta"]["method"] = C.CHANCE_ROW
    (tmp_path / "c.json").write_text(json.dumps(res))
    with pytest.raises(ValueError, match="two rows of the verification table are named 'chance level'"):
        C.compare([tmp_path / "c.json"], tmp_path / "o", defaults("evaluation.compare"))


def test_notes_are_numbered_once_per_text():
    notes = [("a", "A", "unavailable (no age)"), ("b", "A", "unavailable (no age)"),
             ("a", "GNA", "unavailable (no age)"), ("b", "GNA", "unavailable (no age)"),
             ("a", "", "trials 10"), ("b", "", "trials 12"), ("Paper, X 2020 (Table 1)", "", "a note")]
    assert C.numbered_notes(notes, ["a", "b"]) == [
        "1. every method, A and GNA: unavailable (no age)", "2. a: trials 10", "3. b: trials 12",
        "4. Paper, X 2020 (Table 1): a note"]
    assert C.numbered_notes(notes[:1], ["a"]) == ["1. a, A: unavailable (no age)"]  # one method: by name
    rows = [{"method": "a", "kind": "ours", "cells": {"auc_U": C.Cell(60.0)}},
            {"method": "Paper, X 2020 (Table 1)", "kind": "reported", "cells": {}}]
    cols = C._columns("verification", defaults("evaluation.compare"))
    # a's empty A and GNA cells refer to note 1; reported rows and cells with a figure to none
    assert C.note_refs(notes, rows, cols, "verification") == {
        ("a", k): 1 for k, _, _ in cols if k.endswith(("_A", "_GNA"))}
    one_v_two = [("a", "V-F G", "no gender")]
    assert C.note_refs(one_v_two, rows[:1], C._columns("matching_1v2", {}), "matching_1v2") == {("a", "V-F_G"): 1}


def _tex_rows(tex):
    body = tex.split("\\midrule", 1)[1].split("\\bottomrule")[0]
    return [ln for ln in body.splitlines() if ln.endswith("\\\\")]


def test_latex_is_booktabs_with_a_compact_variant_without_intervals(results, tmp_path):
    d, names = results
    C.compare([d / f"{n}.json" for n in names], tmp_path, defaults("evaluation.compare"))
    full = (tmp_path / "verification.tex").read_text()
    compact = (tmp_path / "verification.compact.tex").read_text()
    with open(tmp_path / "verification.csv") as fh:
        rows = list(csv.DictReader(fh))
    cols = C._columns("verification", defaults("evaluation.compare"))
    for tex in (full, compact):
        assert [tex.count(r) for r in ("\\toprule", "\\bottomrule")] == [1, 1]
        assert "\\begin{tabular}{l" + "r" * len(cols) + "}" in tex  # the method's name, then one column per figure
        lines = _tex_rows(tex)
        assert len(lines) == len(rows) and all(ln.count(" & ") == len(cols) for ln in lines)
        assert "\\multicolumn{5}{c}{AUC (\\%)}" in tex and "\\textit{chance level}" in tex
        assert "\\textit{DJE, Wang et al. 2020 (Table 2)}" in tex
        # blocks: ours, then chance, then reported, split by rules
        assert tex.count("\\midrule") == 3
    assert "\\scriptsize [" in _tex_rows(full)[0] and "[" not in compact.split("\\midrule", 1)[1]


def test_roc_panels_only_for_strata_with_a_figure(results):
    """Stratum A and GNA have no age metadata for any method: no panel (no wall of reasons);
    the verification notes say why."""
    import matplotlib.pyplot as plt

    d, names = results
    res = C.load_results([d / f"{n}.json" for n in names])
    rocs = C.load_rocs([d / f"{n}_roc.parquet" for n in names])
    assert C.roc_strata(res) == ["U", "G", "N"]
    fig = C.figure_roc(res, rocs)
    assert [ax.get_title() for ax in fig.axes] == ["stratum U", "stratum G", "stratum N"]
    for ax in fig.axes:
        assert set(names) <= {ln.get_label().split(" (")[0] for ln in ax.get_lines()}
        assert not ax.texts  # every method drawn: nothing to explain
    colour = {ln.get_label().split(" (")[0]: ln.get_color() for ln in fig.axes[0].get_lines()}
    plt.close(fig)
    fig = C.figure_roc(res, {"beta": rocs["beta"]})  # alpha not drawn: beta keeps its colour
    assert [ln.get_color() for ln in fig.axes[0].get_lines() if ln.get_label().startswith("beta")] == [colour["beta"]]
    assert colour["beta"] != colour["alpha"]
    plt.close(fig)
    fig = C.figure_roc(res, {})  # no ROC file: the panels name the methods not drawn, in one short line
    assert len(fig.axes) == 3 and all(len(ax.texts) == 1 for ax in fig.axes)
    plt.close(fig)
    fig = C.figure_roc([], {})  # nothing to draw: one line, no empty axes
    assert not fig.axes and "no stratum has a result to draw" in fig.texts[0].get_text()
    plt.close(fig)


def test_no_two_curves_of_a_plot_share_a_colour(results, tmp_path):
    """Twelve methods and the four reported curves of Zhong et al. 2025 (Table 4): more than
    matplotlib's ten-colour cycle."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    d, _ = results
    res = json.loads((d / "beta.json").read_text())
    for k in range(12):
        res["meta"]["method"] = f"m{k}"
        (tmp_path / f"m{k}.json").write_text(json.dumps(res))
    many = C.load_results([tmp_path / f"m{k}.json" for k in range(12)])
    fig = C.figure_1vN(many, C.load_reference(baselines=True), "V-F", _plot_cfg(UNSEEN_UNHEARD))
    styles = [(to_hex(ln.get_color()), ln.get_linestyle()) for ln in fig.axes[0].get_lines()
              if not ln.get_label().startswith("chance")]
    assert len(styles) == 12 + 4 and len(set(styles)) == len(styles)
    plt.close(fig)
