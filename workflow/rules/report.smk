import hashlib


rule clip_table:
    """The clip table that the data report reads (re-written only when the clips change)."""
    output:
        f"{OUT}/clips.parquet",
    params:
        # computed for this job only (not at every parse of the workflow)
        digest=lambda w: hashlib.sha256(CLIPS.to_csv(index=False).encode()).hexdigest(),
    log:
        f"{OUT}/logs/clip_table.log",
    conda:
        "../../envs/preprocess.yaml"
    run:
        from facevoice.io import write_parquet

        write_parquet(CLIPS, output[0], {"stage": "clip_table", "digest": params.digest})


rule data_report:
    """Counts per split and identity, rejects by reason, speech kept vs dropped."""
    input:
        clips=rules.clip_table.output,
        manifest=rules.manifest.output,
        # functions, not lists: a job's own Snakemake (a cluster job step) parses the workflow
        # again, and three lists of every clip's file cost seconds there at VoxCeleb size
        faces=lambda w: per_clip("faces"),
        features=lambda w: per_clip("features"),
        speech=lambda w: per_clip("speech"),
    output:
        md=report(f"{OUT}/report/report.md", category="Data", labels={"figure": "data report"}),
        png=report(f"{OUT}/report/report.png", category="Data", labels={"figure": "overview"}),
        identities=f"{OUT}/report/identities.csv",
        rejects=f"{OUT}/report/rejects.csv",
        speech=f"{OUT}/report/speech.csv",
    params:
        results=parent_of("input", "clips"),
        out=parent_of("output", "md"),
        top=config.get("report", {}).get("top_identities", 40),
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "\"$FACEVOICE_PYTHON\" -m facevoice.report --clips {input.clips:q} --manifest {input.manifest:q}"
        " --results {params.results:q} --out {params.out:q} --top {params.top} 2> {log:q}"


localrules:
    all,
    clip_table,
