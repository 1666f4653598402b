"""Snakemake entry point: the rank-stability figure of one dataset's protocol sweep."""
from stbench.results.figures import rank_stability_figure
from stbench.workflow_log import logged

with logged(snakemake.log[0]):
    rank_stability_figure(snakemake.input[0], snakemake.wildcards.base, snakemake.output[0])
