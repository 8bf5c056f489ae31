import hashlib


rule clip_table:
    """The clip table that the data report reads (re-written only when the clips change)."""
    output:
        f"{OUT}/clips.parquet",
    params:
        digest=hashlib.sha256(CLIPS.to_csv(index=False).encode()).hexdigest(),
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
        faces=per_clip("faces"),
        features=per_clip("features"),
        speech=per_clip("speech"),
    output:
        md=report(f"{OUT}/report/report.md", category="Data", labels={"figure": "data report"}),
        png=report(f"{OUT}/report/report.png", category="Data", labels={"figure": "overview"}),
        identities=f"{OUT}/report/identities.csv",
        rejects=f"{OUT}/report/rejects.csv",
        speech=f"{OUT}/report/speech.csv",
    params:
        results=OUT,
        out=f"{OUT}/report",
        top=config.get("report", {}).get("top_identities", 40),
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../../envs/preprocess.yaml"
    shell:
        "{STAGE} facevoice.report --clips {input.clips:q} --manifest {input.manifest:q}"
        " --results {params.results:q} --out {params.out:q} --top {params.top} 2> {log:q}"


localrules:
    all,
    clip_table,
