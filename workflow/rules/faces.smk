rule faces:
    """Detect (MTCNN, loaded once per job; on the GPU when faces.device allows) and align one batch's faces."""
    input:
        rules.frames.output,
    output:
        f"{OUT}/faces/{{identity}}/{{part}}.parquet",
    params:
        cfg=params_json("faces"),
        cache=f"{OUT}/cache/faces",
    log:
        f"{OUT}/logs/faces/{{identity}}/{{part}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.preprocess.faces --input {input:q} --output {output:q}"
        " --params {params.cfg:q} --cache {params.cache:q} --no-progress 2> {log:q}"
