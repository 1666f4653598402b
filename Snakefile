# The stMCDI benchmark: download -> prepare -> preprocess -> mask -> impute -> evaluate -> tables/figures.
# Full paper run:  snakemake --cores 8 --resources gpu=1
# Demo:            snakemake --cores 2 --configfile workflow/demo.yaml
from snakemake.utils import min_version, validate

min_version("8.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/impute.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
