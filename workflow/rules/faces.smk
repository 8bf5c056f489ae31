rule faces:
    """Detect (MTCNN, batched) and align one clip's faces."""
    input:
        rules.frames.output,
    output:
        f"{OUT}/faces/{{identity}}/{{video}}/{{clip}}.parquet",
    params:
        cfg=params_json("faces"),
    log:
        f"{OUT}/logs/faces/{{identity}}/{{video}}/{{clip}}.log",
    conda:
        "../../envs/preprocess.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    shell:
        "OMP_NUM_THREADS={threads} \"$FACEVOICE_PYTHON\" -m facevoice.faces --input {input:q} --output {output:q} --params {params.cfg:q} 2> {log:q}"
