rule trials:
    """Seeded trial lists of one split: test (unseen-unheard), seenheard (held-out videos of
    training identities), or val (model selection)."""
    input:
        manifest=rules.manifest.output[0],
    output:
        multiext(
            f"{OUT}/trials/{{split}}/",
            "verification.parquet",
            "matching.parquet",
            "retrieval.parquet",
            "summary.json",
        ),
    wildcard_constraints:
        split=EVAL_SPLITS,
    params:
        out=parent_of("output"),
        seed=EVAL["seed"],
        cfg=eval_params("verification", "matching", "retrieval", "age_cuts"),
        pins=pins_args,
    log:
        f"{OUT}/logs/trials/{{split}}.log",
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.trials --manifest {input.manifest:q} --split {wildcards.split}"
        " --out {params.out:q} --seed {params.seed} --params {params.cfg:q} {params.pins} 2> {log:q}"
