"""Snakemake entry point: prepare one dataset (load, validate, write the contract h5ad)."""
from stbench.steps import prepare
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    prepare(snakemake.wildcards.dataset, snakemake.params.spec, snakemake.output.h5ad, snakemake.output.report,
            cache_dir=snakemake.params.cache)
