"""Snakemake entry point: spatial maps (truth and each method at the spot coordinates, a few genes)."""
from stbench.results.report_figures import spatial_from_files
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    genes = spatial_from_files(snakemake.input.data, snakemake.input.mask, snakemake.input.task,
                               dict(zip(snakemake.params.labels, snakemake.input.imputed)), snakemake.output[0],
                               title=f"{snakemake.wildcards.dataset} / {snakemake.wildcards.mask}")
    print("genes shown:", ", ".join(genes))
