# Generated faces: for the methods listed in generate.methods (voice2face), a grid of faces
# generated from the voices of one split's speakers beside their real faces, and the
# article's own evaluation of them (gender agreement, 1:2 matching with a judge network).
#
# Include after train.smk; add GENERATE_TARGETS to `rule all`.

GENERATE = config["generate"]
GENERATE_SPLIT = GENERATE["split"]
# methods listed in generate.methods and trained here (train.methods)
# (a seen-heard split with nothing held out stops the run in check_run, common.smk)
GENERATE_METHODS = [m for m in GENERATE["methods"] if m in TRAIN_METHODS]
GENERATE_TARGETS = expand(
    f"{OUT}/generated/{{method}}/{{name}}", method=GENERATE_METHODS, name=["grid.png", "report.json"]
)


rule generate:
    """Faces generated from a split's voices: a grid beside real faces, and their evaluation."""
    input:
        model=rules.train.output.model,
        manifest=rules.manifest.output,
        shards=[shard_path(*k) for k in sorted(SHARDS) if k[0] in ("train", GENERATE_SPLIT)],
    output:
        grid=report(f"{OUT}/generated/{{method}}/grid.png", caption="../report/generated_faces.rst",
                    category="Generated faces",
                    labels={"method": "{method}"}),
        report=f"{OUT}/generated/{{method}}/report.json",
    wildcard_constraints:
        method=TRAIN_NAME,
    params:
        root=parent_of("input", "manifest"),
        out=parent_of("output", "grid"),
        split=GENERATE_SPLIT,
        speakers=GENERATE["speakers"],
        seed=GENERATE["seed"],
        device=TRAIN["device"],
    log:
        f"{OUT}/logs/generate/{{method}}.log",
    conda:
        "../../envs/train.yaml"
    threads: TRAIN_THREADS
    resources:
        gpu=method_gpu,
        slurm_partition=method_partition,
        mem_mb=4000,
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.generate --checkpoint {input.model:q} --manifest {input.manifest:q}"
        " --shards-root {params.root:q} --split {params.split} --train-split train --out-dir {params.out:q}"
        " --n-speakers {params.speakers} --seed {params.seed} --device {params.device} --threads {threads}"
        " --no-progress 2> {log:q}"
