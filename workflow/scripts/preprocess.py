"""Snakemake entry point: preprocess one prepared dataset (paper App. E) and write its QC report."""
from stbench.steps import preprocess_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    preprocess_step(snakemake.input[0], snakemake.params.options, snakemake.output.h5ad, snakemake.output.qc)
