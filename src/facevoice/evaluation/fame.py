"""The FAME challenge's protocol (Face-voice Association in Multilingual Environments) on MAV-Celeb.

A method trains on one language (config ``fame.train_language``: one, or a list such as both of
the version's, a model each) and is verified on each test
language: **heard** when the test language is the training language, **unheard** otherwise
(:func:`condition`). Test identities are never seen in training. The challenge scores the EER
of each of the four (training language, heard / unheard) cells of a two-language corpus and
ranks by their mean.

Here:

- per test language, trial lists of the test identities' items in that language
  (``facevoice trials --language L``, :func:`facevoice.evaluation.trials.language_rows`),
  scored by ``facevoice evaluate`` like any other list (EER, AUC, minDCF, min Cllr);
- :func:`results_table`: those results as rows (method, training language, test language,
  heard / unheard, EER and AUC in percent, minDCF and min Cllr as costs), with :func:`overall` (the mean EER) and
  :data:`REFERENCE`, the baseline's published EERs, each with its corpus version, challenge
  edition and the commit of the baseline's README it was read from;
- the challenge's score files (:func:`write_submission`, :func:`zip_submission`): for a
  ``<Language>_test.txt`` list of ``key voice_path face_path`` lines, a file
  ``sub_score_<version>_<TrainLanguage>_{heard,unheard}.txt`` of ``key score`` lines (the
  list's order), zipped flat.

**Sign of the submitted score.** The challenge expects a distance, lower = same person (the
baseline writes the L2 distance between its face and voice embeddings and its scorer ranks
by the negated value). The pipeline's scores are similarities, higher = same person (cosine,
or the method's own, e.g. |cosine|), so the file holds ``1 - score`` (:func:`to_distance`):
the cosine distance, a monotone function of the L2 distance between L2-normalised
embeddings. Any decreasing function gives the same EER, so this is the method's own ranking.

**File names.** As the baseline's ``computeScore.py`` writes them (its latest version read,
commit 080889c): ``sub_score_<version>_<training language>_heard.txt`` and
``sub_score_<version>_<training language>_unheard.txt`` (both after the training language;
version ``v1``, ``v2`` or ``v3``, config ``fame.version``), one ``key score`` line per key in
the order of the ``<Language>_test.txt`` list (``%s %f``: six decimals). Its README's
``sub_scores_<Language>_heard.txt`` is an older spelling (:func:`submission_name`).

The official test lists carry no labels (the challenge keeps them); our own test identities'
lists do, and the tables are computed on those. The official lists are scored line by line
(:func:`official_scores`, ``submit --official``): each line is a clip ``<Language>/test/<key>``
of the official test set (config ``fame.official``), run through the same stages as every clip
and embedded by each FAME model; a line left without an embedding gets the median score.

The stage (``workflow/rules/fame.smk``, active when ``fame.train_language`` is set) runs
``facevoice fame``:

- ``facevoice fame table --result METHOD TRAIN_LANGUAGE TEST_LANGUAGE results.json ... --md T.md
  --csv T.csv``: the heard / unheard table of ``facevoice evaluate`` results, with the mean EER
  per method and the baseline's published rows (:func:`write_table`);
- ``facevoice fame lists --trials DIR --language L --out DIR``: a language's verification
  trials (stratum U) as the challenge's ``<L>_test.txt`` and its labels ``<L>_labels.csv``;
- ``facevoice fame submit --version V --model L E [--model L2 E2] --list X_test.txt ... --out DIR
  --zip Z [--summary S.json] [--official]``: a method's score file per list and the zip of them; with
  ``--summary``, each file scored back against the labels beside its list
  (:func:`score_submission`: the EER ``facevoice evaluate`` gives on the same trials).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from facevoice.common.io import write_json, write_text
from facevoice.common.tables import Section, write_html
from facevoice.data.mavceleb import FAME_VERSIONS, list_language, official_item, read_test_list
from facevoice.data.paths import fame_list_files
from facevoice.evaluation import metrics
from facevoice.evaluation.protocol import load_config, read_trials
from facevoice.evaluation.results import Results, VerificationResult, load
from facevoice.evaluation.scoring import method_scorer

HEARD, UNHEARD = "heard", "unheard"
TABLE_COLUMNS = ["method", "train_language", "test_language", "condition", "eer", "auc", "min_dcf",
                 "min_cllr", "n_trials", "source"]
#: Figures shown as costs (in [0, 1], three decimals), never in percent
COSTS = ("min_dcf", "min_cllr")

# The FOP baseline's EERs (percent) as the baseline's README (github.com/mavceleb/mavceleb_baseline)
# prints them, in its table of training language x test language. Each row: corpus version,
# its languages, the challenge editions that used it, the README commit (and date) read, and
# {training language: {test language: EER}}.
_BASELINE = [
    ("MAV-Celeb v1", "English-Urdu", "FAME 2024, FAME 2026", "1be1e7a (2024-07-19), e2b4cb1 (2025-11-05)",
     {"English": {"English": 29.3, "Urdu": 37.9}, "Urdu": {"English": 40.4, "Urdu": 25.8}}),
    ("MAV-Celeb v2", "English-Hindi", "FAME 2024", "1be1e7a (2024-07-19)",
     {"English": {"English": 20.8, "Hindi": 24.0}, "Hindi": {"English": 24.0, "Hindi": 19.3}}),
    ("MAV-Celeb v3", "English-German", "FAME 2026", "e2b4cb1 (2025-11-05; it replaced earlier v3 figures)",
     {"English": {"English": 35.3, "German": 48.0}, "German": {"English": 45.1, "German": 37.9}}),
]
#: The published overall scores (mean of the four EERs) beside the rows above, to check them against.
BASELINE_OVERALL = {"MAV-Celeb v1": 33.4, "MAV-Celeb v2": 22.0, "MAV-Celeb v3": 41.5}


def condition(train_language: str, test_language: str) -> str:
    """``heard`` when the test language is the training language, else ``unheard``."""
    return HEARD if test_language == train_language else UNHEARD


def reference_rows() -> pd.DataFrame:
    """:data:`_BASELINE` as table rows (EER only: the README gives no AUC, minDCF or min Cllr)."""
    rows = []
    for corpus, langs, editions, commit, cells in _BASELINE:
        for train, tests in cells.items():
            for test, eer in tests.items():
                rows.append({"method": "FOP (baseline)", "corpus": corpus, "languages": langs,
                             "editions": editions, "train_language": train, "test_language": test,
                             "condition": condition(train, test), "eer": eer, "auc": None, "min_dcf": None,
                             "min_cllr": None, "n_trials": None,
                             "source": f"mavceleb/mavceleb_baseline README, commit {commit}"})
    return pd.DataFrame(rows)


def results_table(results: Mapping[tuple[str, str, str], VerificationResult | None]) -> pd.DataFrame:
    """One row per (method, training language, test language) of verification results (one
    stratum of ``facevoice evaluate``'s results, :meth:`Results.verification_at`; None: the lists
    held no such stratum): EER and AUC in percent, minDCF and min Cllr as they are (costs)."""
    rows = []
    for (method, train_language, test_language), v in sorted(results.items()):
        v = v or VerificationResult.unavailable("no such stratum")
        pct = {k: (None if getattr(v, k) is None else 100.0 * float(getattr(v, k))) for k in ("eer", "auc")}
        costs = {k: (None if getattr(v, k) is None else float(getattr(v, k))) for k in COSTS}
        rows.append({"method": method, "train_language": train_language, "test_language": test_language,
                     "condition": condition(train_language, test_language), **pct, **costs,
                     "n_trials": v.n_trials, "source": "this run"})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def overall(table: pd.DataFrame) -> pd.DataFrame:
    """Per method: the mean EER over its rows and how many cells it averages; ``challenge`` is
    True when those are the challenge's four cells (two training languages x heard / unheard,
    each once), the mean then being the challenge's overall score (the baseline's README prints
    it beside its four EERs: their mean, :data:`BASELINE_OVERALL`)."""
    ok = table.dropna(subset=["eer"])
    out = ok.groupby("method", sort=True)["eer"].agg(["mean", "count"]).reset_index()
    four = {m: g["train_language"].nunique() == 2 and len(g) == 4
            and sorted(g["condition"]) == [HEARD, HEARD, UNHEARD, UNHEARD] for m, g in ok.groupby("method")}
    out["challenge"] = [bool(four.get(m, False)) for m in out["method"]]
    return out.rename(columns={"mean": "overall_eer", "count": "n_cells"})


# --------------------------------------------------------------------------- submission files


def submission_name(version: str, train_language: str, test_language: str) -> str:
    """``sub_score_<version>_<TrainLanguage>_heard.txt`` or ``..._unheard.txt`` (the module's note)."""
    if version not in FAME_VERSIONS:
        raise ValueError(f"FAME version {version!r}: the challenge's score files are named after one of "
                         f"{sorted(FAME_VERSIONS)} (config fame.version)")
    return f"sub_score_{version}_{train_language}_{condition(train_language, test_language)}.txt"


def to_distance(scores: np.ndarray) -> np.ndarray:
    """The submitted value of similarity scores (higher = same): ``1 - score`` (lower = same)."""
    return 1.0 - np.asarray(scores, dtype=np.float64)


def _matrix(table: pd.DataFrame, modality: str, ids: list[str]) -> np.ndarray:
    rows = table[table["modality"] == modality].drop_duplicates("id").set_index("id")["embedding"]
    missing = [i for i in ids if i not in rows.index]
    if missing:
        raise KeyError(f"{len(set(missing))} {modality} paths of the test list have no embedding "
                       f"(e.g. {missing[0]!r}): the embeddings' id must be the path as the list writes it")
    return np.stack([np.asarray(rows[i], dtype=np.float64) for i in ids])


def submission_scores(trials: pd.DataFrame, embeddings: pd.DataFrame, scorer: Any,
                      item_id: Callable[[str], str] = str) -> pd.DataFrame:
    """key, score (a distance: :func:`to_distance`) of every trial of a test list.

    ``embeddings`` has columns id, modality, embedding; ``item_id`` maps a list path to its
    id (default: the path itself). ``scorer`` has ``pairs(face, voice)`` on row-aligned
    arrays (similarities, higher = same) and optionally ``prepare_face`` / ``prepare_voice``,
    as :mod:`facevoice.evaluation.evaluate`'s scorers.
    """
    face = _matrix(embeddings, "face", [item_id(p) for p in trials["face"]])
    voice = _matrix(embeddings, "voice", [item_id(p) for p in trials["voice"]])
    prep_f, prep_v = getattr(scorer, "prepare_face", None), getattr(scorer, "prepare_voice", None)
    face = prep_f(face) if prep_f else face
    voice = prep_v(voice) if prep_v else voice
    scores = np.asarray(scorer.pairs(face, voice), dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(scores)):
        raise ValueError("the scorer gave non-finite scores")
    return pd.DataFrame({"key": trials["key"].to_numpy(), "score": to_distance(scores)})


def official_scores(trials: pd.DataFrame, language: str, embeddings: pd.DataFrame,
                    scorer: Any) -> tuple[pd.DataFrame, int]:
    """key, score of an official list (:func:`submission_scores`), and how many lines were imputed.

    Each line is a clip of the official test set (:func:`facevoice.data.mavceleb.official_item`):
    its voice item, and its first face item (the given image's face). A line whose voice kept no
    speech or whose image gave no face has no embedding: the challenge wants a score for every
    key, so it gets the median of the list's other scores (neither same nor different)."""
    voices = set(embeddings.loc[embeddings["modality"] == "voice", "id"])
    faces: dict[str, str] = {}
    for item in sorted(embeddings.loc[embeddings["modality"] == "face", "id"]):
        faces.setdefault(item.rsplit("/", 1)[0] + "/", item)
    ids = pd.DataFrame({"key": trials["key"].to_numpy(),
                        "voice": [official_item(language, k, "voice") for k in trials["key"]],
                        "face": [faces.get(official_item(language, k, "face")) for k in trials["key"]]})
    usable = ids["voice"].isin(voices) & ids["face"].notna()
    if not usable.any():
        raise ValueError(f"no line of the {language} list has both a voice and a face embedding")
    scored = submission_scores(ids[usable], embeddings, scorer).set_index("key")["score"]
    out = pd.DataFrame({"key": ids["key"], "score": scored.reindex(ids["key"]).fillna(scored.median()).to_numpy()})
    return out, int((~usable).sum())


def write_submission(scores: pd.DataFrame, out_dir: str | os.PathLike, version: str, train_language: str,
                     test_language: str) -> Path:
    """Write ``key score`` lines (six decimals, the list's order) to :func:`submission_name`."""
    path = Path(out_dir) / submission_name(version, train_language, test_language)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{k} {s:.6f}\n" for k, s in zip(scores["key"], scores["score"])), encoding="utf-8")
    os.replace(tmp, path)
    return path


def zip_submission(files: Iterable[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Zip the score files flat (no folders inside), as the challenge's upload expects."""
    files = sorted(Path(f) for f in files)
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"two score files share a name: {names}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in files:
            info = zipfile.ZipInfo(f.name, date_time=(1980, 1, 1, 0, 0, 0))  # same bytes on every run
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, f.read_bytes())
    os.replace(tmp, out)
    return out


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    """key, score of a score file (the inverse of :func:`write_submission`)."""
    rows = [ln.split() for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    bad = [r for r in rows if len(r) != 2 or not math.isfinite(float(r[1]))]
    if bad:
        raise ValueError(f"{path}: expected 'key score' lines, found {bad[0]}")
    return pd.DataFrame({"key": [r[0] for r in rows], "score": [float(r[1]) for r in rows]})


# --------------------------------------------------------------------------- our own lists, the challenge's way


def _key(text: str, width: int = 8) -> str:
    """An ``width``-character [0-9a-z] key: a hash of ``text`` in base 36."""
    n = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    digits = []
    for _ in range(width):
        n, r = divmod(n, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[r])
    return "".join(digits)


def challenge_list(verification: pd.DataFrame, name: str, stratum: str = "U") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Our verification trials of one stratum as a challenge test list and its hidden labels.

    Returns (key, voice, face) with manifest items for paths, and (key, label); keys are
    8 characters, a hash of ``name`` (say the language) and the trial number, so one list
    always gets the same keys.
    """
    rows = verification[verification["stratum"] == stratum].sort_values("trial", kind="stable")
    keys, taken = [], set()
    for trial in rows["trial"]:
        salt = 0
        key = _key(f"{name}/{stratum}/{trial}")
        while key in taken:  # a collision (about 1 in 10^4 for a list of 30,000): draw again
            salt += 1
            key = _key(f"{name}/{stratum}/{trial}/{salt}")
        taken.add(key)
        keys.append(key)
    listed = pd.DataFrame({"key": keys, "voice": rows["voice"].to_numpy(), "face": rows["face"].to_numpy()})
    labels = pd.DataFrame({"key": keys, "label": rows["label"].to_numpy().astype(int)})
    return listed, labels


def write_test_list(listed: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a test list as the challenge does: ``key voice_path face_path`` lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} {v} {f}\n" for k, v, f in zip(listed["key"], listed["voice"], listed["face"])),
                    encoding="utf-8")
    return path


def score_submission(submission: pd.DataFrame, labels: pd.DataFrame, dcf: dict) -> dict:
    """EER, AUC, minDCF, min Cllr (fractions and costs) of a score file against labels, as the challenge ranks it:
    the distance negated (lower = same person). Every labelled key must be scored once.
    ``dcf``: minDCF's settings, config ``evaluation.dcf``."""
    merged = labels.merge(submission, on="key", how="left", validate="one_to_one")
    if merged["score"].isna().any():
        raise ValueError(f"{int(merged['score'].isna().sum())} labelled keys have no score, e.g. "
                         f"{merged.loc[merged['score'].isna(), 'key'].iloc[0]!r}")
    return metrics.verification_metrics(merged["label"].to_numpy(), -merged["score"].to_numpy(), dcf)


# --------------------------------------------------------------------------- the stage: tables, lists, score files

CSV_COLUMNS = ["method", "corpus", "languages", "editions", "train_language", "test_language", "condition",
               "eer", "auc", "min_dcf", "min_cllr", "n_trials", "source"]


def _cell(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)


def _cells(table: pd.DataFrame, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """``columns`` ((column, heading) pairs) of ``table`` as the printed cells, under their headings."""
    return pd.DataFrame({h: [_cell(v, 3 if c in COSTS else 1) for v in table[c]] for c, h in columns},
                        columns=[h for _, h in columns])


def _markdown(table: pd.DataFrame, columns: list[tuple[str, str]]) -> list[str]:
    """A markdown table of ``columns`` ((column, heading) pairs)."""
    cells = _cells(table, columns)
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]


def _columns(dcf: str) -> dict[str, list[tuple[str, str]]]:
    """The table's three parts and their (column, heading) pairs: this run's rows, the mean EER
    per method, the baseline's published rows."""
    return {"ours": [("method", "method"), ("train_language", "train language"), ("test_language", "test language"),
                     ("condition", "condition"), ("eer", "EER %"), ("auc", "AUC %"), ("min_dcf", dcf),
                     ("min_cllr", "min Cllr"), ("n_trials", "trials")],
            "overall": [("method", "method"), ("overall_eer", "mean EER %"), ("n_cells", "cells"),
                        ("challenge", "challenge's overall score")],
            "baseline": [("corpus", "corpus"), ("editions", "editions"), ("train_language", "train language"),
                         ("test_language", "test language"), ("condition", "condition"), ("eer", "EER %")]}


def _texts(table: pd.DataFrame, dataset: str, train_languages: list[str]) -> dict[str, str]:
    ref = table[table["source"] != "this run"]
    return {"title": f"FAME: heard / unheard ({dataset})",
            "intro": f"Trained on {' and on '.join(train_languages)} (a model each); verified on the test identities' "
                     f"items in each test language (heard: the training language; unheard: any other). EER and AUC "
                     f"in percent, minDCF and min Cllr as costs (0 perfect, 1 no better than chance), stratum U "
                     f"(every pair of the language's test identities).",
            "overall": "Mean EER per method (the challenge's overall score when its cells are "
                       "the challenge's four: two training languages x heard / unheard):",
            "baseline": "FOP baseline, published (EER %; the README gives no AUC, minDCF or min Cllr)",
            "published": "Published overall: " + ", ".join(f"{k} {v}" for k, v in BASELINE_OVERALL.items()) + ".",
            "sources": "Sources: " + "; ".join(sorted(set(ref["source"]))) + "."}


def table_markdown(table: pd.DataFrame, dataset: str, train_languages: list[str], dcf: str = "minDCF") -> str:
    """This run's rows and their mean EER per method, then the baseline's published rows;
    ``dcf``: minDCF's heading (:func:`facevoice.evaluation.metrics.dcf_name`)."""
    ours, ref = table[table["source"] == "this run"], table[table["source"] != "this run"]
    cols, text = _columns(dcf), _texts(table, dataset, train_languages)
    lines = [f"# {text['title']}", "", text["intro"], ""]
    lines += _markdown(ours, cols["ours"]) + ["", text["overall"], ""]
    lines += _markdown(overall(ours), cols["overall"])
    lines += ["", f"## {text['baseline']}", ""] + _markdown(ref, cols["baseline"])
    return "\n".join(lines + ["", text["published"], text["sources"], ""])


def table_sections(table: pd.DataFrame, dataset: str, train_languages: list[str],
                   dcf: str = "minDCF") -> tuple[str, list[str], list[Section]]:
    """:func:`table_markdown`'s title, introduction and tables, as the report's HTML page shows them."""
    ours, ref = table[table["source"] == "this run"], table[table["source"] != "this run"]
    cols, text = _columns(dcf), _texts(table, dataset, train_languages)
    return text["title"], [text["intro"]], [
        Section("This run", _cells(ours, cols["ours"])),
        Section("Mean EER per method", _cells(overall(ours), cols["overall"]), [text["overall"]]),
        Section(text["baseline"], _cells(ref, cols["baseline"]), [text["published"], text["sources"]])]


def write_table(results: Mapping[tuple[str, str, str], Results], dataset: str,
                md: str | os.PathLike, csv: str | os.PathLike, html: str | os.PathLike | None = None) -> pd.DataFrame:
    """The FAME table (:func:`results_table` rows of this run, stratum U, then
    :func:`reference_rows`) as markdown, CSV and (``html``) the report's page; returns it."""
    ours = results_table({k: r.verification_at("U") for k, r in results.items()}).assign(
        corpus=dataset, languages="-".join(sorted({lang for *_, lang in results})), editions=None)
    table = pd.concat([ours, reference_rows()], ignore_index=True)[CSV_COLUMNS]
    dcf = metrics.dcf_name(r.meta.dcf for r in results.values())
    trains = sorted({train for _, train, _ in results})
    write_text(md, table_markdown(table, dataset, trains, dcf))
    write_text(csv, table.to_csv(index=False))
    if html is not None:
        title, intro, sections = table_sections(table, dataset, trains, dcf)
        write_html(html, title, sections, intro)
    return table


def write_lists(trials_dir: str | os.PathLike, language: str, out: str | os.PathLike) -> tuple[Path, Path]:
    """A language's verification trials (``facevoice trials --language``) as the challenge's
    ``<language>_test.txt`` and the labels ``<language>_labels.csv`` (key, label) beside it."""
    lists = read_trials(trials_dir)
    if "verification" not in lists:
        raise ValueError(f"{trials_dir}: no verification list")
    listed, labels = challenge_list(lists["verification"][0], language)
    if listed.empty:
        raise ValueError(f"{trials_dir}: no verification trial in stratum U")
    files = fame_list_files(out, language)
    path = write_test_list(listed, files["test"])
    write_text(files["labels"], labels.to_csv(index=False))
    return path, Path(files["labels"])


def submit(version: str, models: Mapping[str, str | os.PathLike], lists: list[str], out: str | os.PathLike,
           zip_path: str | os.PathLike, summary: str | os.PathLike | None = None,
           dcf: dict | None = None, official: bool = False) -> dict:
    """A method's score file per training language and test list, and their zip.

    ``models`` maps each training language to the embeddings of the method trained on it (its
    own scorer: :func:`method_scorer`). With ``summary``, each file is scored back against
    ``<Language>_labels.csv`` beside its list and the figures (fractions) are written there as
    JSON; ``dcf`` (config ``evaluation.dcf``, required with ``summary``) sets minDCF. ``official``:
    the lists are the challenge's, their lines the official test set's clips
    (:func:`official_scores`; the summary counts the imputed lines)."""
    if summary and dcf is None:
        raise ValueError("submit: a summary scores the files, so it needs dcf (config evaluation.dcf)")
    for train in models:
        names = [submission_name(version, train, list_language(p)) for p in lists]
        if len(set(names)) != len(names):
            raise ValueError(f"the lists {[Path(p).name for p in lists]} give the score files {names}: the "
                             f"challenge's files hold one heard and one unheard language")
    files, report = [], {"version": version, "models": {k: str(v) for k, v in models.items()}, "files": {}}
    for train, embeddings in models.items():
        scorer, _ = method_scorer(embeddings)
        emb = pd.read_parquet(embeddings, columns=["id", "modality", "embedding"])
        for path in lists:
            language, listed = list_language(path), read_test_list(path)
            scores, imputed = official_scores(listed, language, emb, scorer) if official else \
                (submission_scores(listed, emb, scorer), 0)
            files.append(write_submission(scores, out, version, train, language))
            entry = {"list": str(path), "train_language": train, "test_language": language,
                     "scorer": getattr(scorer, "name", "custom"), "n_keys": int(len(scores)), "n_imputed": imputed}
            labels = Path(fame_list_files(Path(path).parent, language)["labels"])
            if summary and labels.exists():
                entry.update(score_submission(read_submission(files[-1]), pd.read_csv(labels, dtype={"key": str}),
                                              dcf))
            report["files"][files[-1].name] = entry
    zip_submission(files, zip_path)
    if summary:
        write_json(summary, report)
    return report


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facevoice fame", description="the FAME protocol: heard / unheard tables, "
                                "test lists and score files in the challenge's format")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table", help="the heard / unheard table of evaluate results, beside the baseline's")
    t.add_argument("--result", nargs=4, action="append", required=True,
                   metavar=("METHOD", "TRAIN_LANGUAGE", "TEST_LANGUAGE", "JSON"),
                   help="a facevoice evaluate results file of METHOD trained on TRAIN_LANGUAGE, on TEST_LANGUAGE's "
                        "lists; repeatable")
    t.add_argument("--dataset", default="this run", help="the corpus column of this run's rows")
    t.add_argument("--md", required=True, help="markdown table")
    t.add_argument("--csv", required=True, help="CSV table")
    t.add_argument("--html", default=None, help="the table as an HTML page (the Snakemake report shows it)")
    li = sub.add_parser("lists", help="a language's verification trials as the challenge's test list")
    li.add_argument("--trials", required=True, help="folder of facevoice trials --language LANGUAGE")
    li.add_argument("--language", required=True)
    li.add_argument("--out", required=True, help="folder for <LANGUAGE>_test.txt and <LANGUAGE>_labels.csv")
    s = sub.add_parser("submit", help="a method's score files for test lists, zipped")
    s.add_argument("--version", required=True, choices=sorted(FAME_VERSIONS),
                   help="the MAV-Celeb version (config fame.version): the score files' prefix")
    s.add_argument("--model", nargs=2, action="append", required=True, metavar=("TRAIN_LANGUAGE", "EMBEDDINGS"),
                   help="the method trained on TRAIN_LANGUAGE: its embeddings (Parquet: id (the lists' paths), "
                        "modality, embedding); repeatable (one per training language)")
    s.add_argument("--list", dest="lists", action="append", required=True, help="<Language>_test.txt; repeatable")
    s.add_argument("--out", required=True, help="folder for the score files")
    s.add_argument("--zip", required=True, help="the zip of the score files")
    s.add_argument("--official", action="store_true",
                   help="the challenge's official lists: each line is a clip of the official test set (config "
                        "fame.official), embedded as <Language>/test/<key>/voice and .../face/NNNN")
    s.add_argument("--summary", default=None, help="JSON: keys per file, and figures against labels beside the lists")
    s.add_argument("--config", default=None, help="config.yaml (its evaluation.dcf section sets the summary's minDCF)")
    s.add_argument("--params", default=None, help='JSON mapping over --config, e.g. \'{"dcf": {"p_target": 0.05}}\'')
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.command == "table":
            results = {(method, train, language): load(path) for method, train, language, path in a.result}
            write_table(results, a.dataset, a.md, a.csv, a.html)
        elif a.command == "lists":
            write_lists(a.trials, a.language, a.out)
        else:
            dcf = load_config(a.config, a.params)["dcf"]  # completed from the schema
            report = submit(a.version, dict(a.model), a.lists, a.out, a.zip, a.summary, dcf, a.official)
            for name, entry in report["files"].items():
                eer = f", EER {100 * entry['eer']:.2f}%" if entry.get("eer") is not None else ""
                imputed = f", {entry['n_imputed']} without an embedding (median score)" if entry["n_imputed"] else ""
                print(f"{name}: {entry['n_keys']} keys ({entry['test_language']}){eer}{imputed}", file=sys.stderr)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
