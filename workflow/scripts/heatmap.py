"""Snakemake entry point: the Figure-2-style clustered heatmap of held-out entries."""
from stbench.figures import heatmap_from_files

heatmap_from_files(snakemake.input.data, snakemake.input.mask, dict(zip(snakemake.params.labels, snakemake.input.imputed)),
                   snakemake.output[0], title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.mask}")
