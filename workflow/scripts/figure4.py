"""Snakemake entry point: Figure 4, clustered heatmaps of each generator's held-out predictions beside stMCDI's."""
from stbench.results.figures import figure4_from_files
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    figure4_from_files(snakemake.input.data, snakemake.input.mask, snakemake.input.task,
                       dict(zip(snakemake.params.labels, snakemake.input.imputed)), snakemake.output[0],
                       title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.mask}")
