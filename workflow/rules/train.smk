# Training and embeddings: one `train` job per method (wildcard), then the test and
# validation embeddings the evaluation reads. Methods and their settings: config `train:`.
#
# Include after shards.smk; add TRAIN_TARGETS to `rule all`.

# TRAIN (the train: section) and train_params() are in common.smk.
# A method, or an ablation "method-variant" (`facevoice train --list`); evaluate.smk
# evaluates the same list.
TRAIN_METHODS = list(TRAIN["methods"])
# The splits the evaluation reads (the test protocols' run, common.smk). Validation embeddings are not built by default: model
# selection embeds the validation identities inside the train job; request
# embeddings/<method>/val.parquet by name for your own use.
EMBED_SPLITS = PROTOCOL_SPLITS
TRAIN_FILES = paths.train(OUT, "{method}")  # model, log, curve, run (facevoice.data.paths)
EMBEDDINGS = paths.embeddings(OUT, "{method}", "{split}")
TRAIN_NAME = r"[a-z0-9_]+(-[A-Za-z0-9_.]+)?"  # method or method-variant

# FAME (config fame.train_language, MAV-Celeb): fame.smk trains each method once more per
# training language, in a folder of its own per language and method (rule fame_train: TRAIN_SHELL with
# `--language L`, the train/val items in L only); rule train's paths, params and command stay
# those of a run without FAME, so turning FAME on or off re-runs none of its jobs.
TRAIN_SHELL = (
    "\"$FACEVOICE_PYTHON\" -m facevoice.training.train --method {{wildcards.method}} --manifest {{input.manifest:q}}"
    " --shards-root {{params.root:q}} --out {{params.out:q}} --params {{params.cfg:q}}"
    " --threads {{threads}} --no-progress{language} 2> {{log:q}}"
)

TRAIN_TARGETS = expand(list(TRAIN_FILES.values()), method=TRAIN_METHODS) + expand(
    EMBEDDINGS, method=TRAIN_METHODS, split=EMBED_SPLITS
)

rule train:
    """Train one method (checkpoint every epoch, resumes after a kill; best epoch on val AUC)."""
    input:
        manifest=rules.manifest.output,
        # train and validation shards only: the test identities stay untouched
        shards=[shard_path(*k) for k in sorted(SHARDS) if k[0] in ("train", TRAIN["val"]["split"])],
    output:
        **{
            **TRAIN_FILES,
            "curve": report(TRAIN_FILES["curve"], caption="../report/training_curve.rst", category="Training",
                            labels={"method": "{method}"}),
        },
    wildcard_constraints:
        method=TRAIN_NAME,
    params:
        cfg=train_params,
        root=parent_of("input", "manifest"),
        out=parent_of("output", "model"),
    log:
        paths.log(OUT, "train", "{method}"),
    conda:
        "../../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=method_gpu,
        slurm_partition=method_partition,
        runtime=train_runtime,
        mem_mb=TRAIN["mem_mb"],
    shell:
        TRAIN_SHELL.format(language="")


rule embed:
    """Embeddings of one split's faces and voices (id, identity, modality, embedding)."""
    input:
        model=rules.train.output.model,
        manifest=rules.manifest.output,
        shards=lambda w: [shard_path(*k) for k in sorted(SHARDS) if k[0] == w.split],
    output:
        EMBEDDINGS,
    params:
        root=parent_of("input", "manifest"),
        device=TRAIN["device"],
        amp=TRAIN["amp"],
    wildcard_constraints:
        method=TRAIN_NAME,
        split="|".join(EMBED_SPLITS + ["val"]),
    log:
        paths.log(OUT, "embed", "{method}/{split}"),
    conda:
        "../../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=method_gpu,
        slurm_partition=method_partition,
        mem_mb=4000,
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.training.embed --checkpoint {input.model:q} --method {wildcards.method}"
        " --manifest {input.manifest:q} --shards-root {params.root:q} --split {wildcards.split}"
        " --device {params.device} --amp {params.amp} --threads {threads} --out {output:q} 2> {log:q}"
