rule trials:
    """Seeded trial lists of one test protocol (facevoice.evaluation.protocols): its split's items
    that its filter keeps (val lists, for model selection, are drawn inside the train job)."""
    input:
        manifest=rules.manifest.output[0],
    output:
        **paths.trials(OUT, "{protocol}"),
    wildcard_constraints:
        protocol=PROTOCOL_NAMES,
    params:
        out=parent_of("output"),
        seed=EVAL["seed"],
        cfg=protocol_params("verification", "matching", "retrieval", "age_cuts"),
        pins=pins_args,
    log:
        paths.log(OUT, "trials", "{protocol}"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.trials --manifest {input.manifest:q} --protocol {wildcards.protocol}"
        " --out {params.out:q} --seed {params.seed} --params {params.cfg:q} {params.pins} 2> {log:q}"
