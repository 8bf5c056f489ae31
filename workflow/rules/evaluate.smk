from facevoice.evaluation.results import RESULTS_FORMAT

# Methods evaluated: those trained here (rule embed) and any model's embeddings named in
# evaluation.embeddings (EXTERNAL, common.smk).
# (methods_of(protocol), common.smk: those a protocol evaluates)


rule evaluate:
    """One test protocol on one method's embeddings: verification, 1:2 and 1:N matching, retrieval."""
    input:
        embeddings=embeddings_of,
        trials=rules.trials.output,
    output:
        **paths.evaluation(OUT, "{protocol}", "{method}"),
    wildcard_constraints:
        protocol=PROTOCOL_NAMES,
        method=r"[A-Za-z0-9_.-]+",
    params:
        trials=parent_of("input", "trials"),  # the folder of the trial lists (facevoice.data.paths.trial_files)
        cfg=eval_params("bootstrap", "dcf"),
        # the results' format (facevoice.evaluation.results): a new one re-runs the evaluations
        # (Snakemake's params trigger), so that compare never meets a file of the old format
        results_format=RESULTS_FORMAT,
    log:
        paths.log(OUT, "evaluate", "{protocol}/{method}"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.evaluate --embeddings {input.embeddings:q} --trials {params.trials:q}"
        " --out {output.json:q} --roc-out {output.roc:q} --method {wildcards.method}"
        " --params {params.cfg:q} 2> {log:q}"
