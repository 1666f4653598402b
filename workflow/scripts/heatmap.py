"""Snakemake entry point: the Figure-2-style clustered heatmap of held-out entries."""
from stbench.results.figures import heatmap_from_files
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    heatmap_from_files(snakemake.input.data, snakemake.input.mask, snakemake.input.task,
                       dict(zip(snakemake.params.labels, snakemake.input.imputed)), snakemake.output[0],
                       title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.mask}")
