from facevoice.evaluation.compare import OUTPUTS as COMPARE_OUTPUTS, PROTOCOLS_TABLE

# With held-out videos (seenheard.videos), the seen-heard protocol's tables go beside the
# unseen-unheard ones: in its folder (comparison/seenheard/), and both side by side in
# comparison/protocols.*
SEENHEARD_OUTPUTS = (
    [f"{SEEN_HEARD.folder}/{name}" for name in COMPARE_OUTPUTS] + list(PROTOCOLS_TABLE) if SEENHEARD_SPLITS else []
)


rule compare:
    """Tables (Markdown, CSV, LaTeX) and plots of every evaluated method, beside the papers' figures."""
    input:
        results=expand(f"{OUT}/evaluation/{UNSEEN_UNHEARD.split}/{{method}}.json", method=METHODS),
        rocs=expand(f"{OUT}/evaluation/{UNSEEN_UNHEARD.split}/{{method}}_roc.parquet", method=METHODS),
        sh_results=expand(f"{OUT}/evaluation/{{split}}/{{method}}.json", method=SEENHEARD_METHODS,
                          split=SEENHEARD_SPLITS),
        sh_rocs=expand(f"{OUT}/evaluation/{{split}}/{{method}}_roc.parquet", method=SEENHEARD_METHODS,
                       split=SEENHEARD_SPLITS),
    output:
        [
            report(f"{OUT}/comparison/{name}", caption=comparison_caption(name), category="Evaluation",
                   labels={"file": name})
            for name in COMPARE_OUTPUTS + SEENHEARD_OUTPUTS
        ],
    params:
        out=parent_of("output"),
        cfg=eval_params("compare"),
        results=lambda w, input: f"--results {' '.join(shlex.quote(p) for p in input.results)}" if input.results else "",
        rocs=lambda w, input: f"--roc {' '.join(shlex.quote(p) for p in input.rocs)}" if input.rocs else "",
        sh=lambda w, input: ("--seenheard" if SEENHEARD_SPLITS else "") + (
            f" --seenheard-results {' '.join(shlex.quote(p) for p in input.sh_results)}"
            f" --seenheard-roc {' '.join(shlex.quote(p) for p in input.sh_rocs)}" if input.sh_results else ""),
    log:
        f"{OUT}/logs/compare.log",
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.compare {params.results} {params.rocs} {params.sh} --out {params.out:q}"
        " --params {params.cfg:q} 2> {log:q}"
