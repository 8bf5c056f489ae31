"""The evaluation protocols' vocabulary and files: strata, directions, list kinds, the trial-list
schemas and their reading and writing, and the evaluation settings (:func:`load_config`).

Shared by the trial lists, the scoring and the comparison tables, so that no stage imports another."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from facevoice.common.io import read_parquet, write_json, write_parquet
from facevoice.data.paths import TRIAL_KINDS, trial_files

FORMAT = "facevoice-trials/1"


VERIFICATION_STRATA = ("U", "G", "N", "A", "GNA")


MATCHING_STRATA = ("U", "G", "N", "GN")


DIRECTIONS = ("F-V", "V-F")


KINDS = TRIAL_KINDS


def _merge(base: dict, over: dict | None) -> dict:
    out = json.loads(json.dumps(base))
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_config(path: str | os.PathLike | None, params: str | None = None) -> dict:
    """The complete ``evaluation:`` section a command works with: that of the config file
    ``path``, then ``params`` over it (a JSON or YAML mapping shaped like the section, as the
    workflow's rules pass it: ``--params '{"verification": {"n_trials": 1000}}'``), checked
    and completed with the schema's defaults (:func:`facevoice.common.config.section`; the schema
    is the one place that holds them)."""
    import yaml

    from facevoice.common.config import load_yaml, section

    cfg = (load_yaml(path).get("evaluation") or {}) if path is not None else {}
    if params:
        extra = yaml.safe_load(params) or {}
        if not isinstance(extra, dict):
            raise ValueError(f"--params must be a mapping, got {params!r}")
        cfg = _merge(cfg, extra)
    return section("evaluation", cfg)


VERIFICATION_SCHEMA = pa.schema([
    ("stratum", pa.string()), ("trial", pa.int32()), ("label", pa.int8()),
    ("face", pa.string()), ("voice", pa.string()),
    ("face_identity", pa.string()), ("voice_identity", pa.string()),
])


MATCHING_SCHEMA = pa.schema([
    ("direction", pa.string()), ("stratum", pa.string()), ("n_candidates", pa.int8()),
    ("trial", pa.int32()), ("probe", pa.string()), ("probe_identity", pa.string()),
    ("candidates", pa.list_(pa.string())), ("candidate_identities", pa.list_(pa.string())),
    ("target", pa.int8()),
])


RETRIEVAL_SCHEMA = pa.schema([
    ("item", pa.string()), ("identity", pa.string()), ("modality", pa.string()),
    ("probe", pa.bool_()),
])


SCHEMAS = {"verification": VERIFICATION_SCHEMA, "matching": MATCHING_SCHEMA,
           "retrieval": RETRIEVAL_SCHEMA}


def write_trials(lists: dict[str, tuple[pd.DataFrame, dict]], out: str | os.PathLike) -> None:
    """The lists and their summary into the folder ``out`` (:func:`facevoice.data.paths.trial_files`)."""
    files = trial_files(out)
    summary = {}
    for kind, (df, meta) in lists.items():
        table = pa.Table.from_pandas(df, schema=SCHEMAS[kind], preserve_index=False)
        write_parquet(table, files[kind], meta=meta, compression="zstd")
        summary[kind] = {k: meta[k] for k in ("source", "split", "seed", "code_version", "strata")}
        summary[kind]["manifest_sha256"] = meta["manifest"]["sha256"]
    write_json(files["summary"], summary)


def read_trials(trials_dir: str | os.PathLike) -> dict[str, tuple[pd.DataFrame, dict]]:
    """{kind: (DataFrame, metadata)} for the lists present in ``trials_dir``."""
    out = {}
    files = trial_files(trials_dir)
    for kind in KINDS:
        path = Path(files[kind])
        if path.exists():
            table, meta = read_parquet(path)
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a {FORMAT} trial list")
            out[kind] = (table.to_pandas(), meta)
    if not out:
        raise FileNotFoundError(f"no trial lists in {trials_dir}")
    return out
