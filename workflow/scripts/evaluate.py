"""Snakemake entry point: score one imputation on the held-out entries."""
from stbench.steps import evaluate_step
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    evaluate_step(snakemake.input.data, snakemake.input.mask, snakemake.input.task, snakemake.input.imputed,
                  snakemake.input.run, snakemake.output.metrics, snakemake.output.per_gene)
