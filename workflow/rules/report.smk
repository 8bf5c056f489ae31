rule data_report:
    """Counts per split and identity, rejects by reason, speech kept vs dropped."""
    input:
        clips=rules.clip_table.output,
        manifest=rules.manifest.output,
        # functions, not lists: a job's own Snakemake (a cluster job step) parses the workflow
        # again, and needs none of these lists unless it runs this job
        faces=lambda w: batch_files("faces"),
        features=lambda w: batch_files("features"),
        speech=lambda w: batch_files("speech"),
    output:
        md=report(f"{OUT}/report/report.md", caption="../report/data_report.rst", category="Data",
                  labels={"figure": "data report"}),
        png=report(f"{OUT}/report/report.png", caption="../report/data_overview.rst", category="Data",
                   labels={"figure": "overview"}),
        identities=f"{OUT}/report/identities.csv",
        rejects=f"{OUT}/report/rejects.csv",
        speech=f"{OUT}/report/speech.csv",
    params:
        results=parent_of("input", "clips"),
        out=parent_of("output", "md"),
        top=config["report"]["top_identities"],
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.preprocess.report --clips {input.clips:q} --manifest {input.manifest:q}"
        " --results {params.results:q} --out {params.out:q} --top {params.top} 2> {log:q}"


localrules:
    all,
    clip_table,
