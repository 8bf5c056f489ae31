"""The results layout: where the files of training, trial lists, evaluation and comparison lie
under a run's results folder (``results/<dataset>``, the workflow's ``OUT``), named once.

The workflow's rules (``workflow/rules/train.smk``, ``trials.smk``, ``evaluate.smk``,
``compare.smk``) name their outputs through these functions, called with Snakemake wildcards
(``"{method}"``, ``"{protocol}"``) as arguments; the stage modules write and read the files these
functions give for the folder or files they are handed, so a name is spelled here alone::

    trials/<protocol>/{verification,matching,retrieval}.parquet, summary.json
    embeddings/<method>/<split>.parquet
    train/<method>/{model.pt,log.csv,curve.png,run.json}
    evaluation/<protocol>/<method>.json, <method>_roc.parquet
    comparison/<protocol>/<table>.{md,csv,tex,compact.tex,html}, tables.{md,html}, roc.png,
        matching_1vN_<direction>.png
    comparison/protocols.{md,csv,html}
    logs/<stage>/<job>.log

and the FAME protocol's (``workflow/rules/fame.smk``; ``<Train>``: a training language)::

    fame/train/<Train>/<method>/             as train/<method>/
    fame/embeddings/<Train>/<method>/test.parquet
    fame/trials/<Language>/                  as trials/<protocol>/
    fame/evaluation/<Train>/<Language>/<method>.json, <method>_roc.parquet
    fame/lists/<Language>_test.txt, <Language>_labels.csv
    fame/table.{md,csv,html}
    fame/submission/<method>/<score files>, <method>.zip, <method>.json
    fame/official/embeddings/..., fame/official/submission/...   the same for the official test set

Every function returns strings joined with ``/`` (Snakemake's paths), for a folder given as a
string or a path.
"""

from __future__ import annotations

import os

#: The trial lists of one protocol (a Parquet file each), in the order they are written.
TRIAL_KINDS = ("verification", "matching", "retrieval")
#: The files of one comparison table (Markdown, CSV, LaTeX, and the report's HTML page).
TABLE_FORMATS = ("md", "csv", "tex", "compact.tex", "html")
#: All tables of one protocol on one page (Markdown, and the report's HTML page).
ALL_TABLES = ("tables.md", "tables.html")


def _join(folder: str | os.PathLike, name: str) -> str:
    return f"{os.fspath(folder)}/{name}"


def trial_files(folder: str | os.PathLike) -> dict[str, str]:
    """The trial lists in ``folder``: each kind's Parquet file, then ``summary``."""
    files = {kind: _join(folder, f"{kind}.parquet") for kind in TRIAL_KINDS}
    return {**files, "summary": _join(folder, "summary.json")}


def trials(out: str, protocol: str) -> dict[str, str]:
    """One protocol's trial lists (:func:`trial_files` of ``trials/<protocol>``)."""
    return trial_files(f"{out}/trials/{protocol}")


def embeddings(out: str, method: str, split: str) -> str:
    """A trained method's embeddings of one split."""
    return f"{out}/embeddings/{method}/{split}.parquet"


def train_files(folder: str | os.PathLike) -> dict[str, str]:
    """What training writes into its folder: the checkpoint, the log, its curve, the run record."""
    names = {"model": "model.pt", "log": "log.csv", "curve": "curve.png", "run": "run.json"}
    return {key: _join(folder, name) for key, name in names.items()}


def train(out: str, method: str) -> dict[str, str]:
    """One method's training files (:func:`train_files` of ``train/<method>``)."""
    return train_files(f"{out}/train/{method}")


def _results(folder: str, method: str) -> dict[str, str]:
    return {"json": f"{folder}/{method}.json", "roc": f"{folder}/{method}_roc.parquet"}


def evaluation(out: str, protocol: str, method: str) -> dict[str, str]:
    """One method's results under one protocol (``json``) and its ROC points (``roc``)."""
    return _results(f"{out}/evaluation/{protocol}", method)


def comparison_names(tables: tuple[str, ...], directions: tuple[str, ...]) -> list[str]:
    """The file names of one protocol's comparison: each table in :data:`TABLE_FORMATS`, all tables
    on one page (:data:`ALL_TABLES`), the ROC plot (a panel per stratum), one 1:N plot per direction."""
    names = [f"{t}.{ext}" for t in tables for ext in TABLE_FORMATS] + list(ALL_TABLES)
    return names + ["roc.png"] + [f"matching_1vN_{d}.png" for d in directions]


def comparison(out: str, protocol: str) -> str:
    """The folder of one protocol's comparison (the names of :func:`comparison_names` in it)."""
    return f"{out}/comparison/{protocol}"


def protocols_table(out: str) -> dict[str, str]:
    """The protocols side by side: Markdown, CSV and the report's HTML page."""
    return {ext: f"{out}/comparison/protocols.{ext}" for ext in ("md", "csv", "html")}


def log(out: str, stage: str, job: str) -> str:
    """The log of one job of a stage (``job`` may hold folders: ``<protocol>/<method>``)."""
    return f"{out}/logs/{stage}/{job}.log"


# --------------------------------------------------------------------------- FAME


def fame(out: str, official: bool = False) -> str:
    """The FAME protocol's folder (``official``: that of the challenge's official test set)."""
    return f"{out}/fame/official" if official else f"{out}/fame"


def fame_train(out: str, train: str, method: str) -> dict[str, str]:
    """One method's training files on one training language (:func:`train_files`)."""
    return train_files(f"{fame(out)}/train/{train}/{method}")


def fame_embeddings(out: str, train: str, method: str, split: str, official: bool = False) -> str:
    """The test embeddings of a method trained on one language (``official``: of the official test set)."""
    return f"{fame(out, official)}/embeddings/{train}/{method}/{split}.parquet"


def fame_trials(out: str, language: str) -> dict[str, str]:
    """One test language's trial lists (:func:`trial_files`)."""
    return trial_files(f"{fame(out)}/trials/{language}")


def fame_evaluation(out: str, train: str, language: str, method: str) -> dict[str, str]:
    """A method trained on ``train``, evaluated on ``language``'s trials (as :func:`evaluation`)."""
    return _results(f"{fame(out)}/evaluation/{train}/{language}", method)


def fame_list_files(folder: str | os.PathLike, language: str) -> dict[str, str]:
    """A language's test list in the challenge's format (``test``) and its labels, in ``folder``."""
    return {"test": _join(folder, f"{language}_test.txt"), "labels": _join(folder, f"{language}_labels.csv")}


def fame_lists(out: str, language: str) -> dict[str, str]:
    """:func:`fame_list_files` of ``fame/lists``."""
    return fame_list_files(f"{fame(out)}/lists", language)


def fame_table(out: str) -> dict[str, str]:
    """The heard / unheard table: Markdown, CSV and the report's HTML page."""
    return {ext: f"{fame(out)}/table.{ext}" for ext in ("md", "csv", "html")}


def fame_submission(out: str, method: str, names: list[str], official: bool = False) -> dict:
    """A method's score files (``names``, the challenge's), their zip (the upload) and its summary."""
    folder = f"{fame(out, official)}/submission"
    return {"scores": [f"{folder}/{method}/{n}" for n in names], "zip": f"{folder}/{method}.zip",
            "summary": f"{folder}/{method}.json"}
