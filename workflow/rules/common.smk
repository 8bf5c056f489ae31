# Shared set-up: validate the config, list the clips, cut them into batches, plan the shards.
# Everything here runs when Snakemake parses the workflow, before any job.
#
# facevoice.check.check_run completes `config` in place with the schema's defaults
# (workflow/schemas/config.schema.yaml) and checks everything the config and the clip listing
# decide, the one check `facevoice check-config` makes too (same verdict, same message): every
# key of every section is present below, so no rule holds a default of its own. Planning imports
# nothing heavy (no PyTorch, librosa, scikit-learn, matplotlib: a driver environment of
# envs/driver.yaml plans a run), so the methods' variants and overrides, which need the method
# plug-ins (PyTorch), are resolved by check-config and by each train job as it starts.

import atexit
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

SRC = str(Path(workflow.basedir) / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)

from facevoice.check import check_run, method_section, release_memory  # noqa: E402
from facevoice.common.config import ConfigError, has_network  # noqa: E402
from facevoice.data import paths  # noqa: E402  (the results layout: every output's name)
from facevoice.common.lock import LockError, acquire  # noqa: E402
from facevoice.data.layouts import SOURCE_KEYS, layout_of  # noqa: E402
from facevoice.data.inputs import (  # noqa: E402
    PINS_SETS,
    SEENHEARD,
    InputError,
    clips_digest,
    heldout_summary,
    shard_plan,
    shard_relpath,
)
from facevoice.evaluation.protocols import selected as selected_protocols  # noqa: E402

try:
    CLIPS = check_run(config, schema_path=Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
                      methods=False)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
_held = heldout_summary(CLIPS)
if _held:
    logger.info(_held)

OUT = f"{config['results']}/{config['dataset']}"


# --- one run per results folder (facevoice.common.lock) -----------------------------------
# Snakemake locks the working folder only; a run also holds OUT's lock from before its first job to
# its end, so a run from another working folder with the same results: stops before any job.
# onstart/onsuccess/onerror run in the main Snakemake process only: never for -n, --lint,
# --summary, --report or --unlock, nor in a job's own Snakemake (started with --no-hooks).
# onerror covers a failed job, Ctrl-C and SIGTERM; atexit an exception in Snakemake itself;
# after kill -9 the lock is stale and the next run on this host takes it over.
_RUN_LOCK = []


onstart:
    if workflow.is_main_process and not _RUN_LOCK:
        try:
            _lock = acquire(OUT)
        except LockError as exc:
            raise WorkflowError(str(exc)) from None
        atexit.register(_lock.release)
        _RUN_LOCK.append(_lock)
        if _lock.replaced:
            logger.warning(_lock.takeover_message())


def release_run_lock():
    while _RUN_LOCK:
        _RUN_LOCK.pop().release()


onsuccess:
    release_run_lock()


onerror:
    release_run_lock()

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
    part=r"\d{3}",
    split=r"[A-Za-z_]+",
    modality=r"face|voice",
    index=r"\d{5}",


# --- batches: one identity's clips, max_clips at a time (frames, faces, speech, features) ---
MAX_CLIPS = int(config["batches"]["max_clips"])
SOURCE = json.dumps({k: config["input"][k] for k in SOURCE_KEYS}, sort_keys=True)
# A clip table's batches: (identity, part) -> its rows of the table, in clip order; a batch's clip
# keys, frames and speech sources are read from the table when a job asks (Python lists of every
# clip's paths would add about 50 MB to planning a VoxCeleb1-sized tree)
BATCH_COLUMNS = ("clip", "frames_source", "speech_source")


class Batches(dict):
    """(identity, part) -> rows of ``clips``; :meth:`column` reads one BATCH_COLUMNS column of a batch."""

    def __init__(self, clips):
        super().__init__()
        self.clips = clips
        for row, key in enumerate(zip(clips["identity"], clips["part"])):
            self.setdefault(key, []).append(row)

    def column(self, wildcards, column):
        """A batch's values of column BATCH_COLUMNS[column] (0: clip keys, 1: frames, 2: speech sources)."""
        return self.clips[BATCH_COLUMNS[column]].take(self[(wildcards.identity, wildcards.part)]).tolist()


def batches_of(clips):
    """The batches (:class:`Batches`) of a clip table: the run's, or fame.smk's official test set's."""
    return Batches(clips)


BATCHES = batches_of(CLIPS)
NAMES = dict(zip(CLIPS["identity"], CLIPS["name"]))
IDENTITY_PARTS = {}  # identity -> its parts
for _ident, _part in BATCHES:
    IDENTITY_PARTS.setdefault(_ident, []).append(_part)


def batch_sources(column, batches=BATCHES):
    """Input function: the media of a batch that exist (frames: 1, speech: 2); ``batches``: the
    run's (BATCHES), or fame.smk's of the official test set.

    A VoxCeleb1 utterance without a face track (a MAV-Celeb video without face frames) has no
    frames folder: the frames stage then rejects the clip instead of Snakemake refusing to
    run. Only the frames of a layout declared so (facevoice.data.layouts, frames_may_be_missing)
    are looked up; the other layouts' files were just listed.
    """
    check = layout_of(config).frames_may_be_missing and column == 1

    def sources(wildcards):
        paths = batches.column(wildcards, column)
        return [p for p in paths if os.path.exists(p)] if check else paths

    return sources


def batch_arguments(batches, source, names):
    """A params function: the arguments a source stage's job lists its batch with (and checks it
    against), for ``batches`` of clips listed from ``source`` (JSON), ``names`` their identities' names."""

    def arguments(wildcards):
        keys = batches.column(wildcards, 0)
        return "--source {} --name {} --max-clips {} --digest {}".format(
            shlex.quote(source), shlex.quote(names[wildcards.identity]), MAX_CLIPS, clips_digest(keys)
        )

    return arguments


batch_args = batch_arguments(BATCHES, SOURCE, NAMES)


def batch_files(stage, identities=None):
    """The batch files of a stage, of the given identities (default: all)."""
    idents = sorted(IDENTITY_PARTS) if identities is None else identities
    return [f"{OUT}/{stage}/{i}/{p}.parquet" for i in idents for p in IDENTITY_PARTS[i]]


def params_json(section):
    """A config section as the JSON string a stage reads (also Snakemake's re-run trigger)."""
    return json.dumps(config[section], sort_keys=True)


# --- shards: an identity's bucket is a stable hash of its id (shards.buckets) ---------------
BUCKETS = int(config["shards"]["buckets"])


def shards_of(clips):
    """(split, modality, index) -> identities, of every shard of a clip table."""
    return {
        (split, modality, f"{bucket:05d}"): idents
        for (split, bucket), idents in shard_plan(clips, BUCKETS).items()
        for modality in ("face", "voice")
    }


SHARDS = shards_of(CLIPS)


def shard_path(split, modality, index):
    return f"{OUT}/shards/{shard_relpath(split, modality, int(index))}"


ALL_SHARDS = [shard_path(*key) for key in sorted(SHARDS)]
# A shard job names its batch files on its command line (one argument of at most 128 KiB).
_longest = max((sum(len(f) + 3 for f in batch_files("features", ids)) for ids in SHARDS.values()), default=0)
if _longest > 100_000:
    raise WorkflowError(
        f"shards.buckets is {BUCKETS}: a shard would hold {max(map(len, SHARDS.values()))} identities, more "
        f"than one job can name; raise shards.buckets (README: 'Shards')"
    )


def shard_inputs(wildcards):
    """Input function of the shard rule (the batch files of the shard's identities)."""
    stage = "faces" if wildcards.modality == "face" else "features"
    return batch_files(stage, SHARDS[(wildcards.split, wildcards.modality, wildcards.index)])


# --- seen-heard: held-out videos of training identities (split SEENHEARD) -----------------
HELDOUT = {}  # identity -> its held-out videos ("identity/video")
for _ident, _video in sorted(set(zip(*(CLIPS.loc[CLIPS["split"] == SEENHEARD, c] for c in ("identity", "video"))))):
    HELDOUT.setdefault(_ident, []).append(f"{_ident}/{_video}")


def shard_heldout(wildcards):
    """Params function of the shard rule: the held-out videos of the shard's identities (JSON)."""
    idents = SHARDS[(wildcards.split, wildcards.modality, wildcards.index)]
    return json.dumps([v for i in idents for v in HELDOUT.get(i, [])])


# the clip listing's freed memory back to the system before Snakemake builds the DAG (planning
# a VoxCeleb1-sized tree: benchmarks/bench_scale.py)
release_memory()


# --- training (train.smk): the train: section --------------------------------------------
TRAIN = config["train"]
TRAIN_THREADS = TRAIN["threads"] or 4  # threads of a train, embed or generate job (train.threads null: 4)


def train_params(wildcards):
    """This method's part of the train: section, as JSON (also the rule's re-run trigger).

    The method, its variant and its overrides were checked with the rest (check_run).
    """
    return json.dumps(method_section(TRAIN, wildcards.method), sort_keys=True)


# Resources of the jobs of a method (train, embed, generate, fame_train, fame_embed), read by the
# SLURM profile (profiles/slurm; a local run ignores them): a GPU, on the GPU partition, only for
# a method with a network (its plug-in's NETWORK: not chance); a train job's time limit from
# train.runtime. The partitions come from the profile's variables (README: "Cluster (SLURM)").
def method_gpu(wildcards):
    """1 for a method that trains or embeds a network, 0 for one without (chance)."""
    return int(has_network(wildcards.method))


def method_partition(wildcards):
    """FACEVOICE_SLURM_GPU_PARTITION for a GPU job, else FACEVOICE_SLURM_PARTITION ('': the default)."""
    gpu = os.environ.get("FACEVOICE_SLURM_GPU_PARTITION") if method_gpu(wildcards) else None
    return gpu or os.environ.get("FACEVOICE_SLURM_PARTITION", "")


def train_runtime(wildcards):
    """Minutes a train job may run: train.runtime.methods' entry of the run or its method, else the profile's."""
    runtime = TRAIN["runtime"]
    for name in (wildcards.method, wildcards.method.split("-", 1)[0]):
        if name in runtime["methods"]:
            return runtime["methods"][name]
    return runtime[TRAIN["profile"]]


# --- evaluation (trials.smk, evaluate.smk, compare.smk): the evaluation: section ---------
EVAL = config["evaluation"]
# Methods evaluated: those trained here (rule embed) and any model's embeddings named in
# evaluation.embeddings.
EXTERNAL = EVAL["embeddings"]
TRAINED = list(TRAIN["methods"])

# The test protocols run (facevoice.evaluation.protocols): those evaluation.protocols names
# (built-in or declared under evaluation.declare) whose split has items; each one is the
# {protocol} wildcard of trials/, evaluation/ and comparison/. The held-out split has items only
# when videos are held out (facevoice.data.inputs.heldout_videos).
PROTOCOLS_RUN = {}  # name -> Protocol
for _p in selected_protocols(EVAL):  # checked by check_run above
    if _p.split in set(CLIPS["split"]):
        PROTOCOLS_RUN[_p.name] = _p
    else:
        logger.info(f"protocol {_p.name}: split {_p.split} has no item, not evaluated")
# the splits they test: the embeddings each trained method makes (train.smk)
PROTOCOL_SPLITS = list(dict.fromkeys(p.split for p in PROTOCOLS_RUN.values()))
PROTOCOL_NAMES = "|".join(PROTOCOLS_RUN) or "(?!)"  # the {protocol} wildcard's values


def eval_params(*keys):
    """Some keys of the evaluation: section, as the JSON a stage reads."""
    return json.dumps({k: EVAL[k] for k in keys}, sort_keys=True)


def protocol_params(*keys):
    """A params function: some keys of the evaluation: section and the declaration of the job's
    protocol(s) (evaluation.declare; none for a built-in), as the JSON a stage reads. Only that
    protocol's entry: declaring another one re-runs nothing."""

    def params(wildcards):
        names = [wildcards.protocol] if "protocol" in wildcards.keys() else list(PROTOCOLS_RUN)
        declare = [d for d in EVAL["declare"] if d["name"] in names]
        return json.dumps({**{k: EVAL[k] for k in keys}, "declare": declare}, sort_keys=True)

    return params


def pins_args(wildcards):
    """--import-pins arguments of the trials jobs (evaluation.pins: its dir, and the protocol's set:
    a built-in protocol's, when evaluation.pins.sets names it)."""
    pins = EVAL["pins"]
    pins_set = PROTOCOLS_RUN[wildcards.protocol].pins_set
    if not pins["dir"] or pins_set not in pins["sets"]:
        return ""
    return f"--import-pins {shlex.quote(pins['dir'])} --pins-set {pins_set}"


def methods_of(protocol):
    """The methods a protocol evaluates: the trained ones (train.methods), and the embeddings named
    in evaluation.embeddings that have a file of its split (every one has a test file)."""
    split = PROTOCOLS_RUN[protocol].split
    return TRAINED + [m for m in EXTERNAL if m not in TRAINED and EXTERNAL[m].get(split)]


def protocol_files(kind):
    """An input function: the evaluate rule's `kind` file of every method the job's protocol evaluates."""
    return lambda w: expand(getattr(rules.evaluate.output, kind), protocol=w.protocol, method=methods_of(w.protocol))


def quoted(files):
    """Files as shell arguments."""
    return " ".join(shlex.quote(f) for f in files)


def embeddings_of(wildcards):
    """Input function of the evaluate rule: the embeddings of the split the protocol tests (ours of
    a method, or the named file)."""
    split = PROTOCOLS_RUN[wildcards.protocol].split
    if wildcards.method in EXTERNAL:
        path = EXTERNAL[wildcards.method].get(split)
        if not path:
            raise WorkflowError(
                f"evaluation.embeddings.{wildcards.method} has no '{split}' file: "
                f"add {split}: path/to/embeddings.parquet"
            )
        return path
    return paths.embeddings(OUT, wildcards.method, split)


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


def comparison_caption(name):
    """The caption (workflow/report/) of one comparison output, by its kind (a caption names the
    job's protocol through its params: heading)."""
    kinds = [("protocols", "protocols"), ("verification", "verification"), ("matching_1vN_", "1vN"),
             ("matching", "matching"), ("retrieval", "retrieval"), ("roc", "roc"), ("tables", "tables")]
    kind = next(k for prefix, k in kinds if name.rsplit("/", 1)[-1].startswith(prefix))
    return f"../report/comparison_{kind}.rst"


# The report (snakemake --report): a protocol's comparison under its own category, named by its
# title, one subcategory per task; each table as its HTML page, the plots as images.
REPORT_TASKS = (("verification.html", "Verification"), ("matching_", "Matching"), ("retrieval.html", "Retrieval"),
                ("roc.png", "ROC"), ("tables.html", "All tables"))


def comparison_output(name):
    """One comparison file of the {protocol} wildcard's (facevoice.data.paths): in the report when it
    is an HTML page or a plot, under its protocol's title and its task."""
    path = f"{paths.comparison(OUT, '{protocol}')}/{name}"
    if not name.endswith((".html", ".png")):
        return path
    task = next(t for prefix, t in REPORT_TASKS if name.startswith(prefix))
    return report(path, caption=comparison_caption(name), category=lambda w: PROTOCOLS_RUN[w.protocol].title,
                  subcategory=task, labels={"file": name})
