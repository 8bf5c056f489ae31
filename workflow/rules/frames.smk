rule frames:
    """Decode one clip's frames at frames.fps (at most frames.max_per_clip)."""
    input:
        clip_source("frames_source"),
    output:
        f"{OUT}/frames/{{identity}}/{{video}}/{{clip}}.parquet",
    params:
        source=clip_source_path("frames_source"),
        cfg=params_json("frames"),
    log:
        f"{OUT}/logs/frames/{{identity}}/{{video}}/{{clip}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.frames --input {params.source:q} --output {output:q} --params {params.cfg:q} 2> {log:q}"
