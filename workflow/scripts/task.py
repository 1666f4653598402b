"""Snakemake entry point: write the truth-free task file of one (dataset, mask, seed)."""
from stbench.steps import task_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    task_step(snakemake.input.data, snakemake.input.mask, snakemake.output[0], spec=snakemake.params.spec,
              dataset=snakemake.wildcards.dataset)
