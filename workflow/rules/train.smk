# Training and embeddings: one `train` job per method (wildcard), then the test and
# validation embeddings the evaluation reads. Methods and their settings: config `train:`.
#
# Include after shards.smk; add TRAIN_TARGETS to `rule all`.

import json

TRAIN = config.get("train") or {}
# A method, or an ablation "method-variant" (`facevoice train --list`); evaluate.smk
# evaluates the same list.
TRAIN_METHODS = list(TRAIN.get("methods") or [])
EMBED_SPLITS = ["test", "val"]
TRAIN_DIR = f"{OUT}/train/{{method}}"
TRAIN_NAME = r"[a-z0-9_]+(-[A-Za-z0-9_.]+)?"  # method or method-variant

TRAIN_TARGETS = (
    expand(f"{OUT}/train/{{method}}/{{name}}", method=TRAIN_METHODS, name=["model.pt", "log.csv", "curve.png", "run.json"])
    + expand(f"{OUT}/embeddings/{{method}}/{{split}}.parquet", method=TRAIN_METHODS, split=EMBED_SPLITS)
)

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


rule train:
    """Train one method (checkpoint every epoch, resumes after a kill; best epoch on val AUC)."""
    input:
        manifest=rules.manifest.output,
        # train and validation shards only: the test identities stay untouched
        shards=[shard_path(*k) for k in sorted(SHARDS) if k[0] in ("train", TRAIN.get("val", {}).get("split", "val"))],
    output:
        model=f"{TRAIN_DIR}/model.pt",
        log=f"{TRAIN_DIR}/log.csv",
        curve=report(f"{TRAIN_DIR}/curve.png", category="Training", labels={"method": "{method}"}),
        run=f"{TRAIN_DIR}/run.json",
    wildcard_constraints:
        method=TRAIN_NAME,
    params:
        cfg=train_params,
        root=f"{OUT}/shards",
        out=TRAIN_DIR,
    log:
        f"{OUT}/logs/train/{{method}}.log",
    conda:
        "../../envs/train.yaml"
    threads: int(TRAIN.get("threads") or 4)
    resources:
        gpu=1,
        mem_mb=int(TRAIN.get("mem_mb") or 8000),
    shell:
        "{STAGE} facevoice.train --method {wildcards.method} --manifest {input.manifest:q}"
        " --shards-root {params.root:q} --out {params.out:q} --params {params.cfg:q}"
        " --threads {threads} --no-progress 2> {log:q}"


rule embed:
    """Embeddings of one split's faces and voices (id, identity, modality, embedding)."""
    input:
        model=rules.train.output.model,
        manifest=rules.manifest.output,
        shards=lambda w: [shard_path(*k) for k in sorted(SHARDS) if k[0] == w.split],
    output:
        f"{OUT}/embeddings/{{method}}/{{split}}.parquet",
    params:
        root=f"{OUT}/shards",
        device=TRAIN.get("device") or "auto",
        amp=TRAIN.get("amp") or "auto",
    wildcard_constraints:
        method=TRAIN_NAME,
        split="|".join(EMBED_SPLITS),
    log:
        f"{OUT}/logs/embed/{{method}}/{{split}}.log",
    conda:
        "../../envs/train.yaml"
    threads: int(TRAIN.get("threads") or 4)
    resources:
        gpu=1,
        mem_mb=4000,
    shell:
        "{STAGE} facevoice.embed --checkpoint {input.model:q} --method {wildcards.method}"
        " --manifest {input.manifest:q} --shards-root {params.root:q} --split {wildcards.split}"
        " --device {params.device} --amp {params.amp} --threads {threads} --out {output:q} 2> {log:q}"
