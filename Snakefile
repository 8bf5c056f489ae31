# facevoice: raw talking-face videos -> aligned faces, filtered speech, features, Parquet
# shards -> trained methods, embeddings -> trial lists, evaluation, comparison tables.
#
#   snakemake --cores all                         # the demo corpus (config.yaml)
#   snakemake --cores all --configfile my.yaml    # your data
#
# Each stage is one rule file in workflow/rules/ and one module of src/facevoice/ of the
# same name. The config is checked against workflow/schemas/config.schema.yaml first and
# completed with the defaults it holds (`facevoice check-config my.yaml --print` shows the result).

from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the config only when no --configfile is given: a config file stands alone,
# completed by the schema's defaults, never merged over the repository's config.yaml.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/frames.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/speech.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/trials.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/fame.smk"


rule all:
    input:
        rules.manifest.output,
        rules.data_report.output,
        TRAIN_TARGETS,
        GENERATE_TARGETS,
        EVALUATION_TARGETS,
        FAME_TARGETS,
        # Every batch file as well. Snakemake plans a job whose output is missing only when a
        # target or a job that runs needs that output: a batch file deleted, or removed by
        # Snakemake after its job failed, while the shards built from it exist would never be
        # made again ("Nothing to be done"). Requested here, it is, and what reads it re-runs.
        lambda w: [f for stage in ("frames", "faces", "speech", "features") for f in batch_files(stage)],
    default_target: True
