# Shared set-up: validate the config, list the clips, assign clips to shards.
# Everything here runs when Snakemake parses the workflow, before any job.

import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from facevoice.config import ConfigError, validate  # noqa: E402
from facevoice.inputs import InputError, identity_attributes, list_clips  # noqa: E402

try:
    validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    CLIPS = list_clips(config)
except (ConfigError, InputError) as exc:
    raise WorkflowError(str(exc)) from None

OUT = f"{config.get('results', 'results')}/{config['dataset']}"
CLIP_INDEX = CLIPS.set_index("clip")
IDENTITIES = identity_attributes(CLIPS)

# Every job runs its stage module as `"$FACEVOICE_PYTHON" -m facevoice.<module> ...`.
# FACEVOICE_PYTHON is the interpreter running Snakemake (the project's venv) or, under
# --use-conda, the `python` of the rule's conda environment; PYTHONPATH makes src/
# importable in both. Both are exported by the shell prefix of every job, on whichever
# machine runs it (a SLURM job step parses this file again), and inside the conda
# environment (Snakemake removes an inherited PYTHONPATH from a conda job's environment).
# Neither is a parameter of the rules, so switching between the venv and conda re-runs nothing.
_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_bash = (shell.get_executable() or "").endswith("bash")
shell.prefix(
    ("set -euo pipefail; " if _bash else "")
    + "export PYTHONPATH={} FACEVOICE_PYTHON={}; ".format(
        shlex.quote(SRC), "python" if _conda else shlex.quote(sys.executable)
    ).replace("{", "{{").replace("}", "}}")
)


wildcard_constraints:
    identity=r"[^/]+",
    video=r"[^/]+",
    clip=r"[^/]+",
    split=r"[A-Za-z_]+",
    modality=r"face|voice",
    index=r"\d{5}",


def clip_key(wildcards):
    return f"{wildcards.identity}/{wildcards.video}/{wildcards.clip}"


def clip_source(column):
    """Input function: the clip's source path in `column`, when it exists.

    A VoxCeleb1 utterance without a face track has no frames folder: the frames stage
    then rejects the clip instead of Snakemake refusing to run.
    """

    def source(wildcards):
        path = CLIP_INDEX.at[clip_key(wildcards), column]
        return [path] if Path(path).exists() else []

    return source


def clip_source_path(column):
    def source(wildcards):
        return CLIP_INDEX.at[clip_key(wildcards), column]

    return source


def params_json(section):
    """A config section as the JSON string a stage reads (also Snakemake's re-run trigger)."""
    return json.dumps(config[section], sort_keys=True)


def per_clip(stage, clips=None):
    clips = CLIPS["clip"] if clips is None else clips
    return [f"{OUT}/{stage}/{c}.parquet" for c in clips]


# --- shard assignment: per split and modality, sorted clips, clips_per_shard each ---
SHARD_SIZE = int(config["shards"]["clips_per_shard"])
SHARDS = {}  # (split, modality, index) -> list of clip keys
for _split, _group in CLIPS.sort_values("clip").groupby("split", sort=True):
    _keys = _group["clip"].tolist()
    for _i in range(0, len(_keys), SHARD_SIZE):
        for _modality in ("face", "voice"):
            SHARDS[(_split, _modality, f"{_i // SHARD_SIZE:05d}")] = _keys[_i : _i + SHARD_SIZE]


def shard_path(split, modality, index):
    return f"{OUT}/shards/{split}/{modality}-{index}.parquet"


ALL_SHARDS = [shard_path(*key) for key in sorted(SHARDS)]


def shard_clips(wildcards):
    return SHARDS[(wildcards.split, wildcards.modality, wildcards.index)]


def shard_records(wildcards):
    """Clip records of one shard: identity metadata travels into the shard and manifest."""
    recs = []
    for c in shard_clips(wildcards):
        ident = c.split("/", 1)[0]
        recs.append({"clip": c, "identity": ident, **IDENTITIES[ident]})
    return json.dumps(recs, sort_keys=True)


def shard_inputs(wildcards):
    """Input function of the shard rule (the per-clip outputs of the shard's clips)."""
    stage = "faces" if wildcards.modality == "face" else "features"
    return per_clip(stage, shard_clips(wildcards))


# --- training (train.smk): the train: section --------------------------------------------
TRAIN = config.get("train") or {}
_TRAIN_CHECKED = {}


def train_params(wildcards):
    """This method's part of the train: section, as JSON (also the rule's re-run trigger).

    The method, its variant and its overrides are checked when the job is planned, before
    any job runs (this imports torch, so it happens only when a train job is in the plan).
    """
    name = wildcards.method
    base = name.split("-", 1)[0]
    section = {k: v for k, v in TRAIN.items() if k not in ("methods", "overrides")}
    over = TRAIN.get("overrides") or {}
    section["overrides"] = {k: over[k] for k in (base, name) if k in over}
    if name not in _TRAIN_CHECKED:
        from facevoice.methods import MethodError
        from facevoice.train import settings

        try:
            settings(name, section)
        except MethodError as exc:
            raise WorkflowError(f"config train: {exc}") from None
        _TRAIN_CHECKED[name] = True
    return json.dumps(section, sort_keys=True)


# --- evaluation (trials.smk, evaluate.smk, compare.smk): the evaluation: section ---------
EVAL = config.get("evaluation", {})
# Methods evaluated: those trained here (rule embed) and any model's embeddings named in
# evaluation.embeddings.
EXTERNAL = EVAL.get("embeddings") or {}


def eval_params(*keys):
    """Some keys of the evaluation: section, as the JSON a stage reads."""
    return json.dumps({k: EVAL[k] for k in keys if k in EVAL}, sort_keys=True)


def pins_args(wildcards):
    """--import-pins arguments of the trials rule (test split, when evaluation.pins.dir is set)."""
    pins = EVAL.get("pins") or {}
    if wildcards.split != "test" or not pins.get("dir"):
        return ""
    return f"--import-pins {shlex.quote(pins['dir'])} --pins-set {pins.get('set', 'unseenunheard')}"


def embeddings_of(wildcards):
    """Input function of the evaluate rule (our embeddings of a method, or the named file)."""
    if wildcards.method in EXTERNAL:
        path = EXTERNAL[wildcards.method].get(wildcards.split)
        if not path:
            raise WorkflowError(
                f"evaluation.embeddings.{wildcards.method} has no '{wildcards.split}' file: "
                f"add {wildcards.split}: path/to/embeddings.parquet"
            )
        return path
    return f"{OUT}/embeddings/{wildcards.method}/{wildcards.split}.parquet"


def parent_of(kind, name=0):
    """A params function: the folder of the rule's input or output `name` (its first file).

    Path prefixes are derived from the files a job reads or writes, never spelled out a
    second time (`snakemake --lint`), so they stay right when paths change.
    """

    def folder(wildcards, input, output):
        files = {"input": input, "output": output}[kind]
        f = files[name] if isinstance(name, int) else getattr(files, name)
        if not isinstance(f, str):  # a named list of files
            f = f[0]
        return os.path.dirname(f)

    return folder
