"""Snakemake entry point: preprocess one prepared dataset (paper App. E) and write its QC report."""
from stbench.steps import preprocess_step

preprocess_step(snakemake.input[0], snakemake.params.cfg, snakemake.output.h5ad, snakemake.output.qc)
