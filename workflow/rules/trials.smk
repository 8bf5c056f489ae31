EVAL = config.get("evaluation", {})


def _eval_params(*keys):
    return json.dumps({k: EVAL[k] for k in keys if k in EVAL}, sort_keys=True)


def _pins_args(wildcards):
    pins = EVAL.get("pins") or {}
    if wildcards.split != "test" or not pins.get("dir"):
        return ""
    return f"--import-pins {shlex.quote(pins['dir'])} --pins-set {pins.get('set', 'unseenunheard')}"


rule trials:
    """Seeded trial lists of one split: test (final evaluation) or val (model selection)."""
    input:
        manifest=rules.manifest.output[0],
    output:
        multiext(
            f"{OUT}/trials/{{split}}/",
            "verification.parquet",
            "matching.parquet",
            "retrieval.parquet",
            "summary.json",
        ),
    wildcard_constraints:
        split="val|test",
    params:
        out=lambda w: f"{OUT}/trials/{w.split}",
        seed=EVAL.get("seed", 0),
        cfg=_eval_params("verification", "matching", "retrieval", "age_cuts"),
        pins=_pins_args,
    log:
        f"{OUT}/logs/trials/{{split}}.log",
    conda:
        "../../envs/evaluate.yaml"
    shell:
        "{STAGE} facevoice.trials --manifest {input.manifest:q} --split {wildcards.split}"
        " --out {params.out:q} --seed {params.seed} --params {params.cfg:q} {params.pins} 2> {log:q}"
