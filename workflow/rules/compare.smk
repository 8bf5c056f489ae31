from facevoice.evaluation.compare import OUTPUTS as COMPARE_OUTPUTS

# One comparison per test protocol (comparison/<protocol>/), and, with two protocols or more,
# all of them side by side (rule protocols_table); file names: facevoice.data.paths.
# The report (snakemake --report) shows each protocol under its own category (comparison_output,
# common.smk).


rule compare:
    """One protocol's tables (Markdown, CSV, LaTeX, HTML) and plots of every method it evaluates, beside the
    papers' figures measured under it."""
    input:
        results=protocol_files("json"),
        rocs=protocol_files("roc"),
    output:
        [comparison_output(name) for name in COMPARE_OUTPUTS],
    wildcard_constraints:
        protocol=PROTOCOL_NAMES,
    params:
        out=parent_of("output"),
        heading=lambda w: PROTOCOLS_RUN[w.protocol].heading,  # the report captions name it
        cfg=protocol_params("compare"),
        results=lambda w, input: f"--results {quoted(input.results)}" if input.results else "",
        rocs=lambda w, input: f"--roc {quoted(input.rocs)}" if input.rocs else "",
    log:
        paths.log(OUT, "compare", "{protocol}"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.compare --protocol {wildcards.protocol} {params.results}"
        " {params.rocs} --out {params.out:q} --params {params.cfg:q} 2> {log:q}"


rule protocols_table:
    """Every protocol run side by side: AUC, EER, minDCF, min Cllr and 1:2 matching of stratum U per method."""
    input:
        [f for p in PROTOCOLS_RUN for f in expand(rules.evaluate.output.json, protocol=p, method=methods_of(p))],
    output:
        **{
            **paths.protocols_table(OUT),
            "html": report(paths.protocols_table(OUT)["html"], caption=comparison_caption("protocols.html"),
                           category="Protocols side by side", labels={"file": "protocols.html"}),
        },
    params:
        cfg=protocol_params("compare"),
        headings="; ".join(p.heading for p in PROTOCOLS_RUN.values()),  # the report caption names them
        protocols=lambda w: " ".join(
            f"--protocol {p} --results {quoted(expand(rules.evaluate.output.json, protocol=p, method=methods_of(p)))}"
            for p in PROTOCOLS_RUN
        ),
    log:
        paths.log(OUT, "compare", "protocols"),
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.evaluation.compare {params.protocols}"
        " --table {output.md:q} {output.csv:q} {output.html:q} --params {params.cfg:q} 2> {log:q}"


# rule all's evaluation targets
EVALUATION_TARGETS = expand(rules.trials.output, protocol=list(PROTOCOLS_RUN)) + expand(
    rules.compare.output, protocol=list(PROTOCOLS_RUN)
)
if len(PROTOCOLS_RUN) > 1:
    EVALUATION_TARGETS += rules.protocols_table.output
