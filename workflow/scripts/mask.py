"""Snakemake entry point: generate one held-out mask (dataset, strategy, ratio, among, seed)."""
from stbench.steps import mask_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    mask_step(snakemake.input[0], snakemake.params.spec, int(snakemake.wildcards.seed), snakemake.output[0],
              dataset=snakemake.wildcards.dataset)
