from facevoice.compare import OUTPUTS as COMPARE_OUTPUTS


rule compare:
    """Tables (Markdown, CSV, LaTeX) and plots of every evaluated method, beside the papers' figures."""
    input:
        results=expand(f"{OUT}/evaluation/test/{{method}}.json", method=METHODS),
        rocs=expand(f"{OUT}/evaluation/test/{{method}}_roc.parquet", method=METHODS),
    output:
        [
            report(f"{OUT}/comparison/{name}", caption=comparison_caption(name), category="Evaluation",
                   labels={"file": name})
            for name in COMPARE_OUTPUTS
        ],
    params:
        out=parent_of("output"),
        cfg=eval_params("compare"),
        results=lambda w, input: f"--results {' '.join(shlex.quote(p) for p in input.results)}" if input.results else "",
        rocs=lambda w, input: f"--roc {' '.join(shlex.quote(p) for p in input.rocs)}" if input.rocs else "",
    log:
        f"{OUT}/logs/compare.log",
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.compare {params.results} {params.rocs} --out {params.out:q}"
        " --params {params.cfg:q} 2> {log:q}"
