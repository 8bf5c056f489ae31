# Shared set-up: validate the config, list the clips, assign clips to shards.
# Everything here runs when Snakemake parses the workflow, before any job.

import json
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

# Per-clip jobs run the stage modules with this interpreter: the one running Snakemake, or
# the rule's conda environment's under --use-conda. PYTHONPATH makes src/ importable in both.
_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if _conda else shlex.quote(sys.executable)
STAGE = f"env PYTHONPATH={shlex.quote(SRC)} {PYTHON} -m"


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
